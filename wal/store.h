// store.h: one shard's ledger made durable: the log of its batches, its
// snapshots, and recovery from them.
//
// A Store owns a Ledger, a LogWriter and a directory:
//
//   <dir>/wal/wal-<first LSN>.log            the log (wal/FORMAT.md)
//   <dir>/snapshot-<LSN, 20 digits>.snap     the ledger after record LSN
//                                            (engine/SNAPSHOT.md; a .tmp while written)
//
// Open() recovers: the newest snapshot that decodes (a damaged one is
// skipped, with a line in the report, when an older one and the log still
// cover it), then every record after it replayed through the engine.  Apply()
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

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/ledger.h"
#include "wal/file.h"
#include "wal/log_writer.h"

namespace tally::wal {

struct StoreOptions {
  LedgerOptions ledger;
  LogWriterOptions log;
};

// RecoveryReport says what Open() found and did.
struct RecoveryReport {
  std::string snapshot_path;      // empty: started from an empty ledger
  uint64_t snapshot_lsn = 0;      // the last record the snapshot includes
  std::vector<std::string> snapshots_skipped;  // damaged, with the reason
  uint64_t records_replayed = 0;
  uint64_t bytes_replayed = 0;
  uint64_t torn_bytes_dropped = 0;  // a torn tail cut off the log's end
  uint64_t next_lsn = 1;
};

class Store {
 public:
  static absl::StatusOr<std::unique_ptr<Store>> Open(FileSystem* fs, std::string dir,
                                                     const StoreOptions& options);

  // Apply applies the batch and appends it to the log (durable after Sync).
  // Returns the batch's LSN.  Fails only when the log does, and then for good.
  absl::StatusOr<uint64_t> Apply(int64_t time_us, std::span<const Command> commands,
                                 BatchOutput* out);
  // Sync makes every applied batch durable.
  absl::Status Sync();
  // WriteSnapshot syncs, then writes the ledger as snapshot-<last LSN>.snap
  // (temp file, fsync, rename, directory fsync).  Returns its LSN.
  absl::StatusOr<uint64_t> WriteSnapshot();

  const Ledger& ledger() const { return *ledger_; }
  const RecoveryReport& recovery() const { return report_; }
  uint64_t last_lsn() const { return next_lsn_ - 1; }

 private:
  Store(FileSystem* fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}
  absl::Status Recover(const StoreOptions& options);
  absl::Status Fail(absl::Status status);

  FileSystem* fs_;
  std::string dir_;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<LogWriter> writer_;
  RecoveryReport report_;
  uint64_t next_lsn_ = 1;
  std::string encoded_;  // scratch: the batch being appended
  absl::Status failed_;
};

// SnapshotName is "snapshot-<lsn as 20 digits>.snap".
std::string SnapshotName(uint64_t lsn);

}  // namespace tally::wal

#endif  // TALLY_WAL_STORE_H_
