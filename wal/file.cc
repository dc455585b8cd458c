#include "wal/file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"
#include "tally/assert.h"

namespace tally::wal {
namespace {

absl::Status Errno(int error_number, const char* op, const std::string& path) {
  return absl::ErrnoToStatus(error_number, absl::StrCat(op, " ", path));
}

// ---------------------------------------------------------------- POSIX ---

// PosixFile writes through `fd_` (the page cache) and, when it has one,
// whole aligned blocks through `direct_fd_`, a second descriptor of the same
// file opened with O_DIRECT.  The kernel keeps the two coherent (a direct
// write writes back and drops cached pages of its range); the writers here
// never give the two the same block at once.
class PosixFile final : public File {
 public:
  PosixFile(int fd, int direct_fd, std::string path)
      : fd_(fd), direct_fd_(direct_fd), path_(std::move(path)) {}
  ~PosixFile() override {
    ::close(fd_);
    if (direct_fd_ >= 0) ::close(direct_fd_);
  }

  uint64_t write_alignment() const override {
    return direct_fd_ >= 0 ? direct_io_alignment_bytes : 1;
  }

  absl::Status PWrite(uint64_t offset, std::span<const std::byte> data) override {
    const DirectSplit split =
        SplitForDirect(offset, data.data(), data.size(), write_alignment());
    if (split.body == 0) return WriteAll(fd_, offset, data);
    if (absl::Status s = WriteAll(fd_, offset, data.first(split.head)); !s.ok()) return s;
    const std::span<const std::byte> blocks = data.subspan(split.head, split.body);
    if (absl::Status s = WriteAll(direct_fd_, offset + split.head, blocks); !s.ok()) return s;
    const uint64_t done = split.head + split.body;
    return WriteAll(fd_, offset + done, data.subspan(done));
  }

  absl::StatusOr<size_t> PRead(uint64_t offset, std::span<std::byte> out) override {
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, off_t(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Errno(errno, "pread", path_);
      }
      if (n == 0) break;  // end of file
      done += size_t(n);
    }
    return done;
  }

  // A failed fdatasync is reported, never retried here: after one the kernel
  // may have dropped the dirty pages, so a retry can "succeed" without the data.
  absl::Status DataSync() override {
    if (::fdatasync(fd_) != 0) return Errno(errno, "fdatasync", path_);
    return absl::OkStatus();
  }

  absl::Status Sync() override {
    if (::fsync(fd_) != 0) return Errno(errno, "fsync", path_);
    return absl::OkStatus();
  }

  absl::Status StartWriteOut(uint64_t offset, uint64_t bytes) override {
    return WriteOut(offset, bytes, SYNC_FILE_RANGE_WRITE);
  }

  absl::Status AwaitWriteOut(uint64_t offset, uint64_t bytes) override {
    return WriteOut(offset, bytes,
                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                        SYNC_FILE_RANGE_WAIT_AFTER);
  }

  absl::Status DropCached(uint64_t offset, uint64_t bytes) override {
    const int rc = ::posix_fadvise(fd_, off_t(offset), off_t(bytes), POSIX_FADV_DONTNEED);
    if (rc != 0) return Errno(rc, "posix_fadvise", path_);
    return absl::OkStatus();
  }

  absl::Status Preallocate(uint64_t bytes) override {
    if (::fallocate(fd_, 0, 0, off_t(bytes)) == 0) return absl::OkStatus();
    if (errno != EOPNOTSUPP) return Errno(errno, "fallocate", path_);
    // File systems without fallocate: glibc writes the zeros itself.
    const int rc = ::posix_fallocate(fd_, 0, off_t(bytes));
    if (rc != 0) return Errno(rc, "posix_fallocate", path_);
    return absl::OkStatus();
  }

