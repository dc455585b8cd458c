// tally-bench end to end: the real binary drives a real tallyd (spawned by
// --spawn), and its JSON and verdict are checked; then a client deducts
// behind its back and the verification must catch it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tally/client.h"
#include "tally/commands.h"
#include "tests/net/raw_connection.h"
#include "tools/bench/spawn.h"

#ifndef TALLY_BENCH_BINARY
#error "TALLY_BENCH_BINARY: the tally-bench executable"
#endif
#ifndef TALLY_BENCH_TALLYD
#error "TALLY_BENCH_TALLYD: the tallyd executable"
#endif

namespace tally::bench {
namespace {

struct Outcome {
  int exit_code = -1;
  std::string out;  // stdout
};
Outcome RunCommand(const std::string& command, const std::string& err);

// RunBench runs tally-bench with `args` (stderr to a file beside) and waits.
Outcome RunBench(const std::string& args) {
  std::string err = ::testing::TempDir() + "/tally-bench.err";
  std::string command = std::string(TALLY_BENCH_BINARY) + " " + args + " 2>" + err;
  return RunCommand(command, err);
}

// RunCommand runs a shell command line and collects its stdout (and, on
// failure, `err_path`).
Outcome RunCommand(const std::string& command, const std::string& err) {
  Outcome o;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return o;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) o.out.append(buf, n);
  int status = pclose(p);
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (o.exit_code != 0) {
    FILE* e = std::fopen(err.c_str(), "r");
    while (e != nullptr && (n = fread(buf, 1, sizeof buf, e)) > 0) o.out.append(buf, n);
    if (e != nullptr) std::fclose(e);
  }
  return o;
}

// Number reads the number after "key": in a flat JSON text (first match).
double Number(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::stod(json.substr(at + key.size() + 3));
}

const std::string kSpawn =
    std::string("--spawn --tallyd ") + TALLY_BENCH_TALLYD +
    " --shards 2 --io-threads 1 --json --quiet --duration-s 2 --warmup-s 0.5";

void ExpectVerifiedRun(const Outcome& o) {
  ASSERT_EQ(o.exit_code, 0) << o.out;
  EXPECT_NE(o.out.find("\"verify\":{\"done\":true,\"ok\":true"), std::string::npos) << o.out;
  EXPECT_GT(Number(o.out, "ops"), 0) << o.out;
  EXPECT_GT(Number(o.out, "ops_per_s"), 0) << o.out;
  EXPECT_EQ(Number(o.out, "error_count"), 0) << o.out;
  EXPECT_EQ(Number(o.out, "wallet_mismatches"), 0) << o.out;
  double p50 = Number(o.out, "p50"), p99 = Number(o.out, "p99"), max = Number(o.out, "max");
  EXPECT_GT(p50, 0) << o.out;
  EXPECT_LE(p50, p99) << o.out;
  EXPECT_LE(p99, max) << o.out;
}

TEST(BenchEndToEnd, DeductClosedLoopPipelinedIsVerified) {
  Outcome o = RunBench(kSpawn + " --wallets 5000 --orgs 4 --connections 4 --depth 8");
  ExpectVerifiedRun(o);
  EXPECT_EQ(Number(o.out, "wallets_checked"), 5000) << o.out;
  EXPECT_EQ(Number(o.out, "orgs_checked"), 4) << o.out;
}

TEST(BenchEndToEnd, MixedZipfWithHoldsCapturesAndGrantsIsVerified) {
  ExpectVerifiedRun(
      RunBench(kSpawn + " --workload mixed --dist zipf --wallets 2000 --connections 3"));
}

TEST(BenchEndToEnd, InvoiceRunSpendsSoonestExpiringLotsFirst) {
  Outcome o = RunBench(kSpawn +
                       " --workload invoice-run --wallets 2000 --ops-per-frame 200 "
                       "--connections 2 --balance 100 --amount 40");
  ExpectVerifiedRun(o);
  // Lots of 100 and invoices of 40 on average: some wallets run dry.
  EXPECT_GT(Number(o.out, "partial") + Number(o.out, "unpaid"), 0) << o.out;
}

TEST(BenchEndToEnd, AllocationsRequestsAndApprovalsAreVerified) {
  ExpectVerifiedRun(RunBench(kSpawn + " --workload allocate --wallets 2000 --connections 2"));
}

// The open loop sends on a fixed schedule and never ahead of it, so its rate
// is bounded above by the one asked for whatever the machine does; a slow
// machine may only make it lower (no timing assertion from below).  On a
// saturated machine (twelve busy loops beside the test's own load on two
// cores) the server can take longer than the measured window to answer the
// frames due in it: the run is then verified but its window is empty, which
// says nothing about the schedule either way, so the latency checks apply
// only to a window that holds replies.
TEST(BenchEndToEnd, OpenLoopNeverSendsAheadOfItsSchedule) {
  Outcome o = RunBench(std::string("--spawn --tallyd ") + TALLY_BENCH_TALLYD +
                       " --shards 2 --io-threads 1 --json --quiet --duration-s 3 --warmup-s 0.5"
                       " --rate 2000 --connections 4 --depth 64 --wallets 1000");
  ASSERT_EQ(o.exit_code, 0) << o.out;
  EXPECT_NE(o.out.find("\"verify\":{\"done\":true,\"ok\":true"), std::string::npos) << o.out;
  EXPECT_GT(Number(o.out, "ops_total"), 0) << o.out;
  EXPECT_EQ(Number(o.out, "error_count"), 0) << o.out;
  if (Number(o.out, "ops") > 0) ExpectVerifiedRun(o);
  EXPECT_LE(Number(o.out, "ops_per_s"), 2000 * 1.05) << o.out;
}

TEST(BenchEndToEnd, BadFlagIsExitTwoAndNamed) {
  Outcome o = RunBench("--connections 0");
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_NE(o.out.find("--connections"), std::string::npos) << o.out;
}

// A deduct the load generator did not send changes a balance: the
// verification must see that the balances no longer match its own
// acknowledged operations, and fail.
TEST(BenchEndToEnd, ADeductBehindItsBackFailsTheVerification) {
  absl::StatusOr<std::unique_ptr<SpawnedServer>> server =
      SpawnedServer::Start(TALLY_BENCH_TALLYD, {"--shards", "1", "--io-threads", "1"}, false);
  ASSERT_TRUE(server.ok()) << server.status();
  const uint64_t org = 777000;
  std::string args = "--server " + (*server)->address() + " --token " + (*server)->token() +
                     " --org-base 777000 --orgs 1 --wallets 50 --connections 1 --duration-s 3 "
                     "--warmup-s 0.5 --json --quiet";
  Outcome o;
  std::thread bench([&] { o = RunBench(args); });
  // Once the bench's setup has funded wallet 1, take 7 credits from it.
  auto client = Client::Connect((*server)->address(), (*server)->token());
  ASSERT_TRUE(client.ok()) << client.status();
  bool deducted = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (uint64_t op = 1; !deducted && std::chrono::steady_clock::now() < deadline; ++op) {
    Command c = cmd::Deduct(org, 1, 7);
    c.op_id = 0x5eed0000 + op;
    absl::StatusOr<Result> r = (*client)->Apply(c);
    ASSERT_TRUE(r.ok()) << r.status();
    deducted = r->ok();
    if (!deducted) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  bench.join();
  ASSERT_TRUE(deducted);
  EXPECT_EQ(o.exit_code, 1) << o.out;
  EXPECT_NE(o.out.find("\"ok\":false"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("org 777000 wallet 1: available"), std::string::npos) << o.out;
  EXPECT_GE(Number(o.out, "wallet_mismatches"), 1) << o.out;
  EXPECT_GE(Number(o.out, "org_mismatches"), 1) << o.out;  // spent differs too
}

// The server stops (SIGSTOP) for one second of an open-loop run whose
// connections allow one frame in flight each: the frames due during the stall
// cannot even be sent.  Measured from their intended send times they all
// show the wait, so the p99 is most of a second; measured from when they
// were sent (coordinated omission) only the few frames in flight would.
TEST(BenchEndToEnd, OpenLoopLatencyCountsAStallFromTheIntendedSendTime) {
  absl::StatusOr<std::unique_ptr<SpawnedServer>> server =
      SpawnedServer::Start(TALLY_BENCH_TALLYD, {"--shards", "2", "--io-threads", "1"}, false);
  ASSERT_TRUE(server.ok()) << server.status();
  Outcome o;
  std::thread bench([&] {
    o = RunBench("--server " + (*server)->address() + " --token " + (*server)->token() +
                 " --rate 400 --connections 4 --depth 1 --wallets 1000 --duration-s 3.5 "
                 "--warmup-s 0.5 --json --quiet");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1800));
  kill((*server)->pid(), SIGSTOP);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  kill((*server)->pid(), SIGCONT);
  bench.join();
  ASSERT_EQ(o.exit_code, 0) << o.out;
  // About 400 of about 1,200 measured frames were due in the stalled second.
  EXPECT_GT(Number(o.out, "p99"), 700'000) << o.out;  // µs
  EXPECT_GT(Number(o.out, "p90"), 200'000) << o.out;
  EXPECT_GT(Number(o.out, "max"), 900'000) << o.out;
  // (Whether the backlog is caught up afterwards depends on how busy the
  // machine is: four connections of depth 1 have little room to spare.)
  EXPECT_GT(Number(o.out, "ops"), 0) << o.out;
}

// Without --token: $TALLY_TOKEN, else the first admin token in
// ./tally-data/tokens; a wrong token is exit 2 (the setup cannot start).
TEST(BenchEndToEnd, TokenComesFromTheEnvironmentOrTheDataDirectory) {
  absl::StatusOr<std::unique_ptr<SpawnedServer>> server =
      SpawnedServer::Start(TALLY_BENCH_TALLYD, {"--shards", "1", "--io-threads", "1"}, false);
  ASSERT_TRUE(server.ok()) << server.status();
  std::string dir = ::testing::TempDir() + "/bench-cwd-" + std::to_string(getpid());
  std::filesystem::create_directories(dir + "/tally-data");
  FILE* f = std::fopen((dir + "/tally-data/tokens").c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fprintf(f, "# copied\nsvc0 service meter\n%s admin bench\n", (*server)->token().c_str());
  std::fclose(f);
  std::string err = ::testing::TempDir() + "/tally-bench.err";
  std::string run = std::string(TALLY_BENCH_BINARY) + " --server " + (*server)->address() +
                    " --wallets 100 --orgs 1 --connections 1 --duration-s 0.6 --warmup-s 0.1"
                    " --json --quiet 2>" +
                    err;
  Outcome from_file = RunCommand("cd " + dir + " && env -u TALLY_TOKEN " + run, err);
  EXPECT_EQ(from_file.exit_code, 0) << from_file.out;
  Outcome from_env = RunCommand("TALLY_TOKEN=" + (*server)->token() + " " + run, err);
  EXPECT_EQ(from_env.exit_code, 0) << from_env.out;
  Outcome wrong = RunCommand("cd " + dir + " && TALLY_TOKEN=nope " + run, err);
  EXPECT_EQ(wrong.exit_code, 2) << wrong.out;
  EXPECT_NE(wrong.out.find("unauthenticated"), std::string::npos) << wrong.out;
  Outcome none = RunCommand("cd / && env -u TALLY_TOKEN " + run, err);
  EXPECT_EQ(none.exit_code, 2) << none.out;
  EXPECT_NE(none.out.find("no token"), std::string::npos) << none.out;
  std::filesystem::remove_all(dir);
}

// StartTallyd runs tallyd on `data` at a fixed port (so a restart is at the
// same address) and waits until it answers a hello.
pid_t StartTallyd(const std::string& data, int port, std::string* token) {
  std::string listen = "127.0.0.1:" + std::to_string(port);
  pid_t pid = fork();
  if (pid == 0) {
    freopen("/dev/null", "w", stdout);
    freopen("/dev/null", "w", stderr);
    execl(TALLY_BENCH_TALLYD, TALLY_BENCH_TALLYD, "--data", data.c_str(), "--listen",
          listen.c_str(), "--shards", "2", "--io-threads", "1", static_cast<char*>(nullptr));
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    absl::StatusOr<std::string> t = FirstAdminToken(data + "/tokens");
    if (t.ok() && Client::Connect(listen, *t).ok()) {
      *token = *t;
      return pid;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

// The server is killed (-9) in the middle of a run and started again on the
// same data: the frames that were in flight are sent again with the same op
// ids, so every outcome is known, and the balances read back must still
// match: nothing acknowledged was lost, nothing applied twice.
TEST(BenchEndToEnd, FramesInFlightWhenTheServerDiesAreResentAndStillVerify) {
  std::string data = ::testing::TempDir() + "/bench-restart-" + std::to_string(getpid());
  std::filesystem::remove_all(data);
  int port = testing::UnusedLoopbackPort();
  std::string token;
  pid_t first = StartTallyd(data, port, &token);
  ASSERT_GT(first, 0);
  Outcome o;
  constexpr uint64_t kOrgBase = 7000;
  std::thread bench([&] {
    o = RunBench("--server 127.0.0.1:" + std::to_string(port) + " --token " + token +
                 " --wallets 2000 --orgs 4 --org-base " + std::to_string(kOrgBase) +
                 " --connections 4 --depth 16 --duration-s 4 --warmup-s 0.5 --json --quiet");
  });
  // The kill lands once deducts flow (the set-up is done and frames are in
  // flight), however slow the machine: a fixed sleep could land in the
  // set-up on a busy CI machine.  Bounded: 20 s.  A low bar (100 credits,
  // about as many deducts): on a loaded machine the bench did only ~600
  // deducts in its whole run, and a bar of 1,000 let it finish before the
  // kill, leaving nothing in flight to resend.
  {
    auto watcher = Client::Connect("127.0.0.1:" + std::to_string(port), token);
    ASSERT_TRUE(watcher.ok()) << watcher.status();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    int64_t spent = 0;
    while (spent < 100 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      absl::StatusOr<TotalsView> totals = (*watcher)->GetTotals(kOrgBase);
      if (totals.ok()) spent = totals->spent;
    }
    EXPECT_GE(spent, 100) << "no deducts flowed within 20 s";
  }
  kill(first, SIGKILL);
  waitpid(first, nullptr, 0);
  std::string token_again;
  pid_t second = StartTallyd(data, port, &token_again);
  bench.join();
  ASSERT_GT(second, 0);
  kill(second, SIGTERM);
  waitpid(second, nullptr, 0);
  std::filesystem::remove_all(data);
  // The broken connections are errors (exit 1), but the verification holds.
  EXPECT_EQ(o.exit_code, 1) << o.out;
  EXPECT_NE(o.out.find("\"verify\":{\"done\":true,\"ok\":true"), std::string::npos) << o.out;
  EXPECT_GT(Number(o.out, "retried_frames"), 0) << o.out;
  EXPECT_EQ(Number(o.out, "unresolved_ops"), 0) << o.out;
  EXPECT_EQ(Number(o.out, "wallets_checked"), 2000) << o.out;
}

}  // namespace
}  // namespace tally::bench
