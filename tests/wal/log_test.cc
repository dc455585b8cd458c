// log_test.cc: the log's record layer, one test per behaviour or failure mode.
//
// Most tests run on MemFileSystem, which injects faults and edits bytes; one
// runs on real files in a temporary directory.
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/temp_dir.h"
#include "wal/file.h"
#include "wal/format.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"

namespace tally::wal {
namespace {

using Bytes = std::vector<std::byte>;

constexpr char kDir[] = "/log";

// Payload returns record i's payload: sizes vary from empty to a few KiB and
// the contents depend on i, so a record read in the wrong place shows.
Bytes Payload(uint64_t i, size_t max_bytes = 3000) {
  std::mt19937_64 rng(i * 7919 + 1);
  static constexpr size_t kSizes[] = {0, 1, 7, 24, 100, 513, 1000, 3000};
  size_t size = kSizes[rng() % std::size(kSizes)];
  if (size > max_bytes) size = max_bytes;
  Bytes out(size);
  for (std::byte& b : out) b = std::byte(rng());
  return out;
}

// SegmentPaths lists the segment files of `dir` (not the spare being
// zero-filled) as sorted paths.
std::vector<std::string> SegmentPaths(FileSystem* fs, const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = fs->List(dir);
  EXPECT_TRUE(names.ok()) << names.status();
  std::vector<std::string> paths;
  if (names.ok()) {
    for (const std::string& name : *names) {
      if (ParseSegmentFileName(name)) paths.push_back(absl::StrCat(dir, "/", name));
    }
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

// Written is what a test wrote: the payloads (record lsn = index + 1) and
// where each record landed.
struct Written {
  std::vector<Bytes> payloads;
  std::vector<std::string> paths;
  std::vector<uint64_t> offsets;
};

// WriteLog writes `n` records, syncing every `sync_every`, and reads them back
// once to learn their positions.
Written WriteLog(FileSystem* fs, const std::string& dir, uint64_t n, uint64_t segment_bytes,
                 size_t max_payload = 3000, uint64_t sync_every = 10) {
  Written w;
  auto writer = LogWriter::Create(fs, dir, 1, {.segment_bytes = segment_bytes});
  EXPECT_TRUE(writer.ok()) << writer.status();
  for (uint64_t i = 0; i < n; ++i) {
    w.payloads.push_back(Payload(i, max_payload));
    absl::StatusOr<uint64_t> lsn = (*writer)->Append(RecordType::kBatch, w.payloads.back());
    EXPECT_TRUE(lsn.ok()) << lsn.status();
    EXPECT_EQ(*lsn, i + 1);
    if ((i + 1) % sync_every == 0) {
      EXPECT_TRUE((*writer)->Sync().ok());
    }
  }
  EXPECT_TRUE((*writer)->Sync().ok());
  EXPECT_EQ((*writer)->synced_lsn(), n);
  auto reader = LogReader::Open(fs, dir);
  EXPECT_TRUE(reader.ok());
  LogRecord r;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&r);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    w.paths.push_back(r.segment_path);
    w.offsets.push_back(r.offset);
  }
  EXPECT_EQ(w.paths.size(), n);
  return w;
}

// ReadResult is everything a reader said about a log.
struct ReadResult {
  absl::Status status;
  std::vector<Bytes> payloads;
  LogEnd end;
};

ReadResult ReadAll(FileSystem* fs, const std::string& dir, uint64_t start_lsn = 0) {
  ReadResult out;
  auto reader = LogReader::Open(fs, dir, {.start_lsn = start_lsn});
  if (!reader.ok()) {
    out.status = reader.status();
    return out;
  }
  LogRecord r;
  uint64_t expected_lsn = 0;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&r);
    if (!more.ok()) {
      out.status = more.status();
      return out;
    }
    if (!*more) break;
    if (expected_lsn != 0) {
      EXPECT_EQ(r.lsn, expected_lsn);
    }
    expected_lsn = r.lsn + 1;
    out.payloads.emplace_back(r.payload.begin(), r.payload.end());
  }
  out.end = (*reader)->end();
  return out;
}

// LogWriterIo and LogReaderIo run each test twice: on a MemFileSystem
// writing through the (simulated) page cache, and on one simulating direct
// writes, where every write of the log must be aligned whole blocks.
class LogIoTest : public ::testing::TestWithParam<bool> {
 protected:
  LogIoTest() { fs.SimulateDirect(GetParam()); }
  MemFileSystem fs;
};
class LogWriterIo : public LogIoTest {};
class LogReaderIo : public LogIoTest {};
std::string IoName(const ::testing::TestParamInfo<bool>& info) {
  return info.param ? "Direct" : "PageCache";
}
INSTANTIATE_TEST_SUITE_P(, LogWriterIo, ::testing::Bool(), IoName);
INSTANTIATE_TEST_SUITE_P(, LogReaderIo, ::testing::Bool(), IoName);

// ExpectPrefix checks that every record read equals the one written.
void ExpectPrefix(const ReadResult& read, const Written& w, size_t count) {
  ASSERT_EQ(read.payloads.size(), count);
  for (size_t i = 0; i < count; ++i) ASSERT_EQ(read.payloads[i], w.payloads[i]) << "record " << i;
}

TEST(LogFormat, SegmentFileNamesSortByLsnAndParseBack) {
  EXPECT_EQ(SegmentFileName(1), "wal-00000000000000000001.log");
  EXPECT_EQ(SegmentFileName(UINT64_MAX), "wal-18446744073709551615.log");
  EXPECT_EQ(ParseSegmentFileName("wal-00000000000000000042.log"), 42u);
  EXPECT_FALSE(ParseSegmentFileName("wal-00000000000000000042.log.tmp"));
  EXPECT_FALSE(ParseSegmentFileName("wal-99999999999999999999.log"));  // over 2^64
  EXPECT_FALSE(ParseSegmentFileName("wal-0000000000000000004x.log"));
}