  absl::Status Truncate(uint64_t bytes) override {
    while (::ftruncate(fd_, off_t(bytes)) != 0) {
      if (errno != EINTR) return Errno(errno, "ftruncate", path_);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return Errno(errno, "fstat", path_);
    return uint64_t(st.st_size);
  }

 private:
  absl::Status WriteOut(uint64_t offset, uint64_t bytes, unsigned int flags) {
    if (bytes == 0) return absl::OkStatus();  // 0 would mean "to the end of the file"
    while (::sync_file_range(fd_, off_t(offset), off_t(bytes), flags) != 0) {
      if (errno != EINTR) return Errno(errno, "sync_file_range", path_);
    }
    return absl::OkStatus();
  }

  absl::Status WriteAll(int fd, uint64_t offset, std::span<const std::byte> data) {
    while (!data.empty()) {
      const ssize_t n = ::pwrite(fd, data.data(), data.size(), off_t(offset));
      if (n < 0) {
        if (errno == EINTR) continue;
        return Errno(errno, fd == direct_fd_ ? "pwrite (O_DIRECT)" : "pwrite", path_);
      }
      data = data.subspan(size_t(n));
      offset += uint64_t(n);
      // A short direct write may leave an unaligned rest: the page cache takes it.
      if (fd == direct_fd_) fd = fd_;
    }
    return absl::OkStatus();
  }

  int fd_;
  int direct_fd_;  // -1: no direct writes
  std::string path_;
};

bool DirectAllowedByEnvironment() {
  const char* value = std::getenv("TALLY_DIRECT_IO");
  return value == nullptr || std::string_view(value) != "0";
}

}  // namespace

DirectSplit SplitForDirect(uint64_t offset, const void* address, uint64_t size,
                           uint64_t alignment) {
  if (alignment <= 1) return {};
  const uint64_t memory = reinterpret_cast<uintptr_t>(address);
  if ((memory - offset) % alignment != 0) return {};  // blocks of the file are not blocks of memory
  const uint64_t head = (alignment - offset % alignment) % alignment;
  if (head >= size) return {};
  const uint64_t body = (size - head) / alignment * alignment;
  if (body == 0) return {};
  return {.head = head, .body = body};
}

AlignedBuffer::~AlignedBuffer() {
  if (data_ != nullptr) ::operator delete(data_, std::align_val_t(direct_io_alignment_bytes));
}

void AlignedBuffer::Reserve(size_t bytes) {
  if (bytes <= capacity_) return;
  const size_t capacity = (bytes + direct_io_alignment_bytes - 1) / direct_io_alignment_bytes *
                          direct_io_alignment_bytes;
  auto* data = static_cast<std::byte*>(
      ::operator new(capacity, std::align_val_t(direct_io_alignment_bytes)));
  if (size_ > 0) std::memcpy(data, data_, size_);
  std::memset(data + size_, 0, capacity - size_);  // touched once: resident from now on
  if (data_ != nullptr) ::operator delete(data_, std::align_val_t(direct_io_alignment_bytes));
  data_ = data;
  capacity_ = capacity;
}

void AlignedBuffer::ZeroPadTo(size_t padded) {
  TALLY_ASSERT(padded <= capacity_);
  if (padded > size_) std::memset(data_ + size_, 0, padded - size_);
}

void AlignedBuffer::ShrinkTo(size_t bytes_max) {
  if (capacity_ <= bytes_max) return;
  TALLY_ASSERT(size_ <= bytes_max);
  AlignedBuffer smaller(bytes_max);
  if (size_ > 0) std::memcpy(smaller.data_, data_, size_);
  std::swap(data_, smaller.data_);
  std::swap(capacity_, smaller.capacity_);
}

PosixFileSystem::PosixFileSystem() : direct_allowed_(DirectAllowedByEnvironment()) {}

absl::StatusOr<std::unique_ptr<File>> PosixFileSystem::Open(const std::string& path,
                                                            OpenMode mode, WritePath write_path) {
  int flags = O_CLOEXEC;
  switch (mode) {
    case OpenMode::kReadOnly:
      flags |= O_RDONLY;
      break;
    case OpenMode::kReadWrite:
      flags |= O_RDWR;
      break;
    case OpenMode::kCreate:
      flags |= O_RDWR | O_CREAT | O_EXCL;
      break;
  }
  const int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return Errno(errno, "open", path);
  int direct_fd = -1;
  if (write_path == WritePath::kDirect && mode != OpenMode::kReadOnly && direct_allowed_) {
    direct_fd = ::open(path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
    // EINVAL: the file system has no O_DIRECT (tmpfs); the page cache takes every write.
    if (direct_fd < 0 && errno != EINVAL) {
      const int err = errno;
      ::close(fd);
      return Errno(err, "open (O_DIRECT)", path);
    }
  }
  return std::unique_ptr<File>(new PosixFile(fd, direct_fd, path));
}

absl::StatusOr<std::vector<std::string>> PosixFileSystem::List(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return Errno(errno, "opendir", dir);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name = e->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return Errno(err, "readdir", dir);
  return names;
}

absl::Status PosixFileSystem::Rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) return Errno(errno, "rename", from);
  return absl::OkStatus();
}

