// tallyd_crash_test.cc: kill -9 the real tallyd under a running load,
// restart it, and check that every acknowledged operation is there — over
// many cycles on the same data directory.
//
// Loaders send frames of grants with unique op ids and remember which frames
// were acknowledged and which were in flight when the server died.  After a
// restart each org's running total `in` must lie between the acknowledged
// sum and the acknowledged plus in-doubt sum; then the in-doubt frames are
// retried (same op ids: applied at most once) and the totals must match
// exactly.  A sample of acknowledged op ids, retried, must come back
// `replayed`.
#include <atomic>
#include <chrono>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tally/client.h"
#include "tally/commands.h"
#include "tests/net/tallyd_process.h"

namespace tally {
namespace {

using testing::TallydProcess;
using testing::TempDir;

inline void PrintTo(ResultCode code, std::ostream* os) { *os << ResultCodeName(code); }

constexpr int kCycles = 20;
constexpr uint64_t kOrgs = 4;
constexpr uint64_t kWalletsPerOrg = 500;
constexpr int kLoaders = 2;
constexpr int kCommandsPerFrame = 16;

struct SentFrame {
  std::vector<Command> commands;
};

struct Ledgerbook {
  std::mutex mu;
  int64_t acknowledged[kOrgs + 1] = {};  // by org: sum of acknowledged grants
  std::vector<SentFrame> acked_sample;   // a few acknowledged frames to retry
  std::vector<SentFrame> in_doubt;       // sent, no reply: the server died
};

// Snapshots every 200 log records: kills land before, during and after
// snapshots, and restarts start from them.
std::vector<std::string> Flags() {
  return {"--shards", "2", "--io-threads", "2", "--snapshot-every-records", "200"};
}

void Load(const std::string& address, const std::string& token, std::atomic<uint64_t>* next_op,
          std::atomic<bool>* stop, uint64_t seed, Ledgerbook* book) {
  ClientOptions options;
  options.reply_timeout_ms = 10000;
  auto client = Client::Connect(address, token, options);
  if (!client.ok()) return;
  std::mt19937_64 random(seed);
  while (!stop->load()) {
    SentFrame frame;
    for (int i = 0; i < kCommandsPerFrame; ++i) {
      uint64_t org = 1 + random() % kOrgs;
      Command g = cmd::Grant(org, 1 + random() % kWalletsPerOrg, 1 + random() % 3);
      g.op_id = next_op->fetch_add(1);
      frame.commands.push_back(g);
    }
    auto results = (*client)->Apply(frame.commands);
    std::lock_guard lock(book->mu);
    if (!results.ok()) {
      // The connection broke with the frame in flight: applied or not.
      book->in_doubt.push_back(std::move(frame));
      return;
    }
    for (size_t i = 0; i < results->size(); ++i) {
      EXPECT_EQ((*results)[i].code, ResultCode::ok);
      book->acknowledged[frame.commands[i].org_id] += frame.commands[i].amount;
    }
    if (random() % 64 == 0 && book->acked_sample.size() < 200) {
      book->acked_sample.push_back(std::move(frame));
    }
  }
}

TEST(TallydCrashTest, KillNineUnderLoadLosesNothingAcknowledged) {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  TallydProcess tallyd;
  ASSERT_TRUE(tallyd.Start(data, Flags()).ok());
  const std::string token = tallyd.AdminToken();
  std::atomic<uint64_t> next_op{1000};
  {
    auto admin = Client::Connect(tallyd.address(), token);
    ASSERT_TRUE(admin.ok());
    for (uint64_t org = 1; org <= kOrgs; ++org) {
      Command c = cmd::OrgCreate(org);
      c.op_id = next_op.fetch_add(1);
      auto r = (*admin)->Apply(c);
      ASSERT_TRUE(r.ok() && r->code == ResultCode::ok);
    }
  }
  Ledgerbook book;
  std::mt19937_64 random(7);
  uint64_t in_doubt_total = 0;
  uint64_t in_doubt_applied = 0;
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    SCOPED_TRACE("cycle " + std::to_string(cycle));
    if (!tallyd.running()) {
      ASSERT_TRUE(tallyd.Start(data, Flags()).ok());
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> loaders;
    for (int l = 0; l < kLoaders; ++l) {
      loaders.emplace_back(Load, tallyd.address(), token, &next_op, &stop, random(), &book);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(60 + random() % 200));
    EXPECT_EQ(tallyd.Kill(), -SIGKILL);
    stop = true;
    for (auto& t : loaders) t.join();

    ASSERT_TRUE(tallyd.Start(data, Flags()).ok());
    auto client = Client::Connect(tallyd.address(), token);
    ASSERT_TRUE(client.ok()) << client.status();
    int64_t doubt[kOrgs + 1] = {};
    for (const SentFrame& f : book.in_doubt) {
      for (const Command& c : f.commands) doubt[c.org_id] += c.amount;
    }
    for (uint64_t org = 1; org <= kOrgs; ++org) {
      auto totals = (*client)->GetTotals(org);
      ASSERT_TRUE(totals.ok()) << totals.status();
      EXPECT_GE(totals->in, book.acknowledged[org]) << "org " << org << " lost acknowledged grants";
      EXPECT_LE(totals->in, book.acknowledged[org] + doubt[org]) << "org " << org;
    }
    // Settle the in-doubt frames by retrying them: each op applies once.
    for (const SentFrame& f : book.in_doubt) {
      auto results = (*client)->Apply(f.commands);
      ASSERT_TRUE(results.ok()) << results.status();
      for (size_t i = 0; i < results->size(); ++i) {
        EXPECT_EQ((*results)[i].code, ResultCode::ok);
        ++in_doubt_total;
        in_doubt_applied += (*results)[i].replayed ? 1 : 0;
        book.acknowledged[f.commands[i].org_id] += f.commands[i].amount;
      }
    }
    book.in_doubt.clear();
    for (uint64_t org = 1; org <= kOrgs; ++org) {
      auto totals = (*client)->GetTotals(org);
      ASSERT_TRUE(totals.ok());
      EXPECT_EQ(totals->in, book.acknowledged[org]) << "org " << org;
    }
    // Acknowledged op ids, retried, are remembered as applied.
    for (const SentFrame& f : book.acked_sample) {
      auto results = (*client)->Apply(f.commands);
      ASSERT_TRUE(results.ok());
      for (const Result& r : *results) EXPECT_TRUE(r.replayed);
    }
    book.acked_sample.clear();
  }
  uint64_t acknowledged_total = 0;
  for (uint64_t org = 1; org <= kOrgs; ++org) acknowledged_total += book.acknowledged[org];
  EXPECT_GT(acknowledged_total, 1000u) << "the load was too small to mean anything";
  std::printf(
      "crash test: %d kill -9 cycles, %llu credits granted, %llu in-doubt ops "
      "(%llu found applied)\n",
      kCycles, static_cast<unsigned long long>(acknowledged_total),
      static_cast<unsigned long long>(in_doubt_total),
      static_cast<unsigned long long>(in_doubt_applied));
  EXPECT_EQ(tallyd.Terminate(), 0);
}

}  // namespace
}  // namespace tally
