// manifest_test.cc: the manifest decides what is live; retirement follows it;
// recovery trusts it and still drops nothing silently.
#include "wal/manifest.h"

#include <algorithm>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "tests/engine/workload.h"
#include "tally/limits.h"
#include "tests/wal/store_test_util.h"
#include "wal/file.h"
#include "wal/format.h"
#include "wal/store.h"

namespace tally::wal {
namespace {

using tally::testing::Workload;

StoreOptions SmallOptions() { return SmallStoreOptions(8 << 10, /*quiet=*/true); }

std::vector<uint64_t> SegmentsIn(MemFileSystem& fs, const std::string& dir) {
  std::vector<uint64_t> lsns;
  const std::vector<std::string> names = *fs.List(dir);
  for (const std::string& name : names) {
    if (auto lsn = ParseSegmentFileName(name)) lsns.push_back(*lsn);
  }
  std::sort(lsns.begin(), lsns.end());
  return lsns;
}

std::vector<uint64_t> SnapshotsIn(MemFileSystem& fs, const std::string& dir) {
  std::vector<uint64_t> lsns;
  const std::vector<std::string> names = *fs.List(dir);
  for (const std::string& name : names) {
    if (auto lsn = ParseSnapshotName(name)) lsns.push_back(*lsn);
  }
  std::sort(lsns.begin(), lsns.end());
  return lsns;
}

TEST(Manifest, EncodesAndDecodesTheSame) {
  Manifest m{.snapshot_lsns = {120, 60}, .log_from_lsn = 61, .segments = {40, 97, 130}};
  const std::string text = EncodeManifest(m);
  EXPECT_EQ(text.substr(0, text.find("checksum")),
            "tally-manifest 1\nsnapshots 120 60\nlog_from 61\nsegments 40 97 130\n");
  auto back = DecodeManifest(text);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, m);
  Manifest empty;
  EXPECT_EQ(DecodeManifest(EncodeManifest(empty)).value(), empty);
}

TEST(Manifest, EveryDamagedByteIsRefused) {
  const std::string text =
      EncodeManifest({.snapshot_lsns = {120, 60}, .log_from_lsn = 61, .segments = {40, 97}});
  for (size_t i = 0; i < text.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = text;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      auto m = DecodeManifest(bad);
      EXPECT_FALSE(m.ok()) << "byte " << i << " bit " << bit;
      if (!m.ok()) {
        EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss);
      }
    }
  }
  EXPECT_FALSE(DecodeManifest(text.substr(0, text.size() - 1)).ok());
  EXPECT_FALSE(DecodeManifest("").ok());
}

TEST(Manifest, InconsistentContentIsRefusedEvenWithAGoodChecksum) {
  // Snapshots out of order; the log starting after the oldest snapshot.
  EXPECT_FALSE(DecodeManifest(EncodeManifest({.snapshot_lsns = {60, 120}, .log_from_lsn = 61}))
                   .ok());
  EXPECT_FALSE(DecodeManifest(EncodeManifest({.snapshot_lsns = {120}, .log_from_lsn = 122})).ok());
  EXPECT_FALSE(DecodeManifest(EncodeManifest(
                                  {.snapshot_lsns = {120}, .log_from_lsn = 121, .segments = {130}}))
                   .ok());
}

TEST(Retirement, SegmentsWhollyOlderThanTheOldestKeptSnapshotAreRemoved) {
  MemFileSystem fs;
  Workload work(31);
  StoreOptions options = SmallOptions();
  options.snapshots_kept = 2;
  auto store = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE((*store)->recovery().had_manifest);
  Drive(**store, work, 100);
  const std::vector<uint64_t> before = SegmentsIn(fs, "/shard/wal");
  ASSERT_GT(before.size(), 4u) << "the test needs many segments";
  ASSERT_EQ((*store)->WriteSnapshot().value(), 100u);
  // One snapshot: the log is kept from it on.
  Drive(**store, work, 100);
  ASSERT_EQ((*store)->WriteSnapshot().value(), 200u);
  Drive(**store, work, 10);
  const Manifest& m = (*store)->manifest();
  EXPECT_EQ(m.snapshot_lsns, (std::vector<uint64_t>{200, 100}));
  EXPECT_EQ(m.log_from_lsn, 101u);
  const std::vector<uint64_t> after = SegmentsIn(fs, "/shard/wal");
  ASSERT_FALSE(after.empty());
  EXPECT_LE(after.front(), 101u) << "the segment holding LSN 101 stays";
  EXPECT_GT(after.size() > 1 ? after[1] : UINT64_MAX, 101u) << "and nothing wholly before it";
  EXPECT_EQ(SnapshotsIn(fs, "/shard"), (std::vector<uint64_t>{100, 200}));

  // A third snapshot retires the first and the log before the second.
  ASSERT_EQ((*store)->WriteSnapshot().value(), 210u);
  EXPECT_EQ(SnapshotsIn(fs, "/shard"), (std::vector<uint64_t>{200, 210}));
  EXPECT_LE(SegmentsIn(fs, "/shard/wal").front(), 201u);
  const uint64_t digest = (*store)->ledger().Digest();
  store->reset();
  auto again = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->recovery().had_manifest);
  EXPECT_EQ((*again)->recovery().snapshot_lsn, 210u);
  EXPECT_EQ((*again)->ledger().Digest(), digest);
}

