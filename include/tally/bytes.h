// bytes.h: little-endian writing and bounds-checked reading of byte strings,
// for every format tally decodes (batches, snapshots, frames).
//
// ByteReader never reads past its input: every read checks what is left, and
// the first failure sticks, with the offset where it happened, so a decoder
// can read a whole structure and check once at the end.  Counts are checked
// against the bytes that could hold them before anything is reserved.
//
// Example:
//   tally::ByteReader r(bytes, "batch");
//   int64_t time_us = r.Get<int64_t>();
//   std::string_view text = r.Text<uint16_t>(text_bytes_max);
//   if (!r.ok()) return r.status();  // DataLoss: "batch: truncated at byte 9"
#ifndef TALLY_BYTES_H_
#define TALLY_BYTES_H_

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"

namespace tally {

static_assert(std::endian::native == std::endian::little,
              "formats are little-endian and written with memcpy");

// ByteWriter appends to a string.
class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}

  template <typename T>
  void Put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    out_->append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  // Text writes a length of type Len, then the bytes.
  template <typename Len>
  void Text(std::string_view text) {
    Put<Len>(static_cast<Len>(text.size()));
    out_->append(text);
  }

 private:
  std::string* out_;
};

// ByteReader reads a string_view front to back.
//
// Two ways to read: Get/Text/Count/Bytes check every read; a run of
// fixed-size records (a snapshot decodes ~12 M of them) checks once per
// record with Has(n) and then reads its fields with Take, unchecked.  The
// position is kept as pointers, not an index into bytes_: a decoder storing
// a uint64_t field then cannot alias it, so it stays in a register.
class ByteReader {
 public:
  // `what` names the format in errors ("batch", "snapshot").
  ByteReader(std::string_view bytes, std::string_view what)
      : begin_(bytes.data()), p_(bytes.data()), end_(bytes.data() + bytes.size()), what_(what) {}

  template <typename T>
  T Get() {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!Has(sizeof(T))) return T{};
    return Take<T>();
  }
  // Has checks that n more bytes are there (and nothing failed before);
  // if not, the reader fails at this byte.  A true Has(n) allows Take and
  // TakeBytes of n bytes in all.
  bool Has(size_t n) {
    if (!ok()) return false;
    if (left() < n) {
      Fail(pos(), "truncated");
      return false;
    }
    return true;
  }
  template <typename T>
  T Take() {  // unchecked: only after Has()
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    std::memcpy(&v, p_, sizeof(T));
    p_ += sizeof(T);
    return v;
  }
  const char* TakeBytes(size_t n) {  // unchecked: only after Has()
    const char* at = p_;
    p_ += n;
    return at;
  }
  // Text reads a length of type Len, at most max_bytes, then that many bytes.
  template <typename Len>
  std::string_view Text(uint32_t max_bytes) {
    size_t at = pos();
    Len size = Get<Len>();
    if (!ok()) return {};
    if (size > max_bytes) {
      Fail(at, "text longer than its limit");
      return {};
    }
    if (!Has(size)) return {};
    return std::string_view(TakeBytes(size), size);
  }
  // Count reads a uint64 element count that at least `min_bytes_each` bytes
  // per element could follow, so a damaged count cannot reserve gigabytes.
  uint64_t Count(size_t min_bytes_each) {
    size_t at = pos();
    uint64_t n = Get<uint64_t>();
    if (ok() && n > left() / std::max<size_t>(1, min_bytes_each)) {
      Fail(at, "count larger than the bytes left");
      return 0;
    }
    return n;
  }
  // Bytes takes the next n bytes at once: one bounds check for a whole
  // array of fixed-size records (snapshots decode them in bulk).
  std::string_view Bytes(size_t n) {
    if (!Has(n)) return {};
    return std::string_view(TakeBytes(n), n);
  }
  void Check(bool condition, std::string_view why) {
    if (!condition) Fail(pos(), why);
  }
  void Fail(size_t at, std::string_view why) {
    if (error_.empty()) {
      error_ = std::string(why);
      error_at_ = at;
    }
  }

  bool ok() const { return error_.empty(); }
  size_t pos() const { return static_cast<size_t>(p_ - begin_); }
  size_t left() const { return static_cast<size_t>(end_ - p_); }
  bool done() const { return p_ == end_; }
  absl::Status status() const {
    if (ok()) return absl::OkStatus();
    return absl::DataLossError(std::string(what_) + ": " + error_ + " at byte " +
                               std::to_string(error_at_));
  }

 private:
  const char* begin_;
  const char* p_;
  const char* end_;
  std::string_view what_;
  std::string error_;
  size_t error_at_ = 0;
};

}  // namespace tally

#endif  // TALLY_BYTES_H_