TEST(LogFormat, WorkedExampleInFormatMdMatches) {
  // The record of wal/FORMAT.md: type kBatch, LSN 1, payload "hi".
  std::byte rec[kRecordHeaderBytes + 2];
  rec[kRecordHeaderBytes] = std::byte{'h'};
  rec[kRecordHeaderBytes + 1] = std::byte{'i'};
  EncodeRecordHeader(RecordType::kBatch, 1, 2, rec);
  std::string hex;
  for (std::byte b : rec) absl::StrAppend(&hex, absl::Hex(uint8_t(b), absl::kZeroPad2));
  EXPECT_EQ(hex,
            "146b4c183ce1b7d6"
            "02000000"
            "0100"
            "0000"
            "0100000000000000"
            "6869");
  std::byte seg[kSegmentHeaderBytes];
  EncodeSegmentHeader(1, seg);
  hex.clear();
  for (std::byte b : seg) absl::StrAppend(&hex, absl::Hex(uint8_t(b), absl::kZeroPad2));
  EXPECT_EQ(hex,
            "54414c4c5957414c"
            "01000000"
            "00000000"
            "0100000000000000"
            "4dbf202a69c8aad7");
}

TEST_P(LogWriterIo, RoundTripAcrossSegmentRolls) {
  const Written w = WriteLog(&fs, kDir, 3000, 16 * 1024);
  EXPECT_GT(SegmentPaths(&fs, kDir).size(), 50u);
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectPrefix(read, w, 3000);
  EXPECT_EQ(read.end.next_lsn, 3001u);
  EXPECT_EQ(read.end.dropped_bytes, 0u);
}

TEST_P(LogWriterIo, EverySegmentIsPreallocatedToItsFixedSize) {
  WriteLog(&fs, kDir, 500, 8192);
  for (const std::string& path : SegmentPaths(&fs, kDir)) {
    EXPECT_EQ(fs.Contents(path).size(), 8192u) << path;
  }
}

TEST_P(LogWriterIo, OneSyncCoversEveryRecordAppendedSinceTheLast) {
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = 1 << 20});
  ASSERT_TRUE(writer.ok());
  const uint64_t syncs = fs.syncs(), writes = fs.writes();
  for (uint64_t i = 0; i < 200; ++i)
    ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Payload(i, 100)).ok());
  EXPECT_EQ((*writer)->synced_lsn(), kNoLsn);
  ASSERT_TRUE((*writer)->Sync().ok());
  EXPECT_EQ(fs.syncs() - syncs, 1u);
  EXPECT_EQ(fs.writes() - writes, 1u);
  EXPECT_EQ((*writer)->synced_lsn(), 200u);
  ASSERT_TRUE((*writer)->Sync().ok());  // nothing new: no fdatasync
  EXPECT_EQ(fs.syncs() - syncs, 1u);
}

