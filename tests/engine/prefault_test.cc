// prefault_test.cc: LedgerOptions::prefault maps the big tables up front,
// Ledger::PrefaultRegions names them, engine::Prefault makes them resident,
// and none of it changes what the ledger does.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "engine/huge_pages.h"
#include "engine/ledger.h"
#include "gtest/gtest.h"
#include "tally/commands.h"
#include "tests/engine/workload.h"

namespace tally {
namespace {

using testing::Workload;

LedgerOptions Options(bool prefault) {
  LedgerOptions options;
  options.history_entries_max = history_chunk_entries * 4;  // 4 chunks, ~10 MB
  options.op_ids_max = 1 << 16;
  options.prefault = prefault;
  return options;
}

// ResidentPages counts the pages of `region` that are in memory (mincore).
uint64_t ResidentPages(std::span<unsigned char> region, uint64_t* pages) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(region.data()) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(region.data()) + region.size()) & ~(page - 1);
  *pages = end > begin ? (end - begin) / page : 0;
  if (*pages == 0) return 0;
  std::vector<unsigned char> in(*pages);
  EXPECT_EQ(::mincore(reinterpret_cast<void*>(begin), end - begin, in.data()), 0);
  uint64_t resident = 0;
  for (unsigned char b : in) resident += b & 1;
  return resident;
}

uint64_t TotalBytes(const std::vector<Ledger::PrefaultRegion>& regions) {
  uint64_t bytes = 0;
  for (const auto& r : regions) bytes += r.memory.size();
  return bytes;
}

void PrefaultAll(const std::vector<Ledger::PrefaultRegion>& regions) {
  for (const auto& r : regions) {
    engine::Prefault(r.memory.data(), r.memory.size());
  }
}

TEST(Prefault, OffNamesNoRegion) {
  Ledger ledger(Options(false));
  EXPECT_TRUE(ledger.PrefaultRegions().empty());
}

TEST(Prefault, OnNamesTheRingTheTableAndBothGenerationsAndMakesThemResident) {
  Ledger ledger(Options(true));
  std::vector<Ledger::PrefaultRegion> regions = ledger.PrefaultRegions();
  ASSERT_FALSE(regions.empty());
  // The ring (4 chunks of 40-byte entries), the op-id table (one 64-byte
  // bucket per id of a generation) and room for both generations (56-byte
  // entries, half the ids each).
  const uint64_t ring = history_chunk_entries * 4 * 40;
  const uint64_t table = (uint64_t{1} << 15) * 64;
  const uint64_t entries = 2 * (uint64_t{1} << 15) * 56;
  EXPECT_GE(TotalBytes(regions), ring + table + entries);
  EXPECT_LE(TotalBytes(regions), ring + table + entries + 4 * 4096 * 4);
  // The table comes first (ids land in it at random), then the ring and the
  // entries in write order: a region further on is never needed sooner.
  EXPECT_EQ(regions.front().memory.size(), table);
  EXPECT_EQ(regions.front().after_entries, 0u);
  for (size_t i = 1; i < regions.size(); ++i) {
    EXPECT_GE(regions[i].after_entries, regions[i - 1].after_entries);
  }
  EXPECT_EQ(regions.back().after_entries, 3 * history_chunk_entries) << "the last ring chunk";

  uint64_t pages = 0;
  uint64_t resident_before = 0;
  uint64_t all_pages = 0;
  for (const auto& r : regions) {
    resident_before += ResidentPages(r.memory, &pages);
    all_pages += pages;
  }
  ASSERT_GT(all_pages, 0u);
  EXPECT_LT(resident_before, all_pages / 2) << "mapped, not touched";
  PrefaultAll(regions);
  uint64_t resident_after = 0;
  for (const auto& r : regions) resident_after += ResidentPages(r.memory, &pages);
  EXPECT_EQ(resident_after, all_pages);
}

TEST(Prefault, ChangesNothingTheLedgerDoesNorItsSnapshots) {
  Ledger plain(Options(false));
  Ledger faulted(Options(true));
  PrefaultAll(faulted.PrefaultRegions());
  Workload a(5);
  Workload b(5);
  BatchOutput out_a;
  BatchOutput out_b;
  // Past the ring's capacity, so it wraps, and past a generation of ids.
  for (int i = 0; i < 3000; ++i) {
    std::vector<Command> batch_a = a.Next(1 + i % 200);
    std::vector<Command> batch_b = b.Next(1 + i % 200);
    plain.Apply(a.now_us(), batch_a, &out_a);
    faulted.Apply(b.now_us(), batch_b, &out_b);
    ASSERT_EQ(out_a.results.size(), out_b.results.size());
    for (size_t k = 0; k < out_a.results.size(); ++k) {
      ASSERT_EQ(out_a.results[k].code, out_b.results[k].code) << "batch " << i;
    }
  }
  ASSERT_EQ(plain.Digest(), faulted.Digest());
  std::string bytes_plain;
  std::string bytes_faulted;
  plain.EncodeSnapshot(&bytes_plain);
  faulted.EncodeSnapshot(&bytes_faulted);
  EXPECT_EQ(bytes_plain, bytes_faulted);

  // A ledger restored with prefault on names its regions from where the
  // restored ring stands and applies later batches alike.
  absl::StatusOr<std::unique_ptr<Ledger>> restored =
      Ledger::DecodeSnapshot(bytes_faulted, Options(true));
  ASSERT_TRUE(restored.ok()) << restored.status();
  std::vector<Ledger::PrefaultRegion> regions = (*restored)->PrefaultRegions();
  ASSERT_FALSE(regions.empty());
  PrefaultAll(regions);
  for (int i = 0; i < 200; ++i) {
    std::vector<Command> batch_a = a.Next(50);
    std::vector<Command> batch_b = b.Next(50);
    plain.Apply(a.now_us(), batch_a, &out_a);
    (*restored)->Apply(b.now_us(), batch_b, &out_b);
  }
  EXPECT_EQ(plain.Digest(), (*restored)->Digest());
}

}  // namespace
}  // namespace tally
