// shard.cc: the shard thread.  See shard.h.
#include "net/shard.h"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "tally/assert.h"

namespace tally::net {
namespace {

// The bytes of one round's commands in its log record: one record must hold
// them (else the log refuses it and the shard fails for good), with room
// for the batch header and the sweep (a 40-byte command).  Any one part
// fits: a frame's body, plus an actor the server names for each command.
constexpr uint64_t round_log_bytes_max =
    wal_record_payload_bytes_max - batch_header_bytes - 2 * command_core_bytes;
static_assert(frame_body_bytes_max + uint64_t{frame_commands_max} * (2 + text_bytes_max) <=
              round_log_bytes_max);

// NameThread names the calling thread for perf and /proc (at most 15
// characters; a failure changes nothing).
void NameThread(const char* prefix, uint32_t index) {
  char name[16];
  std::snprintf(name, sizeof name, "%s%u", prefix, index);
  (void)::pthread_setname_np(::pthread_self(), name);
}

int64_t WallClockUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void ApplyJob::FinishPart() {
  if (LastPart()) sink->Finished(this);
}

absl::StatusOr<std::unique_ptr<Shard>> Shard::Open(wal::FileSystem* fs, const ShardOptions& options,
                                                   EventSink events) {
  // The loop applies a round while the last one syncs (shard.h).
  wal::StoreOptions store_options = options.store;
  store_options.log.background_sync = true;
  store_options.log.sync_thread_name = absl::StrCat("sync-", options.index);
  absl::StatusOr<std::unique_ptr<wal::Store>> store =
      wal::Store::Open(fs, options.dir, store_options);
  if (!store.ok()) {
    return absl::Status(store.status().code(),
                        absl::StrCat("shard ", options.index, ": ", store.status().message()));
  }
  return std::unique_ptr<Shard>(new Shard(options, std::move(*store), std::move(events)));
}

Shard::~Shard() { Stop(); }

void Shard::Start() {
  TALLY_ASSERT(!thread_.joinable());
  // The regions are read before the shard thread writes anything; they stay
  // mapped while store_ lives, which outlives both threads (Stop()).
  const Ledger& ledger = store_->ledger();
  wal::PrefaulterOptions prefault;
  prefault.thread_name = absl::StrCat("prefault-", options_.index);
  prefault.ahead_entries = options_.prefault_ahead_entries;
  prefault.log = [index = options_.index](std::string_view line) {
    std::fprintf(stderr, "tallyd: shard %u: %.*s\n", index, static_cast<int>(line.size()),
                 line.data());
  };
  prefaulter_ = std::make_unique<wal::Prefaulter>(ledger.PrefaultRegions(),
                                                   ledger.history_entries_total(), prefault);
  thread_ = std::thread([this] { Run(); });
}

Shard::Push Shard::PushApply(const ApplyPart& part) {
  size_t taken = 0;
  return PushApplies(std::span(&part, 1), &taken);
}

Shard::Push Shard::PushApplies(std::span<const ApplyPart> parts, size_t* taken) {
  *taken = 0;
  {
    std::lock_guard lock(mu_);
    if (stop_) return Push::stopped;
    for (const ApplyPart& part : parts) {
      uint64_t count = part.size();
      TALLY_ASSERT(count > 0 && count <= frame_commands_max);
      if (queued_commands_ + count > options_.queue_commands_max) break;
      queued_commands_ += count;
      parts_.push_back(part);
      ++*taken;
    }
  }
  if (*taken > 0) wake_.notify_one();
  return *taken == parts.size() ? Push::accepted : Push::full;
}

Shard::Push Shard::PushQuery(QueryFn&& query, uint64_t owner) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return Push::stopped;
    if (queued_commands_ + 1 > options_.queue_commands_max) return Push::full;
    queued_commands_ += 1;
    queries_.push_back(QueuedQuery{std::move(query), owner});
  }
  wake_.notify_one();
  return Push::accepted;
}

void Shard::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
  if (prefaulter_) prefaulter_->Stop();
}

