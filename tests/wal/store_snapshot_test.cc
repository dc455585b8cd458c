// store_snapshot_test.cc: periodic snapshots (inline and in a forked child),
// history through the Store, and the operator lines recovery prints.
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tally/commands.h"
#include "tests/engine/workload.h"
#include "tests/wal/store_test_util.h"
#include "wal/file.h"
#include "wal/store.h"

namespace tally::wal {
namespace {

using tally::testing::Workload;

StoreOptions SmallOptions() { return SmallStoreOptions(8 << 10, /*quiet=*/true); }

// WaitForSnapshot calls MaybeSnapshot until the child is reaped (≤ 30 s).
absl::Status WaitForSnapshot(Store& store, int64_t now_ms) {
  for (int i = 0; i < 30'000 && store.snapshot_running(); ++i) {
    if (absl::Status s = store.MaybeSnapshot(now_ms); !s.ok()) return s;
    if (store.snapshot_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return store.snapshot_running() ? absl::DeadlineExceededError("snapshot child still running")
                                  : absl::OkStatus();
}

// ExpectExactSnapshot checks a snapshot a child wrote at `lsn`: it decodes
// to the state at the fork, and a store reopened on `dir` recovers the
// writer's last state (the snapshot plus `replayed` records).
void ExpectExactSnapshot(FileSystem* fs, const std::string& dir, const StoreOptions& options,
                         uint64_t lsn, uint64_t digest_at_fork, uint64_t replayed,
                         uint64_t digest) {
  auto bytes = ReadWholeFile(fs, dir + "/" + SnapshotName(lsn));
  ASSERT_TRUE(bytes.ok());
  auto at_fork = Ledger::DecodeSnapshot(*bytes, options.ledger);
  ASSERT_TRUE(at_fork.ok());
  EXPECT_EQ((*at_fork)->Digest(), digest_at_fork);
  auto again = Store::Open(fs, dir, options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->recovery().snapshot_lsn, lsn);
  EXPECT_EQ((*again)->recovery().records_replayed, replayed);
  EXPECT_EQ((*again)->ledger().Digest(), digest);
}

TEST(MaybeSnapshot, DueByRecordsTakesOneAndRetiresTheLog) {
  MemFileSystem fs;  // not a PosixFileSystem: written inline
  Workload work(41);
  StoreOptions options = SmallOptions();
  options.snapshot_every_records = 50;
  options.snapshots_kept = 1;
  auto store = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->MaybeSnapshot(0).ok());
  Drive(**store, work, 49);
  ASSERT_TRUE((*store)->MaybeSnapshot(1).ok());
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 0u) << "not due yet";
  Drive(**store, work, 1);
  ASSERT_TRUE((*store)->MaybeSnapshot(2).ok());
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 50u);
  EXPECT_EQ((*store)->manifest().log_from_lsn, 51u);
  Drive(**store, work, 120);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*store)->MaybeSnapshot(3).ok());
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 170u) << "one per call, when due";
}