TEST_P(LogWriterIo, RefusesWhatDoesNotFitWithoutFailing) {
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = 4096});
  ASSERT_TRUE(writer.ok());
  const Bytes big(4096);
  EXPECT_EQ((*writer)->Append(RecordType::kBatch, big).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*writer)->Append(static_cast<RecordType>(0), {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE((*writer)->status().ok());
  EXPECT_EQ(*(*writer)->Append(RecordType::kMarker, {}), 1u);
}

TEST_P(LogWriterIo, CreateRefusesADirectoryThatHoldsALog) {
  WriteLog(&fs, kDir, 3, 4096);
  EXPECT_EQ(LogWriter::Create(&fs, kDir, 4, {.segment_bytes = 4096}).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_P(LogReaderIo, EmptyDirectoryIsAnEmptyLog) {
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok());
  EXPECT_TRUE(read.payloads.empty());
  EXPECT_EQ(read.end.next_lsn, 1u);
  EXPECT_TRUE(read.end.segment_path.empty());
}

TEST_P(LogReaderIo, SegmentWithoutRecordsIsACleanEnd) {
  ASSERT_TRUE(LogWriter::Create(&fs, kDir, 7, {.segment_bytes = 4096}).ok());
  ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  EXPECT_TRUE(read.payloads.empty());
  EXPECT_EQ(read.end.next_lsn, 7u);
  EXPECT_EQ(read.end.offset, kSegmentHeaderBytes);
  auto writer = LogWriter::Resume(&fs, kDir, read.end, {.segment_bytes = 4096});
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_EQ(*(*writer)->Append(RecordType::kBatch, Payload(1, 100)), 7u);
  ASSERT_TRUE((*writer)->Sync().ok());
  read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  EXPECT_EQ(read.payloads.size(), 1u);
}

TEST_P(LogReaderIo, StartLsnSkipsOlderSegmentsAndRecords) {
  const Written w = WriteLog(&fs, kDir, 400, 8192);
  const ReadResult read = ReadAll(&fs, kDir, 250);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ASSERT_EQ(read.payloads.size(), 151u);
  EXPECT_EQ(read.payloads.front(), w.payloads[249]);
  EXPECT_EQ(read.end.next_lsn, 401u);
}

// Truncation at every byte offset of the last record, as a file cut short
// and as a preallocated file whose tail never got written (zeros).
TEST_P(LogReaderIo, TruncatedLastRecordIsACleanEndAtEveryOffset) {
  const Written w = WriteLog(&fs, kDir, 40, 8192, 1000);
  const size_t n = w.payloads.size();
  const std::string path = w.paths.back();
  ASSERT_GT(w.payloads.back().size(), 0u);
  const uint64_t begin = w.offsets.back();
  const uint64_t end = begin + kRecordHeaderBytes + w.payloads.back().size();
  const Bytes original = fs.Contents(path);
  for (uint64_t cut = begin; cut < end; ++cut) {
    for (bool zero_fill : {false, true}) {
      fs.Contents(path) = original;
      if (zero_fill) {
        fs.ZeroRange(path, cut, end - cut);
      } else {
        fs.Truncate(path, cut);
      }
      const ReadResult read = ReadAll(&fs, kDir);
      ASSERT_TRUE(read.status.ok()) << "cut at " << cut << ": " << read.status;
      ExpectPrefix(read, w, n - 1);
      // Dropped: up to the last nonzero byte (zeros are the preallocated tail).
      uint64_t last_nonzero = cut;
      while (last_nonzero > begin && original[last_nonzero - 1] == std::byte{0}) --last_nonzero;
      EXPECT_EQ(read.end.dropped_bytes, last_nonzero - begin) << "cut at " << cut;
      EXPECT_EQ(read.end.offset, begin);
      EXPECT_EQ(read.end.next_lsn, n);
    }
  }
}

TEST_P(LogReaderIo, TornWriteIsACleanEndWithTheBytesDropped) {
  const Written w = WriteLog(&fs, kDir, 20, 1 << 16, 1000);
  auto reader = LogReader::Open(&fs, kDir);
  LogRecord r;
  while (*(*reader)->Next(&r)) {
  }
  auto writer = LogWriter::Resume(&fs, kDir, (*reader)->end(), {.segment_bytes = 1 << 16});
  ASSERT_TRUE(writer.ok()) << writer.status();
  const Bytes last(500, std::byte{0x5a});
  ASSERT_TRUE((*writer)->Append(RecordType::kBatch, last).ok());
  // The crash lands 424 of the record's 524 bytes (and, with direct writes,
  // none of the zero padding after it in its block).
  const uint64_t record_end = (*reader)->end().offset + kRecordHeaderBytes + 500;
  const uint64_t padding =
      GetParam() ? (direct_io_alignment_bytes - record_end % direct_io_alignment_bytes) %
                       direct_io_alignment_bytes
                 : 0;
  fs.TearNextWrite(padding + 100);
  ASSERT_TRUE((*writer)->Sync().ok());
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectPrefix(read, w, 20);
  EXPECT_EQ(read.end.dropped_bytes, kRecordHeaderBytes + 500 - 100);
}

TEST_P(LogWriterIo, ResumeZeroesATornTailAndAppendsAfterIt) {
  Written w = WriteLog(&fs, kDir, 30, 8192, 1000);
  const std::string path = w.paths.back();
  fs.Truncate(path, w.offsets.back() + 10);  // torn, and the file cut short
  fs.Contents(path).back() = std::byte{0xee};
  ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok());
  ASSERT_EQ(read.end.dropped_bytes, 10u);
  auto writer = LogWriter::Resume(&fs, kDir, read.end, {.segment_bytes = 8192});
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_EQ(fs.Contents(path).size(), 8192u);  // preallocated again
  w.payloads.pop_back();
  for (uint64_t i = 0; i < 50; ++i) {
    w.payloads.push_back(Payload(1000 + i, 1000));
    ASSERT_EQ(*(*writer)->Append(RecordType::kBatch, w.payloads.back()), w.payloads.size());
  }
  ASSERT_TRUE((*writer)->Sync().ok());
  read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectPrefix(read, w, w.payloads.size());
  EXPECT_EQ(read.end.dropped_bytes, 0u);
}

// 10,000 single-bit flips anywhere in a three-segment log, zero tails and
// segment headers included: each one is reported (an error, or a torn tail
// with bytes dropped) and no altered record is ever returned.
TEST_P(LogReaderIo, EveryRandomBitFlipIsDetected) {
  const Written w = WriteLog(&fs, kDir, 60, 4096, 513);
  const std::vector<std::string> paths = SegmentPaths(&fs, kDir);
  ASSERT_GE(paths.size(), 3u);
  std::mt19937_64 rng(42);
  int errors = 0, torn = 0;
  for (int trial = 0; trial < 10000; ++trial) {
    const std::string& path = paths[rng() % paths.size()];
    const uint64_t offset = rng() % fs.Contents(path).size();
    const int bit = int(rng() % 8);
    fs.FlipBit(path, offset, bit);
    const ReadResult read = ReadAll(&fs, kDir);
    fs.FlipBit(path, offset, bit);
    if (!read.status.ok()) {
      ASSERT_EQ(read.status.code(), absl::StatusCode::kDataLoss) << read.status;
      ++errors;
      continue;
    }
    ASSERT_GT(read.end.dropped_bytes, 0u)
        << "undetected flip: " << path << " offset " << offset << " bit " << bit;
    // Only damage at or after the last record can pass for a torn write.
    ASSERT_EQ(path, w.paths.back()) << "offset " << offset;
    ASSERT_GE(offset, w.offsets.back()) << path;
    ASSERT_LE(read.payloads.size(), w.payloads.size());
    ExpectPrefix(read, w, read.payloads.size());
    ++torn;
  }
  EXPECT_GT(errors, 0);
  EXPECT_GT(torn, 0);
  EXPECT_TRUE(ReadAll(&fs, kDir).status.ok());  // every flip was undone
}

TEST_P(LogReaderIo, ZeroedSectorInTheMiddleIsCorruptionNamingFileAndOffset) {
  const Written w = WriteLog(&fs, kDir, 100, 1 << 20, 1000);
  const std::string path = w.paths.front();
  ASSERT_EQ(path, w.paths.back());  // one segment: the last, where a tail may be torn
  constexpr uint64_t kSector = 16384;
  ASSERT_GT(w.offsets.back(), kSector + 512);
  uint64_t damaged = 0;  // the record holding the sector's first byte
  for (uint64_t off : w.offsets) {
    if (off <= kSector) damaged = off;
  }
  fs.ZeroRange(path, kSector, 512);
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_EQ(read.status.code(), absl::StatusCode::kDataLoss) << read.status;
  EXPECT_NE(read.status.message().find(path), std::string::npos) << read.status;
  EXPECT_NE(read.status.message().find(absl::StrCat("offset ", damaged, ":")), std::string::npos)
      << read.status;
}

TEST_P(LogReaderIo, ZeroedSectorInAnOlderSegmentIsCorruption) {
  const Written w = WriteLog(&fs, kDir, 200, 8192, 1000);
  const std::string path = w.paths.front();
  ASSERT_NE(path, w.paths.back());
  fs.ZeroRange(path, 2048, 512);
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_EQ(read.status.code(), absl::StatusCode::kDataLoss) << read.status;
  EXPECT_NE(read.status.message().find(path), std::string::npos) << read.status;
}

TEST_P(LogReaderIo, MissingMiddleSegmentIsAnError) {
  const Written w = WriteLog(&fs, kDir, 300, 8192, 1000);
  const std::vector<std::string> names = SegmentPaths(&fs, kDir);
  ASSERT_GE(names.size(), 3u);
  ASSERT_TRUE(fs.Remove(names[1]).ok());
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_EQ(read.status.code(), absl::StatusCode::kDataLoss) << read.status;
  EXPECT_NE(read.status.message().find("missing segment"), std::string::npos) << read.status;
  EXPECT_NE(read.status.message().find(names[2]), std::string::npos) << read.status;
}

TEST_P(LogReaderIo, ChecksummedRecordWithTheWrongLsnIsAnLsnGap) {
  const Written w = WriteLog(&fs, kDir, 10, 8192, 100);
  // Rewrite the last record, correctly checksummed, with LSN 12 instead of 10.
  const std::string path = w.paths.back();
  std::byte* rec = fs.Contents(path).data() + w.offsets.back();
  EncodeRecordHeader(RecordType::kBatch, 12, uint32_t(w.payloads.back().size()), rec);
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_EQ(read.status.code(), absl::StatusCode::kDataLoss) << read.status;
  EXPECT_NE(read.status.message().find("LSN gap"), std::string::npos) << read.status;
}

TEST_P(LogWriterIo, EioOnFsyncFailsTheWriterForever) {
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = 8192});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Payload(1, 100)).ok());
  ASSERT_TRUE((*writer)->Sync().ok());
  ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Payload(2, 100)).ok());
  fs.FailSync(EIO);
  const absl::Status failed = (*writer)->Sync();
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("failed permanently"), std::string::npos) << failed;
  EXPECT_NE(failed.message().find("Input/output error"), std::string::npos) << failed;
  EXPECT_EQ((*writer)->synced_lsn(), 1u);
  // The fault is gone, yet nothing is retried or acknowledged again.
  const uint64_t syncs = fs.syncs();
  EXPECT_EQ((*writer)->Sync(), failed);
  EXPECT_EQ((*writer)->Append(RecordType::kBatch, Payload(3, 100)).status(), failed);
  EXPECT_EQ((*writer)->Sync(), failed);
  EXPECT_EQ((*writer)->status(), failed);
  EXPECT_EQ(fs.syncs(), syncs);
  EXPECT_EQ((*writer)->synced_lsn(), 1u);
}

