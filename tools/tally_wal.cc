// tally-wal: offline tools for a store directory (wal/FORMAT.md).
//
//   tally-wal verify DIR                             every checksum and the manifest
//   tally-wal dump DIR [--json]                      one line per record
//   tally-wal replay DIR --until TIME --to NEWDIR    the state as it was at TIME
//
// DIR is a shard directory (one wal::Store) or a tallyd data directory (every
// shard-<i> in it).  Exit codes: 0 clean / done, 1 damaged (verify) or failed,
// 2 usage.  TIME is RFC 3339 (2026-12-02T11:00:00Z) or microseconds since the
// epoch.  Nothing here writes to DIR.
#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "engine/ledger.h"
#include "tally/codec.h"
#include "wal/file.h"
#include "wal/log_reader.h"
#include "wal/manifest.h"
#include "wal/store.h"

namespace tally::wal {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitDamaged = 1;
constexpr int kExitUsage = 2;

int Usage() {
  std::fprintf(stderr,
               "usage: tally-wal verify DIR\n"
               "       tally-wal dump DIR [--json]\n"
               "       tally-wal replay DIR --until TIME --to NEWDIR\n"
               "DIR: a shard directory or a tallyd data directory (every shard-<i>)\n"
               "TIME: RFC 3339 (2026-12-02T11:00:00Z) or microseconds since the epoch\n");
  return kExitUsage;
}

const char* CommandKindName(CommandKind kind) {
  static constexpr const char* kNames[] = {
      "?",       "org_create", "org_settings", "topup",   "allocate", "reclaim", "grant",
      "void",    "adjust",     "deduct",       "hold",    "capture",  "release", "request",
      "approve", "reject",     "wallet_upsert", "wallet_delete", "expire_sweep"};
  const auto i = static_cast<size_t>(kind);
  return i < std::size(kNames) ? kNames[i] : "?";
}

std::string TimeText(int64_t time_us) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", absl::FromUnixMicros(time_us),
                          absl::UTCTimeZone());
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::optional<int64_t> ParseTime(const std::string& text) {
  if (!text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (text.size() > 18) return std::nullopt;
    return std::stoll(text);
  }
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &err)) return std::nullopt;
  return absl::ToUnixMicros(t);
}

// ShardDirs: DIR itself, or every shard-<i> of a data directory, by i.
std::vector<std::string> ShardDirs(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<std::pair<uint64_t, std::string>> shards;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !name.starts_with("shard-")) continue;
    const std::string digits = name.substr(6);
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    shards.emplace_back(std::stoull(digits), entry.path().string());
  }
  if (shards.empty()) return {dir};
  std::sort(shards.begin(), shards.end());
  std::vector<std::string> dirs;
  for (auto& [i, path] : shards) dirs.push_back(path);
  return dirs;
}

// SnapshotFiles lists the snapshots of a shard directory and its archive,
// newest first: (LSN, path).
std::vector<std::pair<uint64_t, std::string>> SnapshotFiles(FileSystem* fs, const std::string& dir) {
  std::vector<std::pair<uint64_t, std::string>> found;
  for (const std::string& from : {dir, dir + "/archive"}) {
    absl::StatusOr<std::vector<std::string>> names = fs->List(from);
    if (!names.ok()) continue;
    for (const std::string& name : *names) {
      if (std::optional<uint64_t> lsn = ParseSnapshotName(name)) {
        found.emplace_back(*lsn, from + "/" + name);
      }
    }
  }
  std::sort(found.rbegin(), found.rend());
  return found;
}

LogReaderOptions ReadEverything(const std::string& dir, uint64_t start_lsn) {
  LogReaderOptions options;
  options.start_lsn = start_lsn;
  options.archive_dir = dir + "/archive";
  return options;
}

// ---- verify ----------------------------------------------------------------