TEST(Retirement, ArchiveKeepsRetiredSegmentsAndSnapshotsAsOneLog) {
  MemFileSystem fs;
  Workload work(32);
  StoreOptions options = SmallOptions();
  options.snapshots_kept = 1;
  options.archive = true;
  auto store = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(store.ok());
  Drive(**store, work, 80);
  ASSERT_TRUE((*store)->WriteSnapshot().ok());
  Drive(**store, work, 80);
  ASSERT_TRUE((*store)->WriteSnapshot().ok());
  EXPECT_EQ(SnapshotsIn(fs, "/shard"), (std::vector<uint64_t>{160}));
  EXPECT_EQ(SnapshotsIn(fs, "/shard/archive"), (std::vector<uint64_t>{80}));
  const std::vector<uint64_t> archived = SegmentsIn(fs, "/shard/archive");
  const std::vector<uint64_t> live = SegmentsIn(fs, "/shard/wal");
  ASSERT_FALSE(archived.empty());
  EXPECT_EQ(archived.front(), 1u);
  EXPECT_LT(archived.back(), live.front());
  // Archive and live segments read as one unbroken log from LSN 1.
  LogReaderOptions read;
  read.archive_dir = "/shard/archive";
  auto reader = LogReader::Open(&fs, "/shard/wal", read);
  ASSERT_TRUE(reader.ok());
  LogRecord record;
  uint64_t records = 0;
  while ((*reader)->Next(&record).value()) ++records;
  EXPECT_EQ(records, 160u);
}

TEST(Retirement, KeepingOneSnapshotRemovesTheLogBeforeIt) {
  MemFileSystem fs;
  Workload work(33);
  StoreOptions options = SmallOptions();
  options.snapshots_kept = 1;
  auto store = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(store.ok());
  Drive(**store, work, 100);
  ASSERT_TRUE((*store)->WriteSnapshot().ok());
  EXPECT_EQ((*store)->manifest().log_from_lsn, 101u);
  EXPECT_EQ(SnapshotsIn(fs, "/shard"), (std::vector<uint64_t>{100}));
  const std::vector<uint64_t> live = SegmentsIn(fs, "/shard/wal");
  EXPECT_GT(live.front(), 1u);
  const std::vector<std::string> archived = *fs.List("/shard/archive");
  EXPECT_TRUE(archived.empty());
}

TEST(Recovery, ASegmentTheManifestNamesMustExist) {
  MemFileSystem fs;
  Workload work(34);
  StoreOptions options = SmallOptions();
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 60);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    Drive(**store, work, 5);
  }
  // The newest segment the manifest lists: the LSN chain alone cannot see
  // that the log's end is gone.
  const uint64_t named = Manifest(ReadManifest(&fs, "/shard").value().value()).segments.back();
  const std::string path = "/shard/wal/" + SegmentFileName(named);
  ASSERT_TRUE(fs.Remove(path).ok());
  auto again = Store::Open(&fs, "/shard", options);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(again.status().message().find(path), std::string::npos) << again.status();
}

