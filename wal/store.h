// store.h: one shard's ledger made durable: the log of its batches, its
// snapshots, and recovery from them.
//
// A Store owns a Ledger, a LogWriter and a directory:
//
//   <dir>/MANIFEST                           the kept snapshots, where the log
//                                            must start, its segments (wal/manifest.h)
//   <dir>/wal/wal-<first LSN>.log            the log (wal/FORMAT.md)
//   <dir>/snapshot-<LSN, 20 digits>.snap     the ledger after record LSN
//                                            (engine/SNAPSHOT.md; a .tmp while written)
//   <dir>/archive/                           retired segments and snapshots,
//                                            when StoreOptions::archive is on
//
// Open() recovers: the newest snapshot the manifest keeps that decodes (a
// damaged one is skipped, with a line in the report, when an older one and
// the log still cover it), then every record after it replayed through the
// engine.  After a snapshot is durable, a new manifest is written and the
// segments wholly older than the oldest kept snapshot are removed (or moved
// to archive/).  docs/DURABILITY.md has the whole picture.  Apply()
// applies a batch and appends it to the log; Sync() makes everything appended
// durable with one fdatasync (group commit: Apply many, Sync once, then
// acknowledge).  The first failed write or sync fails the store for good.
//
// Example:
//   auto store = tally::wal::Store::Open(&fs, "/data/shard-0", {});
//   (*store)->Apply(now_us, commands, &out);
//   if ((*store)->Sync().ok()) Acknowledge(out);
#ifndef TALLY_WAL_STORE_H_
#define TALLY_WAL_STORE_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/ledger.h"
#include "wal/file.h"
#include "wal/history_file.h"
#include "wal/log_writer.h"
#include "wal/manifest.h"

namespace tally::wal {

// LogSink receives the store's operator messages (recovery progress, a torn
// tail cut, a snapshot that failed), one line each, without a newline.
using LogSink = std::function<void(std::string_view line)>;

struct StoreOptions {
  LedgerOptions ledger;
  LogWriterOptions log;
  // Periodic snapshots, started by MaybeSnapshot: when this many records
  // were appended since the last one, or this many ms passed (and something
  // was appended).  0 turns either trigger off.
  uint64_t snapshot_every_records = 0;
  int64_t snapshot_every_ms = 0;
  // Snapshots kept, in [1, store_snapshots_kept_max]: the newest and the
  // ones recovery falls back to when it is damaged.  The log is kept from the
  // oldest of them on.
  uint32_t snapshots_kept = store_snapshots_kept_default;
  // Move retired segments and snapshots to <dir>/archive/ instead of
  // removing them (point-in-time rebuilds with `tally-wal replay`).
  bool archive = false;
  // With archive on, archive/ holds at most this many bytes: after each
  // retirement the oldest archived files (by LSN; a segment before a
  // snapshot of the same LSN) are removed until it fits.  Must be > 0.
  uint64_t archive_bytes_max = store_archive_bytes_default;
  // Write the history file's whole blocks with O_DIRECT too (the log's
  // segments follow log.direct_io).  Off by default: the history is not
  // synced per batch, and a direct write makes the shard thread wait for the
  // device where the page cache let the kernel write back later; measured
  // slower at frames of 8,000 deducts (bench/RESULTS.md, 2026-12-02 22:40).
  bool history_direct_io = false;
  // Encode and write periodic snapshots in a forked child (copy-on-write), so
  // the writer pauses only for fork().  Only with a PosixFileSystem; on any
  // other file system snapshots are written inline.
  bool snapshot_in_child = true;
  // The fork reserve (docs/DURABILITY.md, "The writer's copy-on-write
  // after the fork"): with periodic snapshots in a child, the writer keeps
  // this many bytes of ordinary pages touched while no child runs (touching
  // fork_reserve_step_bytes more per MaybeSnapshot) and gives them back to
  // the kernel from the fork on, fork_reserve_release_bytes just before it
  // and as much again per MaybeSnapshot while the child runs, so the
  // copy-on-write faults of the first batches after the fork get pages the
  // machine has just used instead of fresh ones (on this VM a fresh page
  // costs a host fault).  0: none.
  uint64_t fork_reserve_bytes = uint64_t{64} << 20;
  uint64_t fork_reserve_step_bytes = uint64_t{512} << 10;
  uint64_t fork_reserve_release_bytes = uint64_t{16} << 20;
  // Where operator messages go; null: standard error.
  LogSink log_sink;
  // Recovery prints a progress line at most this often during a replay.
  int64_t progress_every_ms = 1000;
  // With ledger.prefault, a thread faults the history ring and the op-id
  // memory in this many history entries ahead of the replay
  // (wal/prefaulter.h; docs/MEMORY.md, "Pre-faulting").
  uint64_t replay_prefault_ahead_entries = 16 * history_chunk_entries;
};

// RecoveryReport says what Open() found and did.
struct RecoveryReport {
  std::string snapshot_path;      // empty: started from an empty ledger
  uint64_t snapshot_lsn = 0;      // the last record the snapshot includes
  std::vector<std::string> snapshots_skipped;  // damaged, with the reason
  uint64_t records_replayed = 0;
  uint64_t commands_replayed = 0;  // the commands of those records
  uint64_t bytes_replayed = 0;
  uint64_t torn_bytes_dropped = 0;  // a torn tail cut off the log's end
  uint64_t next_lsn = 1;
  double snapshot_load_s = 0;      // reading and decoding the snapshot
  double replay_s = 0;             // reading and applying the log after it
  double snapshot_load_cpu_s = 0;  // the same two in CPU time of the opening thread
  double replay_cpu_s = 0;         // (what a shared machine's load does not inflate)
  // Faulted in ahead of the replay by its pre-fault thread (ledger.prefault).
  uint64_t replay_prefaulted_bytes = 0;
  // Faulted in while the snapshot was decoded, by the same kind of thread.
  uint64_t snapshot_prefaulted_bytes = 0;
  // The opening thread's page faults during the snapshot's load.
  uint64_t snapshot_minor_faults = 0;
  // The replaying thread's page faults (a first touch of fresh memory is
  // one; with ledger.prefault fewer, when the pre-fault thread keeps ahead).
  uint64_t replay_minor_faults = 0;
  bool had_manifest = false;        // false: a new store, or one from before manifests
  // Leftovers of an interrupted retirement finished, and archived files
  // removed to fit archive_bytes_max.
  std::vector<std::string> retired;
  HistoryRecovery history;
};

class Store {
 public:
  static absl::StatusOr<std::unique_ptr<Store>> Open(FileSystem* fs, std::string dir,
                                                     const StoreOptions& options);