TEST_P(LogWriterIo, EnospcOnWriteFailsTheWriter) {
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = 8192});
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Payload(1, 100)).ok());
  fs.FailWrite(ENOSPC);
  const absl::Status failed = (*writer)->Sync();
  EXPECT_EQ(failed.code(), absl::StatusCode::kResourceExhausted) << failed;
  EXPECT_NE(failed.message().find("failed permanently"), std::string::npos) << failed;
  EXPECT_EQ((*writer)->Append(RecordType::kBatch, Payload(2, 100)).status(), failed);
  EXPECT_EQ((*writer)->Sync(), failed);
  EXPECT_EQ((*writer)->synced_lsn(), kNoLsn);
}

TEST_P(LogWriterIo, FullDiskWhenPreallocatingTheNextSegmentFailsTheWriter) {
  fs.SetCapacity(3 * 8192);
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = 8192});
  ASSERT_TRUE(writer.ok());
  absl::Status status;
  for (uint64_t i = 0; i < 1000 && status.ok(); ++i) {
    status = (*writer)->Append(RecordType::kBatch, Payload(i, 1000)).status();
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  EXPECT_EQ((*writer)->Sync(), status);
  // What was synced before the disk filled reads back intact.
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  EXPECT_EQ(read.payloads.size(), (*writer)->synced_lsn());
}

// --- The next segment, zero-filled ahead (wal/FORMAT.md, "How a segment is made") ---

std::string SparePath(const std::string& dir) { return absl::StrCat(dir, "/", kSpareSegmentName); }

bool AllZero(const std::vector<std::byte>& bytes, size_t from = 0) {
  return std::all_of(bytes.begin() + ptrdiff_t(from), bytes.end(),
                     [](std::byte b) { return b == std::byte{0}; });
}

