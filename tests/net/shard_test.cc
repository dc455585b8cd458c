// shard_test.cc: the shard thread on an in-memory, fault-injecting file
// system: group commit, and a failed log that refuses everything after.
#include "net/shard.h"

#include <cerrno>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tally/commands.h"
#include "wal/file.h"

namespace tally::net {
namespace {

inline void PrintTo(ResultCode code, std::ostream* os) { *os << ResultCodeName(code); }

// Job builds an apply job of `commands` whose done() fulfils a promise.
struct Job {
  std::shared_ptr<ApplyJob> job = std::make_shared<ApplyJob>();
  std::promise<std::vector<Result>> promise;

  explicit Job(std::vector<Command> commands) {
    job->batch.commands = std::move(commands);
    job->results.resize(job->batch.commands.size());
    job->parts_left = 1;
    job->done = [this](ApplyJob& done) { promise.set_value(done.results); };
  }
  ApplyPart Part() {
    ApplyPart part{job, {}};
    for (uint32_t i = 0; i < job->batch.commands.size(); ++i) part.indices.push_back(i);
    return part;
  }
  std::vector<Result> Wait() { return promise.get_future().get(); }
};

Command WithOp(Command c, uint64_t op_id) {
  c.op_id = op_id;
  return c;
}

std::unique_ptr<Shard> OpenShard(wal::MemFileSystem* fs, uint32_t index) {
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

}  // namespace
}  // namespace tally::net
