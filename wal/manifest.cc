#include "wal/manifest.h"

#include <algorithm>
#include <charconv>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tally/limits.h"
#include "wal/format.h"

namespace tally::wal {
namespace {

constexpr char kMagicLine[] = "tally-manifest";

std::span<const std::byte> AsBytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

std::optional<uint64_t> ParseU64(absl::string_view s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::string Hex16(uint64_t v) {
  char buf[17];
  for (int i = 15; i >= 0; --i) {
    buf[i] = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  }
  return std::string(buf, 16);
}

}  // namespace

std::string EncodeManifest(const Manifest& m) {
  std::string text = absl::StrCat(kMagicLine, " ", kManifestVersion, "\n");
  absl::StrAppend(&text, "snapshots");
  for (uint64_t lsn : m.snapshot_lsns) absl::StrAppend(&text, " ", lsn);
  absl::StrAppend(&text, "\nlog_from ", m.log_from_lsn, "\nsegments");
  for (uint64_t lsn : m.segments) absl::StrAppend(&text, " ", lsn);
  absl::StrAppend(&text, "\n");
  absl::StrAppend(&text, "checksum ", Hex16(Checksum(AsBytes(text))), "\n");
  return text;
}

absl::StatusOr<Manifest> DecodeManifest(std::string_view std_text) {
  // Abseil string_view is its own type in this Abseil build.
  const absl::string_view text(std_text.data(), std_text.size());
  auto bad = [](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("manifest: ", why));
  };
  if (text.size() > manifest_bytes_max) return bad("over the size limit");
  const size_t checksum_at = text.rfind("checksum ");
  if (checksum_at == absl::string_view::npos || (checksum_at > 0 && text[checksum_at - 1] != '\n')) {
    return bad("no checksum line");
  }
  const absl::string_view body = text.substr(0, checksum_at);
  if (text.substr(checksum_at) != absl::StrCat("checksum ", Hex16(Checksum(AsBytes(std::string_view(body.data(), body.size())))), "\n")) {
    return bad("checksum mismatch");
  }
  std::vector<absl::string_view> lines = absl::StrSplit(body, '\n');
  // body ends with '\n', so the split ends with an empty piece.
  if (lines.size() != 5 || !lines.back().empty()) return bad("expected 4 lines");
  Manifest m;
  auto fields = [](absl::string_view line) -> std::vector<absl::string_view> {
    return absl::StrSplit(line, ' ');
  };
  std::vector<absl::string_view> magic = fields(lines[0]);
  if (magic.size() != 2 || magic[0] != kMagicLine) return bad("bad magic line");
  if (ParseU64(magic[1]) != kManifestVersion) return bad(absl::StrCat("unknown version ", magic[1]));

