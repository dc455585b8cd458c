// shard.cc: the shard thread.  See shard.h.
#include "net/shard.h"

#include <chrono>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tally/assert.h"

namespace tally::net {
namespace {

int64_t WallClockUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void ApplyJob::FinishPart() {
  if (parts_left.fetch_sub(1, std::memory_order_acq_rel) == 1) done(*this);
}

absl::StatusOr<std::unique_ptr<Shard>> Shard::Open(wal::FileSystem* fs, const ShardOptions& options,
                                                   EventSink events) {
  absl::StatusOr<std::unique_ptr<wal::Store>> store =
      wal::Store::Open(fs, options.dir, options.store);
  if (!store.ok()) {
    return absl::Status(store.status().code(),
                        absl::StrCat("shard ", options.index, ": ", store.status().message()));
  }
  return std::unique_ptr<Shard>(new Shard(options, std::move(*store), std::move(events)));
}

Shard::~Shard() { Stop(); }

void Shard::Start() {
  TALLY_ASSERT(!thread_.joinable());
  thread_ = std::thread([this] { Run(); });
}

Shard::Push Shard::PushApply(ApplyPart&& part) {
  uint64_t count = part.indices.size();
  TALLY_ASSERT(count > 0 && count <= frame_commands_max);
  {
    std::lock_guard lock(mu_);
    if (stop_) return Push::stopped;
    if (queued_commands_ + count > options_.queue_commands_max) return Push::full;
    queued_commands_ += count;
    parts_.push_back(std::move(part));
  }
  wake_.notify_one();
  return Push::accepted;
}

Shard::Push Shard::PushQuery(QueryFn&& query) {
  {
    std::lock_guard lock(mu_);
    if (stop_) return Push::stopped;
    if (queued_commands_ + 1 > options_.queue_commands_max) return Push::full;
    queued_commands_ += 1;
    queries_.push_back(std::move(query));
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
}

void Shard::Run() {
  using Clock = std::chrono::steady_clock;
  const auto sweep_every = std::chrono::milliseconds(options_.sweep_every_ms);
  Clock::time_point next_sweep = Clock::now() + sweep_every;
  std::vector<ApplyPart> parts;
  std::vector<QueryFn> queries;
  for (;;) {
    parts.clear();
    queries.clear();
    bool stopping = false;
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
      // while they fit one batch
      // (one command is kept for the sweep).
      uint64_t commands = 0;
      while (!parts_.empty() && commands + parts_.front().indices.size() < batch_commands_max) {
        commands += parts_.front().indices.size();
        parts.push_back(std::move(parts_.front()));
        parts_.pop_front();
      }
      while (!queries_.empty() && queries.size() < shard_batch_queries_max) {
        queries.push_back(std::move(queries_.front()));
        queries_.pop_front();
      }
      queued_commands_ -= commands + queries.size();
    }

    // Queries see the state as of the last durable batch: nothing they read
    // can be lost by a crash in the middle of this one.
    ShardView view;
    view.now_us = WallClockUs();
    if (failed_reason_.empty()) {
      view.store = store_.get();
    } else {
      view.refusal = ResultCode::unavailable;
      view.reason = failed_reason_;
    }
    for (QueryFn& query : queries) query(view);

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
      std::lock_guard lock(mu_);
      stopped_ = true;
      std::vector<ApplyPart> rest(std::make_move_iterator(parts_.begin()),
                                  std::make_move_iterator(parts_.end()));
      std::vector<QueryFn> rest_queries(std::make_move_iterator(queries_.begin()),
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
  commands_.clear();
  for (const ApplyPart& part : parts) {
    for (uint32_t index : part.indices) commands_.push_back(part.job->batch.commands[index]);
  }
  if (sweep) commands_.push_back(Command{.kind = CommandKind::expire_sweep});
  TALLY_ASSERT(commands_.size() <= batch_commands_max);

  int64_t now_us = WallClockUs();
  absl::StatusOr<uint64_t> lsn = store_->Apply(now_us, commands_, &out_);
  absl::Status synced = lsn.ok() ? store_->Sync() : lsn.status();
  if (!synced.ok()) {
    Fail(synced);
    Refuse(parts, nullptr, ResultCode::unavailable, failed_reason_);
    return;
  }
  TALLY_ASSERT(out_.results.size() == commands_.size());
  size_t at = 0;
  for (ApplyPart& part : parts) {
    ApplyJob& job = *part.job;
    for (uint32_t index : part.indices) job.results[index] = out_.results[at++];
    int64_t seen = job.time_us.load(std::memory_order_relaxed);
    while (seen < out_.time_us &&
           !job.time_us.compare_exchange_weak(seen, out_.time_us, std::memory_order_relaxed)) {
    }
    job.FinishPart();
  }
  if (!out_.events.empty() && events_) events_(out_.events);
}

void Shard::Refuse(std::vector<ApplyPart>& parts, std::vector<QueryFn>* queries, ResultCode code,
                   const std::string& reason) {
  for (ApplyPart& part : parts) {
    for (uint32_t index : part.indices) part.job->results[index] = Result{.code = code};
    part.job->FinishPart();
  }
  ShardView view{.store = nullptr, .refusal = code, .reason = reason, .now_us = WallClockUs()};
  if (queries != nullptr) {
    for (QueryFn& query : *queries) query(view);
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
