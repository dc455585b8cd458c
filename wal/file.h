// file.h: the small file layer the log is written through.
//
// The log needs only a handful of operations (positioned reads and writes,
// fdatasync, preallocation, rename, directory fsync), so they sit behind two
// interfaces with two implementations:
//
//   PosixFileSystem   the real thing (open/pwrite/fdatasync/fallocate/...)
//   MemFileSystem     in memory, for tests, with injected faults: EIO or
//                     ENOSPC on a write or a sync, a disk capacity, torn
//                     writes, and byte-editing helpers (flip a bit, zero a
//                     range, truncate) in the spirit of LevelDB's log_test.
//
// Writes can bypass the page cache (O_DIRECT, WritePath::kDirect): a file
// opened that way writes every whole, aligned block of a PWrite straight
// from the caller's memory to the disk, and the ragged ends (and everything,
// where the file system refuses O_DIRECT, e.g. tmpfs) through the page
// cache.  Callers that keep their buffers aligned (AlignedBuffer) never touch
// the page cache; the others lose nothing.  Why: on this VM every new
// page-cache page is fresh memory (docs/DURABILITY.md, "Writes without the
// page cache").
//
// Errors are values: every operation returns absl::Status or absl::StatusOr,
// built from errno by absl::ErrnoToStatus, so an EIO reads as "... Input/output
// error" and an ENOSPC as kResourceExhausted.
//
//   tally::wal::PosixFileSystem fs;
//   auto file = fs.Open("/data/wal-00000000000000000001.log", OpenMode::kCreate);
//   if (!file.ok()) return file.status();
//   absl::Status s = (*file)->PWrite(0, bytes);
#ifndef TALLY_WAL_FILE_H_
#define TALLY_WAL_FILE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tally::wal {

// direct_io_alignment_bytes is the block of direct writes: offset, length and
// memory address multiples of it.  4 KiB covers disks of 512-byte and 4 KiB
// logical blocks alike.
inline constexpr uint64_t direct_io_alignment_bytes = 4096;

// DirectSplit is how a write of `size` bytes at `offset` from memory at
// `address` divides for a file with direct writes of `alignment`: `head`
// bytes through the page cache, then `body` bytes (whole aligned blocks,
// aligned in memory too) direct, then the rest through the page cache.
// body is 0 when the memory is not aligned like the offset (no block of it
// could go direct) or the write holds no whole block.
struct DirectSplit {
  uint64_t head = 0;
  uint64_t body = 0;
};
DirectSplit SplitForDirect(uint64_t offset, const void* address, uint64_t size,
                           uint64_t alignment);

