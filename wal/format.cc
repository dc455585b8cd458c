#include "wal/format.h"

#include <cstdio>

#include "xxhash.h"

namespace tally::wal {

uint64_t Checksum(std::span<const std::byte> bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

void EncodeSegmentHeader(uint64_t first_lsn, std::byte* out) {
  std::memcpy(out + kSegMagicAt, kSegmentMagic, sizeof kSegmentMagic);
  PutU32(out + kSegVersionAt, kFormatVersion);
  PutU32(out + kSegFlagsAt, 0);
  PutU64(out + kSegFirstLsnAt, first_lsn);
  PutU64(out + kSegChecksumAt, Checksum({out, kSegChecksumAt}));
}

void EncodeRecordHeader(RecordType type, uint64_t lsn, uint32_t payload_bytes, std::byte* out) {
  PutU32(out + kRecPayloadBytesAt, payload_bytes);
  PutU16(out + kRecTypeAt, static_cast<uint16_t>(type));
  PutU16(out + kRecFlagsAt, 0);
  PutU64(out + kRecLsnAt, lsn);
  const size_t covered = kRecordHeaderBytes - kRecChecksummedFrom + payload_bytes;
  PutU64(out + kRecChecksumAt, Checksum({out + kRecChecksummedFrom, covered}));
}

std::string SegmentFileName(uint64_t first_lsn) {
  char name[32];
  std::snprintf(name, sizeof name, "wal-%020llu.log", static_cast<unsigned long long>(first_lsn));
  return name;
}

std::optional<uint64_t> ParseSegmentFileName(std::string_view name) {
  constexpr std::string_view kPrefix = "wal-", kSuffix = ".log";
  constexpr size_t kDigits = 20;
  if (name.size() != kPrefix.size() + kDigits + kSuffix.size()) return std::nullopt;
  if (!name.starts_with(kPrefix) || !name.ends_with(kSuffix)) return std::nullopt;
  uint64_t lsn = 0;
  for (char c : name.substr(kPrefix.size(), kDigits)) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = uint64_t(c - '0');
    if (lsn > (UINT64_MAX - digit) / 10) return std::nullopt;  // over 2^64 - 1
    lsn = lsn * 10 + digit;
  }
  return lsn;
}

}  // namespace tally::wal
