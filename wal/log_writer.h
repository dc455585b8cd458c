// log_writer.h: appends records to a log and makes them durable.
//
// The format is in wal/FORMAT.md.  Append() encodes a record into a bounded
// buffer and gives it the next LSN; Sync() writes what is buffered and issues
// one fdatasync, which covers every record appended since the last Sync.
// Group commit is the caller's loop:
//
//   auto writer = tally::wal::LogWriter::Create(&fs, "/data/wal", /*first_lsn=*/1);
//   for (const Batch& b : ready) (*writer)->Append(RecordType::kBatch, b.bytes);
//   if (absl::Status s = (*writer)->Sync(); !s.ok()) StopAcknowledging(s);
//   AcknowledgeUpTo((*writer)->synced_lsn());
//
// Segments have a fixed size; when a record does not fit, the writer syncs
// the full segment and starts the next (created under a temporary name,
// header written and synced, renamed, directory synced), so only the newest
// segment can ever hold a torn record.
//
// The next segment is zero-filled ahead of time, a bounded step after each
// Sync (kSpareSegmentName, see wal/FORMAT.md "How a segment is made"): its
// blocks are then really written, so an fdatasync into it writes the data
// and flushes, with no extent to convert and no inode to write.  When it is
// not complete at a roll (a first segment, a burst of huge records) the
// segment is preallocated with fallocate instead, as before.
//
// Failure is final.  The first failed write, sync, preallocation or rename
// puts the writer in a failed state: every later call returns that same error
// and nothing is retried.  After a failed fdatasync the kernel may already
// have dropped the dirty pages, so a retry that "succeeds" would acknowledge
// data that is not on disk (PostgreSQL's fsync lesson).  The way back is a new
// process that recovers from what the log holds.
#ifndef TALLY_WAL_LOG_WRITER_H_
#define TALLY_WAL_LOG_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tally/limits.h"
#include "wal/file.h"
#include "wal/format.h"
#include "wal/log_reader.h"

namespace tally::wal {

// LogWriterOptions tunes a LogWriter.
struct LogWriterOptions {
  // Size of each new segment file, in [wal_segment_bytes_min, wal_segment_bytes_max].
  uint64_t segment_bytes = wal_segment_bytes_default;
};

// LogWriter appends to one log directory.  Not thread-safe: one writer per
// log (per shard).
class LogWriter {
 public:
  // Create starts a new log in `dir`, which must hold no segment yet; the
  // first record gets `first_lsn` (>= 1).
  static absl::StatusOr<std::unique_ptr<LogWriter>> Create(FileSystem* fs, std::string dir,
                                                           uint64_t first_lsn,
                                                           LogWriterOptions options = {});
  // Resume continues a log after a LogReader read it to its clean end: a torn
  // tail (end.dropped_bytes) is overwritten with zeros and synced first, so it
  // can never be mistaken for damage once newer records follow it.
  static absl::StatusOr<std::unique_ptr<LogWriter>> Resume(FileSystem* fs, std::string dir,
                                                           const LogEnd& end,
                                                           LogWriterOptions options = {});

  // Append adds one record and returns its LSN.  It is durable only after a
  // later Sync() returned OK.  A payload over wal_record_payload_bytes_max, or
  // too big for an empty segment, is refused with InvalidArgument and does not
  // fail the writer.
  absl::StatusOr<uint64_t> Append(RecordType type, std::span<const std::byte> payload);

  // Sync makes every record appended so far durable: one write of the buffer
  // and one fdatasync.
  absl::Status Sync();

  // next_lsn is the LSN the next Append will get.
  uint64_t next_lsn() const { return next_lsn_; }
  // synced_lsn is the highest LSN known durable (kNoLsn before any).
  uint64_t synced_lsn() const { return synced_lsn_; }
  // segments_started counts the segments this writer created (rolls
  // included), so its owner can see that a new one began (the store then
  // rewrites its manifest).
  uint64_t segments_started() const { return segments_started_; }
  // segments_zero_filled counts the segments this writer started from a
  // zero-filled spare; the others were preallocated with fallocate.
  uint64_t segments_zero_filled() const { return segments_zero_filled_; }
  // spare_ready_bytes is how much of the next segment is zero-filled so far.
  uint64_t spare_ready_bytes() const { return spare_filled_; }
  // status is OK, or the error that failed the writer for good.
  const absl::Status& status() const { return failed_; }

 private:
  LogWriter(FileSystem* fs, std::string dir, LogWriterOptions options, uint64_t next_lsn)
      : fs_(fs),
        dir_(std::move(dir)),
        options_(options),
        next_lsn_(next_lsn),
        synced_lsn_(next_lsn - 1) {}

  absl::Status Fail(const char* what, const absl::Status& cause);
  absl::Status Flush();
  absl::Status Roll();
  absl::Status OpenNewSegment(uint64_t first_lsn);
  absl::Status RemoveSpare();
  absl::Status PrepareSpare(uint64_t synced_bytes);

  FileSystem* fs_;
  std::string dir_;
  LogWriterOptions options_;
  std::unique_ptr<File> file_;  // the current segment
  std::string path_;
  uint64_t capacity_bytes_ = 0;    // size of the current segment
  uint64_t written_end_ = 0;       // bytes of the current segment written out
  std::vector<std::byte> buffer_;  // appended records not written yet
  uint64_t next_lsn_;
  uint64_t synced_lsn_;
  uint64_t segments_started_ = 0;
  uint64_t segments_zero_filled_ = 0;
  std::unique_ptr<File> spare_;  // the next segment, being zero-filled
  uint64_t spare_filled_ = 0;    // bytes of it written with zeros
  absl::Status failed_;
};

}  // namespace tally::wal

#endif  // TALLY_WAL_LOG_WRITER_H_
