#include "wal/log_writer.h"

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "tally/assert.h"

namespace tally::wal {
namespace {

// The spare segment is zero-filled in steps of at least this many bytes
// (smaller ones wait for the next Sync), from a block of zeros this size.
constexpr uint64_t kSpareStepBytes = uint64_t{256} << 10;
alignas(4096) constexpr std::byte kZeros[kSpareStepBytes] = {};

absl::Status CheckOptions(const LogWriterOptions& options) {
  if (options.segment_bytes < wal_segment_bytes_min ||
      options.segment_bytes > wal_segment_bytes_max) {
    return absl::InvalidArgumentError(absl::StrCat("segment size ", options.segment_bytes,
                                                   " is outside [", wal_segment_bytes_min, ", ",
                                                   wal_segment_bytes_max, "]"));
  }
  return absl::OkStatus();
}

WritePath PathFor(const LogWriterOptions& options) {
  return options.direct_io ? WritePath::kDirect : WritePath::kPageCache;
}

// The buffer holds wal_write_buffer_bytes_max of records plus the partial
// block before them, and room to pad the last block.
constexpr size_t kBufferBytes = wal_write_buffer_bytes_max + 2 * direct_io_alignment_bytes;
// A buffer that grew for a big record (tallyd's rounds of big frames are one
// record of a few MB each) keeps up to this much: giving the memory back and
// taking it again next round cleared fresh pages every round.
constexpr size_t kBufferKeepBytes = 4 * kBufferBytes;

}  // namespace

LogWriter::LogWriter(FileSystem* fs, std::string dir, LogWriterOptions options, uint64_t next_lsn)
    : fs_(fs),
      dir_(std::move(dir)),
      options_(options),
      buffer_(kBufferBytes),
      next_lsn_(next_lsn),
      synced_lsn_(next_lsn - 1) {}

LogWriter::~LogWriter() {
  if (!sync_thread_.joinable()) return;
  {
    std::unique_lock lock(mu_);
    wake_.wait(lock, [this] { return !job_ready_; });
    stop_ = true;
  }
  wake_.notify_all();
  sync_thread_.join();
}

absl::StatusOr<std::unique_ptr<LogWriter>> LogWriter::Create(FileSystem* fs, std::string dir,
                                                             uint64_t first_lsn,
                                                             LogWriterOptions options) {
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  if (first_lsn == kNoLsn) return absl::InvalidArgumentError("first LSN must be at least 1");
  absl::StatusOr<std::vector<std::string>> names = fs->List(dir);
  if (!names.ok()) return names.status();
  for (const std::string& name : *names) {
    if (ParseSegmentFileName(name)) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir, " already holds log segment ", name, ": resume it instead"));
    }
  }
  std::unique_ptr<LogWriter> writer(new LogWriter(fs, std::move(dir), options, first_lsn));
  if (absl::Status s = writer->RemoveSpare(); !s.ok()) return s;
  if (absl::Status s = writer->OpenNewSegment(first_lsn); !s.ok()) return s;
  return writer;
}

