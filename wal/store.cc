#include "wal/store.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <optional>

#include "absl/strings/str_cat.h"
#include "tally/codec.h"
#include "wal/log_reader.h"

namespace tally::wal {
namespace {

constexpr std::string_view kSnapshotPrefix = "snapshot-";
constexpr std::string_view kSnapshotSuffix = ".snap";

// ParseSnapshotName returns the LSN of a snapshot file name.
std::optional<uint64_t> ParseSnapshotName(std::string_view name) {
  if (name.size() != kSnapshotPrefix.size() + 20 + kSnapshotSuffix.size() ||
      name.substr(0, kSnapshotPrefix.size()) != kSnapshotPrefix ||
      name.substr(name.size() - kSnapshotSuffix.size()) != kSnapshotSuffix) {
    return std::nullopt;
  }
  uint64_t lsn = 0;
  for (char c : name.substr(kSnapshotPrefix.size(), 20)) {
    if (c < '0' || c > '9') return std::nullopt;
    lsn = lsn * 10 + static_cast<uint64_t>(c - '0');
  }
  return lsn;
}

absl::StatusOr<std::string> ReadWhole(FileSystem* fs, const std::string& path) {
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

std::span<const std::byte> AsBytes(const std::string& s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

}  // namespace

std::string SnapshotName(uint64_t lsn) {
  char digits[21];
  std::snprintf(digits, sizeof digits, "%020" PRIu64, lsn);
  return std::string(kSnapshotPrefix) + digits + std::string(kSnapshotSuffix);
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(FileSystem* fs, std::string dir,
                                                   const StoreOptions& options) {
  std::unique_ptr<Store> store(new Store(fs, std::move(dir)));
  if (absl::Status s = store->Recover(options); !s.ok()) return s;
  return store;
}

absl::Status Store::Recover(const StoreOptions& options) {
  const std::string log_dir = absl::StrCat(dir_, "/wal");
  (void)fs_->CreateDir(dir_);  // exists already after the first start
  (void)fs_->CreateDir(log_dir);
  absl::StatusOr<std::vector<std::string>> names = fs_->List(dir_);
  if (!names.ok()) return names.status();

  // Newest snapshot first; a damaged one falls back to the one before it.
  std::vector<std::pair<uint64_t, std::string>> snapshots;
  for (const std::string& name : *names) {
    if (std::optional<uint64_t> lsn = ParseSnapshotName(name)) snapshots.emplace_back(*lsn, name);
  }
  std::sort(snapshots.rbegin(), snapshots.rend());
  for (const auto& [lsn, name] : snapshots) {
    std::string path = absl::StrCat(dir_, "/", name);
    absl::StatusOr<std::string> bytes = ReadWhole(fs_, path);
    absl::StatusOr<std::unique_ptr<Ledger>> ledger =
        bytes.ok() ? Ledger::DecodeSnapshot(*bytes, options.ledger)
                   : absl::StatusOr<std::unique_ptr<Ledger>>(bytes.status());
    if (!ledger.ok()) {
      report_.snapshots_skipped.push_back(path + ": " + std::string(ledger.status().message()));
      continue;
    }
    ledger_ = std::move(*ledger);
    report_.snapshot_path = path;
    report_.snapshot_lsn = lsn;
    break;
  }
  if (ledger_ == nullptr) ledger_ = std::make_unique<Ledger>(options.ledger);

  // Replay every record after the snapshot.  A log that no longer reaches
  // back to it (its segments removed) is an error from the reader: a damaged
  // newest snapshot falls back only as far as the log still covers.
  LogReaderOptions read_options;
  read_options.start_lsn = report_.snapshot_lsn + 1;
  absl::StatusOr<std::unique_ptr<LogReader>> reader = LogReader::Open(fs_, log_dir, read_options);
  if (!reader.ok()) return reader.status();
  LogRecord record;
  DecodedBatch batch;
  BatchOutput out;
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&record);
    if (!more.ok()) return more.status();
    if (!*more) break;
    if (record.type != RecordType::kBatch) continue;
    std::string_view payload(reinterpret_cast<const char*>(record.payload.data()),
                             record.payload.size());
    if (absl::Status s = DecodeBatch(payload, &batch); !s.ok()) {
      return absl::DataLossError(absl::StrCat(record.segment_path, " offset ", record.offset,
                                              " (LSN ", record.lsn, "): ",
                                              std::string(s.message())));
    }
    ledger_->Apply(batch.time_us, batch.commands, &out);
    ++report_.records_replayed;
    report_.bytes_replayed += record.payload.size();
  }
  const LogEnd& end = (*reader)->end();
  report_.torn_bytes_dropped = end.dropped_bytes;
  if (end.next_lsn <= report_.snapshot_lsn) {
    return absl::DataLossError(absl::StrCat("log ends at LSN ", end.next_lsn - 1,
                                            " before snapshot LSN ", report_.snapshot_lsn));
  }
  absl::StatusOr<std::unique_ptr<LogWriter>> writer =
      LogWriter::Resume(fs_, log_dir, end, options.log);
  if (!writer.ok()) return writer.status();
  writer_ = std::move(*writer);
  next_lsn_ = end.next_lsn;
  report_.next_lsn = next_lsn_;
  return absl::OkStatus();
}

absl::Status Store::Fail(absl::Status status) {
  if (failed_.ok()) failed_ = status;
  return failed_;
}

absl::StatusOr<uint64_t> Store::Apply(int64_t time_us, std::span<const Command> commands,
                                      BatchOutput* out) {
  if (!failed_.ok()) return failed_;
  encoded_.clear();
  // The batch is logged as applied: at the time the ledger applied it.
  int64_t at_us = std::max(time_us, ledger_->last_time_us());
  if (absl::Status s = EncodeBatch(at_us, commands, &encoded_); !s.ok()) return s;
  ledger_->Apply(at_us, commands, out);
  absl::StatusOr<uint64_t> lsn = writer_->Append(RecordType::kBatch, AsBytes(encoded_));
  if (!lsn.ok()) return Fail(lsn.status());  // the ledger is now ahead of the log: stop
  next_lsn_ = *lsn + 1;
  return *lsn;
}

absl::Status Store::Sync() {
  if (!failed_.ok()) return failed_;
  if (absl::Status s = writer_->Sync(); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Store::WriteSnapshot() {
  if (absl::Status s = Sync(); !s.ok()) return s;
  uint64_t lsn = last_lsn();
  std::string bytes;
  ledger_->EncodeSnapshot(&bytes);
  const std::string path = absl::StrCat(dir_, "/", SnapshotName(lsn));
  const std::string tmp = absl::StrCat(path, ".tmp");
  (void)fs_->Remove(tmp);  // left by a crash while writing it
  absl::StatusOr<std::unique_ptr<File>> file = fs_->Open(tmp, OpenMode::kCreate);
  if (!file.ok()) return file.status();
  if (absl::Status s = (*file)->PWrite(0, AsBytes(bytes)); !s.ok()) return s;
  if (absl::Status s = (*file)->Sync(); !s.ok()) return s;
  if (absl::Status s = fs_->Rename(tmp, path); !s.ok()) return s;
  if (absl::Status s = fs_->SyncDir(dir_); !s.ok()) return s;
  return lsn;
}

}  // namespace tally::wal