void Shard::Run() {
  NameThread("shard-", options_.index);
  using Clock = std::chrono::steady_clock;
  const auto sweep_every = std::chrono::milliseconds(options_.sweep_every_ms);
  Clock::time_point next_sweep = Clock::now() + sweep_every;
  std::vector<ApplyPart> parts;
  std::vector<QueuedQuery> queries;
  std::deque<QueuedQuery> left;
  absl::flat_hash_map<uint64_t, uint32_t> per_owner;
  for (;;) {
    parts.clear();
    queries.clear();
    bool stopping = false;
    // Rounds applied while the last sync ran are synced now if nothing else
    // is queued: the thread must not sleep on them.  If that sync still
    // runs, wait for it and look again: what queued meanwhile joins them in
    // the next sync, as it joined the next round before rounds overlapped
    // syncs (else small rounds were split: 50 clients of one deduct each
    // waited for up to three syncs instead of two).
    if (pending_) {
      const bool idle = QueueEmpty();
      if (idle && in_flight_ && !store_->SyncReturned()) {
        FinishInFlight();
        continue;
      }
      if (idle) StartPending();
    }
    {
      std::unique_lock lock(mu_);
      // A shard with queries left over from the last round does not sleep.
      // With the sweep off, wake up now and then all the same (a bounded wait).
      Clock::time_point wake_at =
          options_.sweep_every_ms > 0 ? next_sweep : Clock::now() + std::chrono::seconds(60);
      wake_.wait_until(lock, wake_at,
                       [&] { return stop_ || !parts_.empty() || !queries_.empty(); });
      stopping = stop_;
      // One round: up to shard_batch_queries_max queries, and whole parts
      // while they fit one batch and one log record (room is kept for the
      // sweep); the first part always fits (round_log_bytes_max).
      uint64_t commands = 0;
      uint64_t log_bytes = 0;
      while (!parts_.empty() && commands + parts_.front().size() < batch_commands_max &&
             log_bytes + parts_.front().log_bytes <= round_log_bytes_max) {
        commands += parts_.front().size();
        log_bytes += parts_.front().log_bytes;
        parts.push_back(parts_.front());
        parts_.pop_front();
      }
      // Queries: in order, but at most a few of each owner this round.
      per_owner.clear();
      left.clear();
      for (QueuedQuery& q : queries_) {
        if (queries.size() < shard_batch_queries_max &&
            per_owner[q.owner]++ < shard_round_queries_per_owner_max) {
          queries.push_back(std::move(q));
        } else {
          left.push_back(std::move(q));
        }
      }
      queries_.swap(left);
      queued_commands_ -= commands + queries.size();
    }

    // Queries see the state as of the last durable round: nothing they read
    // can be lost by a crash in the middle of this one.  So every round
    // applied is made durable first.
    if (!queries.empty() || stopping) SyncAll();
    ShardView view;
    view.now_us = WallClockUs();
    if (failed_reason_.empty()) {
      view.store = store_.get();
    } else {
      view.refusal = ResultCode::unavailable;
      view.reason = failed_reason_;
    }
    // Queries get a time budget per round: a flood of heavy ones (history
    // pages) cannot hold back the batch queued behind them; what is left
    // goes back to the front of the queue, in order.
    const auto query_deadline =
        Clock::now() + std::chrono::microseconds(shard_round_queries_us_max);
    size_t answered = 0;
    while (answered < queries.size()) {
      queries[answered++].fn(view);
      if (Clock::now() >= query_deadline) break;
    }
    if (answered < queries.size()) {
      std::lock_guard lock(mu_);
      queries_.insert(queries_.begin(), std::make_move_iterator(queries.begin() + answered),
                      std::make_move_iterator(queries.end()));
      queued_commands_ += queries.size() - answered;
    }

    bool sweep = options_.sweep_every_ms > 0 && Clock::now() >= next_sweep;
    if (sweep) next_sweep = Clock::now() + sweep_every;
    if (!failed_reason_.empty()) {
      Refuse(parts, nullptr, ResultCode::unavailable, failed_reason_);
    } else if (!parts.empty() || sweep) {
      ApplyBatch(parts, sweep);
      // A sweep that hit its bound goes on at once rather than a period later.
      if (sweep && failed_reason_.empty() && !out_.results.empty() &&
          out_.results.back().n[2] != 0) {
        next_sweep = Clock::now();
      }
    }

    if (failed_reason_.empty()) MaybeSnapshot();

    if (stopping) {
      SyncAll();
      std::lock_guard lock(mu_);
      stopped_ = true;
      std::vector<ApplyPart> rest(std::make_move_iterator(parts_.begin()),
                                  std::make_move_iterator(parts_.end()));
      std::vector<QueuedQuery> rest_queries(std::make_move_iterator(queries_.begin()),
                                            std::make_move_iterator(queries_.end()));
      parts_.clear();
      queries_.clear();
      queued_commands_ = 0;
      Refuse(rest, &rest_queries, ResultCode::shutting_down, "the server is shutting down");
      return;
    }
  }
}