absl::Status PosixFileSystem::SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, "open", dir);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Errno(err, "fsync", dir);
  return absl::OkStatus();
}

absl::Status PosixFileSystem::Remove(const std::string& path) {
  if (::unlink(path.c_str()) != 0) return Errno(errno, "unlink", path);
  return absl::OkStatus();
}

absl::Status PosixFileSystem::CreateDir(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Errno(errno, "mkdir", dir);
  return absl::OkStatus();
}

MappedFile::~MappedFile() {
  if (size_ > 0) ::munmap(const_cast<void*>(data_), size_);
}

absl::StatusOr<std::unique_ptr<MappedFile>> PosixFileSystem::MapReadOnly(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno(errno, "open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return Errno(err, "fstat", path);
  }
  const size_t size = static_cast<size_t>(st.st_size);
  if (size == 0) {
    ::close(fd);
    return std::make_unique<MappedFile>(nullptr, 0);
  }
  void* data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  const int err = errno;
  ::close(fd);  // the mapping keeps the file
  if (data == MAP_FAILED) return Errno(err, "mmap", path);
  return std::make_unique<MappedFile>(data, size);
}

void PosixFileSystem::ReadAhead(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);  // queues the reads; they outlive fd
  ::close(fd);
}

// ------------------------------------------------------------ In memory ---

class MemFile final : public File {
 public:
  MemFile(MemFileSystem* fs, std::string path, std::shared_ptr<MemFileSystem::Data> data,
          bool writable, bool direct)
      : fs_(fs), path_(std::move(path)), data_(std::move(data)), writable_(writable),
        direct_(direct) {}

  uint64_t write_alignment() const override { return direct_ ? direct_io_alignment_bytes : 1; }

  absl::Status PWrite(uint64_t offset, std::span<const std::byte> data) override {
    std::lock_guard lock(fs_->mu_);
    if (!writable_) return Errno(EBADF, "pwrite", path_);
    if (absl::Status s = fs_->CheckWrite(path_); !s.ok()) return s;
    std::vector<std::byte>& bytes = data_->bytes;
    const uint64_t end = std::max<uint64_t>(bytes.size(), offset + data.size());
    if (absl::Status s = fs_->CheckGrowth(path_, bytes.size(), end); !s.ok()) return s;
    if (fs_->tear_pending_) {  // a crash mid-write: only a prefix lands
      fs_->tear_pending_ = false;
      data = data.first(data.size() - std::min(data.size(), fs_->tear_bytes_));
    }
    const DirectSplit split = SplitForDirect(offset, data.data(), data.size(), write_alignment());
    if (split.body > 0) {  // what a disk with O_DIRECT would take direct
      TALLY_ASSERT((offset + split.head) % direct_io_alignment_bytes == 0 &&
                   split.body % direct_io_alignment_bytes == 0 &&
                   reinterpret_cast<uintptr_t>(data.data() + split.head) %
                           direct_io_alignment_bytes == 0);
    }
    fs_->direct_bytes_ += split.body;
    fs_->cached_bytes_ += data.size() - split.body;
    if (bytes.size() < end) bytes.resize(end);
    std::copy(data.begin(), data.end(), bytes.begin() + ptrdiff_t(offset));
    return absl::OkStatus();
  }