absl::StatusOr<std::unique_ptr<LogWriter>> LogWriter::Resume(FileSystem* fs, std::string dir,
                                                             const LogEnd& end,
                                                             LogWriterOptions options) {
  if (end.segment_path.empty()) return Create(fs, std::move(dir), end.next_lsn, options);
  if (absl::Status s = CheckOptions(options); !s.ok()) return s;
  std::unique_ptr<LogWriter> writer(new LogWriter(fs, std::move(dir), options, end.next_lsn));
  if (absl::Status s = writer->RemoveSpare(); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<File>> file =
      fs->Open(end.segment_path, OpenMode::kReadWrite, PathFor(options));
  if (!file.ok()) return file.status();
  absl::StatusOr<uint64_t> size = (*file)->Size();
  if (!size.ok()) return size.status();
  if (end.offset < kSegmentHeaderBytes || end.offset > *size) {
    return absl::InvalidArgumentError(
        absl::StrCat("log end at offset ", end.offset, " does not fit ", end.segment_path));
  }
  // Zero the torn tail, and restore the preallocation if the file was cut short.
  const uint64_t torn_end = std::min(*size, end.offset + end.dropped_bytes);
  if (torn_end > end.offset) {
    const std::vector<std::byte> zeros(torn_end - end.offset);
    if (absl::Status s = (*file)->PWrite(end.offset, zeros); !s.ok()) return s;
  }
  const uint64_t capacity = std::max(*size, options.segment_bytes);
  if (absl::Status s = (*file)->Preallocate(capacity); !s.ok()) return s;
  if (absl::Status s = (*file)->Sync(); !s.ok()) return s;
  if (absl::Status s = writer->UseSegment(std::move(*file), end.segment_path, capacity, end.offset);
      !s.ok()) {
    return s;
  }
  return writer;
}

absl::Status LogWriter::UseSegment(std::unique_ptr<File> file, std::string path,
                                   uint64_t capacity, uint64_t written_end) {
  const uint64_t alignment = file->write_alignment();
  alignment_ = alignment > 1 && capacity % alignment == 0 ? alignment : 1;
  buffer_offset_ = written_end / alignment_ * alignment_;
  buffer_.Clear();
  // The written records of the last partial block: the next write covers
  // the whole block, so they are written again with their own values.
  if (const uint64_t kept = written_end - buffer_offset_; kept > 0) {
    absl::StatusOr<size_t> got = file->PRead(buffer_offset_, std::span(buffer_.Append(kept), kept));
    if (!got.ok()) return got.status();
    if (*got != kept) {
      return absl::DataLossError(absl::StrCat(path, ": ", kept, " bytes at ", buffer_offset_,
                                              " could not be read back"));
    }
  }
  file_ = std::move(file);
  path_ = std::move(path);
  capacity_bytes_ = capacity;
  written_end_ = written_end;
  return absl::OkStatus();
}

absl::Status LogWriter::Fail(const char* what, const absl::Status& cause) {
  TALLY_ASSERT(!cause.ok());
  failed_ =
      absl::Status(cause.code(), absl::StrCat("wal writer failed permanently (", what,
                                              "), acknowledging nothing more: ", cause.message()));
  buffer_.Clear();
  return failed_;
}

absl::StatusOr<uint64_t> LogWriter::Append(RecordType type, std::span<const std::byte> payload) {
  if (!failed_.ok()) return failed_;
  const uint16_t type_value = static_cast<uint16_t>(type);
  if (type_value == 0 || type_value > kRecordTypeMax) {
    return absl::InvalidArgumentError(absl::StrCat("unknown record type ", type_value));
  }
  const uint64_t record_bytes = kRecordHeaderBytes + payload.size();
  if (payload.size() > wal_record_payload_bytes_max ||
      kSegmentHeaderBytes + record_bytes > options_.segment_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("record payload of ", payload.size(), " bytes does not fit a segment"));
  }
  if (end() + record_bytes > capacity_bytes_) {
    if (absl::Status s = Roll(); !s.ok()) return s;
  }
  if (end() > written_end_ && end() - written_end_ + record_bytes > wal_write_buffer_bytes_max) {
    if (absl::Status s = WaitSync(); !s.ok()) return s;  // the sync thread writes the segment
    if (absl::Status s = Flush(); !s.ok()) return s;
  }
  std::byte* record = buffer_.Append(record_bytes);
  if (!payload.empty()) std::memcpy(record + kRecordHeaderBytes, payload.data(), payload.size());
  EncodeRecordHeader(type, next_lsn_, uint32_t(payload.size()), record);
  return next_lsn_++;
}

LogWriter::Dirty LogWriter::TakeDirty() {
  // Whole blocks from the start of the last partial one, the end padded with
  // zeros (what the segment holds there already): with alignment_ > 1 one
  // direct write, else just the new bytes.  The padded end stays inside the
  // segment: its size is a whole number of blocks.
  const size_t size = buffer_.size();
  const size_t padded = (size + alignment_ - 1) / alignment_ * alignment_;
  TALLY_ASSERT(buffer_offset_ % alignment_ == 0 && buffer_offset_ + padded <= capacity_bytes_);
  buffer_.ZeroPadTo(padded);
  const Dirty dirty{.offset = buffer_offset_, .padded_bytes = padded};
  const size_t kept = size % alignment_;  // the new partial block, written again next time
  flushing_.Swap(buffer_);
  buffer_.Clear();
  buffer_.ShrinkTo(kBufferKeepBytes);  // after one huge record
  buffer_.Reserve(kBufferBytes);
  if (kept > 0) std::memcpy(buffer_.Append(kept), flushing_.data() + (size - kept), kept);
  buffer_offset_ += size - kept;
  written_end_ = end();  // the same end: the kept block moved, nothing else
  return dirty;
}

absl::Status LogWriter::Flush() {
  if (end() == written_end_) return absl::OkStatus();
  const Dirty dirty = TakeDirty();
  if (absl::Status s =
          file_->PWrite(dirty.offset, std::span(flushing_.data(), dirty.padded_bytes));
      !s.ok()) {
    return Fail("write", s);
  }
  return absl::OkStatus();
}

