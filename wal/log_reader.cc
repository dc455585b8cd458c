#include "wal/log_reader.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "tally/limits.h"

namespace tally::wal {
namespace {

// Verdict on the bytes at one offset: a record that checks, or why not.
struct Parsed {
  bool ok = false;
  const char* reason = "";
  uint32_t payload_bytes = 0;
  uint16_t type = 0;
  uint64_t lsn = kNoLsn;
};

// ParseRecord checks the record whose header would start at `at`: structure
// first (cheap), the checksum only when the structure holds.
Parsed ParseRecord(std::span<const std::byte> seg, uint64_t at) {
  Parsed p;
  if (seg.size() - at < kRecordHeaderBytes) {
    p.reason = "incomplete record header";
    return p;
  }
  const std::byte* h = seg.data() + at;
  p.payload_bytes = GetU32(h + kRecPayloadBytesAt);
  p.type = GetU16(h + kRecTypeAt);
  p.lsn = GetU64(h + kRecLsnAt);
  if (p.type == 0 || p.type > kRecordTypeMax) {
    p.reason = "bad record type";
  } else if (GetU16(h + kRecFlagsAt) != 0) {
    p.reason = "bad record flags";
  } else if (p.payload_bytes > wal_record_payload_bytes_max) {
    p.reason = "record length over the limit";
  } else if (p.payload_bytes > seg.size() - at - kRecordHeaderBytes) {
    p.reason = "record runs past the end of the segment";
  } else if (GetU64(h + kRecChecksumAt) !=
             Checksum({h + kRecChecksummedFrom,
                       kRecordHeaderBytes - kRecChecksummedFrom + p.payload_bytes})) {
    p.reason = "checksum mismatch";
  } else {
    p.ok = true;
  }
  return p;
}

// AllZero runs over every preallocated tail at each start (64 MiB a segment
// by default), so it ORs 8-byte words a 4 KiB block at a time: the compiler
// vectorises a loop with no early exit; the exit is between blocks.
bool AllZero(std::span<const std::byte> bytes) {
  constexpr size_t block_bytes = 4096;
  const std::byte* p = bytes.data();
  size_t left = bytes.size();
  while (left >= block_bytes) {
    uint64_t any = 0;
    for (size_t i = 0; i < block_bytes; i += sizeof(uint64_t)) {
      uint64_t word;
      std::memcpy(&word, p + i, sizeof word);
      any |= word;
    }
    if (any != 0) return false;
    p += block_bytes;
    left -= block_bytes;
  }
  for (size_t i = 0; i < left; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LogReader>> LogReader::Open(FileSystem* fs, std::string dir,
                                                           LogReaderOptions options) {
  std::vector<std::pair<uint64_t, std::string>> segments;
  auto add = [&](const std::string& from, bool must_exist) -> absl::Status {
    absl::StatusOr<std::vector<std::string>> names = fs->List(from);
    if (!names.ok()) return must_exist ? names.status() : absl::OkStatus();
    for (const std::string& name : *names) {
      if (std::optional<uint64_t> lsn = ParseSegmentFileName(name)) {
        segments.emplace_back(*lsn, absl::StrCat(from, "/", name));
      }
    }
    return absl::OkStatus();
  };
  if (absl::Status s = add(dir, true); !s.ok()) return s;
  if (!options.archive_dir.empty()) {
    if (absl::Status s = add(options.archive_dir, false); !s.ok()) return s;
  }
  std::sort(segments.begin(), segments.end());
  if (options.start_lsn != kNoLsn && !segments.empty()) {
    if (options.start_lsn < segments.front().first) {
      return absl::DataLossError(absl::StrCat("log ", dir, " starts at LSN ",
                                              segments.front().first, ", needed from LSN ",
                                              options.start_lsn));
    }
    // Skip the segments wholly before start_lsn: keep the last one starting at
    // or before it.
    auto first = std::upper_bound(segments.begin(), segments.end(),
                                  std::pair<uint64_t, std::string>{options.start_lsn, "\xff"});
    segments.erase(segments.begin(), first - 1);
  }
  return std::unique_ptr<LogReader>(
      new LogReader(fs, std::move(dir), options, std::move(segments)));
}

absl::Status LogReader::Stop(absl::Status status) {
  done_ = true;
  error_ = status;
  return status;
}

void LogReader::SetEnd(uint64_t offset, uint64_t dropped_bytes) {
  end_ = LogEnd{path_, segment_first_lsn_, offset, expected_lsn_, dropped_bytes};
  done_ = true;
}

absl::Status LogReader::LoadSegment() {
  const auto& [name_lsn, path] = segments_[segment_index_];
  path_ = path;
  absl::StatusOr<std::unique_ptr<File>> file = fs_->Open(path_, OpenMode::kReadOnly);
  if (!file.ok()) return file.status();
  absl::StatusOr<uint64_t> size = (*file)->Size();
  if (!size.ok()) return size.status();
  if (*size > wal_segment_bytes_max) {
    return absl::DataLossError(
        absl::StrCat(path_, ": segment of ", *size, " bytes is over the limit"));
  }
  // The previous segment's bytes go first: one segment in memory at a time.
  seg_ = {};
  mapped_.reset();
  buf_.clear();
  if (auto* posix = dynamic_cast<PosixFileSystem*>(fs_); posix != nullptr) {
    absl::StatusOr<std::unique_ptr<MappedFile>> mapped = posix->MapReadOnly(path_);
    if (!mapped.ok()) return mapped.status();
    mapped_ = std::move(*mapped);
    const std::string_view bytes = mapped_->bytes();
    if (bytes.size() > wal_segment_bytes_max) {  // grew since Size(): still the limit
      return absl::DataLossError(
          absl::StrCat(path_, ": segment of ", bytes.size(), " bytes is over the limit"));
    }
    seg_ = std::span(reinterpret_cast<const std::byte*>(bytes.data()), bytes.size());
    // The map above read this segment (MAP_POPULATE), waiting on the disk
    // when the log is not in the page cache, as after a reboot (the writer
    // bypasses it: direct writes).  The next segment's reads start now and
    // overlap this one's records.
    if (segment_index_ + 1 < segments_.size()) posix->ReadAhead(segments_[segment_index_ + 1].second);
  } else {
    buf_.resize(*size);
    absl::StatusOr<size_t> read = (*file)->PRead(0, buf_);
    if (!read.ok()) return read.status();
    buf_.resize(*read);
    seg_ = buf_;
  }

  // The header is synced before the file gets its final name (FORMAT.md), so
  // a bad header is damage, never a torn write.
  auto bad_header = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat(path_, ": bad segment header at offset 0: ", why));
  };
  if (seg_.size() < kSegmentHeaderBytes) return bad_header("file too short");
  const std::byte* h = seg_.data();
  if (GetU64(h + kSegChecksumAt) != Checksum({h, kSegChecksumAt})) {
    return bad_header("checksum mismatch");
  }
  if (std::memcmp(h + kSegMagicAt, kSegmentMagic, sizeof kSegmentMagic) != 0) {
    return bad_header("bad magic");
  }
  if (GetU32(h + kSegVersionAt) != kFormatVersion) {
    return bad_header(absl::StrCat("unknown format version ", GetU32(h + kSegVersionAt)));
  }
  if (GetU32(h + kSegFlagsAt) != 0) return bad_header("bad flags");
  segment_first_lsn_ = GetU64(h + kSegFirstLsnAt);
  if (segment_first_lsn_ != name_lsn || segment_first_lsn_ == kNoLsn) {
    return bad_header(absl::StrCat("first LSN ", segment_first_lsn_, " does not match the name"));
  }
  if (segment_index_ == 0) {
    expected_lsn_ = segment_first_lsn_;
  } else if (segment_first_lsn_ != expected_lsn_) {
    return absl::DataLossError(
        absl::StrCat(path_, ": missing segment or records: the log before it ends at LSN ",
                     expected_lsn_ - 1, ", this segment starts at LSN ", segment_first_lsn_));
  }
  pos_ = kSegmentHeaderBytes;
  loaded_ = true;
  return absl::OkStatus();
}

absl::Status LogReader::Damaged(uint64_t at, const std::string& reason) {
  const bool last = segment_index_ + 1 == segments_.size();
  if (!last) {
    return absl::DataLossError(absl::StrCat(path_, ": damaged record at offset ", at, ": ", reason,
                                            " (a later segment follows)"));
  }
  // A torn write leaves nothing valid after it; anything valid after the
  // damage means the damage is in the middle of the log.
  for (uint64_t y = at + 1; y + kRecordHeaderBytes <= seg_.size(); ++y) {
    // Every type fits in the low byte: a zero there rules y out cheaply,
    // which keeps the scan of a mostly zero preallocated tail fast.
    if (seg_[y + kRecTypeAt] == std::byte{0}) continue;
    if (ParseRecord(seg_, y).ok) {
      return absl::DataLossError(absl::StrCat(path_, ": damaged record at offset ", at, ": ",
                                              reason, " (a valid record follows at offset ", y,
                                              ")"));
    }
  }
  uint64_t last_nonzero = seg_.size();
  while (last_nonzero > at && seg_[last_nonzero - 1] == std::byte{0}) --last_nonzero;
  SetEnd(at, last_nonzero - at);
  return absl::OkStatus();
}

absl::StatusOr<bool> LogReader::Next(LogRecord* record) {
  while (true) {
    if (done_) {
      if (!error_.ok()) return error_;
      return false;
    }
    if (!loaded_) {
      if (segment_index_ == segments_.size()) {  // no segments at all
        end_.next_lsn = std::max<uint64_t>(options_.start_lsn, 1);
        done_ = true;
        continue;
      }
      if (absl::Status s = LoadSegment(); !s.ok()) return Stop(s);
    }
    const std::span<const std::byte> seg = seg_;
    const uint64_t at = pos_;
    const bool last = segment_index_ + 1 == segments_.size();
    // End of data: the segment is full, or a zero header starts the
    // preallocated tail, which must then be zero to its end.
    const bool at_end =
        at == seg.size() ||
        AllZero(seg.subspan(at, std::min<uint64_t>(kRecordHeaderBytes, seg.size() - at)));
    if (at_end) {
      if (!AllZero(seg.subspan(at))) {
        if (absl::Status s = Damaged(at, "nonzero bytes after the end of data"); !s.ok()) {
          return Stop(s);
        }
        continue;
      }
      if (last) {
        SetEnd(at, 0);
      } else {
        ++segment_index_;
        loaded_ = false;
      }
      continue;
    }
    const Parsed p = ParseRecord(seg, at);
    if (!p.ok) {
      if (absl::Status s = Damaged(at, p.reason); !s.ok()) return Stop(s);
      continue;
    }
    if (p.lsn != expected_lsn_) {  // checksummed, so written so: never a torn write
      return Stop(absl::DataLossError(absl::StrCat(
          path_, ": LSN gap at offset ", at, ": expected LSN ", expected_lsn_, ", found ", p.lsn)));
    }
    pos_ = at + kRecordHeaderBytes + p.payload_bytes;
    ++expected_lsn_;
    if (p.lsn < options_.start_lsn) continue;
    record->lsn = p.lsn;
    record->type = static_cast<RecordType>(p.type);
    record->payload = seg.subspan(at + kRecordHeaderBytes, p.payload_bytes);
    record->segment_path = path_;
    record->offset = at;
    return true;
  }
}

}  // namespace tally::wal
