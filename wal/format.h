// format.h: the log's on-disk constants, shared by the writer and the reader.
//
// The byte layout, the reasons behind it and a worked example are in
// wal/FORMAT.md; keep the two in step.  All integers are little-endian.
//
//   segment file  wal-<first LSN, 20 digits>.log, preallocated, zero-filled
//   +----------------+----------+----------+-----+----------+-------------+
//   | segment header | record 1 | record 2 | ... | record n | zeros ...   |
//   +----------------+----------+----------+-----+----------+-------------+
//   record = 24-byte header + payload (no padding, never spans segments)
#ifndef TALLY_WAL_FORMAT_H_
#define TALLY_WAL_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace tally::wal {

// RecordType names what a record's payload is.  On disk as a u16; numbered
// explicitly, 0 reserved (a zero-filled header never parses), values never
// reused.
enum class RecordType : uint16_t {
  kBatch = 1,   // one applied command batch (its encoding is the codec's)
  kMarker = 2,  // a note for the layers above, e.g. "snapshot taken here"
};
inline constexpr uint16_t kRecordTypeMax = 2;
static_assert(kRecordTypeMax <= 0xff, "the reader's scan expects types in the low byte");

// The segment header opens every segment file.
inline constexpr char kSegmentMagic[8] = {'T', 'A', 'L', 'L', 'Y', 'W', 'A', 'L'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderBytes = 32;
// Byte offsets inside the segment header.
inline constexpr size_t kSegMagicAt = 0;      // 8 bytes "TALLYWAL"
inline constexpr size_t kSegVersionAt = 8;    // u32 format version
inline constexpr size_t kSegFlagsAt = 12;     // u32, must be 0
inline constexpr size_t kSegFirstLsnAt = 16;  // u64 LSN of the segment's first record
inline constexpr size_t kSegChecksumAt = 24;  // u64 XXH3-64 of bytes [0, 24)

// The record header precedes every payload.
inline constexpr size_t kRecordHeaderBytes = 24;
inline constexpr size_t kRecChecksumAt = 0;      // u64 XXH3-64 of bytes [8, 24 + payload)
inline constexpr size_t kRecPayloadBytesAt = 8;  // u32 payload length
inline constexpr size_t kRecTypeAt = 12;         // u16 RecordType
inline constexpr size_t kRecFlagsAt = 14;        // u16, must be 0
inline constexpr size_t kRecLsnAt = 16;          // u64 log sequence number
// The checksum covers the header from this byte on, then the payload.
inline constexpr size_t kRecChecksummedFrom = 8;

static_assert(kSegChecksumAt + 8 == kSegmentHeaderBytes);
static_assert(kRecLsnAt + 8 == kRecordHeaderBytes);

// LSN 0 is never a record's: it means "none" (for example "nothing synced").
inline constexpr uint64_t kNoLsn = 0;

inline void PutU16(std::byte* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = std::byte(v >> (8 * i));
}
inline void PutU32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = std::byte(v >> (8 * i));
}
inline void PutU64(std::byte* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = std::byte(v >> (8 * i));
}
inline uint16_t GetU16(const std::byte* p) {
  return uint16_t(uint16_t(p[0]) | uint16_t(p[1]) << 8);
}
inline uint32_t GetU32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | uint32_t(p[i]);
  return v;
}
inline uint64_t GetU64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | uint64_t(p[i]);
  return v;
}

// Checksum is XXH3-64 (seed 0) of `bytes`.  Defined in format.cc so that
// xxhash.h stays out of this header.
uint64_t Checksum(std::span<const std::byte> bytes);

// EncodeSegmentHeader fills `out` (kSegmentHeaderBytes) for a segment whose
// first record will carry `first_lsn`.
void EncodeSegmentHeader(uint64_t first_lsn, std::byte* out);

// EncodeRecordHeader fills the header in front of a payload that is already at
// out + kRecordHeaderBytes, checksum included.
void EncodeRecordHeader(RecordType type, uint64_t lsn, uint32_t payload_bytes, std::byte* out);

// kSpareSegmentName is the next segment while the writer zero-fills it ahead
// of time (wal/FORMAT.md); renamed to its SegmentFileName when the log rolls
// into it.  Not a segment name: readers ignore it, a new writer removes it.
inline constexpr char kSpareSegmentName[] = "wal-next.log.tmp";
// SegmentFileName is "wal-" + first LSN as 20 decimal digits + ".log": names
// sort by LSN, and the widest u64 has 20 digits.
std::string SegmentFileName(uint64_t first_lsn);
// ParseSegmentFileName returns the first LSN for a segment file name, nothing
// for any other name.
std::optional<uint64_t> ParseSegmentFileName(std::string_view name);

}  // namespace tally::wal

#endif  // TALLY_WAL_FORMAT_H_
