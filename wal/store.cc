#include "wal/store.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tally/assert.h"
#include "tally/codec.h"
#include "wal/log_reader.h"
#include "wal/prefaulter.h"

namespace tally::wal {
namespace {

constexpr std::string_view kSnapshotPrefix = "snapshot-";
constexpr std::string_view kSnapshotSuffix = ".snap";
constexpr char kArchiveDir[] = "archive";
// After a failed snapshot, the next is not tried before this much time.
constexpr int64_t kSnapshotRetryMs = 1000;

// NeededSegments is the part of `live` (first LSNs, ascending) a log from
// `log_from` on needs: every segment but those wholly before it.
std::vector<uint64_t> NeededSegments(const std::vector<uint64_t>& live, uint64_t log_from) {
  std::vector<uint64_t> needed;
  for (size_t i = 0; i < live.size(); ++i) {
    const bool wholly_before = i + 1 < live.size() && live[i + 1] <= log_from;
    if (!wholly_before) needed.push_back(live[i]);
  }
  return needed;
}

double ThreadCpuSeconds() {
  timespec ts;
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// ThreadMinorFaults counts the calling thread's page faults that needed no
// I/O so far (a first touch of fresh memory is one).
int64_t ThreadMinorFaults() {
  rusage usage;
  if (::getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
  return usage.ru_minflt;
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// RecoveryPrefaulterOptions: the pre-fault thread beside a snapshot's load
// or a replay, which write memory as fast as a thread can (polled every
// 2 ms, not the live shard's 20).
PrefaulterOptions RecoveryPrefaulterOptions(const StoreOptions& options,
                                            std::string thread_name) {
  PrefaulterOptions prefault;
  prefault.thread_name = std::move(thread_name);
  prefault.ahead_entries = options.replay_prefault_ahead_entries;
  prefault.poll_min = std::chrono::milliseconds(2);
  prefault.poll_max = std::chrono::milliseconds(20);
  return prefault;
}

}  // namespace

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

std::string SnapshotName(uint64_t lsn) {
  char digits[21];
  std::snprintf(digits, sizeof digits, "%020" PRIu64, lsn);
  return std::string(kSnapshotPrefix) + digits + std::string(kSnapshotSuffix);
}

absl::Status WriteSnapshotFile(FileSystem* fs, const std::string& dir, const Ledger& ledger,
                               uint64_t lsn) {
  std::string bytes;
  ledger.EncodeSnapshot(&bytes);
  return WriteFileDurably(fs, dir, absl::StrCat(dir, "/", SnapshotName(lsn)), bytes);
}

namespace {

// RemoveInSteps removes a retired file so that freeing its blocks never
// queues much at the device at once: renamed to <path>.tmp (a crash in the
// middle leaves a leftover the next start removes, never a shortened file
// under a live name), cut store_remove_step_bytes at a time from the end,
// then unlinked.  On a file system mounted with `discard` (this machine's
// ext4, which has no journal) freeing blocks issues the discard inside the
// call: one unlink of a 667 MB snapshot put ~667 MB of discard ahead of the
// log's fdatasync (docs/DURABILITY.md).
absl::Status RemoveInSteps(FileSystem* fs, const std::string& path) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  if (absl::Status s = fs->Rename(path, tmp); !s.ok()) return s;
  {
    absl::StatusOr<std::unique_ptr<File>> file = fs->Open(tmp, OpenMode::kReadWrite);
    if (!file.ok()) return file.status();
    absl::StatusOr<uint64_t> size = (*file)->Size();
    if (!size.ok()) return size.status();
    for (uint64_t left = *size; left > store_remove_step_bytes;) {
      left -= store_remove_step_bytes;
      if (absl::Status s = (*file)->Truncate(left); !s.ok()) return s;
    }
  }
  return fs->Remove(tmp);
}

// RemoveLeftovers removes the *.tmp files of `dir`: a crash while writing a
// snapshot, a manifest or a segment, or while removing a retired file.
void RemoveLeftovers(FileSystem* fs, const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = fs->List(dir);
  if (!names.ok()) return;  // a missing archive/: nothing to remove
  for (const std::string& name : *names) {
    if (name.ends_with(".tmp")) (void)fs->Remove(absl::StrCat(dir, "/", name));
  }
}

}  // namespace

Store::Store(FileSystem* fs, std::string dir, const StoreOptions& options)
    : fs_(fs), dir_(std::move(dir)), options_(options) {}

Store::~Store() {
  if (child_pid_ > 0) {  // shutting down: the half-written snapshot is left as a .tmp
    ::kill(child_pid_, SIGKILL);
    while (::waitpid(child_pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (reserve_ != nullptr) ::munmap(reserve_, options_.fork_reserve_bytes);
}

bool Store::SnapshotsFork() const {
  return options_.snapshot_in_child && dynamic_cast<PosixFileSystem*>(fs_) != nullptr;
}

void Store::FillReserve() {
  if (options_.fork_reserve_bytes == 0 || reserve_touched_bytes_ >= options_.fork_reserve_bytes) {
    return;
  }
  // Only a store whose periodic snapshots fork needs one.
  const bool periodic = options_.snapshot_every_records > 0 || options_.snapshot_every_ms > 0;
  if (!periodic || !SnapshotsFork()) return;
  if (reserve_ == nullptr) {
    void* p = ::mmap(nullptr, options_.fork_reserve_bytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return;  // a reserve is an optimisation: none is fine
    reserve_ = static_cast<unsigned char*>(p);
    // Ordinary pages: a huge page freed goes back whole, and a 4 KiB
    // copy-on-write fault is served from the small pages.  Never shared with
    // a child (it is empty at a fork anyway).
    (void)::madvise(reserve_, options_.fork_reserve_bytes, MADV_NOHUGEPAGE);
    (void)::madvise(reserve_, options_.fork_reserve_bytes, MADV_DONTFORK);
  }
  const uint64_t step = std::min(std::max<uint64_t>(options_.fork_reserve_step_bytes, 4096),
                                 options_.fork_reserve_bytes - reserve_touched_bytes_);
  constexpr uint64_t page_bytes = 4096;
  for (uint64_t at = 0; at < step; at += page_bytes) {
    reserve_[reserve_touched_bytes_ + at] = 1;
  }
  reserve_touched_bytes_ += step;
}

void Store::ReleaseReserve() {
  if (reserve_ == nullptr || reserve_touched_bytes_ == 0) return;
  // In steps: freeing 64 MiB of small pages is ~5 ms of the writer's CPU,
  // and the first batch after the fork needs ~12 MiB of new pages.
  const uint64_t step = std::min(std::max<uint64_t>(options_.fork_reserve_release_bytes, 4096),
                                 reserve_touched_bytes_);
  reserve_touched_bytes_ -= step;
  (void)::madvise(reserve_ + reserve_touched_bytes_, step, MADV_DONTNEED);
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(FileSystem* fs, std::string dir,
                                                   const StoreOptions& options) {
  if (options.snapshots_kept < 1 || options.snapshots_kept > store_snapshots_kept_max) {
    return absl::InvalidArgumentError(absl::StrCat("snapshots_kept must be in [1, ",
                                                   store_snapshots_kept_max, "]"));
  }
  if (options.archive_bytes_max == 0) {
    return absl::InvalidArgumentError("archive_bytes_max must be more than 0");
  }
  std::unique_ptr<Store> store(new Store(fs, std::move(dir), options));
  if (absl::Status s = store->Recover(); !s.ok()) return s;
  return store;
}

void Store::Log(std::string_view line) const {
  if (options_.log_sink) {
    options_.log_sink(line);
  } else {
    std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
  }
}

absl::StatusOr<std::vector<uint64_t>> Store::LiveSegments() const {
  absl::StatusOr<std::vector<std::string>> names = fs_->List(absl::StrCat(dir_, "/wal"));
  if (!names.ok()) return names.status();
  std::vector<uint64_t> lsns;
  for (const std::string& name : *names) {
    if (std::optional<uint64_t> lsn = ParseSegmentFileName(name)) lsns.push_back(*lsn);
  }
  std::sort(lsns.begin(), lsns.end());
  return lsns;
}

absl::Status Store::Recover() {
  const std::string log_dir = absl::StrCat(dir_, "/wal");
  (void)fs_->CreateDir(dir_);  // exists already after the first start
  (void)fs_->CreateDir(log_dir);
  absl::StatusOr<std::vector<std::string>> names = fs_->List(dir_);
  if (!names.ok()) return names.status();
  RemoveLeftovers(fs_, dir_);
  RemoveLeftovers(fs_, log_dir);  // no writer yet: its spare goes too
  RemoveLeftovers(fs_, absl::StrCat(dir_, "/", kArchiveDir));

  absl::StatusOr<std::optional<Manifest>> manifest = ReadManifest(fs_, dir_);
  if (!manifest.ok()) return manifest.status();  // damaged: never guess what is live
  report_.had_manifest = manifest->has_value();

  // The snapshots to try, newest first: the manifest's, or (a store from
  // before manifests) every snapshot file.
  std::vector<uint64_t> candidates;
  if (report_.had_manifest) {
    manifest_ = **manifest;
    candidates = manifest_.snapshot_lsns;
    absl::StatusOr<std::vector<uint64_t>> live = LiveSegments();
    if (!live.ok()) return live.status();
    for (uint64_t lsn : manifest_.segments) {
      if (!std::binary_search(live->begin(), live->end(), lsn)) {
        return absl::DataLossError(absl::StrCat(log_dir, "/", SegmentFileName(lsn),
                                                ": named by ", dir_, "/", kManifestName,
                                                " but missing"));
      }
    }
  } else {
    for (const std::string& name : *names) {
      if (std::optional<uint64_t> lsn = ParseSnapshotName(name)) candidates.push_back(*lsn);
    }
    std::sort(candidates.rbegin(), candidates.rend());
  }
  if (absl::Status s = LoadSnapshot(candidates); !s.ok()) return s;
  if (absl::Status s = Replay(); !s.ok()) return s;

  const WritePath history_path = options_.history_direct_io && options_.log.direct_io
                                     ? WritePath::kDirect
                                     : WritePath::kPageCache;
  absl::StatusOr<std::unique_ptr<HistoryFile>> history = HistoryFile::Open(
      fs_, absl::StrCat(dir_, "/history"), *ledger_, &report_.history, history_path);
  if (!history.ok()) return history.status();
  history_ = std::move(*history);
  if (report_.history.entries_lost > 0) {
    Log(absl::StrCat("recovery: ", dir_, "/history: ", report_.history.entries_lost,
                     " damaged entries older than the RAM window; queries stop before them"));
  }

  if (!report_.had_manifest) {
    // The first manifest: the snapshot recovery used (if any), and the log from it.
    manifest_ = Manifest{};
    if (!report_.snapshot_path.empty()) manifest_.snapshot_lsns = {report_.snapshot_lsn};
    manifest_.log_from_lsn = report_.snapshot_lsn + 1;
    absl::StatusOr<std::vector<uint64_t>> live = LiveSegments();
    if (!live.ok()) return live.status();
    manifest_.segments = NeededSegments(*live, manifest_.log_from_lsn);
    if (absl::Status s = WriteManifest(fs_, dir_, manifest_); !s.ok()) return s;
  }
  // Segments started after the manifest was written (by a roll a crash cut
  // short of its manifest, a snapshot child's run, or the resume just now).
  if (absl::Status s = RecordSegments(); !s.ok()) return s;
  // Finish a retirement a crash interrupted (or clean up a pre-manifest store).
  return Retire(&report_.retired);
}

absl::Status Store::LoadSnapshot(const std::vector<uint64_t>& candidates) {
  // Newest first; a damaged one falls back to the one before it.
  for (uint64_t lsn : candidates) {
    const std::string path = absl::StrCat(dir_, "/", SnapshotName(lsn));
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = ThreadCpuSeconds();
    // Real files are mapped (no copy); others are read.
    std::unique_ptr<MappedFile> mapped;
    std::string read;
    absl::Status got;
    if (auto* posix = dynamic_cast<PosixFileSystem*>(fs_); posix != nullptr) {
      absl::StatusOr<std::unique_ptr<MappedFile>> m = posix->MapReadOnly(path);
      if (m.ok()) mapped = std::move(*m);
      got = m.status();
    } else {
      absl::StatusOr<std::string> r = ReadWholeFile(fs_, path);
      if (r.ok()) read = std::move(*r);
      got = r.status();
    }
    const std::string_view bytes = mapped ? mapped->bytes() : std::string_view(read);
    const int64_t faults_start = ThreadMinorFaults();
    auto ledger = std::make_unique<Ledger>(options_.ledger);
    uint64_t prefaulted_bytes = 0;
    if (got.ok()) {
      // The load writes the op-id table at random and the history ring and
      // op-id entries in order, all fresh memory (a host fault each on this
      // VM): fault them in on another thread while this one decodes the
      // wallets and orgs that come first in the file (docs/MEMORY.md,
      // "Pre-faulting").  The window is the replay's, from the ring's
      // start; no thread unless ledger.prefault.  Stopped before the
      // ledger can go.
      Prefaulter prefaulter(ledger->PrefaultRegions(), ledger->history_entries_total(),
                            RecoveryPrefaulterOptions(options_, "prefault-load"));
      got = ledger->LoadSnapshot(bytes);
      prefaulter.Stop();
      prefaulted_bytes = prefaulter.done_bytes();
    }
    if (!got.ok()) {
      report_.snapshots_skipped.push_back(path + ": " + std::string(got.message()));
      Log(absl::StrCat("recovery: skipped snapshot ", report_.snapshots_skipped.back()));
      continue;
    }
    ledger_ = std::move(ledger);
    report_.snapshot_prefaulted_bytes = prefaulted_bytes;
    report_.snapshot_minor_faults = static_cast<uint64_t>(ThreadMinorFaults() - faults_start);
    report_.snapshot_path = path;
    report_.snapshot_lsn = lsn;
    report_.snapshot_load_s = SecondsSince(start);
    report_.snapshot_load_cpu_s = ThreadCpuSeconds() - cpu_start;
    Log(absl::StrFormat(
        "recovery: %s: snapshot %s (LSN %d, %.1f MB) loaded in %.2f s, %.2f s CPU, "
        "%d page faults, %.0f MB pre-faulted beside it",
        dir_, path, lsn, static_cast<double>(bytes.size()) / 1e6, report_.snapshot_load_s,
        report_.snapshot_load_cpu_s, report_.snapshot_minor_faults,
        static_cast<double>(report_.snapshot_prefaulted_bytes) / 1e6));
    return absl::OkStatus();
  }
  ledger_ = std::make_unique<Ledger>(options_.ledger);
  return absl::OkStatus();
}

absl::Status Store::Replay() {
  // Replay every record after the snapshot.  A log that no longer reaches
  // back to it (its segments removed) is an error from the reader: a damaged
  // newest snapshot falls back only as far as the log still covers.
  const std::string log_dir = absl::StrCat(dir_, "/wal");
  LogReaderOptions read_options;
  read_options.start_lsn = report_.snapshot_lsn + 1;
  absl::StatusOr<std::unique_ptr<LogReader>> reader = LogReader::Open(fs_, log_dir, read_options);
  if (!reader.ok()) return reader.status();

  // For the progress lines: the bytes of the segments to read (the first
  // is read from its start, as the reader does).
  uint64_t total_bytes = 0;
  absl::StatusOr<std::vector<uint64_t>> live = LiveSegments();
  if (!live.ok()) return live.status();
  for (size_t i = 0; i < live->size(); ++i) {
    if (i + 1 < live->size() && (*live)[i + 1] <= read_options.start_lsn) continue;
    absl::StatusOr<std::unique_ptr<File>> f =
        fs_->Open(absl::StrCat(log_dir, "/", SegmentFileName((*live)[i])), OpenMode::kReadOnly);
    if (!f.ok()) continue;  // the reader names it
    if (absl::StatusOr<uint64_t> size = (*f)->Size(); size.ok()) total_bytes += *size;
  }

  const auto start = std::chrono::steady_clock::now();
  const double cpu_start = ThreadCpuSeconds();
  const int64_t faults_start = ThreadMinorFaults();
  auto last_progress = start;
  uint64_t bytes_done_before = 0;  // whole segments already read
  std::string segment;             // the segment being read
  uint64_t segment_bytes = 0;
  LogRecord record;
  DecodedBatch batch;
  BatchOutput out;
  // The replay grows the history ring and the op-id memory into fresh pages
  // as fast as it applies: fault them in ahead of it on another thread
  // (docs/MEMORY.md, "Pre-faulting").  No thread unless ledger.prefault.
  Prefaulter prefaulter(ledger_->PrefaultRegions(), ledger_->history_entries_total(),
                        RecoveryPrefaulterOptions(options_, "prefault-replay"));
  while (true) {
    absl::StatusOr<bool> more = (*reader)->Next(&record);
    if (!more.ok()) return more.status();
    if (!*more) break;
    if (record.segment_path != segment) {
      bytes_done_before += segment_bytes;
      segment = record.segment_path;
      segment_bytes = 0;
      if (absl::StatusOr<std::unique_ptr<File>> f = fs_->Open(segment, OpenMode::kReadOnly);
          f.ok()) {
        segment_bytes = (*f)->Size().value_or(0);
      }
    }
    if (record.type != RecordType::kBatch) continue;
    std::string_view payload(reinterpret_cast<const char*>(record.payload.data()),
                             record.payload.size());
    if (absl::Status s = DecodeBatch(payload, &batch); !s.ok()) {
      return absl::DataLossError(absl::StrCat(record.segment_path, " offset ", record.offset,
                                              " (LSN ", record.lsn, "): ",
                                              std::string(s.message())));
    }
    ledger_->Apply(batch.time_us, batch.commands, &out);
    prefaulter.Advance(ledger_->history_entries_total());
    ++report_.records_replayed;
    report_.commands_replayed += batch.commands.size();
    report_.bytes_replayed += record.payload.size();
    if ((report_.records_replayed & 255) == 0 || options_.progress_every_ms == 0) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_progress >= std::chrono::milliseconds(options_.progress_every_ms)) {
        last_progress = now;
        const uint64_t at = bytes_done_before + record.offset;
        const double seconds = std::max(SecondsSince(start), 1e-9);
        Log(absl::StrFormat(
            "recovery: %s: replaying: %d records, %.1f MB, %.0f%%, %.2f M records/s, "
            "%.2f M commands/s",
            dir_, report_.records_replayed, static_cast<double>(report_.bytes_replayed) / 1e6,
            total_bytes == 0 ? 100.0 : 100.0 * static_cast<double>(at) /
                                           static_cast<double>(total_bytes),
            static_cast<double>(report_.records_replayed) / seconds / 1e6,
            static_cast<double>(report_.commands_replayed) / seconds / 1e6));
      }
    }
  }
  prefaulter.Stop();
  report_.replay_s = SecondsSince(start);
  report_.replay_cpu_s = ThreadCpuSeconds() - cpu_start;
  report_.replay_prefaulted_bytes = prefaulter.done_bytes();
  report_.replay_minor_faults = static_cast<uint64_t>(ThreadMinorFaults() - faults_start);
  const LogEnd& end = (*reader)->end();
  report_.torn_bytes_dropped = end.dropped_bytes;
  if (end.dropped_bytes > 0) {
    Log(absl::StrCat("recovery: ", end.segment_path, ": cut a torn tail of ", end.dropped_bytes,
                     " bytes at offset ", end.offset,
                     " (a write the crash interrupted; never acknowledged)"));
  }
  if (end.next_lsn <= report_.snapshot_lsn) {
    return absl::DataLossError(absl::StrCat("log ends at LSN ", end.next_lsn - 1,
                                            " before snapshot LSN ", report_.snapshot_lsn));
  }
  if (report_.records_replayed > 0) {
    const double seconds = std::max(SecondsSince(start), 1e-9);
    Log(absl::StrFormat(
        "recovery: %s: replayed %d records, %d commands (%.1f MB) in %.2f s, %.2f M records/s, "
        "%.2f M commands/s, %.2f s CPU",
        dir_, report_.records_replayed, report_.commands_replayed,
        static_cast<double>(report_.bytes_replayed) / 1e6, seconds,
        static_cast<double>(report_.records_replayed) / seconds / 1e6,
        static_cast<double>(report_.commands_replayed) / seconds / 1e6, report_.replay_cpu_s));
  }
  absl::StatusOr<std::unique_ptr<LogWriter>> writer =
      LogWriter::Resume(fs_, log_dir, end, options_.log);
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
  return AppendApplied(encoded_);
}

absl::StatusOr<uint64_t> Store::ApplyEncoded(int64_t time_us,
                                             std::span<const Command* const> commands,
                                             std::string* record, BatchOutput* out) {
  if (!failed_.ok()) return failed_;
  if (commands.size() > batch_commands_max) {
    return absl::InvalidArgumentError("batch: more than batch_commands_max commands");
  }
  TALLY_ASSERT(record->size() >= batch_header_bytes + commands.size() * command_core_bytes);
  int64_t at_us = std::max(time_us, ledger_->last_time_us());
  WriteBatchHeader(at_us, static_cast<uint32_t>(commands.size()), record->data());
  ledger_->Apply(at_us, commands, out);
  return AppendApplied(*record);
}

absl::StatusOr<uint64_t> Store::AppendApplied(std::string_view record) {
  absl::StatusOr<uint64_t> lsn = writer_->Append(
      RecordType::kBatch, std::as_bytes(std::span(record.data(), record.size())));
  if (!lsn.ok()) return Fail(lsn.status());  // the ledger is now ahead of the log: stop
  next_lsn_ = *lsn + 1;
  if (writer_->segments_started() != segments_seen_) {  // the log rolled: name the new segment
    if (absl::Status s = RecordSegments(); !s.ok()) return Fail(s);
  }
  // The batch's history entries, to the page cache; synced before a snapshot
  // lets the log records that also hold them go.
  if (absl::Status s = history_->Append(*ledger_); !s.ok()) return Fail(s);
  return *lsn;
}

absl::Status Store::Sync() {
  if (!failed_.ok()) return failed_;
  if (absl::Status s = writer_->Sync(); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::Status Store::StartSync(LogWriter::SyncDone then, LogWriter::SyncOn on) {
  if (!failed_.ok()) {
    if (then) then(false);
    return failed_;
  }
  if (absl::Status s = writer_->StartSync(std::move(then), on); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::Status Store::WaitSync() {
  if (absl::Status s = writer_->WaitSync(); !s.ok()) return Fail(s);
  return absl::OkStatus();
}

absl::StatusOr<HistoryPage> Store::GetHistory(const HistoryQuery& query) const {
  return history_->GetHistory(*ledger_, query);
}

absl::StatusOr<int64_t> Store::BalanceAt(uint64_t org_id, uint64_t wallet_id, Asset asset,
                                         int64_t at_us) const {
  return history_->BalanceAt(*ledger_, org_id, wallet_id, asset, at_us);
}

absl::StatusOr<uint64_t> Store::WriteSnapshot() {
  if (child_pid_ > 0) (void)ReapSnapshot(/*block=*/true);  // its error was logged
  if (absl::Status s = Sync(); !s.ok()) return s;
  const uint64_t lsn = last_lsn();
  if (absl::Status s = WriteSnapshotFile(fs_, dir_, *ledger_, lsn); !s.ok()) return s;
  if (absl::Status s = history_->Sync(); !s.ok()) return Fail(s);
  if (absl::Status s = CommitSnapshot(lsn); !s.ok()) return s;
  return lsn;
}

absl::Status Store::MaybeSnapshot(int64_t now_ms) {
  if (!failed_.ok()) return failed_;
  if (child_pid_ > 0) {
    ReleaseReserve();  // the next batch's copy-on-write faults take these pages
    absl::Status s = ReapSnapshot(/*block=*/false);
    if (!s.ok() && failed_.ok()) retry_after_ms_ = now_ms + kSnapshotRetryMs;
    return s;
  }
  FillReserve();
  if (last_snapshot_ms_ < 0) last_snapshot_ms_ = now_ms;
  const uint64_t since = last_lsn() - std::min(last_lsn(), manifest_.current_snapshot_lsn());
  const bool due_by_records =
      options_.snapshot_every_records > 0 && since >= options_.snapshot_every_records;
  const bool due_by_time =
      options_.snapshot_every_ms > 0 && now_ms - last_snapshot_ms_ >= options_.snapshot_every_ms;
  if (since == 0 || !(due_by_records || due_by_time)) return absl::OkStatus();
  if (now_ms < retry_after_ms_) return absl::OkStatus();  // the last one failed just now
  last_snapshot_ms_ = now_ms;
  absl::Status s = StartSnapshot();
  if (!s.ok() && failed_.ok()) retry_after_ms_ = now_ms + kSnapshotRetryMs;
  return s;
}

absl::Status Store::StartSnapshot() {
  if (absl::Status s = Sync(); !s.ok()) return s;  // the snapshot covers only durable records
  const uint64_t lsn = last_lsn();
  if (!SnapshotsFork()) {
    if (absl::Status s = WriteSnapshotFile(fs_, dir_, *ledger_, lsn); !s.ok()) return s;
    if (absl::Status s = history_->Sync(); !s.ok()) return Fail(s);
    return CommitSnapshot(lsn);
  }
  const pid_t parent = ::getpid();
  ReleaseReserve();  // for the first batch's copy-on-write faults after the fork
  const pid_t pid = ::fork();
  if (pid < 0) return absl::ErrnoToStatus(errno, "fork for a snapshot");
  if (pid == 0) {
    // The child: a copy-on-write image of the ledger at `lsn`.  It dies with
    // the writer (a later writer must not meet an orphan renaming files), and
    // touches nothing of the parent's but the history file and the ledger.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(2);
    // The history file up to here, so the log may go once this snapshot is
    // durable: the entries were written before fork, fdatasync covers them.
    if (absl::Status s = history_->Sync(); !s.ok()) {
      std::fprintf(stderr, "snapshot child: history sync: %s\n", std::string(s.message()).c_str());
      ::_exit(3);
    }
    // Sockets and the log stay the parent's alone (a peer must see a close
    // when the parent closes, not when this child exits).  fs_ is a
    // PosixFileSystem: it holds no descriptors.
    ::close_range(3, ~0U, 0);
    if (absl::Status s = WriteSnapshotFile(fs_, dir_, *ledger_, lsn); !s.ok()) {
      std::fprintf(stderr, "snapshot child: %s\n", std::string(s.message()).c_str());
      ::_exit(4);
    }
    // The commit too (manifest, retirement): its fsyncs and unlinks would
    // otherwise stall the writer.  Safe beside it: the writer only appends to
    // the newest segment, which is never retired, and a crash half way
    // leaves garbage the next start removes, never a gap.
    if (absl::Status s = CommitSnapshot(lsn); !s.ok()) {
      std::fprintf(stderr, "snapshot child: commit: %s\n", std::string(s.message()).c_str());
      ::_exit(5);
    }
    ::_exit(0);
  }
  child_pid_ = pid;
  child_lsn_ = lsn;
  return absl::OkStatus();
}

absl::Status Store::ReapSnapshot(bool block) {
  TALLY_ASSERT(child_pid_ > 0);
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(child_pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return absl::OkStatus();  // still at work
  const pid_t pid = child_pid_;
  child_pid_ = 0;
  if (r < 0) return absl::ErrnoToStatus(errno, absl::StrCat("waitpid snapshot child ", pid));
  // The manifest on disk is the child's when it got as far as writing one
  // (its snapshot was durable by then), even if it failed later: take it, so
  // the segments recorded next are added to what is really on disk.
  absl::StatusOr<std::optional<Manifest>> m = ReadManifest(fs_, dir_);
  if (!m.ok()) return m.status();
  const bool child_committed = m->has_value() && (*m)->current_snapshot_lsn() == child_lsn_;
  if (child_committed) manifest_ = **m;
  // Segments the writer started while the child owned the manifest.
  if (absl::Status s = RecordSegments(); !s.ok()) return Fail(s);
  // What the child archived and pruned (its own archive_bytes_ died with
  // it), so the next child opens only the files archived after this.  A
  // failure here only costs the next pruning those opens.
  if (options_.archive) (void)LearnArchive();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    if (!child_committed) {
      return absl::InternalError(absl::StrCat(dir_, ": the snapshot child of LSN ", child_lsn_,
                                              " exited 0 but the manifest does not name it"));
    }
    return absl::OkStatus();
  }
  const std::string why = WIFEXITED(status)
                              ? absl::StrCat("exit code ", WEXITSTATUS(status))
                              : absl::StrCat("signal ", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  absl::Status s = absl::InternalError(
      absl::StrCat(dir_, ": snapshot of LSN ", child_lsn_, " failed in child ", pid, " (", why,
                   "; its reason is on standard error); the log is kept"));
  Log(std::string(s.message()));
  return s;
}

absl::Status Store::CommitSnapshot(uint64_t lsn) {
  // The snapshot file and the history up to it are durable.
  Manifest next;
  next.snapshot_lsns.push_back(lsn);
  for (uint64_t kept : manifest_.snapshot_lsns) {
    if (kept < lsn && next.snapshot_lsns.size() < options_.snapshots_kept) {
      next.snapshot_lsns.push_back(kept);
    }
  }
  next.log_from_lsn = next.snapshot_lsns.back() + 1;
  const uint64_t segments_started = writer_->segments_started();
  absl::StatusOr<std::vector<uint64_t>> live = LiveSegments();
  if (!live.ok()) return live.status();
  next.segments = NeededSegments(*live, next.log_from_lsn);
  if (absl::Status s = WriteManifest(fs_, dir_, next); !s.ok()) return s;
  manifest_ = std::move(next);
  segments_seen_ = segments_started;
  std::vector<std::string> retired;
  return Retire(&retired);
}

absl::Status Store::Retire(std::vector<std::string>* retired) {
  const std::string log_dir = absl::StrCat(dir_, "/wal");
  const std::string archive_dir = absl::StrCat(dir_, "/", kArchiveDir);
  if (options_.archive) (void)fs_->CreateDir(archive_dir);
  auto retire = [&](const std::string& from_dir, const std::string& name) -> absl::Status {
    const std::string from = absl::StrCat(from_dir, "/", name);
    absl::Status s = options_.archive ? fs_->Rename(from, absl::StrCat(archive_dir, "/", name))
                                      : RemoveInSteps(fs_, from);
    if (s.ok()) retired->push_back(from);
    return s;
  };
  absl::StatusOr<std::vector<uint64_t>> live = LiveSegments();
  if (!live.ok()) return live.status();
  bool segments_retired = false;
  for (size_t i = 0; i + 1 < live->size(); ++i) {  // never the newest segment
    if ((*live)[i + 1] > manifest_.log_from_lsn) break;
    if (absl::Status s = retire(log_dir, SegmentFileName((*live)[i])); !s.ok()) return s;
    segments_retired = true;
  }
  absl::StatusOr<std::vector<std::string>> names = fs_->List(dir_);
  if (!names.ok()) return names.status();
  bool snapshots_retired = false;
  for (const std::string& name : *names) {
    std::optional<uint64_t> lsn = ParseSnapshotName(name);
    if (!lsn || std::find(manifest_.snapshot_lsns.begin(), manifest_.snapshot_lsns.end(), *lsn) !=
                    manifest_.snapshot_lsns.end()) {
      continue;
    }
    if (absl::Status s = retire(dir_, name); !s.ok()) return s;
    snapshots_retired = true;
  }
  if (segments_retired) {
    if (absl::Status s = fs_->SyncDir(log_dir); !s.ok()) return s;
  }
  if (snapshots_retired) {
    if (absl::Status s = fs_->SyncDir(dir_); !s.ok()) return s;
  }
  if (options_.archive && (segments_retired || snapshots_retired)) {
    if (absl::Status s = fs_->SyncDir(archive_dir); !s.ok()) return s;
  }
  if (options_.archive) return PruneArchive(retired);
  return absl::OkStatus();
}

absl::Status Store::LearnArchive() {
  const std::string archive_dir = absl::StrCat(dir_, "/", kArchiveDir);
  absl::StatusOr<std::vector<std::string>> names = fs_->List(archive_dir);
  if (!names.ok()) return names.status();
  std::map<std::string, uint64_t> now;
  for (const std::string& name : *names) {
    if (!ParseSegmentFileName(name) && !ParseSnapshotName(name)) continue;  // not ours
    if (auto known = archive_bytes_.find(name); known != archive_bytes_.end()) {
      now.emplace(name, known->second);  // archived files never change
      continue;
    }
    absl::StatusOr<std::unique_ptr<File>> f =
        fs_->Open(absl::StrCat(archive_dir, "/", name), OpenMode::kReadOnly);
    if (!f.ok()) return f.status();
    absl::StatusOr<uint64_t> size = (*f)->Size();
    if (!size.ok()) return size.status();
    now.emplace(name, *size);
  }
  archive_bytes_ = std::move(now);
  return absl::OkStatus();
}

absl::Status Store::PruneArchive(std::vector<std::string>* pruned) {
  const std::string archive_dir = absl::StrCat(dir_, "/", kArchiveDir);
  if (absl::Status s = LearnArchive(); !s.ok()) return s;
  struct Archived {
    uint64_t lsn;
    int order;  // a segment (0) before a snapshot (1) of the same LSN
    uint64_t bytes;
    std::string name;
  };
  std::vector<Archived> files;
  uint64_t total_bytes = 0;
  for (const auto& [name, bytes] : archive_bytes_) {
    std::optional<uint64_t> lsn = ParseSegmentFileName(name);
    const int order = lsn ? 0 : 1;
    if (!lsn) lsn = ParseSnapshotName(name);
    TALLY_ASSERT(lsn.has_value());  // LearnArchive keeps only these
    files.push_back(Archived{*lsn, order, bytes, name});
    total_bytes += bytes;
  }
  if (total_bytes <= options_.archive_bytes_max) return absl::OkStatus();
  std::sort(files.begin(), files.end(), [](const Archived& a, const Archived& b) {
    return std::tie(a.lsn, a.order) < std::tie(b.lsn, b.order);
  });
  for (const Archived& file : files) {
    if (total_bytes <= options_.archive_bytes_max) break;
    const std::string path = absl::StrCat(archive_dir, "/", file.name);
    if (absl::Status s = RemoveInSteps(fs_, path); !s.ok()) return s;
    archive_bytes_.erase(file.name);
    total_bytes -= file.bytes;
    pruned->push_back(path);
  }
  return fs_->SyncDir(archive_dir);
}

absl::Status Store::RecordSegments() {
  // While a snapshot child runs it owns MANIFEST (it writes the next one);
  // two writers would race.  Its reaping calls this again.
  if (child_pid_ > 0) return absl::OkStatus();
  const uint64_t segments_started = writer_->segments_started();
  absl::StatusOr<std::vector<uint64_t>> live = LiveSegments();
  if (!live.ok()) return live.status();
  std::vector<uint64_t> needed = NeededSegments(*live, manifest_.log_from_lsn);
  if (needed != manifest_.segments) {
    Manifest next = manifest_;
    next.segments = std::move(needed);
    if (absl::Status s = WriteManifest(fs_, dir_, next); !s.ok()) return s;
    manifest_ = std::move(next);
  }
  segments_seen_ = segments_started;
  return absl::OkStatus();
}

}  // namespace tally::wal
