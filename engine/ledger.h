// ledger.h: one shard's credit ledger, a deterministic state machine.
//
// A Ledger holds every org, wallet, lot, hold, request, the recent history and
// the operation-id memory of one shard, in RAM.  It changes only through
// Apply(time, commands): no clock reads, no I/O, no threads, so the same
// batches in the same order give the same state (Digest() proves it), which
// is what makes the write-ahead log of commands enough to rebuild it.
//
// Semantics of every command and query: docs/ENGINE.md.
//
// Example:
//   tally::Ledger ledger;
//   tally::BatchOutput out;
//   tally::Command c{.kind = tally::CommandKind::org_create, .op_id = 1, .org_id = 7};
//   ledger.Apply(now_us, std::span(&c, 1), &out);
//   tally::Balance b = ledger.GetBalance(7, 0, tally::Asset::Credits(), now_us).value();
#ifndef TALLY_ENGINE_LEDGER_H_
#define TALLY_ENGINE_LEDGER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "tally/command.h"
#include "tally/query.h"

namespace tally {

namespace engine {
struct State;
}  // namespace engine

// LedgerOptions bound a ledger's memory.
struct LedgerOptions {
  // History entries kept in RAM (rounded up to a power of two, at least one
  // chunk).  Older entries leave memory; see docs/ENGINE.md.
  uint64_t history_entries_max = history_entries_max_default;
  uint64_t op_ids_max = op_ids_max_default;
  int64_t op_ids_retention_us = op_ids_retention_us_default;
  // Map the history ring and the op-id memory in full when the ledger is
  // made (mapped, not touched), so that a server can fault them in ahead of
  // the writes (PrefaultRegions; docs/MEMORY.md, "Pre-faulting").  Off, they
  // are mapped as they fill: a test making thousands of small ledgers, or a
  // tool reading a snapshot, pays nothing for memory it never writes.
  bool prefault = false;
};

// BatchOutput is what one Apply produced; Apply clears it first, and reusing
// one BatchOutput across batches keeps the hot path free of allocation.
struct BatchOutput {
  std::vector<Result> results;  // one per command, in order
  std::vector<Event> events;    // in the order they were raised
  int64_t time_us = 0;          // the time the batch was applied at
};

// HistoryRecord is one history entry with what it needs to stand alone
// outside the ledger (wal/HISTORY.md keeps every entry ever made on disk).
struct HistoryRecord {
  HistoryEntryView view;  // view.seq: the entry's index in the ledger + 1
  uint64_t org_id = 0;
  uint64_t prev_seq = 0;  // the same wallet's previous entry; 0 none (or out of reach)
};

// HistoryEntryRef is one history entry as Ledger::VisitHistory hands it out:
// the fields of a HistoryRecord as plain values, the texts as views into the
// ledger.  Nothing is allocated or zeroed per entry; a ref (and its views)
// is valid only during the visit.  wal/ encodes its file records from it
// (wal/HISTORY.md); the engine knows nothing of that layout.
struct HistoryEntryRef {
  uint64_t seq = 0;  // the entry's index in the ledger + 1
  uint64_t org_id = 0;
  uint64_t wallet_id = 0;
  int64_t time_us = 0;
  HistoryKind kind{};
  bool out = false;
  bool held = false;
  bool has_text = false;  // reference or actor may be non-empty
  Asset asset;
  int64_t amount = 0;
  int64_t balance_after = 0;
  uint64_t related_id = 0;
  uint64_t prev_seq = 0;  // as HistoryRecord::prev_seq
  std::string_view reference;
  std::string_view actor;
};

class Ledger {
 public:
  explicit Ledger(const LedgerOptions& options = {});
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Apply applies `commands` in order at `time_us` and fills `out` with one
  // result per command plus the events raised.  A time earlier than the last
  // batch's is raised to it, so time never runs backwards inside a ledger.
  // More than batch_commands_max commands is a programmer error.
  void Apply(int64_t time_us, std::span<const Command> commands, BatchOutput* out);
  // The same for commands that are not side by side: tallyd applies each
  // frame's commands where its I/O thread decoded them, without gathering
  // them into one array first.
  void Apply(int64_t time_us, std::span<const Command* const> commands, BatchOutput* out);

