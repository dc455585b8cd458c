// shard.h: one shard thread of tallyd, the only thread that touches its
// ledger.
//
// A Shard owns a wal::Store (a ledger and its log) and a bounded queue.  The
// I/O threads put apply parts (the commands of one frame that belong to
// this shard) and queries into the queue; the shard thread loops:
//
//   1. take everything queued, up to batch_commands_max commands;
//   2. if there are queries: wait for the round in flight (below), then
//      answer them on the state as of that durable round;
//   3. stamp the time (this server's clock, µs), Store::Apply the commands
//      as one batch, plus an expire_sweep when the sweep timer is due, and
//      write each result into its job;
//   4. if no sync runs (or the last one has returned), Store::StartSync
//      the rounds applied since the last one: the log's own thread writes
//      them and fdatasyncs, then hands their jobs and events back at once.
//      While it runs the thread goes on taking and applying rounds, which
//      share the next sync (group commit over rounds); with nothing queued
//      it syncs on its own thread instead;
//   6. Store::MaybeSnapshot: reap a finished snapshot child, start one when
//      due (also when idle: the thread wakes at least every sweep period).
//
// Nothing is acknowledged before the sync that covers it returned: a job
// goes back from the sync thread after its round's fdatasync.
// docs/DURABILITY.md, "Applying while the last round syncs".
//
// With LedgerOptions::prefault, Start() also runs a pre-fault thread: it
// faults the ledger's big tables in (Ledger::PrefaultRegions), 2 MiB a
// call, at the lowest priority, keeping a bounded window ahead of the
// history the shard has written (prefault_ahead_entries), so the shard
// thread's batches do not pay the first touch of the history ring and the
// op-id memory (docs/MEMORY.md, "Pre-faulting").  It ends when everything is
// in, or at Stop().  The loop is wal::Prefaulter, which Store::Open also
// runs while it replays the log.
#ifndef TALLY_NET_SHARD_H_
#define TALLY_NET_SHARD_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/ledger.h"
#include "tally/codec.h"
#include "wal/file.h"
#include "wal/prefaulter.h"
#include "wal/store.h"

namespace tally::net {

struct ApplyJob;

// JobSink takes an apply job back once every part of it is durable or
// refused.  Finished() runs on a shard thread (or on the thread that gave up
// the last part, when a shard refused it at once); it must not block.
class JobSink {
 public:
  virtual void Finished(ApplyJob* job) = 0;
  // FinishedAll hands back the jobs one shard round finished, together: a
  // sink that queues them for another thread takes its lock (and wakes that
  // thread) once a round instead of once a job.
  virtual void FinishedAll(std::span<ApplyJob* const> jobs) {
    for (ApplyJob* job : jobs) Finished(job);
  }

 protected:
  ~JobSink() = default;
};

// ApplyJob is one apply frame on its way through the shards.  It owns the
// frame's bytes (the commands' texts point into them) and collects one
// result per command; the shard that finishes the last part hands it to
// `sink`.  The server reuses jobs (their buffers keep their capacity), so a
// frame in steady state allocates nothing.
struct ApplyJob {
  std::string body;
  DecodedBatch batch;
  std::vector<Result> results;
  // Indices into batch.commands grouped by shard, each group in request
  // order; a part is one range of it.
  std::vector<uint32_t> order;
  // The server changed a command after decoding it (named its actor): its
  // bytes in `body` are no longer what is applied, so the log encodes them.
  bool reencode = false;
  std::atomic<uint32_t> parts_left{0};
  std::atomic<int64_t> time_us{0};
  JobSink* sink = nullptr;

  // FinishPart counts one part done and hands the job to the sink after the
  // last.
  void FinishPart();
  // LastPart counts one part done; true: it was the last, and the caller
  // hands the job to its sink.
  bool LastPart() { return parts_left.fetch_sub(1, std::memory_order_acq_rel) == 1; }
};

// ApplyPart is the commands of one job that go to one shard:
// job->order[begin, end).
struct ApplyPart {
  ApplyJob* job = nullptr;
  uint32_t begin = 0;
  uint32_t end = 0;
  // At least the bytes these commands take in a log record (the frame's
  // bytes, plus an actor the server named): a round takes no more parts
  // than one record holds (wal_record_payload_bytes_max).  0: small.
  uint32_t log_bytes = 0;
  uint32_t size() const { return end - begin; }
};

// RefuseParts answers every command of `parts` with `code`, finishes each
// part (a job goes back to its sink once all its parts are finished) and
// empties `parts`: for parts a shard will never apply.
void RefuseParts(std::vector<ApplyPart>& parts, ResultCode code);

// ShardView is what a query sees: the store (its ledger, and the history
// on disk beyond the ledger's RAM window), or why it may not look.
struct ShardView {
  const wal::Store* store = nullptr;  // nullptr: refused with `refusal`
  ResultCode refusal = ResultCode::ok;
  std::string reason;
  int64_t now_us = 0;
};
using QueryFn = std::function<void(const ShardView& view)>;

// QueuedQuery is a query and who sent it (a connection), for fairness.
struct QueuedQuery {
  QueryFn fn;
  uint64_t owner = 0;
};

// EventSink receives a shard's events once their batch is durable.
using EventSink = std::function<void(std::span<const Event> events)>;

struct ShardOptions {
  uint32_t index = 0;
  std::string dir;  // the wal::Store directory, <data>/shard-<index>
  uint32_t sweep_every_ms = 1000;
  uint32_t queue_commands_max = shard_queue_commands_max;
  // With store.ledger.prefault: how far ahead of the history written the
  // pre-fault thread keeps the memory faulted in, in history entries (the
  // op-id entries alongside).  16 ring chunks: ~100 MB, about a second of
  // the heaviest load one shard has taken here.
  uint64_t prefault_ahead_entries = 16 * history_chunk_entries;
  // Includes the snapshot policy: Store::MaybeSnapshot runs between batches.
  wal::StoreOptions store;
};

class Shard {
 public:
  enum class Push { accepted, full, stopped };