absl::Status LogWriter::Sync() {
  if (absl::Status s = StartSync(); !s.ok()) return s;
  return WaitSync();
}

absl::Status LogWriter::StartSync(SyncDone then, SyncOn on) {
  // One in flight at a time.
  if (absl::Status s = WaitSync(); !s.ok()) {
    if (then) then(false);
    return s;
  }
  if (synced_lsn_ + 1 == next_lsn_) {  // nothing new
    if (then) then(true);
    return absl::OkStatus();
  }
  // The job: the dirty range, moved to flushing_ (TakeDirty), for the sync
  // thread to write and fdatasync.
  SyncJob job;
  job.offset = buffer_offset_;
  job.lsn = next_lsn_ - 1;
  job.synced_bytes = end() - written_end_;
  job.written_end = end();
  job.then = std::move(then);
  if (end() > written_end_) job.padded_bytes = TakeDirty().padded_bytes;
  in_flight_ = true;
  in_background_ = options_.background_sync && on == SyncOn::kSyncThread;
  if (!in_background_) {
    job_ = std::move(job);
    RunSync(job_);
    return WaitSync();
  }
  {
    std::lock_guard lock(mu_);
    job_ = std::move(job);
    job_ready_ = true;
    job_done_ = false;
  }
  if (!sync_thread_.joinable()) {
    try {
      sync_thread_ = std::thread([this] { SyncLoop(); });
    } catch (const std::system_error& e) {  // no thread: sync here instead, from now on
      options_.background_sync = false;
      in_background_ = false;
      {
        std::lock_guard lock(mu_);
        job_ready_ = false;
      }
      RunSync(job_);
      return WaitSync();
    }
  } else {
    wake_.notify_all();
  }
  return absl::OkStatus();
}

absl::Status LogWriter::WaitSync() {
  if (!in_flight_) return failed_;
  if (in_background_) {
    std::unique_lock lock(mu_);
    wake_.wait(lock, [this] { return job_done_; });
    job_done_ = false;
  }
  in_flight_ = false;
  job_.then = nullptr;
  if (job_.synced) synced_lsn_ = job_.lsn;
  if (!job_.status.ok()) return Fail(job_.failed_what, job_.status);
  return absl::OkStatus();
}

bool LogWriter::SyncReturned() {
  if (!in_flight_ || !in_background_) return true;
  std::lock_guard lock(mu_);
  return job_done_;
}

void LogWriter::SyncLoop() {
  (void)::pthread_setname_np(::pthread_self(), options_.sync_thread_name.substr(0, 15).c_str());
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return job_ready_ || stop_; });
    if (!job_ready_) return;  // stopping, nothing left to do
    lock.unlock();
    RunSync(job_);
    lock.lock();
    job_ready_ = false;
    job_done_ = true;
    wake_.notify_all();
  }
}

void LogWriter::RunSync(SyncJob& job) {
  job.status = absl::OkStatus();
  job.synced = false;
  if (job.padded_bytes > 0) {
    job.status = file_->PWrite(job.offset, std::span(flushing_.data(), job.padded_bytes));
    if (!job.status.ok()) {
      job.failed_what = "write";
      if (job.then) job.then(false);
      return;
    }
  }
  job.status = file_->DataSync();
  if (!job.status.ok()) {
    job.failed_what = "fdatasync";
    if (job.then) job.then(false);
    return;
  }
  job.synced = true;
  if (job.then) job.then(true);  // before the spare: that is not the caller's wait
  // After the sync: it never delays one.
  job.status = PrepareSpare(job.synced_bytes, job.written_end, &job.failed_what);
}

absl::Status LogWriter::RemoveSpare() {
  // A spare a crash left is in an unknown state; it is started over.
  absl::Status s = fs_->Remove(absl::StrCat(dir_, "/", kSpareSegmentName));
  if (!s.ok() && !absl::IsNotFound(s)) return s;
  return absl::OkStatus();
}