TEST_P(LogWriterIo, TheNextSegmentIsZeroFilledAheadInBoundedStepsAndTakenAtTheRoll) {
  constexpr uint64_t kSegment = 1 << 20, kStep = 256 << 10;
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = kSegment});
  ASSERT_TRUE(writer.ok());
  const Bytes payload(1000, std::byte{7});
  uint64_t used = kSegmentHeaderBytes, ready = 0;
  while ((*writer)->segments_started() == 1) {
    ASSERT_TRUE((*writer)->Append(RecordType::kBatch, payload).ok());
    ASSERT_TRUE((*writer)->Sync().ok());
    if ((*writer)->segments_started() > 1) break;
    used += kRecordHeaderBytes + payload.size();
    const uint64_t now = (*writer)->spare_ready_bytes();
    ASSERT_LE(now - ready, kStep) << "one Sync zero-filled more than a step";
    ASSERT_GE(now + kStep, std::min(kSegment, used + used / 4)) << "the spare fell behind";
    ready = now;
    if (used + used / 4 >= kSegment + kStep) {  // well past 80 %: complete, all zeros
      ASSERT_EQ(ready, kSegment);
      ASSERT_EQ(fs.Contents(SparePath(kDir)).size(), kSegment);
      ASSERT_TRUE(AllZero(fs.Contents(SparePath(kDir))));
    }
  }
  EXPECT_EQ((*writer)->segments_started(), 2u);
  EXPECT_EQ((*writer)->segments_zero_filled(), 1u);  // the first was preallocated
  EXPECT_FALSE(fs.Exists(SparePath(kDir)));         // renamed into the new segment
  const std::vector<std::string> segments = SegmentPaths(&fs, kDir);
  ASSERT_EQ(segments.size(), 2u);
  EXPECT_EQ(fs.Contents(segments[1]).size(), kSegment);
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  EXPECT_EQ(read.payloads.size(), (*writer)->synced_lsn());
  EXPECT_EQ(read.end.dropped_bytes, 0u);
}

TEST_P(LogWriterIo, ASpareACrashLeftIsIgnoredByReadersAndStartedOverOnResume) {
  constexpr uint64_t kSegment = 1 << 20;
  Written w;
  {
    auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = kSegment});
    ASSERT_TRUE(writer.ok());
    while ((*writer)->spare_ready_bytes() < kSegment / 2) {
      w.payloads.push_back(Payload(w.payloads.size(), 3000));
      ASSERT_TRUE((*writer)->Append(RecordType::kBatch, w.payloads.back()).ok());
      ASSERT_TRUE((*writer)->Sync().ok());
    }
    ASSERT_LT((*writer)->spare_ready_bytes(), kSegment);  // half filled
  }  // the crash: the writer is gone, its spare stays
  // As a crash right after a roll wrote the header into the spare, before
  // the rename: a valid header, and a record-like byte in the zeros.
  std::vector<std::byte>& spare = fs.Contents(SparePath(kDir));
  EncodeSegmentHeader(w.payloads.size() + 1, spare.data());
  spare[4096] = std::byte{0x5a};
  ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;  // not a segment name: never read
  ExpectPrefix(read, w, w.payloads.size());
  auto writer = LogWriter::Resume(&fs, kDir, read.end, {.segment_bytes = kSegment});
  ASSERT_TRUE(writer.ok()) << writer.status();
  EXPECT_FALSE(fs.Exists(SparePath(kDir)));  // started over
  while ((*writer)->segments_started() == 0) {  // a resumed writer counts its own
    w.payloads.push_back(Payload(w.payloads.size(), 3000));
    ASSERT_TRUE((*writer)->Append(RecordType::kBatch, w.payloads.back()).ok());
    ASSERT_TRUE((*writer)->Sync().ok());
  }
  EXPECT_EQ((*writer)->segments_zero_filled(), 1u);
  read = ReadAll(&fs, kDir);  // the new segment's tail is zeros to its end
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectPrefix(read, w, w.payloads.size());
  EXPECT_EQ(read.end.dropped_bytes, 0u);
}

// WriteUntilFailed appends and syncs 1000-byte records until the writer fails.
absl::Status WriteUntilFailed(LogWriter* writer, uint64_t records_max) {
  for (uint64_t i = 0; i < records_max; ++i) {
    if (absl::Status s = writer->Append(RecordType::kBatch, Payload(i, 1000)).status(); !s.ok()) {
      return s;
    }
    if (absl::Status s = writer->Sync(); !s.ok()) return s;
  }
  return absl::OkStatus();
}

TEST_P(LogWriterIo, EioWhileZeroFillingTheNextSegmentFailsTheWriter) {
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = 1 << 20});
  ASSERT_TRUE(writer.ok());
  fs.FailWrite(EIO, 0, SparePath(kDir));
  const absl::Status failed = WriteUntilFailed(writer->get(), 10000);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("zero-fill the next segment"), std::string::npos) << failed;
  EXPECT_NE(failed.message().find("Input/output error"), std::string::npos) << failed;
  EXPECT_EQ((*writer)->Append(RecordType::kBatch, Payload(1, 10)).status(), failed);
  EXPECT_EQ((*writer)->segments_started(), 1u);
  // Everything synced reads back; nothing after it was acknowledged.
  const ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  EXPECT_EQ(read.payloads.size(), (*writer)->synced_lsn());
}

TEST_P(LogWriterIo, EioOnTheNextSegmentsFsyncAtTheRollFailsTheWriterAndAResumeGoesOn) {
  constexpr uint64_t kSegment = 64 << 10;
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = kSegment});
  ASSERT_TRUE(writer.ok());
  fs.FailSync(EIO, 0, SparePath(kDir));  // its first sync is the roll's
  const absl::Status failed = WriteUntilFailed(writer->get(), 10000);
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.message().find("fsync new segment"), std::string::npos) << failed;
  EXPECT_EQ((*writer)->segments_started(), 1u);
  EXPECT_EQ(SegmentPaths(&fs, kDir).size(), 1u);  // the spare never got a segment's name
  ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  const uint64_t synced = (*writer)->synced_lsn();
  EXPECT_EQ(read.payloads.size(), synced);
  writer->reset();
  // A new writer (the process restarted) removes the spare and goes on.
  auto resumed = LogWriter::Resume(&fs, kDir, read.end, {.segment_bytes = kSegment});
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_TRUE(WriteUntilFailed(resumed->get(), 200).ok());
  EXPECT_GE((*resumed)->segments_zero_filled(), 1u);
  read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  EXPECT_EQ(read.payloads.size(), synced + 200);
}