// AlignedBuffer is a growable byte buffer whose memory starts on a
// direct_io_alignment_bytes boundary, allocated and touched once (so its
// pages are resident: no fresh memory on the write path) and reused.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t capacity_bytes) { Reserve(capacity_bytes); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer();

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  // Reserve makes room for `bytes` (rounded up to whole blocks), keeping the contents.
  void Reserve(size_t bytes);
  // Append grows the buffer by `bytes` and returns where they go.
  std::byte* Append(size_t bytes) {
    if (size_ + bytes > capacity_) Reserve(size_ + bytes);
    std::byte* at = data_ + size_;
    size_ += bytes;
    return at;
  }
  // ZeroPadTo zero-fills [size, padded) (padded ≤ capacity) without changing size.
  void ZeroPadTo(size_t padded);
  void Clear() { size_ = 0; }
  // ShrinkTo gives memory back when the capacity is over `bytes_max` (after
  // one huge record), keeping the contents (which must fit).
  void ShrinkTo(size_t bytes_max);
  // Swap exchanges the two buffers' memory and contents (no copy): the log
  // writer fills one while its sync thread writes the other.
  void Swap(AlignedBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

// WritePath says whether a file's writes may bypass the page cache.
enum class WritePath {
  kPageCache,  // every write through the page cache
  kDirect,     // whole aligned blocks direct where the file system allows it
};

// File is one open file.  Not thread-safe; the log has one writer per file.
class File {
 public:
  virtual ~File() = default;
  // PWrite writes all of `data` at `offset` (growing the file if needed).  On
  // a file with write_alignment() > 1 the whole aligned blocks go direct
  // (SplitForDirect); the result on disk is the same.
  virtual absl::Status PWrite(uint64_t offset, std::span<const std::byte> data) = 0;
  // write_alignment is direct_io_alignment_bytes when the file was opened
  // with WritePath::kDirect and its file system allows it, else 1.
  virtual uint64_t write_alignment() const { return 1; }
  // PRead reads up to out.size() bytes at `offset`; fewer only at end of file.
  // Returns how many were read.
  virtual absl::StatusOr<size_t> PRead(uint64_t offset, std::span<std::byte> out) = 0;
  // DataSync makes the file's data durable (fdatasync).
  virtual absl::Status DataSync() = 0;
  // Sync makes the data and all metadata durable (fsync).
  virtual absl::Status Sync() = 0;
  // StartWriteOut starts writing [offset, offset + bytes) from the page cache
  // to the disk and returns without waiting (sync_file_range WRITE).  Pacing
  // only: nothing is durable until DataSync or Sync returned.
  virtual absl::Status StartWriteOut(uint64_t offset, uint64_t bytes) = 0;
  // AwaitWriteOut writes [offset, offset + bytes) to the disk and waits until
  // it is there (sync_file_range WAIT_BEFORE | WRITE | WAIT_AFTER).  Still not
  // durable: the device's cache is not flushed and the metadata not written.
  virtual absl::Status AwaitWriteOut(uint64_t offset, uint64_t bytes) = 0;
  // DropCached lets the page cache forget the clean pages of [offset,
  // offset + bytes) (posix_fadvise DONTNEED); dirty pages stay.  Memory
  // only: the file's contents and durability do not change.
  virtual absl::Status DropCached(uint64_t offset, uint64_t bytes) = 0;
  // Preallocate reserves disk space so the file is at least `bytes` long; the
  // new bytes read as zeros.  Fails with ENOSPC when the disk is full.
  virtual absl::Status Preallocate(uint64_t bytes) = 0;
  // Truncate sets the file's length to `bytes` (cutting what is beyond).
  virtual absl::Status Truncate(uint64_t bytes) = 0;
  // Size is the file's current length in bytes.
  virtual absl::StatusOr<uint64_t> Size() = 0;
};

// OpenMode says how FileSystem::Open treats a missing or existing file.
enum class OpenMode {
  kReadOnly,   // must exist
  kReadWrite,  // must exist
  kCreate,     // must not exist; created empty, read-write
};

// FileSystem is the directory-level half of the file layer.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Open opens `path`; with WritePath::kDirect the file writes whole aligned
  // blocks direct if the file system allows it (see File::write_alignment).
  virtual absl::StatusOr<std::unique_ptr<File>> Open(
      const std::string& path, OpenMode mode, WritePath write_path = WritePath::kPageCache) = 0;
  // List returns the names (not paths) of the entries of `dir`, in no order.
  virtual absl::StatusOr<std::vector<std::string>> List(const std::string& dir) = 0;
  // Rename replaces `to` with `from` atomically.
  virtual absl::Status Rename(const std::string& from, const std::string& to) = 0;
  // SyncDir makes `dir`'s entries (creations, renames, removals) durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
  virtual absl::Status Remove(const std::string& path) = 0;
  // CreateDir creates `dir`; an existing directory is fine.
  virtual absl::Status CreateDir(const std::string& dir) = 0;
};

// MappedFile is a whole file mapped read-only, unmapped on destruction.
class MappedFile {
 public:
  MappedFile(const void* data, size_t size) : data_(data), size_(size) {}
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  std::string_view bytes() const { return {static_cast<const char*>(data_), size_}; }

 private:
  const void* data_;
  size_t size_;
};

// PosixFileSystem is the real file system.  TALLY_DIRECT_IO=0 in the
// environment turns direct writes off (every file then writes through the
// page cache, as with WritePath::kPageCache).
class PosixFileSystem final : public FileSystem {
 public:
  PosixFileSystem();

  // MapReadOnly maps a whole file read-only with its pages populated: a
  // snapshot of hundreds of MB is read from the page cache without a copy
  // (or a zero-filled buffer first).
  absl::StatusOr<std::unique_ptr<MappedFile>> MapReadOnly(const std::string& path);

  // ReadAhead asks the kernel to start reading a whole file into the page
  // cache and returns at once (POSIX_FADV_WILLNEED): a replay names the next
  // segment while it applies the current one, so that segment's map finds
  // its pages read.  Advice only: a file that cannot be opened is skipped.
  void ReadAhead(const std::string& path);

  absl::StatusOr<std::unique_ptr<File>> Open(
      const std::string& path, OpenMode mode,
      WritePath write_path = WritePath::kPageCache) override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status CreateDir(const std::string& dir) override;

 private:
  bool direct_allowed_;
};