  // Apply applies the batch and appends it to the log (durable after Sync).
  // Returns the batch's LSN.  Fails only when the log does, and then for good.
  absl::StatusOr<uint64_t> Apply(int64_t time_us, std::span<const Command> commands,
                                 BatchOutput* out);
  // ApplyEncoded is Apply for commands that arrive already encoded: tallyd
  // logs the bytes its clients sent instead of encoding the commands again.
  // `record` is batch_header_bytes (any value) followed by the encodings of
  // `commands` in order, e.g. slices of frames cut at DecodedBatch's
  // command_ends.  The commands are read where they are (Ledger::Apply of
  // pointers).  The store writes the header (its time, the count) and logs
  // `record` as it is.  Same results and failure rules as Apply.
  absl::StatusOr<uint64_t> ApplyEncoded(int64_t time_us, std::span<const Command* const> commands,
                                        std::string* record, BatchOutput* out);
  // Sync makes every applied batch durable.
  absl::Status Sync();
  // StartSync begins making every applied batch durable and WaitSync waits
  // for it (LogWriter's, with options.log.background_sync: the fdatasync
  // runs on the log's thread while the caller applies the next batch, and
  // `then(true)` says the batches are durable as soon as they are).
  // WaitSync's answer is about the log alone: a batch the log synced is
  // durable even when the store failed since.
  // `then` runs exactly once, as LogWriter::StartSync says (false also when
  // the store had failed).
  absl::Status StartSync(LogWriter::SyncDone then = nullptr,
                         LogWriter::SyncOn on = LogWriter::SyncOn::kSyncThread);
  absl::Status WaitSync();
  // SyncReturned: WaitSync would not block.
  bool SyncReturned() { return writer_->SyncReturned(); }
  // WriteSnapshot syncs, then writes the ledger as snapshot-<last LSN>.snap
  // (temp file, fsync, rename, directory fsync) on the calling thread, then
  // commits it (history synced, manifest, retirement).  Waits for a snapshot
  // child that is still running first.  Returns its LSN.
  absl::StatusOr<uint64_t> WriteSnapshot();

  // MaybeSnapshot is called by the shard's writer between batches.  It reaps
  // a finished snapshot child without blocking (the child also wrote the new
  // manifest and retired what it no longer needs; the parent takes the
  // manifest), and starts a new snapshot when one is due by the options.
  // An error says a snapshot failed; the store keeps working (the log just
  // grows until a later snapshot succeeds), unless the store itself failed.
  absl::Status MaybeSnapshot(int64_t now_ms);
  // snapshot_running says a snapshot child is at work.
  bool snapshot_running() const { return child_pid_ > 0; }
  // fork_reserve_touched_bytes is how much of the fork reserve is touched now.
  uint64_t fork_reserve_touched_bytes() const { return reserve_touched_bytes_; }