  auto numbers = [&](absl::string_view line, absl::string_view key,
                     std::vector<uint64_t>* out) -> absl::Status {
    std::vector<absl::string_view> f = fields(line);
    if (f[0] != key) return bad(absl::StrCat("expected line '", key, "'"));
    if (f.size() - 1 > manifest_entries_max) return bad(absl::StrCat(key, ": too many entries"));
    for (size_t i = 1; i < f.size(); ++i) {
      std::optional<uint64_t> v = ParseU64(f[i]);
      if (!v) return bad(absl::StrCat(key, ": bad number '", f[i], "'"));
      out->push_back(*v);
    }
    return absl::OkStatus();
  };
  if (absl::Status s = numbers(lines[1], "snapshots", &m.snapshot_lsns); !s.ok()) return s;
  std::vector<uint64_t> log_from;
  if (absl::Status s = numbers(lines[2], "log_from", &log_from); !s.ok()) return s;
  if (log_from.size() != 1 || log_from[0] == kNoLsn) return bad("log_from: one LSN >= 1");
  m.log_from_lsn = log_from[0];
  if (absl::Status s = numbers(lines[3], "segments", &m.segments); !s.ok()) return s;
  // Snapshots newest first, segments ascending, the log reaching the oldest snapshot.
  for (size_t i = 1; i < m.snapshot_lsns.size(); ++i) {
    if (m.snapshot_lsns[i] >= m.snapshot_lsns[i - 1]) return bad("snapshots not newest first");
  }
  for (size_t i = 1; i < m.segments.size(); ++i) {
    if (m.segments[i] <= m.segments[i - 1]) return bad("segments not ascending");
  }
  if (!m.snapshot_lsns.empty() && m.log_from_lsn > m.snapshot_lsns.back() + 1) {
    return bad("log_from is after the oldest snapshot");
  }
  if (!m.segments.empty() && m.segments.front() > m.log_from_lsn) {
    return bad("the first segment starts after log_from");
  }
  return m;
}

absl::StatusOr<std::string> ReadWholeFile(FileSystem* fs, const std::string& path) {
  absl::StatusOr<std::unique_ptr<File>> file = fs->Open(path, OpenMode::kReadOnly);
  if (!file.ok()) return file.status();
  absl::StatusOr<uint64_t> size = (*file)->Size();
  if (!size.ok()) return size.status();
  std::string bytes(*size, '\0');
  absl::StatusOr<size_t> got =
      (*file)->PRead(0, std::as_writable_bytes(std::span(bytes.data(), bytes.size())));
  if (!got.ok()) return got.status();
  if (*got != *size) return absl::DataLossError(absl::StrCat(path, ": short read"));
  return bytes;
}

absl::Status WriteFileDurably(FileSystem* fs, const std::string& dir, const std::string& path,
                              std::string_view bytes) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  (void)fs->Remove(tmp);  // left by a crash while writing it
  absl::StatusOr<std::unique_ptr<File>> file = fs->Open(tmp, OpenMode::kCreate);
  if (!file.ok()) return file.status();
  // Paced (a snapshot is hundreds of MB): each chunk's write-back is started
  // as soon as it is written, and before the next chunk the bytes more than
  // durable_write_in_flight_bytes behind are awaited, so at most that much
  // of this file is queued at the device when the log's own fdatasync comes
  // (it waits behind whatever is queued).  One fsync at the end makes it
  // durable (docs/DURABILITY.md).
  uint64_t awaited_to = 0;  // [0, awaited_to) is written out
  for (size_t at = 0; at < bytes.size(); at += durable_write_chunk_bytes) {
    const size_t n = std::min<size_t>(durable_write_chunk_bytes, bytes.size() - at);
    if (absl::Status s = (*file)->PWrite(at, AsBytes(bytes.substr(at, n))); !s.ok()) return s;
    if (bytes.size() <= durable_write_chunk_bytes) break;  // small: the fsync alone
    if (absl::Status s = (*file)->StartWriteOut(at, n); !s.ok()) return s;
    if (at + n > awaited_to + durable_write_in_flight_bytes) {
      const uint64_t to = at + n - durable_write_in_flight_bytes;
      if (absl::Status s = (*file)->AwaitWriteOut(awaited_to, to - awaited_to); !s.ok()) return s;
      awaited_to = to;
    }
  }
  if (absl::Status s = (*file)->Sync(); !s.ok()) return s;
  if (absl::Status s = fs->Rename(tmp, path); !s.ok()) return s;
  return fs->SyncDir(dir);
}

absl::StatusOr<std::optional<Manifest>> ReadManifest(FileSystem* fs, const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kManifestName);
  absl::StatusOr<std::vector<std::string>> names = fs->List(dir);
  if (!names.ok()) return names.status();
  bool exists = false;
  for (const std::string& name : *names) exists |= name == kManifestName;
  if (!exists) return std::optional<Manifest>();
  absl::StatusOr<std::string> text = ReadWholeFile(fs, path);
  if (!text.ok()) return text.status();
  absl::StatusOr<Manifest> m = DecodeManifest(*text);
  if (!m.ok()) return absl::DataLossError(absl::StrCat(path, ": ", m.status().message()));
  return std::optional<Manifest>(*std::move(m));
}

absl::Status WriteManifest(FileSystem* fs, const std::string& dir, const Manifest& manifest) {
  return WriteFileDurably(fs, dir, absl::StrCat(dir, "/", kManifestName), EncodeManifest(manifest));
}

}  // namespace tally::wal