TEST(MaybeSnapshot, DueByTimeOnlyWhenSomethingWasAppended) {
  MemFileSystem fs;
  Workload work(42);
  StoreOptions options = SmallOptions();
  options.snapshot_every_ms = 1000;
  auto store = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->MaybeSnapshot(10'000).ok());  // the clock starts here
  ASSERT_TRUE((*store)->MaybeSnapshot(12'000).ok());
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 0u) << "nothing appended";
  Drive(**store, work, 7);
  ASSERT_TRUE((*store)->MaybeSnapshot(12'500).ok());
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 7u);
  Drive(**store, work, 3);
  ASSERT_TRUE((*store)->MaybeSnapshot(13'000).ok());
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 7u) << "only 500 ms later";
  ASSERT_TRUE((*store)->MaybeSnapshot(13'500).ok());
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 10u);
}

TEST(MaybeSnapshot, AForkedChildWritesItWhileTheWriterGoesOn) {
  TempDir dir;
  PosixFileSystem fs;
  Workload work(43);
  StoreOptions options = SmallOptions();
  options.snapshot_every_records = 100;
  options.snapshots_kept = 1;
  uint64_t digest_at_fork = 0;
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, dir.path(), options);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->MaybeSnapshot(0).ok());
    Drive(**store, work, 100);
    digest_at_fork = (*store)->ledger().Digest();
    ASSERT_TRUE((*store)->MaybeSnapshot(1).ok());
    ASSERT_TRUE((*store)->snapshot_running());
    // The writer keeps applying while the child encodes its copy.
    Drive(**store, work, 30);
    ASSERT_TRUE(WaitForSnapshot(**store, 2).ok());
    EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 100u);
    EXPECT_EQ((*store)->manifest().log_from_lsn, 101u);
    digest = (*store)->ledger().Digest();
  }
  // The snapshot holds the state at the fork, not what came after.
  ExpectExactSnapshot(&fs, dir.path(), options, 100, digest_at_fork, 30, digest);
}

TEST(MaybeSnapshot, TheForkReserveIsTouchedInStepsAndGivenBackAtTheFork) {
  TempDir dir;
  PosixFileSystem fs;
  Workload work(47);
  StoreOptions options = SmallOptions();
  options.snapshot_every_records = 100;
  options.snapshots_kept = 1;
  options.fork_reserve_bytes = uint64_t{3} << 20;
  options.fork_reserve_step_bytes = uint64_t{1} << 20;
  options.fork_reserve_release_bytes = uint64_t{1} << 20;
  uint64_t digest_at_fork = 0;
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, dir.path(), options);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->fork_reserve_touched_bytes(), 0u) << "nothing before the writer runs";
    ASSERT_TRUE((*store)->MaybeSnapshot(0).ok());
    EXPECT_EQ((*store)->fork_reserve_touched_bytes(), uint64_t{1} << 20) << "one step a call";
    Drive(**store, work, 50);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*store)->MaybeSnapshot(1).ok());
    EXPECT_EQ((*store)->fork_reserve_touched_bytes(), uint64_t{3} << 20) << "never more than asked";
    Drive(**store, work, 50);
    digest_at_fork = (*store)->ledger().Digest();
    ASSERT_TRUE((*store)->MaybeSnapshot(2).ok());
    ASSERT_TRUE((*store)->snapshot_running());
    EXPECT_EQ((*store)->fork_reserve_touched_bytes(), uint64_t{2} << 20)
        << "one step given back just before the fork";
    Drive(**store, work, 30);
    ASSERT_TRUE((*store)->MaybeSnapshot(3).ok());
    EXPECT_EQ((*store)->fork_reserve_touched_bytes(), uint64_t{1} << 20)
        << "and one per call after it, never refilled while the child runs";
    ASSERT_TRUE(WaitForSnapshot(**store, 4).ok());
    EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 100u);
    const uint64_t left = (*store)->fork_reserve_touched_bytes();
    EXPECT_LE(left, uint64_t{1} << 20);
    ASSERT_TRUE((*store)->MaybeSnapshot(5).ok());
    EXPECT_EQ((*store)->fork_reserve_touched_bytes(), left + (uint64_t{1} << 20))
        << "refilled once the child is reaped";
    digest = (*store)->ledger().Digest();
  }
  // The snapshot is exact: the state at the fork, and recovery gives the live state.
  ExpectExactSnapshot(&fs, dir.path(), options, 100, digest_at_fork, 30, digest);
}

TEST(MaybeSnapshot, NoForkReserveWhereSnapshotsDoNotFork) {
  MemFileSystem fs;  // inline snapshots: nothing to reserve for
  Workload work(48);
  StoreOptions options = SmallOptions();
  options.snapshot_every_records = 100;
  auto store = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(store.ok());
  Drive(**store, work, 10);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*store)->MaybeSnapshot(i).ok());
  EXPECT_EQ((*store)->fork_reserve_touched_bytes(), 0u);
  TempDir dir;
  PosixFileSystem posix;
  options.snapshot_every_records = 0;  // no periodic snapshots: none either
  auto plain = Store::Open(&posix, dir.path(), options);
  ASSERT_TRUE(plain.ok()) << plain.status();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE((*plain)->MaybeSnapshot(i).ok());
  EXPECT_EQ((*plain)->fork_reserve_touched_bytes(), 0u);
}