bool VerifyShard(FileSystem* fs, const std::string& dir) {
  bool clean = true;
  auto damaged = [&](const std::string& what) {
    std::printf("DAMAGED %s\n", what.c_str());
    clean = false;
  };
  absl::StatusOr<std::optional<Manifest>> manifest = ReadManifest(fs, dir);
  std::optional<Manifest> m;
  if (!manifest.ok()) {
    damaged(std::string(manifest.status().message()));
  } else if (!manifest->has_value()) {
    std::printf("note    %s/MANIFEST: none (a store from before manifests, or never opened)\n",
                dir.c_str());
  } else {
    m = **manifest;
    std::printf("ok      %s/MANIFEST: snapshots %zu, log from LSN %" PRIu64 "\n", dir.c_str(),
                m->snapshot_lsns.size(), m->log_from_lsn);
    for (uint64_t lsn : m->segments) {
      const std::string path = dir + "/wal/" + SegmentFileName(lsn);
      if (!fs->Open(path, OpenMode::kReadOnly).ok()) damaged(path + ": named by the manifest but missing");
    }
    for (uint64_t lsn : m->snapshot_lsns) {
      const std::string path = dir + "/" + SnapshotName(lsn);
      if (!fs->Open(path, OpenMode::kReadOnly).ok()) damaged(path + ": kept by the manifest but missing");
    }
  }
  for (const auto& [lsn, path] : SnapshotFiles(fs, dir)) {
    absl::StatusOr<std::string> bytes = ReadWholeFile(fs, path);
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        bytes.ok() ? Ledger::DecodeSnapshot(*bytes, LedgerOptions{})
                   : absl::StatusOr<std::unique_ptr<Ledger>>(bytes.status());
    if (!ledger.ok()) {
      damaged(absl::StrCat(path, ": ", ledger.status().message()));
    } else {
      std::printf("ok      %s: LSN %" PRIu64 ", digest %016" PRIx64 "\n", path.c_str(), lsn,
                  (*ledger)->Digest());
    }
  }
  absl::StatusOr<std::unique_ptr<LogReader>> reader =
      LogReader::Open(fs, dir + "/wal", ReadEverything(dir, 0));
  if (!reader.ok()) {
    damaged(absl::StrCat(dir, "/wal: ", reader.status().message()));
    return false;
  }
  LogRecord record;
  DecodedBatch batch;
  uint64_t records = 0, first = 0, last = 0;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&record);
    if (!more.ok()) {
      damaged(std::string(more.status().message()));
      break;
    }
    if (!*more) break;
    if (first == 0) first = record.lsn;
    last = record.lsn;
    ++records;
    if (record.type == RecordType::kBatch) {
      std::string_view payload(reinterpret_cast<const char*>(record.payload.data()),
                               record.payload.size());
      if (absl::Status s = DecodeBatch(payload, &batch); !s.ok()) {
        damaged(absl::StrCat(record.segment_path, " offset ", record.offset, " (LSN ", record.lsn,
                             "): ", s.message()));
        break;
      }
    }
  }
  const LogEnd& end = (*reader)->end();
  if (clean) {
    std::printf("ok      %s/wal: %" PRIu64 " records, LSN %" PRIu64 " to %" PRIu64 "\n",
                dir.c_str(), records, first, last);
    if (end.dropped_bytes > 0) {
      std::printf("note    %s: a torn tail of %" PRIu64
                  " bytes at offset %" PRIu64 " (cut at the next start; never acknowledged)\n",
                  end.segment_path.c_str(), end.dropped_bytes, end.offset);
    }
  }
  if (m && records > 0 && first > m->log_from_lsn) {
    damaged(absl::StrCat(dir, "/wal: the log starts at LSN ", first, ", the manifest needs it from ",
                         m->log_from_lsn));
  }
  if (m && m->current_snapshot_lsn() > 0 && end.next_lsn <= m->current_snapshot_lsn()) {
    damaged(absl::StrCat(dir, "/wal: the log ends at LSN ", end.next_lsn - 1,
                         " before the current snapshot's LSN ", m->current_snapshot_lsn()));
  }
  return clean;
}

// ---- dump ------------------------------------------------------------------

void PrintCommand(const Command& c, bool json, std::string* line) {
  if (json) {
    absl::StrAppend(line, "{\"kind\":\"", CommandKindName(c.kind), "\",\"op_id\":", c.op_id,
                    ",\"org\":", c.org_id, ",\"wallet\":", c.wallet_id, ",\"target\":",
                    c.target_id, ",\"asset\":", JsonString(c.asset.name()), ",\"amount\":",
                    c.amount, ",\"expires_at_us\":", c.expires_at_us, ",\"flags\":",
                    static_cast<int>(c.flags));
    if (!c.targets.empty()) {
      absl::StrAppend(line, ",\"targets\":[");
      for (size_t i = 0; i < c.targets.size(); ++i) {
        absl::StrAppend(line, i ? "," : "", "[", c.targets[i].wallet_id, ",", c.targets[i].amount,
                        "]");
      }
      absl::StrAppend(line, "]");
    }
    if (!c.text.empty()) absl::StrAppend(line, ",\"text\":", JsonString(c.text));
    if (!c.actor.empty()) absl::StrAppend(line, ",\"actor\":", JsonString(c.actor));
    absl::StrAppend(line, "}");
    return;
  }
  absl::StrAppend(line, CommandKindName(c.kind), "(op=", c.op_id, " org=", c.org_id);
  if (c.wallet_id != 0) absl::StrAppend(line, " wallet=", c.wallet_id);
  if (c.target_id != 0) absl::StrAppend(line, " target=", c.target_id);
  if (c.amount != 0) absl::StrAppend(line, " amount=", c.amount, " ", c.asset.name());
  if (c.expires_at_us != 0) absl::StrAppend(line, " expires=", TimeText(c.expires_at_us));
  if (!c.targets.empty()) absl::StrAppend(line, " targets=", c.targets.size());
  if (c.flags != 0) absl::StrAppend(line, " flags=", static_cast<int>(c.flags));
  if (!c.text.empty()) absl::StrAppend(line, " text=", JsonString(c.text));
  absl::StrAppend(line, ")");
}

