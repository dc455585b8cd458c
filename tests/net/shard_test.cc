// shard_test.cc: the shard thread on an in-memory, fault-injecting file
// system: group commit, and a failed log that refuses everything after.
#include "net/shard.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cerrno>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "gtest/gtest.h"
#include "tally/commands.h"
#include "wal/file.h"
#include "wal/history_file.h"

namespace tally::net {
namespace {

inline void PrintTo(ResultCode code, std::ostream* os) { *os << ResultCodeName(code); }

// Job builds an apply job of `commands`; its sink fulfils a promise.
struct Job final : JobSink {
  std::unique_ptr<ApplyJob> job = std::make_unique<ApplyJob>();
  std::promise<std::vector<Result>> promise;

  explicit Job(std::vector<Command> commands) {
    job->batch.commands = std::move(commands);
    job->results.resize(job->batch.commands.size());
    for (uint32_t i = 0; i < job->batch.commands.size(); ++i) job->order.push_back(i);
    job->parts_left = 1;
    job->sink = this;
  }
  void Finished(ApplyJob* done) override { promise.set_value(done->results); }
  ApplyPart Part() {
    return ApplyPart{job.get(), 0, static_cast<uint32_t>(job->order.size())};
  }
  std::vector<Result> Wait() { return promise.get_future().get(); }
};

Command WithOp(Command c, uint64_t op_id) {
  c.op_id = op_id;
  return c;
}

std::unique_ptr<Shard> OpenShard(wal::FileSystem* fs, uint32_t index) {
  ShardOptions options;
  options.index = index;
  options.dir = "/shard-" + std::to_string(index);
  options.sweep_every_ms = 0;
  auto shard = Shard::Open(fs, options, nullptr);
  EXPECT_TRUE(shard.ok()) << shard.status();
  return shard.ok() ? std::move(*shard) : nullptr;
}

TEST(ShardTest, PartsQueuedDuringASyncShareTheNextBatchAndItsSync) {
  wal::MemFileSystem fs;
  auto shard = OpenShard(&fs, 0);
  ASSERT_NE(shard, nullptr);
  // Queued before the thread runs: as if they arrived during a sync.
  std::vector<std::unique_ptr<Job>> jobs;
  jobs.push_back(std::make_unique<Job>(std::vector<Command>{WithOp(cmd::OrgCreate(1), 1)}));
  for (uint64_t i = 0; i < 50; ++i) {
    jobs.push_back(std::make_unique<Job>(std::vector<Command>{WithOp(cmd::Topup(1, 10), 100 + i)}));
  }
  for (auto& job : jobs) ASSERT_EQ(shard->PushApply(job->Part()), Shard::Push::accepted);
  const uint64_t syncs_before = fs.syncs();
  shard->Start();
  for (auto& job : jobs) {
    std::vector<Result> results = job->Wait();
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].code, ResultCode::ok);
  }
  shard->Stop();
  EXPECT_EQ(fs.syncs() - syncs_before, 1u) << "51 frames, one group commit";
}

// CountingSink stands for an I/O thread: it records each hand-back.
struct CountingSink final : JobSink {
  std::mutex mu;
  std::vector<std::vector<ApplyJob*>> calls;  // guarded by mu
  void Finished(ApplyJob* job) override {
    std::lock_guard lock(mu);
    calls.push_back({job});
  }
  void FinishedAll(std::span<ApplyJob* const> jobs) override {
    std::lock_guard lock(mu);
    calls.emplace_back(jobs.begin(), jobs.end());
  }
  size_t jobs_back() {
    std::lock_guard lock(mu);
    size_t n = 0;
    for (const auto& call : calls) n += call.size();
    return n;
  }
};