// UnwrittenExtents says whether a real file has extents the file system
// allocated but marked unwritten (fallocate's); nothing when it cannot tell.
std::optional<bool> UnwrittenExtents(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr uint32_t kExtents = 64;
  std::vector<std::byte> buffer(sizeof(fiemap) + kExtents * sizeof(fiemap_extent));
  auto* map = reinterpret_cast<fiemap*>(buffer.data());
  map->fm_start = 0;
  map->fm_length = ~uint64_t{0};
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = kExtents;
  const int rc = ::ioctl(fd, FS_IOC_FIEMAP, map);
  ::close(fd);
  if (rc != 0 || map->fm_mapped_extents == 0) return std::nullopt;
  for (uint32_t i = 0; i < map->fm_mapped_extents; ++i) {
    if (map->fm_extents[i].fe_flags & FIEMAP_EXTENT_UNWRITTEN) return true;
  }
  return false;
}

// With direct writes the log's every write is whole aligned blocks: the
// segment header, the records (the partial last block zero-padded, and
// written again by the next Sync) and the spare's zeros.  Nothing goes
// through the page cache.
// Background sync: the caller appends the next records while the sync
// thread writes and fdatasyncs the last ones.  Each sync covers exactly what
// was appended before its StartSync; its `then` runs once, when those
// records are in the file (read back from inside it); records appended
// meanwhile (small ones, records big enough to force an early write of the
// buffer, and segment rolls) all read back at the end.
TEST_P(LogWriterIo, BackgroundSyncCoversWhatCameBeforeItWhileTheNextRecordsAppend) {
  constexpr uint64_t kSegment = 2 << 20;
  constexpr int kRounds = 60;
  // All payloads up front: the sync thread's `then` reads them.
  std::vector<Bytes> payloads;
  std::vector<uint64_t> round_end;  // payloads appended by the end of each round
  std::mt19937_64 rng(7);
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t count = 1 + rng() % 40;
    for (uint64_t i = 0; i < count; ++i) {
      // One round in five has a record of 300-600 KiB: the 1 MiB buffer
      // fills and is written early, and the 2 MiB segments roll.
      const bool big = i == 0 && round % 5 == 4;
      payloads.push_back(big ? Bytes((300 << 10) + rng() % (300 << 10), std::byte(round))
                             : Payload(payloads.size()));
    }
    round_end.push_back(payloads.size());
  }
  auto writer = LogWriter::Create(&fs, kDir, 1,
                                  {.segment_bytes = kSegment, .background_sync = true});
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::mutex mu;
  std::vector<std::pair<uint64_t, bool>> thens;  // (records covered, durable), guarded by mu
  std::vector<std::string> mismatches;            // guarded by mu
  uint64_t appended = 0;
  int rolls_during_a_sync = 0;
  for (int round = 0; round < kRounds; ++round) {
    const uint64_t segments = (*writer)->segments_started();
    for (; appended < round_end[round]; ++appended) {
      absl::StatusOr<uint64_t> lsn = (*writer)->Append(RecordType::kBatch, payloads[appended]);
      ASSERT_TRUE(lsn.ok()) << lsn.status();
      ASSERT_EQ(*lsn, appended + 1);
    }
    if (round > 0) {
      ASSERT_TRUE((*writer)->WaitSync().ok());
      if ((*writer)->segments_started() == segments) {
        ASSERT_EQ((*writer)->synced_lsn(), round_end[round - 1])
            << "round " << round << ": the sync covers what came before its start, no more";
      } else {  // a roll syncs the full segment, whatever is in flight
        ++rolls_during_a_sync;
        ASSERT_GE((*writer)->synced_lsn(), round_end[round - 1]);
        ASSERT_LT((*writer)->synced_lsn(), appended);
      }
    }
    const uint64_t covered = appended;
    ASSERT_TRUE((*writer)
                    ->StartSync([&, covered](bool durable) {
                      const ReadResult read = ReadAll(&fs, kDir);
                      std::lock_guard lock(mu);
                      thens.emplace_back(covered, durable);
                      if (!read.status.ok() || read.payloads.size() < covered ||
                          !std::equal(payloads.begin(), payloads.begin() + ptrdiff_t(covered),
                                      read.payloads.begin())) {
                        mismatches.push_back(absl::StrCat("sync of ", covered, " records: read ",
                                                          read.payloads.size(), " ",
                                                          read.status.ToString()));
                      }
                    })
                    .ok());
    EXPECT_TRUE((*writer)->sync_in_flight());
  }
  ASSERT_TRUE((*writer)->Sync().ok());
  EXPECT_EQ((*writer)->synced_lsn(), payloads.size());
  EXPECT_GT(rolls_during_a_sync, 2) << "the log rolled while syncs ran";
  {
    std::lock_guard lock(mu);
    EXPECT_TRUE(mismatches.empty()) << mismatches.front();
    ASSERT_EQ(thens.size(), size_t{kRounds}) << "one `then` per StartSync";
    for (int round = 0; round < kRounds; ++round) {
      EXPECT_EQ(thens[round], std::make_pair(round_end[round], true)) << "round " << round;
    }
  }
  ExpectPrefix(ReadAll(&fs, kDir), Written{.payloads = payloads}, payloads.size());
  if (GetParam()) {
    EXPECT_EQ(fs.cached_bytes_written(), 0u) << "direct writes only";
  }
  // A writer that goes with a sync in flight finishes it first.
  ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Payload(1)).ok());
  bool last_then = false;
  ASSERT_TRUE((*writer)->StartSync([&](bool durable) { last_then = durable; }).ok());
  writer->reset();
  EXPECT_TRUE(last_then);
  EXPECT_EQ(ReadAll(&fs, kDir).payloads.size(), payloads.size() + 1);
}

