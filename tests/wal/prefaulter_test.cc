// prefaulter_test.cc: the pre-fault thread keeps its window ahead of the
// writer, and only that far; a store replaying with it gives the same ledger.
#include "wal/prefaulter.h"

#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/engine/workload.h"
#include "tests/wal/store_test_util.h"
#include "wal/file.h"
#include "wal/store.h"

namespace tally::wal {
namespace {

LedgerOptions PrefaultedOptions() {
  LedgerOptions options;
  options.history_entries_max = 8 * history_chunk_entries;
  options.op_ids_max = 1 << 12;
  options.prefault = true;
  return options;
}

// ResidentBytes counts the pages of `memory` that are in RAM (mincore).
uint64_t ResidentBytes(std::span<unsigned char> memory) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(memory.data()) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(memory.data()) + memory.size();
  std::vector<unsigned char> in((end - begin + page - 1) / page);
  if (::mincore(reinterpret_cast<void*>(begin), end - begin, in.data()) != 0) return 0;
  uint64_t n = 0;
  for (unsigned char c : in) n += (c & 1) * page;
  return n;
}

// WaitFor polls `done` for up to 20 s; false if it never held.
template <typename F>
bool WaitFor(F done) {
  for (int i = 0; i < 2000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

TEST(Prefaulter, FaultsOnlyTheWindowAheadOfTheWriterAndFollowsIt) {
  Ledger ledger(PrefaultedOptions());
  std::vector<Ledger::PrefaultRegion> regions = ledger.PrefaultRegions();
  ASSERT_GE(regions.size(), 3u);
  uint64_t window_bytes = 0;  // what a window of one chunk reaches
  uint64_t all_bytes = 0;
  for (const Ledger::PrefaultRegion& r : regions) {
    if (r.after_entries <= history_chunk_entries) window_bytes += r.memory.size();
    all_bytes += r.memory.size();
  }
  ASSERT_LT(window_bytes, all_bytes);
  PrefaulterOptions options;
  options.ahead_entries = history_chunk_entries;
  options.poll_min = std::chrono::milliseconds(1);
  options.poll_max = std::chrono::milliseconds(5);
  Prefaulter prefaulter(regions, ledger.history_entries_total(), options);
  ASSERT_TRUE(WaitFor([&] { return prefaulter.done_bytes() >= window_bytes; }));
  // It stays there while the writer does not move...
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(prefaulter.done_bytes(), window_bytes);
  EXPECT_EQ(ResidentBytes(regions.back().memory), 0u);
  // ...and goes to the end once the writer is near it.
  prefaulter.Advance(ledger.history_entries_total() + regions.back().after_entries);
  ASSERT_TRUE(WaitFor([&] { return prefaulter.done_bytes() == all_bytes; }));
  EXPECT_GT(ResidentBytes(regions.back().memory), regions.back().memory.size() / 2);
  prefaulter.Stop();
  prefaulter.Stop();  // idempotent
}

TEST(Prefaulter, WithoutRegionsThereIsNoThreadAndStopReturns) {
  Prefaulter prefaulter({}, 0, {});
  prefaulter.Advance(100);
  prefaulter.Stop();
  EXPECT_EQ(prefaulter.done_bytes(), 0u);
}

// A replay with the pre-fault on (tallyd's default) gives the ledger the
// live store had, and counts the commands it replayed.
// PrefaultStoreOptions: a small store whose ledger pre-faults, with a window
// small enough that the replay's pre-fault moves it many times.
StoreOptions PrefaultStoreOptions() {
  StoreOptions options = SmallStoreOptions(1 << 20, /*quiet=*/true);
  options.ledger = PrefaultedOptions();
  options.replay_prefault_ahead_entries = 256;
  return options;
}

TEST(Prefaulter, AStoreReplayingWithThePrefaultOnRecoversTheSameLedger) {
  const TempDir temp;
  const std::string& dir = temp.path();
  ASSERT_FALSE(dir.empty());
  PosixFileSystem fs;
  StoreOptions options = PrefaultStoreOptions();
  tally::testing::Workload work(31);
  uint64_t digest = 0;
  uint64_t commands = 0;
  {
    auto store = Store::Open(&fs, dir, options);
    ASSERT_TRUE(store.ok()) << store.status();
    BatchOutput out;
    for (int b = 0; b < 300; ++b) {
      std::vector<Command> batch = work.Next(1 + b % 20);
      commands += batch.size();
      ASSERT_TRUE((*store)->Apply(work.now_us(), batch, &out).ok());
    }
    ASSERT_TRUE((*store)->Sync().ok());
    digest = (*store)->ledger().Digest();
  }
  for (bool prefault : {true, false}) {
    SCOPED_TRACE(prefault);
    options.ledger.prefault = prefault;
    auto again = Store::Open(&fs, dir, options);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->recovery().records_replayed, 300u);
    EXPECT_EQ((*again)->recovery().commands_replayed, commands);
    EXPECT_EQ((*again)->ledger().Digest(), digest);
    if (!prefault) {
      EXPECT_EQ((*again)->recovery().replay_prefaulted_bytes, 0u);
    }
  }
}

// The snapshot's load runs beside a pre-fault thread too (prefault-load,
// over a ledger made before the load: Ledger::LoadSnapshot).  Its ledger is
// the live one; a damaged newest snapshot, whose half-loaded ledger goes
// while such a thread ran, falls back to the one before it, as without.
TEST(Prefaulter, AStoreLoadingASnapshotWithThePrefaultOnRecoversTheSameLedger) {
  const TempDir temp;
  const std::string& dir = temp.path();
  ASSERT_FALSE(dir.empty());
  PosixFileSystem fs;
  StoreOptions options = PrefaultStoreOptions();
  options.snapshots_kept = 2;
  tally::testing::Workload work(32);
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, dir, options);
    ASSERT_TRUE(store.ok()) << store.status();
    BatchOutput out;
    for (int b = 0; b < 300; ++b) {
      ASSERT_TRUE((*store)->Apply(work.now_us(), work.Next(1 + b % 20), &out).ok());
      if (b == 100 || b == 200) {
        ASSERT_TRUE((*store)->WriteSnapshot().ok());
      }
    }
    ASSERT_TRUE((*store)->Sync().ok());
    digest = (*store)->ledger().Digest();
  }
  std::string newest;
  for (bool prefault : {true, false}) {
    SCOPED_TRACE(prefault);
    options.ledger.prefault = prefault;
    auto again = Store::Open(&fs, dir, options);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_FALSE((*again)->recovery().snapshot_path.empty());
    EXPECT_TRUE((*again)->recovery().snapshots_skipped.empty());
    EXPECT_EQ((*again)->ledger().Digest(), digest);
    if (!prefault) {
      EXPECT_EQ((*again)->recovery().snapshot_prefaulted_bytes, 0u);
    }
    newest = (*again)->recovery().snapshot_path;
  }
  {
    // One byte of the newest snapshot's wallets flipped: its checksum fails.
    std::FILE* f = std::fopen(newest.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fseek(f, 40, SEEK_SET), 0);
    const int c = std::fgetc(f);
    ASSERT_EQ(std::fseek(f, 40, SEEK_SET), 0);
    std::fputc(c ^ 0x10, f);
    std::fclose(f);
  }
  options.ledger.prefault = true;
  auto fallback = Store::Open(&fs, dir, options);
  ASSERT_TRUE(fallback.ok()) << fallback.status();
  EXPECT_EQ((*fallback)->recovery().snapshots_skipped.size(), 1u);
  EXPECT_NE((*fallback)->recovery().snapshot_path, newest);
  EXPECT_FALSE((*fallback)->recovery().snapshot_path.empty());
  EXPECT_EQ((*fallback)->ledger().Digest(), digest);
  fallback->reset();
}

}  // namespace
}  // namespace tally::wal
