// limits.h: every bound tally keeps, in one place, units last.
//
// TigerBeetle's lesson: a limit on everything, and compile-time checks of how
// the limits relate.  A command that would cross one of these is refused with
// `limit_exceeded` (or the more precise code named beside it); nothing grows
// without bound.
#ifndef TALLY_LIMITS_H_
#define TALLY_LIMITS_H_

#include <cstdint>

namespace tally {

// Text carried by a command (reason, reference, actor, wallet label).
inline constexpr uint32_t text_bytes_max = 256;
// Lots one wallet may hold at once (per wallet, all assets).  Deduct scans a
// wallet's lots, so this bounds the work of one deduct.
inline constexpr uint32_t wallet_lots_max = 1024;
// Lots one hold may reserve.
inline constexpr uint32_t hold_lots_max = 256;
// Distinct asset codes one ledger (shard) knows.  12 bits in a history entry.
inline constexpr uint32_t assets_max = 4096;
// Entries of one allocate command's (wallet, amount) list.
inline constexpr uint32_t allocate_targets_max = 8192;
// Commands in one batch.
inline constexpr uint32_t batch_commands_max = 65536;
// Wallets one ledger may hold (u32 slots; one slot is kept free).
inline constexpr uint64_t ledger_wallets_max = (uint64_t{1} << 32) - 2;
// Orgs one ledger may hold.
inline constexpr uint32_t ledger_orgs_max = 1u << 24;
// Lots one expiry sweep command may expire; the sweep reports whether more
// remain so its driver issues another.  Bounds the writer's pause.
inline constexpr uint32_t sweep_lots_max = 65536;
// Entries one history page may return.
inline constexpr uint32_t history_page_entries_max = 10000;
// History entries one org-wide query may examine on disk (wal/HISTORY.md)
// before it returns what it found with a cursor to go on from.
inline constexpr uint64_t history_scan_entries_max = uint64_t{1} << 20;

// Operation-id memory (idempotent retries), per ledger.  An id is remembered
// for at least op_ids_retention_us after its batch, and while fewer than
// op_ids_max newer ids arrived; see docs/ENGINE.md.
inline constexpr uint64_t op_ids_max_default = 1u << 22;
inline constexpr int64_t op_ids_retention_us_default = int64_t{24} * 3600 * 1000000;

// History entries kept in RAM per ledger (a power of two).
inline constexpr uint64_t history_entries_max_default = uint64_t{1} << 24;
inline constexpr uint64_t history_chunk_entries = uint64_t{1} << 16;

inline constexpr int64_t expiring_soon_window_us_default =
    int64_t{30} * 24 * 3600 * 1000000;

// ---- Write-ahead log (wal/): record layer.  See wal/FORMAT.md. ----------
// Payload of one log record (one encoded command batch).  A record never
// spans segments, so a segment must hold the largest record.
inline constexpr uint32_t wal_record_payload_bytes_max = uint32_t{16} << 20;
// Size every segment file is preallocated to.
inline constexpr uint64_t wal_segment_bytes_default = uint64_t{64} << 20;
// Bounds on a configured segment size.  The reader holds one whole segment in
// memory, so the maximum also bounds its buffer.
inline constexpr uint64_t wal_segment_bytes_min = 4096;
inline constexpr uint64_t wal_segment_bytes_max = uint64_t{1} << 30;
// Appended bytes the writer buffers before it writes them out early (a Sync
// writes whatever is buffered).  Bounds the writer's memory.
inline constexpr uint32_t wal_write_buffer_bytes_max = uint32_t{1} << 20;

// 64 bytes: room for the segment header (32) and one record header (24).
static_assert(wal_record_payload_bytes_max + 64 <= wal_segment_bytes_default);
static_assert(wal_segment_bytes_min <= wal_segment_bytes_default);
static_assert(wal_segment_bytes_default <= wal_segment_bytes_max);
// ---- end of write-ahead log limits ----------------------------------------

// ---- Store (wal/store.h): manifest, snapshots, retirement.  wal/FORMAT.md. --
// Bytes of a MANIFEST file, and numbers on one of its lines: both bound what
// a damaged or hostile manifest can make the reader allocate.
inline constexpr uint64_t manifest_bytes_max = uint64_t{1} << 20;
inline constexpr uint64_t manifest_entries_max = 10000;
// Snapshots a store keeps (the newest and the ones recovery falls back to);
// the log is kept from the oldest of them on.
inline constexpr uint32_t store_snapshots_kept_default = 2;
inline constexpr uint32_t store_snapshots_kept_max = 64;
// A snapshot file is written in chunks of this size, each one's write-back
// started at once, with at most durable_write_in_flight_bytes of it not yet
// written out (WriteFileDurably in wal/manifest.cc): what the log's fdatasync
// may find queued ahead of it at the device.
inline constexpr uint64_t durable_write_chunk_bytes = uint64_t{256} << 10;
inline constexpr uint64_t durable_write_in_flight_bytes = uint64_t{1} << 20;
static_assert(durable_write_chunk_bytes <= durable_write_in_flight_bytes);
// A retired file (segment or snapshot) is cut by this much at a time before
// it is unlinked, so freeing its blocks (a discard, on a file system mounted
// with it) never queues more than this at the device (wal/store.cc).
inline constexpr uint64_t store_remove_step_bytes = uint64_t{4} << 20;
static_assert(store_snapshots_kept_default >= 1);
static_assert(store_snapshots_kept_max < manifest_entries_max);
// Bytes the archive/ directory of a store may hold by default (archiving on):
// the oldest archived files are removed first beyond it.
inline constexpr uint64_t store_archive_bytes_default = uint64_t{64} << 30;
static_assert(store_archive_bytes_default >= 16 * wal_segment_bytes_default);
// ---- end of store limits --------------------------------------------------

// ---- Protocol (include/tally/PROTOCOL.md) and server (net/) ---------------
// Body of one frame, either direction.  A reader refuses a longer header
// before it reads or allocates anything.
inline constexpr uint32_t frame_body_bytes_max = uint32_t{4} << 20;
// Commands in one apply frame.
inline constexpr uint32_t frame_commands_max = 16384;
// Token and client name in a hello.
inline constexpr uint32_t token_bytes_max = 128;
inline constexpr uint32_t client_name_bytes_max = 64;
// Rows one query reply carries (the rest: a cursor or the truncated flag).
inline constexpr uint32_t wire_history_entries_max = 2000;
inline constexpr uint32_t wire_requests_max = 4000;
inline constexpr uint32_t wire_usage_rows_max = 16384;
// Events in one event frame.
inline constexpr uint32_t wire_events_max = 4096;
// Server defaults (tallyd flags change them).
inline constexpr uint32_t connections_max_default = 1024;
// Requests one connection may have in flight; the server stops reading the
// connection until replies drain below it.
inline constexpr uint32_t connection_requests_in_flight_max = 4096;
// Reply bytes written to a connection but not yet taken by the peer; a
// client that stops reading past this is cut off, so it never stalls others.
inline constexpr uint64_t connection_unsent_bytes_max = uint64_t{32} << 20;
inline constexpr uint32_t idle_timeout_ms_default = 300000;
// Commands queued for one shard; senders wait (their connection stops being
// read) while the queue is full.
inline constexpr uint32_t shard_queue_commands_max = 262144;
inline constexpr uint32_t shards_max = 256;
// Queries a shard thread answers between two batches: a flood of queries
// cannot starve the changes queued behind them.
inline constexpr uint32_t shard_batch_queries_max = 1024;
// ... and the time they may take in one round (µs; at least one is answered).
inline constexpr uint32_t shard_round_queries_us_max = 2000;
// ... and how many of them one connection's may be, so one client's flood of
// queries does not delay everyone else's.
inline constexpr uint32_t shard_round_queries_per_owner_max = 16;
// tallyd's default snapshot policy (--snapshot-every-records / -s; 0 = off):
// a restart replays at most about this much log per shard.
inline constexpr uint64_t snapshot_every_records_default = 100000;
inline constexpr uint64_t snapshot_every_s_default = 300;
// ---- end of protocol and server limits -------------------------------------

// ---- Load generator (tools/bench/, docs/BENCH.md) ---------------------------
// Wallets one tally-bench run may drive (its expected-balance tables are
// 16 bytes a wallet).
inline constexpr uint64_t bench_wallets_max = 10000000;
inline constexpr uint32_t bench_orgs_max = 4096;
inline constexpr uint32_t bench_connections_max = 1024;
inline constexpr uint32_t bench_threads_max = 64;
// Frames one connection keeps in flight: the server stops reading at
// connection_requests_in_flight_max.
inline constexpr uint32_t bench_depth_max = 4096;
// Holds and requests one connection remembers to capture / approve later.
inline constexpr uint32_t bench_open_items_max = 4096;
// Targets of one allocate command of the allocate workload.
inline constexpr uint32_t bench_allocate_targets_max = 8192;
inline constexpr uint32_t bench_invoice_lots_max = 16;
inline constexpr uint32_t bench_duration_s_max = 86400;
// ---- end of load generator limits -------------------------------------------

static_assert(frame_commands_max <= batch_commands_max);
static_assert(frame_commands_max * uint64_t{40} + 16 <= frame_body_bytes_max);
static_assert(shard_queue_commands_max >= batch_commands_max);

static_assert((history_entries_max_default & (history_entries_max_default - 1)) == 0);
static_assert(history_entries_max_default % history_chunk_entries == 0);
static_assert(hold_lots_max <= wallet_lots_max);
static_assert(assets_max <= (1u << 12), "asset index has 12 bits in a history entry");
static_assert(allocate_targets_max <= batch_commands_max);
static_assert(bench_depth_max <= connection_requests_in_flight_max);
static_assert(bench_allocate_targets_max <= allocate_targets_max);
static_assert(bench_connections_max <= connections_max_default);

}  // namespace tally

#endif  // TALLY_LIMITS_H_