TEST(MaybeSnapshot, SegmentsStartedWhileTheChildRunsAreNamedWhenItIsReaped) {
  TempDir dir;
  PosixFileSystem fs;
  Workload work(44);
  StoreOptions options = SmallOptions();  // 8 KiB segments
  options.snapshot_every_records = 100;
  options.snapshots_kept = 1;
  auto live_segments = [&] {
    std::vector<uint64_t> lsns;
    const std::vector<std::string> names = *fs.List(dir.path() + "/wal");
    for (const std::string& name : names) {
      if (auto lsn = ParseSegmentFileName(name)) lsns.push_back(*lsn);
    }
    std::sort(lsns.begin(), lsns.end());
    return lsns;
  };
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, dir.path(), options);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->MaybeSnapshot(0).ok());
    Drive(**store, work, 100);
    ASSERT_TRUE((*store)->MaybeSnapshot(1).ok());
    ASSERT_TRUE((*store)->snapshot_running());
    // Rolls while the child owns the manifest (it is not reaped before the
    // next MaybeSnapshot, however fast it is).
    const std::vector<uint64_t> at_fork = live_segments();
    Drive(**store, work, 60);
    ASSERT_GT(live_segments().back(), at_fork.back()) << "the log should have rolled";
    ASSERT_TRUE(WaitForSnapshot(**store, 2).ok());
    EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 100u);
    EXPECT_EQ((*store)->manifest().segments, live_segments());
    auto on_disk = ReadManifest(&fs, dir.path());
    ASSERT_TRUE(on_disk.ok() && on_disk->has_value());
    EXPECT_EQ((*on_disk)->segments, live_segments());
    digest = (*store)->ledger().Digest();
  }
  auto again = Store::Open(&fs, dir.path(), options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->recovery().records_replayed, 60u);
  EXPECT_EQ((*again)->ledger().Digest(), digest);
}

TEST(MaybeSnapshot, AFailedChildIsReportedAndTheStoreGoesOn) {
  TempDir dir;
  PosixFileSystem fs;
  Workload work(44);
  StoreOptions options = SmallOptions();
  options.snapshot_every_records = 10;
  auto store = Store::Open(&fs, dir.path(), options);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->MaybeSnapshot(0).ok());
  Drive(**store, work, 10);
  // A directory where the child's temp file must go: it cannot create it.
  const std::string blocker = dir.path() + "/" + SnapshotName(10) + ".tmp";
  ASSERT_EQ(mkdir(blocker.c_str(), 0700), 0);
  ASSERT_TRUE((*store)->MaybeSnapshot(1).ok());
  absl::Status s = WaitForSnapshot(**store, 2);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("failed in child"), std::string::npos) << s;
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 0u);
  // Not retried at once; the writer is unharmed.
  ASSERT_TRUE((*store)->MaybeSnapshot(3).ok());
  EXPECT_FALSE((*store)->snapshot_running());
  Drive(**store, work, 5);
  std::filesystem::remove(blocker);
  ASSERT_TRUE((*store)->MaybeSnapshot(2000).ok());
  ASSERT_TRUE(WaitForSnapshot(**store, 2001).ok());
  EXPECT_EQ((*store)->manifest().current_snapshot_lsn(), 15u);
}

