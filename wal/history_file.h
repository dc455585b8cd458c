// history_file.h: every history entry a shard's ledger ever made, on disk,
// and the queries that reach past the ledger's RAM window.
//
// The ledger keeps the newest history_entries_max entries in RAM; SPEC §1
// wants history for the life of the wallet.  After each applied batch the
// Store appends the batch's new entries here (page cache; made durable by
// Sync(), which the Store calls before a snapshot lets the log go), so the
// file always holds every entry up to the ledger's newest.  Entries are
// fixed-size records at offset (seq - 1) × 96, chained per wallet by the
// previous entry's seq, so a wallet's page walks only its own entries.
// Layout, recovery and why: wal/HISTORY.md.
//
// Example:
//   auto file = HistoryFile::Open(&fs, dir + "/history", ledger, &report).value();
//   ledger.Apply(...); file->Append(ledger);
//   HistoryPage page = file->GetHistory(ledger, query).value();  // RAM, then disk
#ifndef TALLY_WAL_HISTORY_FILE_H_
#define TALLY_WAL_HISTORY_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/ledger.h"
#include "wal/file.h"

namespace tally::wal {

inline constexpr uint32_t history_record_bytes = 96;
// Entries encoded and written per write: a batch of 8,000 deducts is two.
inline constexpr uint64_t history_write_entries_max = 4096;
// The entries file's page cache is recycled in steps of this many bytes
// (wal/HISTORY.md, "The page cache"): a step is started writing out once a
// step behind the end, and forgotten by the page cache a step after that.
inline constexpr uint64_t history_cache_step_bytes = uint64_t{4} << 20;

// HistoryRecovery says what Open() found.
struct HistoryRecovery {
  uint64_t entries_on_disk = 0;   // records that checked out before respilling
  uint64_t entries_respilled = 0; // rewritten from the ledger's RAM window
  uint64_t entries_lost = 0;      // older than the RAM window and damaged on disk
};

class HistoryFile {
 public:
  // Open opens (or creates) the files in `dir` and brings them level with
  // `ledger`, a ledger just recovered: records after the last durable point
  // are rewritten from the ledger's window; what the ledger never made
  // (a log tail lost in the crash) is left to be overwritten.  With
  // WritePath::kDirect the whole blocks of each append bypass the page cache.
  static absl::StatusOr<std::unique_ptr<HistoryFile>> Open(
      FileSystem* fs, std::string dir, const Ledger& ledger, HistoryRecovery* report,
      WritePath write_path = WritePath::kPageCache);

  // Append writes the entries the ledger made since the last call.
  absl::Status Append(const Ledger& ledger);
  // Sync makes everything appended durable and records the durable count.
  absl::Status Sync();

  // GetHistory answers `query` from the ledger's window, continuing on disk
  // where the window ends (page.truncated is then only set when entries
  // were lost).  An org-wide query examines at most
  // history_scan_entries_max entries per call; a page cut short by that
  // carries a next_cursor to continue from.
  absl::StatusOr<HistoryPage> GetHistory(const Ledger& ledger, const HistoryQuery& query) const;
  // BalanceAt is Ledger::BalanceAt reaching past the window.
  absl::StatusOr<int64_t> BalanceAt(const Ledger& ledger, uint64_t org_id, uint64_t wallet_id,
                                    Asset asset, int64_t at_us) const;

  uint64_t entries() const { return entries_; }

 private:
  HistoryFile(FileSystem* fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}
  // Write encodes the entries with seq in [from_seq, to_seq) (at most
  // history_write_entries_max) from the ledger and writes them.
  absl::Status Write(const Ledger& ledger, uint64_t from_seq, uint64_t to_seq);
  // Read reads the record of `seq` (≤ entries()) and its texts.
  absl::StatusOr<HistoryRecord> Read(uint64_t seq, bool with_texts) const;
  absl::StatusOr<uint64_t> TextsEnd(uint64_t seq) const;  // texts bytes after entry `seq`
  // RecycleCache writes out and forgets the entries file's pages behind
  // `end` (its bytes written so far), history_cache_step_bytes at a time.
  void RecycleCache(uint64_t end);

  FileSystem* fs_;
  std::string dir_;
  std::unique_ptr<File> entries_file_;
  std::unique_ptr<File> texts_file_;
  uint64_t entries_ = 0;      // records level with the ledger
  uint64_t texts_end_ = 0;    // bytes of texts used by those records
  uint64_t durable_ = 0;      // records covered by the last Sync
  uint64_t written_out_ = 0;  // entries bytes before this were started writing out
  uint64_t dropped_ = 0;      // entries bytes before this were dropped from the page cache
  std::unique_ptr<char[]> records_;  // encode buffer for Write (block-aligned inside)
  std::string texts_buffer_;
};

}  // namespace tally::wal

#endif  // TALLY_WAL_HISTORY_FILE_H_