  // Open recovers the shard's store; Start() runs its thread.
  static absl::StatusOr<std::unique_ptr<Shard>> Open(wal::FileSystem* fs,
                                                     const ShardOptions& options, EventSink events);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  void Start();
  // PushApply queues a part; `full` when its commands do not fit the queue
  // now (the caller waits and retries), `stopped` after Stop().
  Push PushApply(const ApplyPart& part);
  // PushApplies queues parts from the front of `parts` while they fit, under
  // one lock and with one wake-up (an I/O thread hands over every frame of
  // one socket read at once); *taken says how many.  `full` when some are
  // left, `stopped` (nothing taken) after Stop().
  Push PushApplies(std::span<const ApplyPart> parts, size_t* taken);
  // PushQuery queues a query (it counts as one command of the queue).
  // `owner` names its sender: a round answers at most
  // shard_round_queries_per_owner_max of one owner's queries, so one
  // client's flood does not delay everyone else's.
  Push PushQuery(QueryFn&& query, uint64_t owner = 0);
  // Stop finishes the batch in progress, answers the rest `shutting_down`
  // and joins the thread.  Idempotent.
  void Stop();

  const wal::RecoveryReport& recovery() const { return store_->recovery(); }
  uint32_t index() const { return options_.index; }

 private:
  Shard(const ShardOptions& options, std::unique_ptr<wal::Store> store, EventSink events)
      : options_(options), store_(std::move(store)), events_(std::move(events)) {}
  void Run();
  // ApplyBatch applies the taken parts (and a sweep when due) and makes it a
  // pending round; it starts the pending rounds' sync when no sync runs.
  void ApplyBatch(std::vector<ApplyPart>& parts, bool sweep);
  // StartPending waits for the sync in flight, then starts one for the
  // pending rounds (on this thread when nothing is queued).  When the shard
  // has failed they are refused `unavailable` instead.
  void StartPending();
  // QueueEmpty: no part and no query waits (takes mu_).
  bool QueueEmpty();
  // SyncAll makes every round applied durable and handed back (or refused).
  void SyncAll();
  // FinishInFlight waits for the sync in flight (and its HandBack); when the
  // sync failed the shard fails.  Nothing to do when none is in flight.
  void FinishInFlight();
  // HandBack runs once a sync returned, on the log's sync thread (or this
  // one): it hands its rounds' jobs and events back, or refuses their
  // commands `unavailable` when the sync failed (not durable).
  void HandBack(bool durable);
  void Refuse(std::vector<ApplyPart>& parts, std::vector<QueuedQuery>* queries, ResultCode code,
              const std::string& reason);
  void Fail(const absl::Status& status);
  void MaybeSnapshot();

  ShardOptions options_;
  std::unique_ptr<wal::Store> store_;
  EventSink events_;
  std::thread thread_;
  // Faults the ledger's tables in ahead of the shard thread (no thread
  // unless store.ledger.prefault); the shard thread publishes its history
  // entries to it after each batch.  Made by Start().
  std::unique_ptr<wal::Prefaulter> prefaulter_;

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<ApplyPart> parts_;      // guarded by mu_
  std::deque<QueuedQuery> queries_;  // guarded by mu_
  uint64_t queued_commands_ = 0;     // guarded by mu_
  bool stop_ = false;                // guarded by mu_
  bool stopped_ = false;             // guarded by mu_: the thread no longer takes work

  // Shard thread only.
  std::string failed_reason_;  // nonempty: the store failed, for good
  std::vector<const Command*> commands_;  // the round's, where they were decoded
  const Command sweep_command_{.kind = CommandKind::expire_sweep};
  std::string record_;  // the round's log record, from the frames' bytes
  BatchOutput out_;
  // Rounds applied and not yet syncing (their results and times are in
  // their jobs already): a sync was running when they were applied.
  bool pending_ = false;
  std::vector<ApplyPart> pending_parts_;
  std::vector<Event> pending_events_;
  // The rounds whose sync runs.  Between StartSync and FinishInFlight only
  // HandBack touches them (and finished_ and handing_), on the sync thread.
  bool in_flight_ = false;
  std::vector<ApplyPart> in_flight_parts_;
  std::vector<Event> in_flight_events_;
  // The round's finished jobs, by sink, handed back after the results loop
  // (HandBack's).
  std::vector<ApplyJob*> finished_;
  std::vector<ApplyJob*> handing_;  // one sink's of finished_
};

}  // namespace tally::net

#endif  // TALLY_NET_SHARD_H_