// A background sync that fails tells its `then` (not durable) and fails the
// writer for good: every later StartSync says so to its own `then` at once.
TEST_P(LogWriterIo, AFailedBackgroundSyncIsNotDurableAndFailsTheWriter) {
  for (const bool fail_write : {false, true}) {
    SCOPED_TRACE(fail_write ? "the write fails" : "the fdatasync fails");
    MemFileSystem fs;
    fs.SimulateDirect(GetParam());
    auto writer = LogWriter::Create(&fs, kDir, 1,
                                    {.segment_bytes = 64 << 10, .background_sync = true});
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Payload(1, 100)).ok());
    ASSERT_TRUE((*writer)->Sync().ok());
    ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Payload(2, 100)).ok());
    if (fail_write) {
      fs.FailWrite(EIO);
    } else {
      fs.FailSync(EIO);
    }
    std::atomic<int> thens{0};
    std::atomic<bool> durable{true};
    ASSERT_TRUE((*writer)
                    ->StartSync([&](bool d) {
                      durable = d;
                      ++thens;
                    })
                    .ok());
    ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Payload(3, 100)).ok());  // while it runs
    const absl::Status failed = (*writer)->WaitSync();
    ASSERT_FALSE(failed.ok());
    EXPECT_NE(failed.message().find(fail_write ? "(write)" : "(fdatasync)"), std::string::npos)
        << failed;
    EXPECT_EQ(thens.load(), 1);
    EXPECT_FALSE(durable.load());
    EXPECT_EQ((*writer)->synced_lsn(), 1u);
    bool later = true;
    EXPECT_EQ((*writer)->StartSync([&](bool d) { later = d; }), failed);
    EXPECT_FALSE(later);
    EXPECT_EQ((*writer)->Append(RecordType::kBatch, Payload(4, 100)).status(), failed);
    EXPECT_EQ((*writer)->synced_lsn(), 1u);
  }
}

TEST(LogWriterDirect, EveryWriteIsWholeBlocksAndNothingGoesThroughThePageCache) {
  MemFileSystem fs;
  fs.SimulateDirect(true);
  const Written w = WriteLog(&fs, kDir, 400, 64 << 10, 3000, 3);
  EXPECT_GT(SegmentPaths(&fs, kDir).size(), 3u);
  EXPECT_GT(fs.direct_bytes_written(), 0u);
  EXPECT_EQ(fs.cached_bytes_written(), 0u);
  ExpectPrefix(ReadAll(&fs, kDir), w, 400);
}

// The partial last block is written again by every Sync, with more records
// after the acknowledged ones.  After each of many small synced appends
// every acknowledged record reads back; a crash in the middle of a rewrite
// (a torn write lands only a prefix of the blocks) loses none of them; and
// the writer resumes in the middle of that block (reading its acknowledged
// part back) and appends after it.
TEST(LogWriterDirect, ATailBlockRewrittenManyTimesKeepsEveryAcknowledgedRecord) {
  MemFileSystem fs;
  fs.SimulateDirect(true);
  constexpr uint64_t kSegment = 1 << 20;
  auto writer = LogWriter::Create(&fs, kDir, 1, {.segment_bytes = kSegment});
  ASSERT_TRUE(writer.ok()) << writer.status();
  std::vector<Bytes> acked;
  for (uint64_t i = 0; i < 600; ++i) {
    Bytes payload = Payload(i, 100);  // 24 to 124 bytes a record: dozens per block
    ASSERT_TRUE((*writer)->Append(RecordType::kBatch, payload).ok());
    ASSERT_TRUE((*writer)->Sync().ok());
    acked.push_back(std::move(payload));
    if (i % 20 == 0 || i == 599) {
      const ReadResult read = ReadAll(&fs, kDir);
      ASSERT_TRUE(read.status.ok()) << read.status;
      ASSERT_EQ(read.payloads, acked) << "after record " << i;
    }
  }
  EXPECT_EQ(fs.cached_bytes_written(), 0u);
  // The crash: the next group is written, but only its first bytes land.
  // The acknowledged bytes in the rewritten block have the values they had.
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE((*writer)->Append(RecordType::kBatch, Bytes(700, std::byte(0x70 + i))).ok());
  }
  fs.TearNextWrite(direct_io_alignment_bytes + 1000);
  ASSERT_TRUE((*writer)->Sync().ok());  // as far as the dying process knew
  writer->reset();
  ReadResult read = ReadAll(&fs, kDir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ASSERT_GE(read.payloads.size(), acked.size());
  ASSERT_LT(read.payloads.size(), acked.size() + 3) << "the tear must cut the group";
  EXPECT_GT(read.end.dropped_bytes, 0u);
  ASSERT_TRUE(std::equal(acked.begin(), acked.end(), read.payloads.begin()));
  acked.assign(read.payloads.begin(), read.payloads.end());  // an unacknowledged whole one may stay
  // Resume in the middle of the tail block, append, crash again without a
  // sync of the last ones, resume again.
  for (int round = 0; round < 2; ++round) {
    auto resumed = LogWriter::Resume(&fs, kDir, read.end, {.segment_bytes = kSegment});
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    for (uint64_t i = 0; i < 30; ++i) {
      Bytes payload = Payload(10'000 * (round + 1) + i, 300);
      ASSERT_TRUE((*resumed)->Append(RecordType::kBatch, payload).ok());
      ASSERT_TRUE((*resumed)->Sync().ok());
      acked.push_back(std::move(payload));
    }
    read = ReadAll(&fs, kDir);
    ASSERT_TRUE(read.status.ok()) << read.status;
    ASSERT_EQ(read.payloads, acked) << "round " << round;
  }
}

// PosixFile with direct writes: writes of any offset, length and memory
// alignment (whole blocks direct, the ends through the page cache, or all
// through it) read back as written.  On a file system without O_DIRECT
// (tmpfs) everything goes through the page cache; the result is the same.
TEST(PosixFile, DirectWritesOfAnyShapeReadBackAsWritten) {
  const tally::testing::TempDir temp("tally-wal-test");
  const std::string path = temp.path() + "/f";
  PosixFileSystem fs;
  auto file = fs.Open(path, OpenMode::kCreate, WritePath::kDirect);
  ASSERT_TRUE(file.ok()) << file.status();
  const uint64_t alignment = (*file)->write_alignment();
  EXPECT_TRUE(alignment == 1 || alignment == direct_io_alignment_bytes);
  constexpr uint64_t kFileBytes = 256 << 10;
  ASSERT_TRUE((*file)->Preallocate(kFileBytes).ok());
  Bytes model(kFileBytes);
  AlignedBuffer source(64 << 10);
  std::byte* bytes = source.Append(64 << 10);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 300; ++i) {
    const uint64_t size = rng() % 3 == 0 ? (1 + rng() % 8) * 4096 : rng() % 20000;
    const uint64_t offset =
        rng() % 2 == 0 ? (rng() % 40) * 4096 : rng() % (kFileBytes - 20 * 4096);
    const uint64_t from = rng() % 2 == 0 ? offset % 4096 : rng() % 4096;  // congruent or not
    for (uint64_t k = 0; k < size; ++k) bytes[from + k] = std::byte(rng());
    ASSERT_TRUE((*file)->PWrite(offset, std::span(bytes + from, size)).ok());
    std::copy_n(bytes + from, size, model.begin() + ptrdiff_t(offset));
  }
  Bytes back(kFileBytes);
  ASSERT_EQ(*(*file)->PRead(0, back), kFileBytes);
  EXPECT_TRUE(back == model);
  ASSERT_TRUE((*file)->DataSync().ok());
}