  absl::StatusOr<size_t> PRead(uint64_t offset, std::span<std::byte> out) override {
    std::lock_guard lock(fs_->mu_);
    const std::vector<std::byte>& bytes = data_->bytes;
    if (offset >= bytes.size()) return size_t{0};
    const size_t n = std::min<uint64_t>(out.size(), bytes.size() - offset);
    std::copy_n(bytes.begin() + ptrdiff_t(offset), n, out.begin());
    return n;
  }

  // Memory has no write-back to start or wait for; durability is DataSync's.
  absl::Status StartWriteOut(uint64_t, uint64_t) override { return absl::OkStatus(); }
  absl::Status AwaitWriteOut(uint64_t, uint64_t) override { return absl::OkStatus(); }
  absl::Status DropCached(uint64_t, uint64_t) override { return absl::OkStatus(); }
  absl::Status DataSync() override {
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard lock(fs_->mu_);
      hook = fs_->before_data_sync_;
    }
    if (hook) hook(path_);
    std::lock_guard lock(fs_->mu_);
    return fs_->CheckSync(path_);
  }
  absl::Status Sync() override {
    std::lock_guard lock(fs_->mu_);
    return fs_->CheckSync(path_);
  }

  absl::Status Preallocate(uint64_t bytes) override {
    std::lock_guard lock(fs_->mu_);
    if (!writable_) return Errno(EBADF, "fallocate", path_);
    std::vector<std::byte>& data = data_->bytes;
    if (bytes <= data.size()) return absl::OkStatus();
    if (absl::Status s = fs_->CheckGrowth(path_, data.size(), bytes); !s.ok()) return s;
    data.resize(bytes);
    return absl::OkStatus();
  }

  absl::Status Truncate(uint64_t bytes) override {
    std::lock_guard lock(fs_->mu_);
    if (!writable_) return Errno(EBADF, "ftruncate", path_);
    if (absl::Status s = fs_->CheckWrite(path_); !s.ok()) return s;
    if (absl::Status s = fs_->CheckGrowth(path_, data_->bytes.size(), bytes); !s.ok()) return s;
    data_->bytes.resize(bytes);
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> Size() override {
    std::lock_guard lock(fs_->mu_);
    return uint64_t(data_->bytes.size());
  }

 private:
  MemFileSystem* fs_;
  std::string path_;
  std::shared_ptr<MemFileSystem::Data> data_;
  bool writable_;
  bool direct_;
};

absl::StatusOr<std::unique_ptr<File>> MemFileSystem::Open(const std::string& path, OpenMode mode,
                                                          WritePath write_path) {
  std::lock_guard lock(mu_);
  ++opens_;
  auto it = files_.find(path);
  if (mode == OpenMode::kCreate) {
    if (it != files_.end()) return Errno(EEXIST, "open", path);
    it = files_.emplace(path, std::make_shared<Data>()).first;
  } else if (it == files_.end()) {
    return Errno(ENOENT, "open", path);
  }
  const bool writable = mode != OpenMode::kReadOnly;
  const bool direct = writable && simulate_direct_ && write_path == WritePath::kDirect;
  return std::unique_ptr<File>(new MemFile(this, path, it->second, writable, direct));
}

absl::StatusOr<std::vector<std::string>> MemFileSystem::List(const std::string& dir) {
  std::lock_guard lock(mu_);
  const std::string prefix = dir + "/";
  std::vector<std::string> names;
  for (const auto& [path, data] : files_) {
    if (path.starts_with(prefix) && path.find('/', prefix.size()) == std::string::npos) {
      names.push_back(path.substr(prefix.size()));
    }
  }
  return names;
}

