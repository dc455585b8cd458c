// manifest.h: which snapshot a shard's store starts from, which snapshots it
// keeps, and which log segments it still needs.
//
// The manifest is the one file that decides what in a store directory is
// live: recovery reads it first, and retirement (removing or archiving
// segments wholly older than the oldest kept snapshot) happens only after a
// new manifest that no longer needs them is durable.  It is small text with a
// checksum line, written whole each time: temp file, fsync, rename, directory
// fsync, so a reader sees either the old manifest or the new one, never a mix.
// Format and why: the MANIFEST section of wal/FORMAT.md.
//
// Example:
//   Manifest m{.snapshot_lsns = {120, 60}, .log_from_lsn = 61, .segments = {1, 97}};
//   if (absl::Status s = WriteManifest(&fs, "/data/shard-0", m); !s.ok()) return s;
//   absl::StatusOr<std::optional<Manifest>> again = ReadManifest(&fs, "/data/shard-0");
#ifndef TALLY_WAL_MANIFEST_H_
#define TALLY_WAL_MANIFEST_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "wal/file.h"

namespace tally::wal {

inline constexpr char kManifestName[] = "MANIFEST";
inline constexpr uint32_t kManifestVersion = 1;

// Manifest is the decoded content of <dir>/MANIFEST.
struct Manifest {
  // The snapshots recovery may start from, newest first; the first is the
  // current one.  Empty: start from an empty ledger and the whole log.
  std::vector<uint64_t> snapshot_lsns;
  // The first LSN the log must still hold: the oldest kept snapshot's LSN + 1
  // (1 without snapshots).  Segments wholly before it are retired.
  uint64_t log_from_lsn = 1;
  // First LSNs of the log's segments (in <dir>/wal/) when the manifest was
  // written, ascending; each must still exist.  The store rewrites the
  // manifest when the log rolls, so a segment started later (a crash just
  // after a roll, or while a snapshot child owned the manifest) is checked
  // by the log's LSN chain and named at the next start.
  std::vector<uint64_t> segments;

  uint64_t current_snapshot_lsn() const {
    return snapshot_lsns.empty() ? 0 : snapshot_lsns.front();
  }
  bool operator==(const Manifest&) const = default;
};

// EncodeManifest is the manifest's text, checksum line included.
std::string EncodeManifest(const Manifest& manifest);
// DecodeManifest parses and checks it; DataLoss names what is wrong.
absl::StatusOr<Manifest> DecodeManifest(std::string_view text);

// ReadManifest reads <dir>/MANIFEST: nothing when there is no such file, a
// DataLoss naming the file when it is damaged.
absl::StatusOr<std::optional<Manifest>> ReadManifest(FileSystem* fs, const std::string& dir);
// WriteManifest replaces <dir>/MANIFEST atomically and durably.
absl::Status WriteManifest(FileSystem* fs, const std::string& dir, const Manifest& manifest);

// ReadWholeFile reads a file into a string.
absl::StatusOr<std::string> ReadWholeFile(FileSystem* fs, const std::string& path);
// WriteFileDurably writes `bytes` as `path`: <path>.tmp, fsync, rename,
// fsync of `dir` (the directory holding `path`).
absl::Status WriteFileDurably(FileSystem* fs, const std::string& dir, const std::string& path,
                              std::string_view bytes);

}  // namespace tally::wal

#endif  // TALLY_WAL_MANIFEST_H_