  // GetHistory and BalanceAt answer from the ledger's RAM window and
  // continue in <dir>/history (wal/HISTORY.md) where it ends.
  absl::StatusOr<HistoryPage> GetHistory(const HistoryQuery& query) const;
  absl::StatusOr<int64_t> BalanceAt(uint64_t org_id, uint64_t wallet_id, Asset asset,
                                    int64_t at_us) const;

  const Ledger& ledger() const { return *ledger_; }
  const RecoveryReport& recovery() const { return report_; }
  uint64_t last_lsn() const { return next_lsn_ - 1; }
  // manifest is the manifest as last written.
  const Manifest& manifest() const { return manifest_; }

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

 private:
  Store(FileSystem* fs, std::string dir, const StoreOptions& options);
  absl::Status Recover();
  absl::Status LoadSnapshot(const std::vector<uint64_t>& candidates);
  absl::Status Replay();
  absl::Status Fail(absl::Status status);
  void Log(std::string_view line) const;
  // StartSnapshot syncs and starts a snapshot of the current state: in a
  // child, or inline (then committed before it returns).
  absl::Status StartSnapshot();
  // ReapSnapshot collects the child: `block` waits for it.
  absl::Status ReapSnapshot(bool block);
  // CommitSnapshot makes a durable snapshot file the current one: history
  // synced, new manifest, retirement of what it no longer needs.
  absl::Status CommitSnapshot(uint64_t lsn);
  // Retire removes (or archives) the segments wholly before
  // manifest_.log_from_lsn and the snapshot files the manifest does not keep.
  absl::Status Retire(std::vector<std::string>* retired);
  // PruneArchive removes the oldest files of archive/ until it holds at most
  // options_.archive_bytes_max bytes.
  absl::Status PruneArchive(std::vector<std::string>* pruned);
  // LearnArchive brings archive_bytes_ level with archive/: only a name not
  // seen before is opened for its size; names gone are dropped.
  absl::Status LearnArchive();
  // RecordSegments rewrites the manifest when the log's segments differ
  // from the ones it names (after a roll); deferred while a snapshot child
  // owns the manifest, and done when it is reaped.
  absl::Status RecordSegments();
  // LiveSegments lists the first LSNs of the segments in <dir>/wal.
  absl::StatusOr<std::vector<uint64_t>> LiveSegments() const;
  // SnapshotsFork says StartSnapshot forks (a PosixFileSystem, and
  // snapshot_in_child) rather than writing inline.
  bool SnapshotsFork() const;
  // FillReserve touches the next step of the fork reserve; ReleaseReserve
  // gives the last up to fork_reserve_release_bytes of it back to the kernel.
  void FillReserve();
  void ReleaseReserve();

  FileSystem* fs_;
  std::string dir_;
  StoreOptions options_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<LogWriter> writer_;
  std::unique_ptr<HistoryFile> history_;
  RecoveryReport report_;
  Manifest manifest_;
  uint64_t next_lsn_ = 1;
  std::string encoded_;  // scratch: the batch being appended
  // AppendApplied logs `record`, the encoding of the batch the ledger just
  // applied, and the batch's history entries.
  absl::StatusOr<uint64_t> AppendApplied(std::string_view record);
  absl::Status failed_;
  // Periodic snapshots.
  int64_t last_snapshot_ms_ = -1;  // -1: not yet (the first MaybeSnapshot sets it)
  pid_t child_pid_ = 0;            // a snapshot child at work, 0 none
  uint64_t child_lsn_ = 0;         // the LSN it writes
  int64_t retry_after_ms_ = 0;     // after a failed snapshot, no new one before
  uint64_t segments_seen_ = 0;     // writer_->segments_started() the manifest has caught up with
  // The running total of archive/: each archived file's name and bytes, as
  // last seen (PruneArchive then opens only what was archived since).
  std::map<std::string, uint64_t> archive_bytes_;
  // The fork reserve: a mapping of options_.fork_reserve_bytes, its first
  // reserve_touched_bytes_ touched.
  unsigned char* reserve_ = nullptr;
  uint64_t reserve_touched_bytes_ = 0;
};

// SnapshotName is "snapshot-<lsn as 20 digits>.snap".
std::string SnapshotName(uint64_t lsn);
// ParseSnapshotName returns the LSN of a snapshot file name, nothing for any
// other name.
std::optional<uint64_t> ParseSnapshotName(std::string_view name);
// WriteSnapshotFile encodes `ledger` and writes it as <dir>/SnapshotName(lsn)
// durably (temp, fsync, rename, directory fsync).
absl::Status WriteSnapshotFile(FileSystem* fs, const std::string& dir, const Ledger& ledger,
                               uint64_t lsn);

}  // namespace tally::wal

#endif  // TALLY_WAL_STORE_H_