absl::Status MemFileSystem::Rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  auto it = files_.find(from);
  if (it == files_.end()) return Errno(ENOENT, "rename", from);
  std::shared_ptr<Data> data = it->second;
  files_.erase(it);
  files_[to] = std::move(data);
  return absl::OkStatus();
}

absl::Status MemFileSystem::SyncDir(const std::string& dir) {
  std::lock_guard lock(mu_);
  return CheckSync(dir);
}

absl::Status MemFileSystem::Remove(const std::string& path) {
  std::lock_guard lock(mu_);
  if (files_.erase(path) == 0) return Errno(ENOENT, "unlink", path);
  return absl::OkStatus();
}

absl::Status MemFileSystem::CreateDir(const std::string&) { return absl::OkStatus(); }

void MemFileSystem::FailWrite(int error_number, int after, std::string only_path) {
  std::lock_guard lock(mu_);
  write_error_ = error_number;
  write_error_after_ = after;
  write_error_path_ = std::move(only_path);
}

void MemFileSystem::FailSync(int error_number, int after, std::string only_path) {
  std::lock_guard lock(mu_);
  sync_error_ = error_number;
  sync_error_after_ = after;
  sync_error_path_ = std::move(only_path);
}

void MemFileSystem::TearNextWrite(size_t drop_bytes) {
  std::lock_guard lock(mu_);
  tear_pending_ = true;
  tear_bytes_ = drop_bytes;
}

absl::Status MemFileSystem::CheckWrite(const std::string& path) {
  if (write_error_ != 0 && (write_error_path_.empty() || write_error_path_ == path)) {
    if (write_error_after_ == 0) {
      const int err = write_error_;
      write_error_ = 0;
      return Errno(err, "pwrite", path);
    }
    --write_error_after_;
  }
  ++writes_;
  return absl::OkStatus();
}

absl::Status MemFileSystem::CheckSync(const std::string& path) {
  if (sync_error_ != 0 && (sync_error_path_.empty() || sync_error_path_ == path)) {
    if (sync_error_after_ == 0) {
      const int err = sync_error_;
      sync_error_ = 0;
      return Errno(err, "fdatasync", path);
    }
    --sync_error_after_;
  }
  ++syncs_;
  return absl::OkStatus();
}

absl::Status MemFileSystem::CheckGrowth(const std::string& path, uint64_t old_size,
                                        uint64_t new_size) {
  if (new_size <= old_size) return absl::OkStatus();
  if (TotalBytes() + (new_size - old_size) > capacity_bytes_) {
    return Errno(ENOSPC, "write", path);
  }
  return absl::OkStatus();
}

uint64_t MemFileSystem::TotalBytes() const {
  uint64_t total = 0;
  for (const auto& [path, data] : files_) total += data->bytes.size();
  return total;
}

std::vector<std::byte>& MemFileSystem::Contents(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = files_.find(path);
  TALLY_ASSERT(it != files_.end());
  return it->second->bytes;
}

void MemFileSystem::FlipBit(const std::string& path, uint64_t offset, int bit) {
  std::vector<std::byte>& bytes = Contents(path);
  TALLY_ASSERT(offset < bytes.size() && bit >= 0 && bit < 8);
  bytes[offset] ^= std::byte(1u << bit);
}

void MemFileSystem::ZeroRange(const std::string& path, uint64_t offset, uint64_t bytes) {
  std::vector<std::byte>& data = Contents(path);
  TALLY_ASSERT(offset + bytes <= data.size());
  std::fill_n(data.begin() + ptrdiff_t(offset), bytes, std::byte{0});
}

void MemFileSystem::Truncate(const std::string& path, uint64_t bytes) {
  std::vector<std::byte>& data = Contents(path);
  TALLY_ASSERT(bytes <= data.size());
  data.resize(bytes);
}

}  // namespace tally::wal