void Shard::ApplyBatch(std::vector<ApplyPart>& parts, bool sweep) {
  // The round's commands are applied where the I/O threads decoded them:
  // the engine reads them through pointers and fetches them a few ahead
  // itself (Ledger::Apply of pointers).  Gathering them into one array
  // first, 152 bytes each from the other core, was ~10 % of the machine's
  // CPU at frames of 8,000 (bench/RESULTS.md, "Applying the frames'
  // commands in place").
  //
  // The log record is built at the same time.  A part of many commands is
  // logged as its frame carried them (they arrived in the log's encoding:
  // encoding them again was ~3.5 % of tallyd at frames of 8,000); a run of
  // them side by side in the frame is one copy.  Small parts (frames of one
  // deduct) are encoded from their commands, all those in a row with one
  // call, rather than fetching their frames' bytes and offsets; so are
  // parts whose commands the server changed (named an actor), and the sweep.
  constexpr uint32_t slice_commands_min = 8;
  absl::Status encoded = absl::OkStatus();
  size_t unlogged_from = 0;  // commands_[unlogged_from, end) are not in record_ yet
  commands_.resize(0);
  record_.resize(batch_header_bytes);  // Store::ApplyEncoded writes the header
  for (const ApplyPart& part : parts) {
    const ApplyJob& job = *part.job;
    const Command* source = job.batch.commands.data();
    const uint32_t* order = job.order.data();
    for (uint32_t k = part.begin; k < part.end; ++k) commands_.push_back(source + order[k]);
    // A job whose commands were not decoded from its body has no bytes.
    const bool slice = part.size() >= slice_commands_min && !job.reencode &&
                       job.batch.command_ends.size() == job.batch.commands.size();
    if (slice) {
      const size_t part_from = commands_.size() - part.size();
      if (encoded.ok() && part_from > unlogged_from) {
        encoded = EncodeCommands(
            std::span(commands_).subspan(unlogged_from, part_from - unlogged_from), &record_);
      }
      unlogged_from = commands_.size();
      const uint32_t* ends = job.batch.command_ends.data();
      uint32_t run_begin = 0;
      uint32_t run_end = 0;
      for (uint32_t k = part.begin; k < part.end; ++k) {
        const uint32_t i = order[k];
        const uint32_t begin = i == 0 ? batch_header_bytes : ends[i - 1];
        if (begin != run_end) {
          record_.append(job.body, run_begin, run_end - run_begin);
          run_begin = begin;
        }
        run_end = ends[i];
      }
      record_.append(job.body, run_begin, run_end - run_begin);
    }
  }
  if (sweep) commands_.push_back(&sweep_command_);
  if (encoded.ok() && commands_.size() > unlogged_from) {
    encoded = EncodeCommands(std::span(commands_).subspan(unlogged_from), &record_);
  }
  TALLY_ASSERT(commands_.size() <= batch_commands_max);

  int64_t now_us = WallClockUs();
  absl::StatusOr<uint64_t> lsn =
      encoded.ok() ? store_->ApplyEncoded(now_us, commands_, &record_, &out_) : encoded;
  if (!lsn.ok()) {
    if (failed_reason_.empty()) Fail(lsn.status());
    Refuse(parts, nullptr, ResultCode::unavailable, failed_reason_);
    SyncAll();  // the round in flight may still be durable; the pending ones are refused
    return;
  }
  // The results and the time go into their jobs now; the jobs go back once
  // durable.
  TALLY_ASSERT(out_.results.size() == commands_.size());
  size_t at = 0;
  for (const ApplyPart& part : parts) {
    ApplyJob& job = *part.job;
    for (uint32_t k = part.begin; k < part.end; ++k) job.results[job.order[k]] = out_.results[at++];
    int64_t seen = job.time_us.load(std::memory_order_relaxed);
    while (seen < out_.time_us &&
           !job.time_us.compare_exchange_weak(seen, out_.time_us, std::memory_order_relaxed)) {
    }
  }
  prefaulter_->Advance(store_->ledger().history_entries_total());
  // Usually the only pending round: its vectors are swapped in, not copied.
  if (pending_parts_.empty()) {
    pending_parts_.swap(parts);
  } else {
    pending_parts_.insert(pending_parts_.end(), parts.begin(), parts.end());
  }
  if (pending_events_.empty()) {
    pending_events_.swap(out_.events);
  } else {
    pending_events_.insert(pending_events_.end(), out_.events.begin(), out_.events.end());
  }
  pending_ = true;
  parts.clear();
  // One sync at a time: while one runs, the rounds applied meanwhile wait
  // for it to end and then share the next one (group commit over rounds).
  if (!in_flight_ || store_->SyncReturned()) StartPending();
}