bool DumpShard(FileSystem* fs, const std::string& dir, bool json) {
  absl::StatusOr<std::unique_ptr<LogReader>> reader =
      LogReader::Open(fs, dir + "/wal", ReadEverything(dir, 0));
  if (!reader.ok()) {
    std::fprintf(stderr, "tally-wal: %s\n", std::string(reader.status().message()).c_str());
    return false;
  }
  LogRecord record;
  DecodedBatch batch;
  std::string line;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&record);
    if (!more.ok()) {
      std::fprintf(stderr, "tally-wal: %s\n", std::string(more.status().message()).c_str());
      return false;
    }
    if (!*more) break;
    line.clear();
    if (record.type != RecordType::kBatch) {
      line = json ? absl::StrCat("{\"shard\":", JsonString(dir), ",\"lsn\":", record.lsn,
                                 ",\"type\":\"marker\",\"bytes\":", record.payload.size(), "}")
                  : absl::StrCat(record.lsn, " marker bytes=", record.payload.size());
      std::puts(line.c_str());
      continue;
    }
    std::string_view payload(reinterpret_cast<const char*>(record.payload.data()),
                             record.payload.size());
    if (absl::Status s = DecodeBatch(payload, &batch); !s.ok()) {
      std::fprintf(stderr, "tally-wal: %s offset %" PRIu64 " (LSN %" PRIu64 "): %s\n",
                   record.segment_path.c_str(), record.offset, record.lsn,
                   std::string(s.message()).c_str());
      return false;
    }
    if (json) {
      absl::StrAppend(&line, "{\"shard\":", JsonString(dir), ",\"lsn\":", record.lsn,
                      ",\"time\":\"", TimeText(batch.time_us), "\",\"time_us\":", batch.time_us,
                      ",\"commands\":[");
      for (size_t i = 0; i < batch.commands.size(); ++i) {
        if (i) line += ',';
        PrintCommand(batch.commands[i], true, &line);
      }
      line += "]}";
    } else {
      absl::StrAppend(&line, record.lsn, " ", TimeText(batch.time_us), " ",
                      batch.commands.size(), " commands:");
      for (const Command& c : batch.commands) {
        line += ' ';
        PrintCommand(c, false, &line);
      }
    }
    std::puts(line.c_str());
  }
  return true;
}

// ---- replay ----------------------------------------------------------------

