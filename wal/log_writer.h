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
// Direct writes (LogWriterOptions::direct_io, on by default): segments are
// opened with WritePath::kDirect, and the records are appended into an
// aligned buffer that mirrors the segment's bytes from the start of the last
// partly written block.  A Sync writes that dirty range, whole blocks, the
// partial last one zero-padded, with one pwrite that bypasses the page cache,
// then fdatasyncs (on a written-ahead segment: the device flush).  The
// partial block stays in the buffer and is written again, with more records
// after it, by the next Sync.  Where the file system has no O_DIRECT the
// alignment is 1 and the same code writes just the new bytes through the page
// cache, as before.  wal/FORMAT.md, "Direct writes", says why a rewritten
// tail block cannot hurt an acknowledged record.
//
// Background sync (LogWriterOptions::background_sync, tallyd's shards):
// StartSync() hands the buffered records to the writer's own sync thread,
// which writes them and fdatasyncs, and returns at once; the caller appends
// the next records into a second buffer meanwhile, and WaitSync() waits for
// the sync and moves synced_lsn().  One sync is in flight at a time: the next
// StartSync waits for it first.  Everything that touches the segment files
// from the caller's thread (an early write of a full buffer, a roll) waits
// for the sync in flight first, so the sync thread is the only one writing a
// segment while it runs.  Without the option StartSync syncs before it
// returns, and Sync() is StartSync + WaitSync either way.
//
// Failure is final.  The first failed write, sync, preallocation or rename
// puts the writer in a failed state: every later call returns that same error
// and nothing is retried.  After a failed fdatasync the kernel may already
// have dropped the dirty pages, so a retry that "succeeds" would acknowledge
// data that is not on disk (PostgreSQL's fsync lesson).  The way back is a new
// process that recovers from what the log holds.
#ifndef TALLY_WAL_LOG_WRITER_H_
#define TALLY_WAL_LOG_WRITER_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
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
  // Write the segments (and the spare's zeros) with O_DIRECT where the file
  // system allows it.  TALLY_DIRECT_IO=0 turns it off for a whole process.
  bool direct_io = true;
  // Write and fdatasync on the writer's own thread (StartSync / WaitSync),
  // so its owner can apply the next batch while the last one syncs.
  bool background_sync = false;
  // The sync thread's name (for perf and /proc; at most 15 characters).
  std::string sync_thread_name = "wal-sync";
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
  // The destructor waits for a sync in flight (its result is dropped: a
  // writer that goes unsynced acknowledged nothing) and ends the thread.
  ~LogWriter();
  LogWriter(const LogWriter&) = delete;
  LogWriter& operator=(const LogWriter&) = delete;

  // Append adds one record and returns its LSN.  It is durable only after a
  // later Sync() returned OK.  A payload over wal_record_payload_bytes_max, or
  // too big for an empty segment, is refused with InvalidArgument and does not
  // fail the writer.
  absl::StatusOr<uint64_t> Append(RecordType type, std::span<const std::byte> payload);

  // Sync makes every record appended so far durable: one write of the buffer
  // and one fdatasync.
  absl::Status Sync();
  // StartSync begins making every record appended so far durable: with
  // background_sync the sync thread writes and fdatasyncs them while this
  // returns; without, they are durable when it returns.  `then` runs exactly
  // once: on the sync thread as soon as the fdatasync returned (durable:
  // it returned OK), or on this thread before StartSync returns (nothing
  // to sync: true; a writer that failed: false).  It must not call the
  // writer.  WaitSync waits for what StartSync began, `then` included (at
  // once when nothing is in flight); synced_lsn() covers it once WaitSync
  // returned OK.
  //
  // SyncOn::kThisThread syncs before returning even with background_sync:
  // a caller with nothing to apply meanwhile saves the two thread hand-offs.
  using SyncDone = std::function<void(bool durable)>;
  enum class SyncOn { kSyncThread, kThisThread };
  absl::Status StartSync(SyncDone then = nullptr, SyncOn on = SyncOn::kSyncThread);
  absl::Status WaitSync();
  bool sync_in_flight() const { return in_flight_; }
  // SyncReturned: no sync is in flight, or its `then` has run (WaitSync
  // would not block).
  bool SyncReturned();

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
  LogWriter(FileSystem* fs, std::string dir, LogWriterOptions options, uint64_t next_lsn);

  // SyncJob is one sync's work: write flushing_ (padded_bytes of it) at
  // `offset`, fdatasync, zero-fill a step of the spare.
  struct SyncJob {
    uint64_t offset = 0;
    size_t padded_bytes = 0;  // 0: everything is written already; only the fdatasync
    uint64_t lsn = 0;         // synced_lsn_ once it is done
    uint64_t synced_bytes = 0;
    uint64_t written_end = 0;  // written_end_ once written: where the spare keeps ahead of
    bool synced = false;  // the fdatasync returned OK (the spare may still fail after it)
    SyncDone then;
    const char* failed_what = nullptr;
    absl::Status status;
  };

  absl::Status Fail(const char* what, const absl::Status& cause);
  // TakeDirty moves the bytes not yet written (whole blocks from the start
  // of the last partial one, zero-padded) into flushing_, keeps the new
  // partial block in the buffer and counts them written: the caller writes
  // flushing_ (Flush at once, a sync job on its thread).
  struct Dirty {
    uint64_t offset = 0;
    size_t padded_bytes = 0;
  };
  Dirty TakeDirty();
  // RunSync does a job: on the sync thread, or inline without one.  It
  // touches only the segment, the spare and flushing_; a failure is left in
  // the job for the caller's thread to Fail() with.
  void RunSync(SyncJob& job);
  void SyncLoop();
  // end is the segment offset just after the last appended record.
  uint64_t end() const { return buffer_offset_ + buffer_.size(); }
  // UseSegment makes `file` (`capacity` bytes long) the current segment,
  // with its bytes [0, written_end) written already; the part of them in
  // the last partial block is read back into the buffer.
  absl::Status UseSegment(std::unique_ptr<File> file, std::string path, uint64_t capacity,
                          uint64_t written_end);
  absl::Status Flush();
  absl::Status Roll();
  absl::Status OpenNewSegment(uint64_t first_lsn);
  absl::Status RemoveSpare();
  absl::Status PrepareSpare(uint64_t synced_bytes, uint64_t written_end, const char** what);

  FileSystem* fs_;
  std::string dir_;
  LogWriterOptions options_;
  std::unique_ptr<File> file_;  // the current segment
  std::string path_;
  uint64_t capacity_bytes_ = 0;    // size of the current segment
  uint64_t written_end_ = 0;       // bytes of the current segment written out
  // Writes of the current segment cover whole blocks of this many bytes: the
  // file's write_alignment(), or 1 (no direct writes; or a segment size that
  // is not a whole number of blocks).
  uint64_t alignment_ = 1;
  // The segment's bytes [buffer_offset_, end()): the written part of the
  // last partial block (offset a multiple of alignment_), then the records
  // not written yet.
  uint64_t buffer_offset_ = 0;
  AlignedBuffer buffer_;
  uint64_t next_lsn_;
  uint64_t synced_lsn_;
  uint64_t segments_started_ = 0;
  uint64_t segments_zero_filled_ = 0;
  std::unique_ptr<File> spare_;  // the next segment, being zero-filled
  uint64_t spare_filled_ = 0;    // bytes of it written with zeros
  absl::Status failed_;

  // The sync in flight.  The caller's thread hands a job over (and takes it
  // back) under mu_; in between only the sync thread touches job_,
  // flushing_, file_'s writes and the spare.
  AlignedBuffer flushing_;
  SyncJob job_;
  bool in_flight_ = false;  // the caller's view: a job is handed over and not yet waited for
  bool in_background_ = false;  // that job runs on the sync thread
  std::thread sync_thread_;  // started by the first background StartSync
  std::mutex mu_;
  std::condition_variable wake_;
  bool job_ready_ = false;  // guarded by mu_: the sync thread has a job to do
  bool job_done_ = false;   // guarded by mu_
  bool stop_ = false;       // guarded by mu_
};

}  // namespace tally::wal

#endif  // TALLY_WAL_LOG_WRITER_H_
