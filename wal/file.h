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
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tally::wal {

// File is one open file.  Not thread-safe; the log has one writer per file.
class File {
 public:
  virtual ~File() = default;
  // PWrite writes all of `data` at `offset` (growing the file if needed).
  virtual absl::Status PWrite(uint64_t offset, std::span<const std::byte> data) = 0;
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
  virtual absl::StatusOr<std::unique_ptr<File>> Open(const std::string& path, OpenMode mode) = 0;
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

// PosixFileSystem is the real file system.
class PosixFileSystem final : public FileSystem {
 public:
  // MapReadOnly maps a whole file read-only with its pages populated: a
  // snapshot of hundreds of MB is read from the page cache without a copy
  // (or a zero-filled buffer first).
  absl::StatusOr<std::unique_ptr<MappedFile>> MapReadOnly(const std::string& path);

  absl::StatusOr<std::unique_ptr<File>> Open(const std::string& path, OpenMode mode) override;
  absl::StatusOr<std::vector<std::string>> List(const std::string& dir) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status CreateDir(const std::string& dir) override;
};

// MemFileSystem keeps files in memory and injects faults on request.  Paths
// are plain strings; a directory's entries are the files named "<dir>/<name>".
// Files opened from it share its storage, so editing helpers act on open files
// too.  Not thread-safe.  Faults are one-shot unless said otherwise.
class MemFileSystem final : public FileSystem {
 public:
  absl::StatusOr<std::unique_ptr<File>> Open(const std::string& path, OpenMode mode) override;
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
  // SetCapacity bounds the sum of all file sizes; a write or preallocation
  // that would cross it fails with ENOSPC and changes nothing.  Sticky.
  void SetCapacity(uint64_t bytes) { capacity_bytes_ = bytes; }

  // --- Byte-editing helpers (abort on a missing file: test bugs) ---
  void FlipBit(const std::string& path, uint64_t offset, int bit);
  void ZeroRange(const std::string& path, uint64_t offset, uint64_t bytes);
  void Truncate(const std::string& path, uint64_t bytes);
  bool Exists(const std::string& path) const { return files_.count(path) != 0; }
  std::vector<std::byte>& Contents(const std::string& path);

  // --- Counters ---
  uint64_t writes() const { return writes_; }
  uint64_t opens() const { return opens_; }
  uint64_t syncs() const { return syncs_; }

 private:
  friend class MemFile;
  struct Data {
    std::vector<std::byte> bytes;
  };
  // Check* consume a pending fault; they return the error to report, if any.
  absl::Status CheckWrite(const std::string& path);
  absl::Status CheckSync(const std::string& path);
  absl::Status CheckGrowth(const std::string& path, uint64_t old_size, uint64_t new_size);
  uint64_t TotalBytes() const;

  std::map<std::string, std::shared_ptr<Data>> files_;
  int write_error_ = 0, write_error_after_ = 0;
  int sync_error_ = 0, sync_error_after_ = 0;
  std::string write_error_path_, sync_error_path_;  // empty: any
  size_t tear_bytes_ = 0;
  bool tear_pending_ = false;
  uint64_t capacity_bytes_ = UINT64_MAX;
  uint64_t writes_ = 0, syncs_ = 0, opens_ = 0;
};

}  // namespace tally::wal

#endif  // TALLY_WAL_FILE_H_