TEST(Manifest, EverySegmentIsNamedBeforeItsFirstRecordIsAcknowledged) {
  MemFileSystem fs;
  Workload work(36);
  StoreOptions options = SmallOptions();  // 8 KiB segments: a roll every few batches
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    BatchOutput out;
    size_t rolls = 0;
    for (int b = 0; b < 200; ++b) {
      const size_t before = SegmentsIn(fs, "/shard/wal").size();
      ASSERT_TRUE((*store)->Apply(work.now_us(), work.Next(1 + b % 20), &out).ok());
      ASSERT_TRUE((*store)->Sync().ok());  // acknowledged from here on
      const std::vector<uint64_t> live = SegmentsIn(fs, "/shard/wal");
      rolls += live.size() - before;
      ASSERT_EQ(ReadManifest(&fs, "/shard").value().value().segments, live) << "batch " << b;
      EXPECT_EQ((*store)->manifest().segments, live);
    }
    EXPECT_GE(rolls, 10u);
    digest = (*store)->ledger().Digest();
  }
  // Recovery is exact with the manifest so kept.
  {
    auto again = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ((*again)->ledger().Digest(), digest);
    EXPECT_EQ((*again)->recovery().records_replayed, 200u);
  }
  // And a lost newest segment, which the LSN chain cannot see, stops the start.
  const std::string newest = "/shard/wal/" + SegmentFileName(SegmentsIn(fs, "/shard/wal").back());
  ASSERT_TRUE(fs.Remove(newest).ok());
  auto lost = Store::Open(&fs, "/shard", options);
  ASSERT_FALSE(lost.ok());
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(lost.status().message().find(newest), std::string::npos) << lost.status();
}

TEST(Manifest, AStartNamesSegmentsAnOlderManifestMissed) {
  MemFileSystem fs;
  Workload work(37);
  StoreOptions options = SmallOptions();
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 60);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    Drive(**store, work, 60);
    digest = (*store)->ledger().Digest();
  }
  // A manifest as a crash between a roll and its rewrite (or an older
  // version of the store) leaves it: the newest segments not named.
  Manifest old = ReadManifest(&fs, "/shard").value().value();
  const std::vector<uint64_t> live = SegmentsIn(fs, "/shard/wal");
  ASSERT_GE(old.segments.size(), 2u);
  old.segments.resize(1);
  ASSERT_TRUE(WriteManifest(&fs, "/shard", old).ok());
  auto again = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->ledger().Digest(), digest) << "exact either way";
  EXPECT_EQ((*again)->manifest().segments, live);
  EXPECT_EQ(ReadManifest(&fs, "/shard").value().value().segments, live);
}

TEST(Retirement, TheArchiveIsBoundedOldestFilesFirst) {
  // The same workload twice: archive unbounded, then bounded.
  auto run = [](uint64_t archive_bytes_max, MemFileSystem& fs) {
    Workload work(38);
    StoreOptions options = SmallOptions();
    options.snapshots_kept = 1;
    options.archive = true;
    options.archive_bytes_max = archive_bytes_max;
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 8; ++i) {
      Drive(**store, work, 40);
      ASSERT_TRUE((*store)->WriteSnapshot().ok());
    }
  };
  // Archived files ordered as the pruning orders them: by LSN, a segment
  // before a snapshot of the same LSN.
  auto archived = [](MemFileSystem& fs) {
    std::vector<std::tuple<uint64_t, int, std::string, uint64_t>> files;
    const std::vector<std::string> names = *fs.List("/shard/archive");
    for (const std::string& name : names) {
      const std::string path = "/shard/archive/" + name;
      const uint64_t bytes = fs.Open(path, OpenMode::kReadOnly).value()->Size().value();
      if (auto lsn = ParseSegmentFileName(name)) files.emplace_back(*lsn, 0, name, bytes);
      if (auto lsn = ParseSnapshotName(name)) files.emplace_back(*lsn, 1, name, bytes);
    }
    std::sort(files.begin(), files.end());
    return files;
  };
  MemFileSystem unbounded_fs;
  run(store_archive_bytes_default, unbounded_fs);
  const auto all = archived(unbounded_fs);
  uint64_t all_bytes = 0;
  for (const auto& f : all) all_bytes += std::get<3>(f);
  ASSERT_GE(all.size(), 10u);

  const uint64_t max_bytes = all_bytes / 3;
  MemFileSystem fs;
  run(max_bytes, fs);
  const auto kept = archived(fs);
  uint64_t kept_bytes = 0;
  for (const auto& f : kept) kept_bytes += std::get<3>(f);
  EXPECT_LE(kept_bytes, max_bytes);
  ASSERT_FALSE(kept.empty());
  ASSERT_LT(kept.size(), all.size());
  // What is left is the newest end of the archive: the longest run of the
  // newest files that fits (each pruning removed only what it had to).
  const std::vector<std::tuple<uint64_t, int, std::string, uint64_t>> suffix(
      all.end() - static_cast<std::ptrdiff_t>(kept.size()), all.end());
  EXPECT_EQ(kept, suffix);
  EXPECT_GT(kept_bytes + std::get<3>(all[all.size() - kept.size() - 1]), max_bytes);
  // The live store is untouched by it.
  auto again = Store::Open(&fs, "/shard", [&] {
    StoreOptions o = SmallOptions();
    o.snapshots_kept = 1;
    o.archive = true;
    o.archive_bytes_max = max_bytes;
    return o;
  }());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->recovery().records_replayed, 0u);
}