// History through the Store: a small RAM window, the rest on disk, across a
// restart after the log that made it was retired.
TEST(StoreHistory, QueriesReachPastTheRamWindowAndSurviveRestart) {
  MemFileSystem fs;
  StoreOptions options = SmallOptions();
  options.ledger.history_entries_max = 1;  // one chunk: 65,536 entries
  options.log.segment_bytes = 4 << 20;
  options.snapshots_kept = 1;
  LedgerOptions big;
  big.history_entries_max = uint64_t{1} << 20;
  Ledger twin(big);
  BatchOutput out;
  uint64_t op_id = 0;
  int64_t t = int64_t{1'700'000'000} * 1'000'000;
  auto apply = [&](Store& store, std::vector<Command> batch) {
    for (Command& c : batch) c.op_id = ++op_id;
    t += 1'000'000;
    ASSERT_TRUE(store.Apply(t, batch, &out).ok());
    twin.Apply(t, batch, &out);
  };
  const int64_t early_us = t + 10'500'000;
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    apply(**store, {cmd::OrgCreate(1)});
    apply(**store, {cmd::Topup(1, 100'000'000)});
    std::vector<WalletAmount> targets = {{1, 1'000'000}, {2, 1'000'000}};
    apply(**store, {cmd::Allocate(1, targets)});
    for (int b = 0; b < 100; ++b) {
      std::vector<Command> batch;
      for (int i = 0; i < 1000; ++i) batch.push_back(cmd::Deduct(1, 1 + i % 2, 1 + i % 3));
      apply(**store, batch);
    }
    ASSERT_TRUE((*store)->Sync().ok());
    ASSERT_LT((*store)->ledger().history_begin_seq(), 100'000u) << "test setup";
    ASSERT_GT((*store)->ledger().history_begin_seq(), 1u) << "the window must have moved";
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
  }
  auto store = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ((*store)->recovery().records_replayed, 0u);
  // Walk wallet 1's whole history, page by page, against the twin.
  HistoryQuery q{.org_id = 1, .wallet_id = 1, .limit = 1000};
  uint64_t entries = 0;
  while (true) {
    auto page = (*store)->GetHistory(q);
    auto want = twin.GetHistory(q);
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_TRUE(want.ok());
    ASSERT_EQ(page->entries.size(), want->entries.size());
    for (size_t i = 0; i < page->entries.size(); ++i) {
      EXPECT_EQ(page->entries[i].seq, want->entries[i].seq);
      EXPECT_EQ(page->entries[i].amount, want->entries[i].amount);
      EXPECT_EQ(page->entries[i].balance_after, want->entries[i].balance_after);
      EXPECT_EQ(page->entries[i].time_us, want->entries[i].time_us);
    }
    entries += page->entries.size();
    EXPECT_FALSE(page->truncated);
    if (want->next_cursor == 0) break;
    ASSERT_EQ(page->next_cursor, want->next_cursor);
    q.cursor = page->next_cursor;
  }
  EXPECT_EQ(entries, 50'001u);  // the allocation and 50,000 deducts
  auto at = (*store)->BalanceAt(1, 1, Asset::Credits(), early_us);
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(*at, twin.BalanceAt(1, 1, Asset::Credits(), early_us).value());
  EXPECT_FALSE((*store)->ledger().BalanceAt(1, 1, Asset::Credits(), early_us).ok())
      << "the ledger alone cannot answer this: the test would prove nothing";
}

TEST(RecoveryLines, ProgressAndTheTornTailAreReported) {
  MemFileSystem fs;
  Workload work(45);
  StoreOptions options = SmallOptions();
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 300);
    BatchOutput out;
    ASSERT_TRUE((*store)->Apply(work.now_us(), work.Next(30), &out).ok());
    fs.TearNextWrite(64);
    (void)(*store)->Sync();
  }
  std::vector<std::string> lines;
  options.log_sink = [&](std::string_view line) { lines.emplace_back(line); };
  options.progress_every_ms = 0;  // a line per record
  auto again = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(again.ok()) << again.status();
  int progress = 0;
  bool torn = false, summary = false;
  for (const std::string& line : lines) {
    progress += line.find("replaying: ") != std::string::npos;
    torn |= line.find("cut a torn tail of " + std::to_string((*again)->recovery().torn_bytes_dropped) +
                      " bytes") != std::string::npos;
    summary |= line.find("replayed 300 records") != std::string::npos;
  }
  EXPECT_EQ(progress, 300);
  EXPECT_TRUE(torn);
  EXPECT_TRUE(summary);
  EXPECT_NE(lines[lines.size() > 2 ? 2 : 0].find("%"), std::string::npos);
}

}  // namespace
}  // namespace tally::wal