TEST(LogWriter, RealFilesWriteSyncReopenAndRead) {
  const tally::testing::TempDir temp("tally-wal-test");
  const std::string& dir = temp.path();
  PosixFileSystem fs;
  Written w = WriteLog(&fs, dir, 500, 64 * 1024);
  EXPECT_GT(SegmentPaths(&fs, dir).size(), 3u);
  ReadResult read = ReadAll(&fs, dir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectPrefix(read, w, 500);
  {
    auto writer = LogWriter::Resume(&fs, dir, read.end, {.segment_bytes = 64 * 1024});
    ASSERT_TRUE(writer.ok()) << writer.status();
    for (uint64_t i = 0; i < 100; ++i) {
      w.payloads.push_back(Payload(5000 + i));
      ASSERT_TRUE((*writer)->Append(RecordType::kBatch, w.payloads.back()).ok());
    }
    ASSERT_TRUE((*writer)->Sync().ok());
  }
  read = ReadAll(&fs, dir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectPrefix(read, w, 600);
  const std::vector<std::string> segments = SegmentPaths(&fs, dir);
  for (const std::string& path : segments) {
    EXPECT_EQ(std::filesystem::file_size(path), 64u * 1024) << path;
  }
  // Every segment after the first was a zero-filled spare: its blocks are
  // written, so an fdatasync into it converts no extent (where the file
  // system can say).
  for (size_t i = 1; i < segments.size(); ++i) {
    const std::optional<bool> unwritten = UnwrittenExtents(segments[i]);
    if (unwritten) {
      EXPECT_FALSE(*unwritten) << segments[i];
    }
  }
}

// FlipByte inverts one byte of a real file in place (the file keeps its
// size, as a live segment does).
void FlipByte(const std::string& path, uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0) << path;
  std::byte value{};
  ASSERT_EQ(::pread(fd, &value, 1, off_t(offset)), 1);
  value ^= std::byte{0xff};
  ASSERT_EQ(::pwrite(fd, &value, 1, off_t(offset)), 1);
  ::close(fd);
}

// On a real file system the reader maps each segment instead of reading it
// into a buffer (docs/DURABILITY.md, "Recovery"): the same verdicts as from
// a buffer, segment after segment, on damage and on a torn tail.
TEST(LogReader, RealFilesAreReadThroughAMappingWithTheSameVerdicts) {
  const tally::testing::TempDir temp("tally-wal-test");
  const std::string& dir = temp.path();
  PosixFileSystem fs;
  const Written w = WriteLog(&fs, dir, 300, 64 * 1024);
  const std::vector<std::string> segments = SegmentPaths(&fs, dir);
  ASSERT_GE(segments.size(), 3u);
  ASSERT_NE(w.paths[149], w.paths[299]);  // the damage and the tail in two segments
  ReadResult read = ReadAll(&fs, dir, 120);  // from the middle of the log
  ASSERT_TRUE(read.status.ok()) << read.status;
  ASSERT_EQ(read.payloads.size(), 181u);
  for (size_t i = 0; i < read.payloads.size(); ++i) {
    ASSERT_EQ(read.payloads[i], w.payloads[119 + i]) << "record " << 120 + i;
  }
  EXPECT_EQ(read.end.next_lsn, 301u);

  // A flipped byte in record 150's header (checksummed), valid records
  // after it: corruption naming the file and the offset.
  const uint64_t at = w.offsets[149];
  FlipByte(w.paths[149], at + kRecLsnAt);
  read = ReadAll(&fs, dir);
  EXPECT_EQ(read.status.code(), absl::StatusCode::kDataLoss) << read.status;
  EXPECT_NE(read.status.message().find(absl::StrCat(w.paths[149], ": damaged record at offset ",
                                                    at)),
            std::string::npos)
      << read.status;
  FlipByte(w.paths[149], at + kRecLsnAt);

  // The last record damaged, nothing after it: a torn tail, cut cleanly.
  const uint64_t last = w.offsets[299];
  FlipByte(w.paths[299], last + kRecLsnAt);
  read = ReadAll(&fs, dir);
  ASSERT_TRUE(read.status.ok()) << read.status;
  ExpectPrefix(read, w, 299);
  EXPECT_EQ(read.end.segment_path, w.paths[299]);
  EXPECT_EQ(read.end.offset, last);
  EXPECT_GT(read.end.dropped_bytes, 0u);
}

}  // namespace
}  // namespace tally::wal