TEST(Retirement, PruningTheArchiveOpensOnlyWhatWasArchivedSinceTheLastTime) {
  MemFileSystem fs;
  Workload work(39);
  StoreOptions options = SmallOptions();
  options.snapshots_kept = 1;
  options.archive = true;
  auto store = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(store.ok());
  // Opens per snapshot while the archive grows: a snapshot's own files
  // (manifest, snapshot, history) and the few files it archives, the same
  // whether archive/ holds 10 files or 60.
  std::vector<uint64_t> opens;
  for (int i = 0; i < 12; ++i) {
    Drive(**store, work, 40);
    const uint64_t before = fs.opens();
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    opens.push_back(fs.opens() - before);
  }
  ASSERT_GE(fs.List("/shard/archive")->size(), 40u) << "the test needs a big archive";
  EXPECT_LE(opens.back(), opens[2] + 2) << "opens grow with the archive";
  // A bound still prunes from the oldest end, counting what it learned.
  store->reset();
  options.archive_bytes_max = 20 << 10;
  auto bounded = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(bounded.ok()) << bounded.status();
  auto archived_bytes = [&fs] {
    uint64_t bytes = 0;
    const std::vector<std::string> names = *fs.List("/shard/archive");
    for (const std::string& name : names) bytes += fs.Contents("/shard/archive/" + name).size();
    return bytes;
  };
  EXPECT_LE(archived_bytes(), 20u << 10);
  Drive(**bounded, work, 40);
  ASSERT_TRUE((*bounded)->WriteSnapshot().ok());
  EXPECT_LE(archived_bytes(), 20u << 10);
  EXPECT_GT(archived_bytes(), 0u);
}

TEST(Retirement, AnArchiveBoundOfZeroIsRefused) {
  MemFileSystem fs;
  StoreOptions options = SmallOptions();
  options.archive = true;
  options.archive_bytes_max = 0;
  auto store = Store::Open(&fs, "/shard", options);
  EXPECT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Recovery, ADamagedManifestStopsTheStart) {
  MemFileSystem fs;
  Workload work(35);
  {
    auto store = Store::Open(&fs, "/shard", SmallOptions());
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 10);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
  }
  fs.FlipBit("/shard/MANIFEST", 20, 3);
  auto again = Store::Open(&fs, "/shard", SmallOptions());
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("/shard/MANIFEST"), std::string::npos)
      << again.status();
}

TEST(Recovery, AnInterruptedRetirementIsFinishedAtTheNextStart) {
  MemFileSystem fs;
  Workload work(36);
  StoreOptions options = SmallOptions();
  options.snapshots_kept = 1;
  std::vector<std::byte> first_segment;
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 60);
    first_segment = fs.Contents("/shard/wal/" + SegmentFileName(1));
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    digest = (*store)->ledger().Digest();
  }
  // As if the crash came after the manifest and before the removals: the
  // old segment and an old snapshot are still there.
  ASSERT_FALSE(fs.Exists("/shard/wal/" + SegmentFileName(1)));
  {
    auto f = fs.Open("/shard/wal/" + SegmentFileName(1), OpenMode::kCreate);
    ASSERT_TRUE((*f)->PWrite(0, first_segment).ok());
    auto snap = fs.Open("/shard/" + SnapshotName(7), OpenMode::kCreate);
    ASSERT_TRUE((*snap)->PWrite(0, first_segment).ok());
  }
  auto again = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->recovery().retired.size(), 2u);
  EXPECT_FALSE(fs.Exists("/shard/wal/" + SegmentFileName(1)));
  EXPECT_FALSE(fs.Exists("/shard/" + SnapshotName(7)));
  EXPECT_EQ((*again)->ledger().Digest(), digest);
}

