// store_test_util.h: the small Store configuration and the workload driver
// that the Store's tests share.
#ifndef TALLY_TESTS_WAL_STORE_TEST_UTIL_H_
#define TALLY_TESTS_WAL_STORE_TEST_UTIL_H_

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "tests/engine/workload.h"
#include "tests/temp_dir.h"
#include "wal/store.h"

namespace tally::wal {

using tally::testing::TempDir;

// SmallStoreOptions keeps a Store small enough for tests: a short history
// window, few remembered op ids, and segments of `segment_bytes` so logs
// roll every few batches.  `quiet` drops the recovery lines.
inline StoreOptions SmallStoreOptions(uint64_t segment_bytes, bool quiet) {
  StoreOptions options;
  options.ledger.history_entries_max = 1 << 16;
  options.ledger.op_ids_max = 1 << 12;
  options.log.segment_bytes = segment_bytes;
  if (quiet) options.log_sink = [](std::string_view) {};
  return options;
}

// Drive applies `batches` batches of 1 to 20 commands, syncing after each
// (each is acknowledged).
inline void Drive(Store& store, tally::testing::Workload& work, int batches) {
  BatchOutput out;
  for (int b = 0; b < batches; ++b) {
    ASSERT_TRUE(store.Apply(work.now_us(), work.Next(1 + b % 20), &out).ok());
    ASSERT_TRUE(store.Sync().ok());
  }
}

}  // namespace tally::wal

#endif  // TALLY_TESTS_WAL_STORE_TEST_UTIL_H_
