// log_reader.h: reads a log's records back, in LSN order, across segments.
//
// The format is in wal/FORMAT.md.  The reader trusts nothing: every segment
// header and record is checked (checksum, length, type, LSN exactly one more
// than the last), and it decides between the two ways a log can end badly:
//
//   torn tail   the last segment's last record is incomplete or damaged and no
//               valid record follows it: what a crash in the middle of a write
//               leaves.  A clean end; end().dropped_bytes says how much was cut.
//   corruption  a damaged record anywhere else (in an older segment, or with a
//               valid record after it), a damaged segment header, or an LSN
//               gap within or between segments (a missing segment): Next()
//               returns absl::DataLossError naming the file and byte offset.
//               Nothing is ever skipped silently.
//
//   auto reader = tally::wal::LogReader::Open(&fs, "/data/wal");
//   if (!reader.ok()) return reader.status();
//   tally::wal::LogRecord record;
//   while (true) {
//     absl::StatusOr<bool> more = (*reader)->Next(&record);
//     if (!more.ok()) return more.status();   // corruption: stop the start
//     if (!*more) break;                      // clean end
//     Apply(record.lsn, record.payload);
//   }
//   if ((*reader)->end().dropped_bytes > 0) Log("cut a torn tail of ... bytes");
#ifndef TALLY_WAL_LOG_READER_H_
#define TALLY_WAL_LOG_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "wal/file.h"
#include "wal/format.h"

namespace tally::wal {

// LogRecord is one record as read.  `payload` points into the reader's buffer
// and stays valid until the next call to Next().
struct LogRecord {
  uint64_t lsn = kNoLsn;
  RecordType type = RecordType::kBatch;
  std::span<const std::byte> payload;
  std::string segment_path;  // the file it came from
  uint64_t offset = 0;       // where its header starts in that file
};

// LogEnd is where a log's valid data ends: the writer resumes from it.
struct LogEnd {
  std::string segment_path;  // the last segment; empty when there is none
  uint64_t segment_first_lsn = kNoLsn;
  uint64_t offset = 0;         // first byte after the last valid record
  uint64_t next_lsn = 1;       // the LSN the next record must carry
  uint64_t dropped_bytes = 0;  // torn tail cut off (from offset on), 0 if none
};

// LogReaderOptions tunes Open.
struct LogReaderOptions {
  // Records below this LSN are checked but not returned; reading starts in
  // the segment that holds it.  0: from the oldest segment.
  uint64_t start_lsn = 0;
  // A second directory of older segments (a store's archive/, wal/FORMAT.md):
  // its segments and the log directory's are read as one log, in LSN order.
  // Empty: none.  A missing directory counts as empty.
  std::string archive_dir;
};

// LogReader reads one log directory.  Not thread-safe.
class LogReader {
 public:
  // Open lists the segments of `dir`; it reads nothing yet.
  static absl::StatusOr<std::unique_ptr<LogReader>> Open(FileSystem* fs, std::string dir,
                                                         LogReaderOptions options = {});

  // Next reads the next record: true with *record filled, false at the clean
  // end of the log (see end()), or a DataLoss / I/O error.  After false or an
  // error it keeps returning the same.
  absl::StatusOr<bool> Next(LogRecord* record);

  // end is where the valid data ends; meaningful once Next returned false.
  const LogEnd& end() const { return end_; }

 private:
  LogReader(FileSystem* fs, std::string dir, LogReaderOptions options,
            std::vector<std::pair<uint64_t, std::string>> segments)
      : fs_(fs), dir_(std::move(dir)), options_(options), segments_(std::move(segments)) {}

  absl::Status LoadSegment();
  // Damaged handles a bad record at `at` in the loaded segment: a torn tail
  // (returns OK, end_ set) or corruption (returns the error).
  absl::Status Damaged(uint64_t at, const std::string& reason);
  void SetEnd(uint64_t offset, uint64_t dropped_bytes);
  absl::Status Stop(absl::Status status);

  FileSystem* fs_;
  std::string dir_;
  LogReaderOptions options_;
  std::vector<std::pair<uint64_t, std::string>> segments_;  // (first LSN, path), sorted
  size_t segment_index_ = 0;
  bool loaded_ = false;
  std::string path_;  // the loaded segment
  uint64_t segment_first_lsn_ = kNoLsn;
  // The loaded segment, whole: a real file is mapped (no zero-filled buffer
  // to fault in, no copy out of the page cache: docs/DURABILITY.md,
  // "Recovery"); others are read into buf_.  seg_ views whichever holds it.
  std::unique_ptr<MappedFile> mapped_;
  std::vector<std::byte> buf_;
  std::span<const std::byte> seg_;
  uint64_t pos_ = 0;  // next record header in seg_
  uint64_t expected_lsn_ = kNoLsn;
  bool done_ = false;
  absl::Status error_;
  LogEnd end_;
};

}  // namespace tally::wal

#endif  // TALLY_WAL_LOG_READER_H_