TEST(Recovery, ARemovalCutShortLeavesOnlyATempNameTheNextStartRemoves) {
  MemFileSystem fs;
  Workload work(37);
  StoreOptions options = SmallOptions();
  options.snapshots_kept = 1;
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 60);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    digest = (*store)->ledger().Digest();
  }
  // A retired snapshot of 10 MiB left by a crash before its removal: it is
  // removed in steps of store_remove_step_bytes under a temp name.  The
  // second cut fails, as a crash there would stop it.
  const std::string old_snapshot = "/shard/" + SnapshotName(7);
  {
    auto f = fs.Open(old_snapshot, OpenMode::kCreate);
    ASSERT_TRUE((*f)->PWrite(0, std::vector<std::byte>(10 << 20, std::byte{1})).ok());
  }
  fs.FailWrite(EIO, 1, old_snapshot + ".tmp");
  EXPECT_FALSE(Store::Open(&fs, "/shard", options).ok());
  EXPECT_FALSE(fs.Exists(old_snapshot));  // never a shortened file under a live name
  ASSERT_TRUE(fs.Exists(old_snapshot + ".tmp"));
  EXPECT_EQ(fs.Contents(old_snapshot + ".tmp").size(), (10u << 20) - store_remove_step_bytes);
  // Leftovers of the other kinds, in every directory the store owns.
  const std::vector<std::string> leftovers = {"/shard/wal/" + SegmentFileName(3) + ".tmp",
                                              "/shard/wal/" + std::string(kSpareSegmentName),
                                              "/shard/archive/" + SegmentFileName(2) + ".tmp"};
  for (const std::string& leftover : leftovers) {
    auto f = fs.Open(leftover, OpenMode::kCreate);
    ASSERT_TRUE((*f)->PWrite(0, std::vector<std::byte>(100, std::byte{2})).ok());
  }
  auto again = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(again.ok()) << again.status();
  for (const std::string& dir : leftovers) {
    EXPECT_FALSE(fs.Exists(dir)) << dir;
  }
  EXPECT_FALSE(fs.Exists(old_snapshot + ".tmp"));
  EXPECT_EQ((*again)->ledger().Digest(), digest);
}

TEST(Recovery, ASnapshotTheManifestDoesNotNameIsNotUsed) {
  MemFileSystem fs;
  Workload work(37);
  StoreOptions options = SmallOptions();
  uint64_t digest = 0;
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 30);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    Drive(**store, work, 30);
    // A whole snapshot file whose manifest never became durable.
    ASSERT_TRUE(WriteSnapshotFile(&fs, "/shard", (*store)->ledger(), 60).ok());
    Drive(**store, work, 3);
    digest = (*store)->ledger().Digest();
  }
  auto again = Store::Open(&fs, "/shard", options);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->recovery().snapshot_lsn, 30u);
  EXPECT_EQ((*again)->recovery().records_replayed, 33u);
  EXPECT_EQ((*again)->ledger().Digest(), digest);
  EXPECT_FALSE(fs.Exists("/shard/" + SnapshotName(60)));
}

TEST(Recovery, DamageFollowedByValidRecordsStopsTheStartNamingFileAndOffset) {
  MemFileSystem fs;
  Workload work(38);
  StoreOptions options = SmallOptions();
  options.log.segment_bytes = 1 << 20;  // everything in one segment
  {
    auto store = Store::Open(&fs, "/shard", options);
    ASSERT_TRUE(store.ok());
    Drive(**store, work, 40);
    ASSERT_TRUE((*store)->WriteSnapshot().ok());
    Drive(**store, work, 40);
  }
  const std::string path = "/shard/wal/" + SegmentFileName(1);
  // A byte inside the first record after the snapshot: find it by reading.
  auto reader = LogReader::Open(&fs, "/shard/wal", {.start_lsn = 41});
  LogRecord record;
  ASSERT_TRUE((*reader)->Next(&record).value());
  const uint64_t offset = record.offset;
  fs.FlipBit(path, offset + kRecordHeaderBytes + 2, 0);
  auto again = Store::Open(&fs, "/shard", options);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(again.status().message().find(path), std::string::npos) << again.status();
  EXPECT_NE(again.status().message().find("offset " + std::to_string(offset)), std::string::npos)
      << again.status();
}

}  // namespace
}  // namespace tally::wal