TEST(ShardTest, ARoundHandsEachSinkItsFinishedJobsOnceAndInOrder) {
  wal::MemFileSystem fs;
  auto shard = OpenShard(&fs, 0);
  ASSERT_NE(shard, nullptr);
  CountingSink sinks[2];
  std::vector<std::unique_ptr<ApplyJob>> jobs;
  auto add = [&](Command c, JobSink* sink) {
    auto job = std::make_unique<ApplyJob>();
    job->batch.commands = {c};
    job->results.resize(1);
    job->order = {0};
    job->parts_left = 1;
    job->sink = sink;
    jobs.push_back(std::move(job));
  };
  add(WithOp(cmd::OrgCreate(1), 1), &sinks[0]);
  for (uint64_t i = 0; i < 20; ++i) add(WithOp(cmd::Topup(1, 10), 100 + i), &sinks[i % 2]);
  // Queued before the thread runs: one round takes them all.
  for (auto& job : jobs) {
    ASSERT_EQ(shard->PushApply(ApplyPart{job.get(), 0, 1}), Shard::Push::accepted);
  }
  shard->Start();
  for (int i = 0; i < 10000 && sinks[0].jobs_back() + sinks[1].jobs_back() < jobs.size(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  shard->Stop();
  for (int s = 0; s < 2; ++s) {
    ASSERT_EQ(sinks[s].calls.size(), 1u) << "sink " << s << ": one hand-back for the round";
    std::vector<ApplyJob*> want;
    for (auto& job : jobs) {
      if (job->sink == &sinks[s]) want.push_back(job.get());
    }
    EXPECT_EQ(sinks[s].calls[0], want) << "sink " << s << ": in the order they were queued";
  }
  for (auto& job : jobs) EXPECT_EQ(job->results[0].code, ResultCode::ok);
}

TEST(ShardTest, AFailedSyncMakesTheShardRefuseEverythingWhileAnotherCarriesOn) {
  wal::MemFileSystem broken_fs;
  wal::MemFileSystem good_fs;
  auto broken = OpenShard(&broken_fs, 0);
  auto good = OpenShard(&good_fs, 1);
  ASSERT_NE(broken, nullptr);
  ASSERT_NE(good, nullptr);
  broken_fs.FailSync(EIO);
  broken->Start();
  good->Start();

  Job first({WithOp(cmd::OrgCreate(1), 1)});
  ASSERT_EQ(broken->PushApply(first.Part()), Shard::Push::accepted);
  EXPECT_EQ(first.Wait()[0].code, ResultCode::unavailable);
  // Never acknowledges again, even though the next sync would work.
  Job second({WithOp(cmd::OrgCreate(2), 2)});
  ASSERT_EQ(broken->PushApply(second.Part()), Shard::Push::accepted);
  EXPECT_EQ(second.Wait()[0].code, ResultCode::unavailable);
  // Queries are refused with the reason: memory may hold what the log lost.
  std::promise<ShardView> seen;
  ASSERT_EQ(broken->PushQuery([&](const ShardView& view) { seen.set_value(view); }),
            Shard::Push::accepted);
  ShardView view = seen.get_future().get();
  EXPECT_EQ(view.store, nullptr);
  EXPECT_EQ(view.refusal, ResultCode::unavailable);
  EXPECT_NE(view.reason.find("cannot log"), std::string::npos) << view.reason;

  Job other({WithOp(cmd::OrgCreate(3), 3)});
  ASSERT_EQ(good->PushApply(other.Part()), Shard::Push::accepted);
  EXPECT_EQ(other.Wait()[0].code, ResultCode::ok);
  broken->Stop();
  good->Stop();
}

// SyncGate holds the fdatasyncs of a MemFileSystem's log segments while it
// is closed, so a test can hold a round's sync and watch what the shard does
// meanwhile.  Declared after the file system and before the shard, so the
// shard stops before the gate goes.
class SyncGate {
 public:
  explicit SyncGate(wal::MemFileSystem* fs) : fs_(fs) {
    fs_->BeforeDataSync([this](const std::string& path) {
      if (path.find("/wal-") != std::string::npos) Pass();
    });
  }
  ~SyncGate() { fs_->BeforeDataSync(nullptr); }
  SyncGate(const SyncGate&) = delete;
  SyncGate& operator=(const SyncGate&) = delete;

  void Close() {
    std::lock_guard lock(mu_);
    closed_ = true;
    passes_ = 0;
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      closed_ = false;
    }
    opened_.notify_all();
  }
  // LetOneThrough lets one sync pass the closed gate (one waiting now, or
  // the next to come).
  void LetOneThrough() {
    {
      std::lock_guard lock(mu_);
      ++passes_;
    }
    opened_.notify_all();
  }
  int syncs_waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  void Pass() {
    std::unique_lock lock(mu_);
    ++waiting_;
    opened_.wait(lock, [this] { return !closed_ || passes_ > 0; });
    if (closed_) --passes_;
    --waiting_;
  }

  wal::MemFileSystem* fs_;
  std::mutex mu_;
  std::condition_variable opened_;
  bool closed_ = false;  // guarded by mu_
  int passes_ = 0;       // guarded by mu_: syncs let through the closed gate
  int waiting_ = 0;      // guarded by mu_
};

// HistoryEntries is how many history entries shard 0 has written to its
// file (wal/HISTORY.md: fixed-size records in history/entries): what it has
// applied.
uint64_t HistoryEntries(const wal::MemFileSystem& fs) {
  return fs.FileSize("/shard-0/history/entries") / wal::history_record_bytes;
}

// Eventually polls `done` for up to 10 s.
bool Eventually(const std::function<bool()>& done) {
  for (int i = 0; i < 10'000; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

// Deducts is a job of `count` deducts of 1 from org 1's wallet 7, op ids
// from `first_op`.
std::unique_ptr<Job> Deducts(uint32_t count, uint64_t first_op) {
  std::vector<Command> commands;
  for (uint32_t i = 0; i < count; ++i) {
    commands.push_back(WithOp(cmd::Deduct(1, 7, 1), first_op + i));
  }
  return std::make_unique<Job>(std::move(commands));
}

// The shard applies a round while the last one's fdatasync runs (when more
// work is queued; with none it syncs on its own thread), and no job goes
// back before the sync of its own round returned; a query waits for the
// round in flight and then sees it.
TEST(ShardTest, ARoundAppliesWhileTheLastSyncsAndNothingGoesBackBeforeItsOwnSync) {
  wal::MemFileSystem fs;
  SyncGate gate(&fs);
  auto shard = OpenShard(&fs, 0);
  ASSERT_NE(shard, nullptr);
  shard->Start();
  gate.Close();
  // Whatever fails below, the gate opens before the shard stops.
  absl::Cleanup open_gate = [&gate] { gate.Open(); };
  // A alone: nothing else queued, so the shard thread syncs it itself.
  Job a({WithOp(cmd::OrgCreate(1), 1), WithOp(cmd::Grant(1, 7, 1'000'000), 2)});
  auto a_back = a.promise.get_future();
  ASSERT_EQ(shard->PushApply(a.Part()), Shard::Push::accepted);
  ASSERT_TRUE(Eventually([&] { return gate.syncs_waiting() == 1; })) << "A syncs";
  // Meanwhile B (four parts, 64,000 commands) and C queue; one round holds
  // at most batch_commands_max, so B is the next round and C the one after.
  std::vector<std::unique_ptr<Job>> b;
  std::vector<std::future<std::vector<Result>>> b_back;
  for (uint64_t i = 0; i < 4; ++i) {
    b.push_back(Deducts(16'000, 100'000 + i * 16'000));
    b_back.push_back(b.back()->promise.get_future());
    ASSERT_EQ(shard->PushApply(b.back()->Part()), Shard::Push::accepted);
  }
  auto c = Deducts(2'000, 200'000);
  auto c_back = c->promise.get_future();
  ASSERT_EQ(shard->PushApply(c->Part()), Shard::Push::accepted);
  static_assert(4 * 16'000 + 2'000 > batch_commands_max);
  gate.LetOneThrough();  // A's sync
  EXPECT_EQ(a_back.get()[1].code, ResultCode::ok);
  // B's sync waits at the gate (on the log's thread: C was queued), and C
  // applies meanwhile.
  ASSERT_TRUE(Eventually([&] { return gate.syncs_waiting() == 1; })) << "B syncs";
  ASSERT_TRUE(Eventually([&] { return HistoryEntries(fs) == 1 + 64'000 + 2'000; }))
      << "C applies while B's sync waits: " << HistoryEntries(fs) << " history entries";
  // A query now: it must wait for C's sync, which starts after B's.
  std::promise<int64_t> balance;
  auto balance_seen = balance.get_future();
  ASSERT_EQ(shard->PushQuery([&](const ShardView& view) {
              balance.set_value(view.store->ledger()
                                    .GetBalance(1, 7, Asset::Credits(), view.now_us)
                                    ->available);
            }),
            Shard::Push::accepted);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (auto& back : b_back) {
    EXPECT_EQ(back.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
        << "acknowledged before its sync returned";
  }
  EXPECT_EQ(c_back.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  EXPECT_EQ(gate.syncs_waiting(), 1) << "one sync in flight at a time";

  gate.LetOneThrough();  // B's sync
  for (auto& back : b_back) EXPECT_EQ(back.get().back().code, ResultCode::ok);
  ASSERT_TRUE(Eventually([&] { return gate.syncs_waiting() == 1; })) << "C syncs";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(c_back.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  EXPECT_EQ(balance_seen.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "a query answered on a state not yet durable";
  gate.Open();
  EXPECT_EQ(c_back.get().back().code, ResultCode::ok);
  EXPECT_EQ(balance_seen.get(), 1'000'000 - 66'000)
      << "B and C are durable before the query is answered";
  shard->Stop();
}

TEST(ShardTest, AFullQueueSaysFullAndAStoppedShardSaysStopped) {
  wal::MemFileSystem fs;
  ShardOptions options;
  options.dir = "/shard-0";
  options.sweep_every_ms = 0;
  options.queue_commands_max = 2;
  auto shard = Shard::Open(&fs, options, nullptr);
  ASSERT_TRUE(shard.ok());
  Job a({WithOp(cmd::OrgCreate(1), 1), WithOp(cmd::Topup(1, 5), 2)});
  Job b({WithOp(cmd::Topup(1, 5), 3)});
  ASSERT_EQ((*shard)->PushApply(a.Part()), Shard::Push::accepted);
  EXPECT_EQ((*shard)->PushApply(b.Part()), Shard::Push::full);
  (*shard)->Start();
  EXPECT_EQ(a.Wait()[1].code, ResultCode::ok);
  (*shard)->Stop();
  EXPECT_EQ((*shard)->PushApply(b.Part()), Shard::Push::stopped);
}

TEST(ShardTest, PushAppliesTakesWhatFitsInOrderAndSaysFull) {
  wal::MemFileSystem fs;
  ShardOptions options;
  options.dir = "/shard-0";
  options.sweep_every_ms = 0;
  options.queue_commands_max = 3;
  auto shard = Shard::Open(&fs, options, nullptr);
  ASSERT_TRUE(shard.ok());
  Job a({WithOp(cmd::OrgCreate(1), 1), WithOp(cmd::Topup(1, 5), 2)});
  Job b({WithOp(cmd::Topup(1, 5), 3)});
  Job c({WithOp(cmd::Topup(1, 5), 4)});
  std::vector<ApplyPart> parts = {a.Part(), b.Part(), c.Part()};
  size_t taken = 99;
  EXPECT_EQ((*shard)->PushApplies(parts, &taken), Shard::Push::full);
  EXPECT_EQ(taken, 2u) << "a and b fit the 3 commands; c waits";
  (*shard)->Start();
  EXPECT_EQ(a.Wait()[1].code, ResultCode::ok);
  EXPECT_EQ(b.Wait()[0].code, ResultCode::ok);
  ASSERT_EQ((*shard)->PushApplies(std::span(parts).subspan(taken), &taken),
            Shard::Push::accepted);
  EXPECT_EQ(taken, 1u);
  EXPECT_EQ(c.Wait()[0].code, ResultCode::ok);
  (*shard)->Stop();
  EXPECT_EQ((*shard)->PushApplies(parts, &taken), Shard::Push::stopped);
  EXPECT_EQ(taken, 0u);
}

TEST(ShardTest, OneConnectionsFloodOfQueriesDoesNotDelayAnothers) {
  wal::MemFileSystem fs;
  auto shard = OpenShard(&fs, 0);
  ASSERT_NE(shard, nullptr);
  std::mutex mu;
  std::vector<uint64_t> order;  // owners, in the order their queries ran
  auto query = [&](uint64_t owner) {
    return [&, owner](const ShardView&) {
      std::lock_guard lock(mu);
      order.push_back(owner);
    };
  };
  for (int i = 0; i < 200; ++i) ASSERT_EQ(shard->PushQuery(query(1), 1), Shard::Push::accepted);
  ASSERT_EQ(shard->PushQuery(query(2), 2), Shard::Push::accepted);
  std::promise<void> all_done;
  ASSERT_EQ(shard->PushQuery([&](const ShardView&) { all_done.set_value(); }, 3),
            Shard::Push::accepted);
  shard->Start();
  all_done.get_future().wait();
  shard->Stop();
  std::lock_guard lock(mu);
  ASSERT_EQ(order.size(), 201u);
  size_t at = std::find(order.begin(), order.end(), 2u) - order.begin();
  EXPECT_LE(at, shard_round_queries_per_owner_max)
      << "the second connection's query waited behind the first one's flood";
  // The flood is answered too, all of it.
  EXPECT_EQ(std::count(order.begin(), order.end(), 1u), 200);
}

}  // namespace
}  // namespace tally::net