void Shard::StartPending() {
  FinishInFlight();
  if (!pending_) return;
  pending_ = false;
  if (!failed_reason_.empty()) {  // the last sync failed: these are not durable either
    RefuseParts(pending_parts_, ResultCode::unavailable);
    pending_events_.clear();
    return;
  }
  in_flight_parts_.swap(pending_parts_);
  in_flight_events_.swap(pending_events_);
  in_flight_ = true;
  // HandBack runs on the log's sync thread as soon as the rounds are
  // durable, while this thread applies the next; it touches only the
  // in_flight_ fields, which this thread leaves alone until FinishInFlight.
  // With nothing queued there is nothing to apply meanwhile: the sync runs
  // here, sparing a request alone in the system two thread hand-offs
  // (measured: 50 clients with one deduct in flight each lost ~15 % without
  // this).
  (void)store_->StartSync([this](bool durable) { HandBack(durable); },
                          QueueEmpty() ? wal::LogWriter::SyncOn::kThisThread
                                      : wal::LogWriter::SyncOn::kSyncThread);
}

bool Shard::QueueEmpty() {
  std::lock_guard lock(mu_);
  return parts_.empty() && queries_.empty();
}

void Shard::SyncAll() {
  StartPending();
  FinishInFlight();
}

void Shard::FinishInFlight() {
  if (!in_flight_) return;
  in_flight_ = false;
  // HandBack has run once this returns; a failure is the store's for good.
  if (absl::Status synced = store_->WaitSync(); !synced.ok() && failed_reason_.empty()) {
    Fail(synced);
  }
}

void Shard::HandBack(bool durable) {
  if (!durable) {
    RefuseParts(in_flight_parts_, ResultCode::unavailable);
    in_flight_events_.clear();
    return;
  }
  for (ApplyPart& part : in_flight_parts_) {
    if (part.job->LastPart()) finished_.push_back(part.job);
  }
  in_flight_parts_.clear();
  // Hand the finished jobs back one sink (one I/O thread) at a time, all of
  // a sink's at once: one lock and at most one wake-up per sink a round,
  // instead of a lock per job and a wake-up each time the I/O thread had
  // emptied its queue while this loop was still finishing jobs.
  // Each sink's jobs keep their order (a connection's replies go out in
  // the order its frames finished); sinks are few (one per I/O thread).
  while (!finished_.empty()) {
    JobSink* sink = finished_.front()->sink;
    for (ApplyJob* job : finished_) {
      if (job->sink == sink) handing_.push_back(job);
    }
    std::erase_if(finished_, [sink](const ApplyJob* job) { return job->sink == sink; });
    sink->FinishedAll(handing_);
    handing_.clear();
  }
  if (!in_flight_events_.empty() && events_) events_(in_flight_events_);
  in_flight_events_.clear();
}

void RefuseParts(std::vector<ApplyPart>& parts, ResultCode code) {
  for (const ApplyPart& part : parts) {
    ApplyJob& job = *part.job;
    for (uint32_t k = part.begin; k < part.end; ++k)
      job.results[job.order[k]] = Result{.code = code};
    job.FinishPart();
  }
  parts.clear();
}

void Shard::Refuse(std::vector<ApplyPart>& parts, std::vector<QueuedQuery>* queries,
                   ResultCode code, const std::string& reason) {
  RefuseParts(parts, code);
  ShardView view{.store = nullptr, .refusal = code, .reason = reason, .now_us = WallClockUs()};
  if (queries != nullptr) {
    for (QueuedQuery& query : *queries) query.fn(view);
  }
}

void Shard::MaybeSnapshot() {
  const wal::StoreOptions& store = options_.store;
  if (store.snapshot_every_records == 0 && store.snapshot_every_ms == 0) return;
  // A failed snapshot leaves the store working (the log just grows); the
  // store retries later.  Every batch before it is durable already.
  if (absl::Status s = store_->MaybeSnapshot(WallClockUs() / 1000); !s.ok()) {
    std::fprintf(stderr, "tallyd: shard %u: snapshot failed: %s\n", options_.index,
                 std::string(s.message()).c_str());
  }
}

void Shard::Fail(const absl::Status& status) {
  failed_reason_ = absl::StrCat("shard ", options_.index, " cannot log: ", status.message());
  std::fprintf(stderr, "tallyd: %s; it refuses every request from now on\n",
               failed_reason_.c_str());
}

}  // namespace tally::net
