// store_test.cc: recovery gives back exactly the ledger that was acknowledged.
#include "wal/store.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tally/codec.h"
#include "tests/engine/workload.h"
#include "tests/wal/store_test_util.h"
#include "wal/file.h"
#include "wal/log_reader.h"

namespace tally::wal {
namespace {

using tally::testing::Workload;

StoreOptions SmallOptions() { return SmallStoreOptions(64 << 10, /*quiet=*/false); }

TEST(Store, RecoveryReplaysEverythingAfterTheNewestSnapshot) {
  MemFileSystem fs;
  Workload work(21);
  uint64_t digest = 0;
  uint64_t snapshot_lsn = 0;
  {
    auto store = Store::Open(&fs, "/shard", SmallOptions());
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ((*store)->recovery().next_lsn, 1u);
    Drive(**store, work, 120);
    auto lsn = (*store)->WriteSnapshot();
    ASSERT_TRUE(lsn.ok()) << lsn.status();
    snapshot_lsn = *lsn;
    EXPECT_EQ(snapshot_lsn, 120u);
    Drive(**store, work, 80);
    digest = (*store)->ledger().Digest();
  }
  auto again = Store::Open(&fs, "/shard", SmallOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  const RecoveryReport& report = (*again)->recovery();
  EXPECT_EQ(report.snapshot_lsn, snapshot_lsn);
  EXPECT_EQ(report.records_replayed, 80u);
  EXPECT_EQ(report.torn_bytes_dropped, 0u);
  EXPECT_EQ((*again)->ledger().Digest(), digest);
  // And it goes on where it stopped.
  Drive(**again, work, 5);
  EXPECT_EQ((*again)->last_lsn(), 205u);
}

// ApplyEncoded logs the bytes it is given, cut out of bigger batches the way
// a tallyd shard cuts them out of its clients' frames (every other command,
// out of order): the same results, and a recovery gives the same ledger as
// Apply of the same commands.
TEST(Store, ApplyEncodedOfSlicesOfOtherBatchesRecoversLikeApply) {
  MemFileSystem plain_fs;
  MemFileSystem sliced_fs;
  Workload work(23);
  uint64_t digest = 0;
  {
    auto plain = Store::Open(&plain_fs, "/shard", SmallOptions());
    auto sliced = Store::Open(&sliced_fs, "/shard", SmallOptions());
    ASSERT_TRUE(plain.ok() && sliced.ok());
    BatchOutput plain_out;
    BatchOutput sliced_out;
    for (int b = 0; b < 60; ++b) {
      std::vector<Command> commands = work.Next(1 + b % 20);
      // A "frame": its time is not the log's, its commands come in any order.
      std::string frame;
      ASSERT_TRUE(EncodeBatch(/*time_us=*/0, commands, &frame).ok());
      DecodedBatch decoded;
      ASSERT_TRUE(DecodeBatch(frame, &decoded).ok());
      ASSERT_EQ(decoded.command_ends.size(), commands.size());
      std::vector<uint32_t> order;
      for (uint32_t i = 1; i < commands.size(); i += 2) order.push_back(i);
      for (uint32_t i = 0; i < commands.size(); i += 2) order.push_back(i);
      std::vector<Command> picked;  // side by side, for Apply
      std::vector<const Command*> in_place;  // where they were decoded, for ApplyEncoded
      std::string record(batch_header_bytes, '\x5a');  // the store writes the header
      for (uint32_t i : order) {
        picked.push_back(decoded.commands[i]);
        in_place.push_back(&decoded.commands[i]);
        uint32_t begin = i == 0 ? batch_header_bytes : decoded.command_ends[i - 1];
        record.append(frame, begin, decoded.command_ends[i] - begin);
      }
      ASSERT_TRUE((*plain)->Apply(work.now_us(), picked, &plain_out).ok());
      ASSERT_TRUE((*sliced)->ApplyEncoded(work.now_us(), in_place, &record, &sliced_out).ok());
      ASSERT_TRUE((*plain)->Sync().ok());
      ASSERT_TRUE((*sliced)->Sync().ok());
      ASSERT_EQ(sliced_out.results.size(), plain_out.results.size());
      for (size_t k = 0; k < plain_out.results.size(); ++k) {
        EXPECT_EQ(sliced_out.results[k].code, plain_out.results[k].code) << b << "/" << k;
        EXPECT_EQ(sliced_out.results[k].n[2], plain_out.results[k].n[2]) << b << "/" << k;
      }
    }
    digest = (*plain)->ledger().Digest();
    EXPECT_EQ((*sliced)->ledger().Digest(), digest);
  }
  auto again = Store::Open(&sliced_fs, "/shard", SmallOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->recovery().records_replayed, 60u);
  EXPECT_EQ((*again)->ledger().Digest(), digest);
}

TEST(Store, WithoutASnapshotTheWholeLogIsReplayed) {
  MemFileSystem fs;
  Workload work(22);
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, "/shard", SmallOptions());
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 60);
    digest = (*store)->ledger().Digest();
  }
  auto again = Store::Open(&fs, "/shard", SmallOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->recovery().snapshot_path.empty());
  EXPECT_EQ((*again)->recovery().records_replayed, 60u);
  EXPECT_EQ((*again)->ledger().Digest(), digest);
}