bool ReplayShard(FileSystem* fs, const std::string& dir, int64_t until_us,
                 const std::string& to) {
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "tally-wal: %s: %s\n", dir.c_str(), why.c_str());
    return false;
  };
  // The newest snapshot (live or archived) taken at or before the time.
  std::unique_ptr<Ledger> ledger;
  uint64_t lsn = 0;
  for (const auto& [snap_lsn, path] : SnapshotFiles(fs, dir)) {
    absl::StatusOr<std::string> bytes = ReadWholeFile(fs, path);
    if (!bytes.ok()) continue;
    absl::StatusOr<std::unique_ptr<Ledger>> decoded =
        Ledger::DecodeSnapshot(*bytes, LedgerOptions{});
    if (!decoded.ok()) {
      std::fprintf(stderr, "tally-wal: skipped %s: %s\n", path.c_str(),
                   std::string(decoded.status().message()).c_str());
      continue;
    }
    if ((*decoded)->last_time_us() > until_us) continue;
    ledger = std::move(*decoded);
    lsn = snap_lsn;
    std::fprintf(stderr, "tally-wal: %s: from snapshot %s\n", dir.c_str(), path.c_str());
    break;
  }
  if (ledger == nullptr) ledger = std::make_unique<Ledger>(LedgerOptions{});
  absl::StatusOr<std::unique_ptr<LogReader>> reader =
      LogReader::Open(fs, dir + "/wal", ReadEverything(dir, lsn + 1));
  if (!reader.ok()) return fail(std::string(reader.status().message()));
  LogRecord record;
  DecodedBatch batch;
  BatchOutput out;
  uint64_t replayed = 0;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&record);
    if (!more.ok()) return fail(std::string(more.status().message()));
    if (!*more) break;
    if (record.type != RecordType::kBatch) {
      lsn = record.lsn;
      continue;
    }
    std::string_view payload(reinterpret_cast<const char*>(record.payload.data()),
                             record.payload.size());
    if (absl::Status s = DecodeBatch(payload, &batch); !s.ok()) {
      return fail(absl::StrCat(record.segment_path, " offset ", record.offset, ": ", s.message()));
    }
    if (batch.time_us > until_us) break;  // batches are in time order
    ledger->Apply(batch.time_us, batch.commands, &out);
    lsn = record.lsn;
    ++replayed;
  }
  // The new store: the state as one snapshot, a manifest naming it, an empty log.
  PosixFileSystem posix;
  std::error_code ec;
  std::filesystem::create_directories(to + "/wal", ec);
  if (ec) return fail(absl::StrCat("create ", to, ": ", ec.message()));
  if (absl::Status s = WriteSnapshotFile(&posix, to, *ledger, lsn); !s.ok()) {
    return fail(std::string(s.message()));
  }
  Manifest m;
  m.snapshot_lsns = {lsn};
  m.log_from_lsn = lsn + 1;
  if (absl::Status s = WriteManifest(&posix, to, m); !s.ok()) return fail(std::string(s.message()));
  std::printf("%s: lsn %" PRIu64 " time %s replayed %" PRIu64 " digest %016" PRIx64 "\n",
              to.c_str(), lsn, ledger->last_time_us() > 0 ? TimeText(ledger->last_time_us()).c_str() : "-",
              replayed, ledger->Digest());
  return true;
}

bool EmptyOrMissing(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return true;
  return std::filesystem::is_directory(dir, ec) && std::filesystem::is_empty(dir, ec);
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2) return Usage();
  const std::string command = args[0];
  const std::string dir = args[1];
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::fprintf(stderr, "tally-wal: %s: not a directory\n", dir.c_str());
    return kExitUsage;
  }
  PosixFileSystem fs;
  const std::vector<std::string> shards = ShardDirs(dir);
  if (command == "verify") {
    if (args.size() != 2) return Usage();
    bool clean = true;
    for (const std::string& shard : shards) clean &= VerifyShard(&fs, shard);
    std::printf("%s\n", clean ? "clean" : "damaged");
    return clean ? kExitOk : kExitDamaged;
  }
  if (command == "dump") {
    bool json = false;
    for (size_t i = 2; i < args.size(); ++i) {
      if (args[i] == "--json") {
        json = true;
      } else {
        return Usage();
      }
    }
    bool ok = true;
    for (const std::string& shard : shards) ok &= DumpShard(&fs, shard, json);
    return ok ? kExitOk : kExitDamaged;
  }
  if (command == "replay") {
    std::optional<int64_t> until;
    std::string to;
    for (size_t i = 2; i < args.size(); ++i) {
      if (args[i] == "--until" && i + 1 < args.size()) {
        until = ParseTime(args[++i]);
        if (!until) {
          std::fprintf(stderr, "tally-wal: bad --until time '%s'\n", args[i].c_str());
          return kExitUsage;
        }
      } else if (args[i] == "--to" && i + 1 < args.size()) {
        to = args[++i];
      } else {
        return Usage();
      }
    }
    if (!until || to.empty()) return Usage();
    if (!EmptyOrMissing(to)) {
      std::fprintf(stderr, "tally-wal: %s exists and is not empty\n", to.c_str());
      return kExitUsage;
    }
    const bool data_dir = shards.size() > 1 || shards[0] != dir;
    for (const std::string& shard : shards) {
      const std::string target =
          data_dir ? to + "/" + std::filesystem::path(shard).filename().string() : to;
      if (!ReplayShard(&fs, shard, *until, target)) return kExitDamaged;
    }
    if (data_dir) {  // what tallyd needs to start on the new directory
      for (const char* name : {"shards", "tokens"}) {
        if (std::filesystem::exists(dir + "/" + name, ec)) {
          std::filesystem::copy_file(dir + "/" + name, to + "/" + name, ec);
          if (ec) {
            std::fprintf(stderr, "tally-wal: copy %s: %s\n", name, ec.message().c_str());
            return kExitDamaged;
          }
        }
      }
    }
    return kExitOk;
  }
  return Usage();
}

}  // namespace
}  // namespace tally::wal

int main(int argc, char** argv) { return tally::wal::Main(argc, argv); }