  // GetBalance: unknown_org / unknown_wallet as a Status (NotFound) whose
  // message is the result code's name.
  absl::StatusOr<Balance> GetBalance(uint64_t org_id, uint64_t wallet_id, Asset asset,
                                     int64_t now_us) const;
  // BalanceAt is the available balance just after the last change at or
  // before `at_us`, from the history (0 before the wallet's first entry).
  // OutOfRange when that part of the history is no longer in memory.
  absl::StatusOr<int64_t> BalanceAt(uint64_t org_id, uint64_t wallet_id, Asset asset,
                                    int64_t at_us) const;
  absl::StatusOr<OrgSummary> GetOrgSummary(uint64_t org_id, Asset asset,
                                           int64_t now_us) const;
  absl::StatusOr<HistoryPage> GetHistory(const HistoryQuery& query) const;
  absl::StatusOr<std::vector<RequestView>> GetRequests(uint64_t org_id,
                                                       RequestStatus status) const;
  absl::StatusOr<std::vector<UsageRow>> GetUsage(uint64_t org_id, int64_t from_us,
                                                 int64_t to_us) const;
  absl::StatusOr<OrgSettings> GetSettings(uint64_t org_id) const;
  // GetTotals: the org's running totals, for audits and invariant checks.
  absl::StatusOr<TotalsView> GetTotals(uint64_t org_id, Asset asset) const;

  // History beyond the RAM window (wal/HISTORY.md): entries are numbered by
  // seq 1, 2, 3 ... across the ledger; seqs in [history_begin_seq(),
  // history_entries_total()] are in memory.
  uint64_t history_begin_seq() const;
  // ExportHistory appends the entries with seq in [from_seq, to_seq), which
  // must be in memory, to *out.
  void ExportHistory(uint64_t from_seq, uint64_t to_seq, std::vector<HistoryRecord>* out) const;
  // VisitHistory calls visit(ref) for each entry with seq in [from_seq,
  // to_seq), in seq order (same precondition): ExportHistory without the
  // intermediate records, for a caller that copies the fields elsewhere at
  // once (wal::HistoryFile encodes them into its file records).
  void VisitHistory(uint64_t from_seq, uint64_t to_seq,
                    absl::FunctionRef<void(const HistoryEntryRef&)> visit) const;
  // HistoryHead is the seq of the wallet's newest entry (0: none), also for
  // a deleted wallet.
  absl::StatusOr<uint64_t> HistoryHead(uint64_t org_id, uint64_t wallet_id) const;

  // PrefaultRegions lists the big blocks this ledger will write into, in the
  // order it will first write them, for engine::Prefault on another thread:
  // the op-id table (ids land in it at random: needed at once), then the
  // history ring and the op-id entries side by side from where they stand
  // (a deduct appends one of each), the other op-id generation after the
  // current one.  `after_entries` says when a region is reached: after
  // about that many more history entries.  The blocks stay mapped for the
  // ledger's life and faulting memory in changes none of its contents, so
  // that thread needs no lock.  Empty unless options.prefault.
  struct PrefaultRegion {
    std::span<unsigned char> memory;
    uint64_t after_entries = 0;
  };
  std::vector<PrefaultRegion> PrefaultRegions() const;

  // EncodeSnapshot appends the whole state to *out (engine/SNAPSHOT.md):
  // what DecodeSnapshot needs to give a ledger with the same Digest() that
  // applies every later batch exactly as this one would.
  void EncodeSnapshot(std::string* out) const;
  // DecodeSnapshot rebuilds a ledger; DataLoss names what is wrong with the
  // bytes (checksum, bounds, an index out of range).
  static absl::StatusOr<std::unique_ptr<Ledger>> DecodeSnapshot(std::string_view bytes,
                                                                const LedgerOptions& options);
  // LoadSnapshot is DecodeSnapshot into this ledger, which must be new (no
  // batch applied, nothing loaded): a caller can then hand its
  // PrefaultRegions() to another thread before the load writes them
  // (wal::Store does).  On an error the ledger is half loaded: discard it.
  absl::Status LoadSnapshot(std::string_view bytes);

  // Digest is XXH3-64 over a canonical encoding of the whole state (ordered
  // by id, independent of insertion order and hash seeds).
  uint64_t Digest() const;

  int64_t last_time_us() const;
  uint64_t org_count() const;
  uint64_t wallet_count() const;  // every wallet slot, pools included
  uint64_t history_entries_total() const;  // ever appended

 private:
  std::unique_ptr<engine::State> state_;
};

}  // namespace tally

#endif  // TALLY_ENGINE_LEDGER_H_