TEST(Store, ADamagedNewestSnapshotFallsBackToTheOneBefore) {
  MemFileSystem fs;
  Workload work(23);
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, "/shard", SmallOptions());
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 30);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    Drive(**store, work, 30);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    Drive(**store, work, 10);
    digest = (*store)->ledger().Digest();
  }
  // Flip one byte in the middle of the newest snapshot.
  const std::string newest = "/shard/" + SnapshotName(60);
  auto file = fs.Open(newest, OpenMode::kReadWrite);
  ASSERT_TRUE(file.ok()) << file.status();
  std::byte b[1];
  uint64_t middle = *(*file)->Size() / 2;
  ASSERT_TRUE((*file)->PRead(middle, b).ok());
  b[0] ^= std::byte{0x10};
  ASSERT_TRUE((*file)->PWrite(middle, b).ok());

  auto again = Store::Open(&fs, "/shard", SmallOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  const RecoveryReport& report = (*again)->recovery();
  ASSERT_EQ(report.snapshots_skipped.size(), 1u);
  EXPECT_NE(report.snapshots_skipped[0].find("checksum"), std::string::npos)
      << report.snapshots_skipped[0];
  EXPECT_EQ(report.snapshot_lsn, 30u);
  EXPECT_EQ(report.records_replayed, 40u);
  EXPECT_EQ((*again)->ledger().Digest(), digest);
}

TEST(Store, AnUnacknowledgedTornBatchIsCutAndEverythingAcknowledgedStays) {
  MemFileSystem fs;
  Workload work(24);
  uint64_t acknowledged = 0;
  {
    auto store = Store::Open(&fs, "/shard", SmallOptions());
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 40);
    acknowledged = (*store)->ledger().Digest();
    BatchOutput out;
    ASSERT_TRUE((*store)->Apply(work.now_us(), work.Next(30), &out).ok());
    // The process dies while the batch is written: its last 64 bytes never
    // land (the preallocated zeros stay; 64, because the very last bytes of
    // a batch are often zeros anyway: the high bytes of a small amount).
    fs.TearNextWrite(64);
    (void)(*store)->Sync();
  }
  auto again = Store::Open(&fs, "/shard", SmallOptions());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_GT((*again)->recovery().torn_bytes_dropped, 0u);
  EXPECT_EQ((*again)->recovery().records_replayed, 40u);
  EXPECT_EQ((*again)->ledger().Digest(), acknowledged);
}

// With direct writes (simulated: whole aligned blocks, the log's last block
// padded and written again by each Sync) a crash that tears the write of an
// unacknowledged batch at any point, even inside the rewritten block, keeps
// every acknowledged batch: the recovered ledger is the acknowledged one, or
// the one with the whole unacknowledged batch if all of it landed.
TEST(Store, WithDirectWritesATornBatchAtAnyPointKeepsEverythingAcknowledged) {
  int torn = 0;
  for (const size_t drop_bytes :
       {64, 700, 1500, 2000, 2500, 3000, 3500, 4096 + 64, 5000, 6000, 12000}) {
    MemFileSystem fs;
    fs.SimulateDirect(true);
    StoreOptions options = SmallOptions();
    options.history_direct_io = drop_bytes / 100 % 2 == 0;  // both ways
    Workload work(27);
    uint64_t acknowledged = 0, with_last = 0;
    {
      auto store = Store::Open(&fs, "/shard", options);
      ASSERT_TRUE(store.ok()) << store.status();
      Drive(**store, work, 20);
      ASSERT_TRUE((*store)->WriteSnapshot().ok());
      Drive(**store, work, 20);
      acknowledged = (*store)->ledger().Digest();
      BatchOutput out;
      ASSERT_TRUE((*store)->Apply(work.now_us(), work.Next(40), &out).ok());
      with_last = (*store)->ledger().Digest();
      fs.TearNextWrite(drop_bytes);
      (void)(*store)->Sync();
    }
    if (options.history_direct_io) {
      EXPECT_GT(fs.direct_bytes_written(), fs.cached_bytes_written()) << drop_bytes;
    }
    auto again = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(again.ok()) << again.status() << " dropping " << drop_bytes;
    const RecoveryReport& report = (*again)->recovery();
    ASSERT_TRUE(report.records_replayed == 20 || report.records_replayed == 21)
        << report.records_replayed << " dropping " << drop_bytes;
    EXPECT_EQ((*again)->ledger().Digest(), report.records_replayed == 20 ? acknowledged : with_last)
        << "dropping " << drop_bytes;
    if (report.torn_bytes_dropped > 0) ++torn;
    Drive(**again, work, 3);  // and it goes on
  }
  EXPECT_GE(torn, 2) << "drops that end inside the batch must cut its record";
}

TEST(Store, AFailedSyncStopsTheStoreForGood) {
  MemFileSystem fs;
  Workload work(25);
  auto store = Store::Open(&fs, "/shard", SmallOptions());
  ASSERT_TRUE(store.ok());
  Drive(**store, work, 3);
  fs.FailSync(EIO);
  BatchOutput out;
  ASSERT_TRUE((*store)->Apply(work.now_us(), work.Next(2), &out).ok());
  EXPECT_FALSE((*store)->Sync().ok());
  EXPECT_FALSE((*store)->Apply(work.now_us(), work.Next(2), &out).ok());
  EXPECT_FALSE((*store)->Sync().ok()) << "never retried after a failed fdatasync";
}

TEST(Store, RealFilesSurviveReopening) {
  const TempDir temp;
  const std::string& dir = temp.path();
  PosixFileSystem fs;
  Workload work(26);
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, dir, SmallOptions());
    ASSERT_TRUE(store.ok()) << store.status();
    Drive(**store, work, 25);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    Drive(**store, work, 25);
    digest = (*store)->ledger().Digest();
  }
  {
    auto again = Store::Open(&fs, dir, SmallOptions());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->recovery().snapshot_lsn, 25u);
    EXPECT_EQ((*again)->ledger().Digest(), digest);
  }
}

}  // namespace
}  // namespace tally::wal