// MemFileSystem keeps files in memory and injects faults on request.  Paths
// are plain strings; a directory's entries are the files named "<dir>/<name>".
// Files opened from it share its storage, so editing helpers act on open files
// too.  Thread-safe as a disk is (one lock over everything: a log's sync
// thread writes while its owner writes other files), but what Contents()
// returns is only safe to use while no other thread uses the files.  Faults
// are one-shot unless said otherwise.
class MemFileSystem final : public FileSystem {
 public:
  absl::StatusOr<std::unique_ptr<File>> Open(
      const std::string& path, OpenMode mode,
      WritePath write_path = WritePath::kPageCache) override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status CreateDir(const std::string& dir) override;

  // --- Fault injection ---
  // FailWrite makes the write after the next `after` successful ones fail
  // with errno `error_number` (EIO, ENOSPC, ...), writing nothing.  With
  // `only_path`, only writes to that file count and fail.
  void FailWrite(int error_number, int after = 0, std::string only_path = {});
  // FailSync makes the sync (DataSync, Sync or SyncDir) after the next
  // `after` successful ones fail with errno `error_number`; with
  // `only_path`, only syncs of that file (or directory) count and fail.
  void FailSync(int error_number, int after = 0, std::string only_path = {});
  // TearNextWrite makes the next write land all but its last `drop_bytes`
  // bytes and still report success, as a crash in the middle of it would.
  void TearNextWrite(size_t drop_bytes);
  // SimulateDirect makes files opened with WritePath::kDirect behave as on a
  // disk with direct writes of direct_io_alignment_bytes: write_alignment()
  // says so and PWrite counts the bytes that would go direct
  // (direct_bytes_written), checking their alignment.  Sticky.
  void SimulateDirect(bool on) {
    std::lock_guard lock(mu_);
    simulate_direct_ = on;
  }
  // BeforeDataSync sets a hook that each file's DataSync calls with the
  // file's path before it syncs, outside the file system's lock: a test may
  // block in it to hold a sync while it watches what the writer does
  // meanwhile.  Set it before the files are used; empty: none.
  void BeforeDataSync(std::function<void(const std::string& path)> hook) {
    std::lock_guard lock(mu_);
    before_data_sync_ = std::move(hook);
  }
  // SetCapacity bounds the sum of all file sizes; a write or preallocation
  // that would cross it fails with ENOSPC and changes nothing.  Sticky.
  void SetCapacity(uint64_t bytes) {
    std::lock_guard lock(mu_);
    capacity_bytes_ = bytes;
  }

  // --- Byte-editing helpers (abort on a missing file: test bugs) ---
  void FlipBit(const std::string& path, uint64_t offset, int bit);
  void ZeroRange(const std::string& path, uint64_t offset, uint64_t bytes);
  void Truncate(const std::string& path, uint64_t bytes);
  bool Exists(const std::string& path) const {
    std::lock_guard lock(mu_);
    return files_.count(path) != 0;
  }
  // FileSize is a file's length, 0 when it does not exist; safe while other
  // threads write (unlike Contents).
  uint64_t FileSize(const std::string& path) const {
    std::lock_guard lock(mu_);
    auto it = files_.find(path);
    return it == files_.end() ? 0 : it->second->bytes.size();
  }
  std::vector<std::byte>& Contents(const std::string& path);

  // --- Counters ---
  uint64_t writes() const { return Read(writes_); }
  uint64_t opens() const { return Read(opens_); }
  uint64_t syncs() const { return Read(syncs_); }
  // Bytes written direct and through the (simulated) page cache.
  uint64_t direct_bytes_written() const { return Read(direct_bytes_); }
  uint64_t cached_bytes_written() const { return Read(cached_bytes_); }

 private:
  friend class MemFile;
  struct Data {
    std::vector<std::byte> bytes;
  };
  uint64_t Read(const uint64_t& counter) const {
    std::lock_guard lock(mu_);
    return counter;
  }
  // Check* consume a pending fault; they return the error to report, if any.
  // Callers hold mu_.
  absl::Status CheckWrite(const std::string& path);
  absl::Status CheckSync(const std::string& path);
  absl::Status CheckGrowth(const std::string& path, uint64_t old_size, uint64_t new_size);
  uint64_t TotalBytes() const;

  // Guards everything below and every file's bytes.
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Data>> files_;
  int write_error_ = 0, write_error_after_ = 0;
  int sync_error_ = 0, sync_error_after_ = 0;
  std::string write_error_path_, sync_error_path_;  // empty: any
  size_t tear_bytes_ = 0;
  bool tear_pending_ = false;
  uint64_t capacity_bytes_ = UINT64_MAX;
  uint64_t writes_ = 0, syncs_ = 0, opens_ = 0;
  bool simulate_direct_ = false;
  uint64_t direct_bytes_ = 0, cached_bytes_ = 0;
  std::function<void(const std::string& path)> before_data_sync_;
};

}  // namespace tally::wal

#endif  // TALLY_WAL_FILE_H_