absl::Status LogWriter::PrepareSpare(uint64_t synced_bytes, uint64_t written_end,
                                     const char** what) {
  // The spare keeps a quarter ahead of the current segment's fill, so it is
  // complete when the current one is 80 % full, before the roll; and each
  // step is bounded by twice what this Sync wrote (room to catch up), so it
  // never costs a Sync more than a small multiple of its own write.  With
  // direct writes the zeros are device time on this thread: 1.25 times the
  // log's own bytes in the steady state (it was twice, when they were a
  // copy into the page cache written back by the kernel).
  const uint64_t wanted = std::min(options_.segment_bytes, written_end + written_end / 4);
  if (spare_filled_ >= wanted) return absl::OkStatus();
  if (wanted - spare_filled_ < kSpareStepBytes && wanted < options_.segment_bytes) {
    return absl::OkStatus();  // too little yet: a later Sync does it in one step
  }
  // Whole blocks of zeros (from an aligned source), so a direct spare gets
  // them without the page cache.
  const uint64_t step_end =
      std::min(wanted, spare_filled_ + std::max(kSpareStepBytes, 2 * synced_bytes));
  const uint64_t to = std::min(options_.segment_bytes,
                               (step_end + direct_io_alignment_bytes - 1) /
                                   direct_io_alignment_bytes * direct_io_alignment_bytes);
  if (spare_ == nullptr) {
    const std::string path = absl::StrCat(dir_, "/", kSpareSegmentName);
    absl::StatusOr<std::unique_ptr<File>> file =
        fs_->Open(path, OpenMode::kCreate, PathFor(options_));
    if (!file.ok()) {
      *what = "create the next segment";
      return file.status();
    }
    spare_ = std::move(*file);
    spare_filled_ = 0;
  }
  const uint64_t from = spare_filled_;
  for (uint64_t at = from; at < to; at += kSpareStepBytes) {
    const uint64_t n = std::min(kSpareStepBytes, to - at);
    if (absl::Status s = spare_->PWrite(at, std::span(kZeros, n)); !s.ok()) {
      *what = "zero-fill the next segment";
      return s;
    }
  }
  // Written out now, a step at a time, rather than by the kernel's flusher
  // in one burst (or by the fsync at the roll).
  if (absl::Status s = spare_->StartWriteOut(from, to - from); !s.ok()) {
    *what = "write out the next segment";
    return s;
  }
  spare_filled_ = to;
  return absl::OkStatus();
}

absl::Status LogWriter::Roll() {
  // The full segment is made durable before the next one gets data, so a
  // crash can tear only the newest segment (see the reader's rules).
  if (absl::Status s = Sync(); !s.ok()) return s;
  return OpenNewSegment(next_lsn_);
}

absl::Status LogWriter::OpenNewSegment(uint64_t first_lsn) {
  const std::string name = SegmentFileName(first_lsn);
  const std::string path = absl::StrCat(dir_, "/", name);
  if (fs_->Open(path, OpenMode::kReadOnly).ok()) {
    return Fail("new segment", absl::AlreadyExistsError(absl::StrCat(path, " already exists")));
  }
  // The segment is made under a temp name and renamed once its header is
  // durable: the zero-filled spare when it is whole (no fallocate; its fsync
  // writes the header, what is left of the zeros and the allocation, so
  // appends into it change no metadata), else a new preallocated file.
  const bool zero_filled = spare_ != nullptr && spare_filled_ == options_.segment_bytes;
  std::string made_as;
  std::unique_ptr<File> file;
  if (zero_filled) {
    made_as = absl::StrCat(dir_, "/", kSpareSegmentName);
    file = std::move(spare_);
    spare_filled_ = 0;
  } else {
    made_as = path + ".tmp";
    (void)fs_->Remove(made_as);  // left by a crash while creating it; absent is fine
    absl::StatusOr<std::unique_ptr<File>> created =
        fs_->Open(made_as, OpenMode::kCreate, PathFor(options_));
    if (!created.ok()) return Fail("create segment", created.status());
    file = std::move(*created);
    if (absl::Status s = file->Preallocate(options_.segment_bytes); !s.ok()) {
      return Fail("preallocate segment", s);
    }
  }
  // The header goes through the buffer like a record: written as the
  // segment's first block (padded), and again with the first records.
  if (absl::Status s = UseSegment(std::move(file), path, options_.segment_bytes, 0); !s.ok()) {
    return Fail("new segment", s);
  }
  EncodeSegmentHeader(first_lsn, buffer_.Append(kSegmentHeaderBytes));
  if (absl::Status s = Flush(); !s.ok()) return s;
  if (absl::Status s = file_->Sync(); !s.ok()) return Fail("fsync new segment", s);
  if (absl::Status s = fs_->Rename(made_as, path); !s.ok()) return Fail("rename new segment", s);
  if (absl::Status s = fs_->SyncDir(dir_); !s.ok()) return Fail("fsync log directory", s);
  if (zero_filled) ++segments_zero_filled_;
  ++segments_started_;
  return absl::OkStatus();
}

}  // namespace tally::wal
