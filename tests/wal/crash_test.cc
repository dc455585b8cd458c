// crash_test.cc: kill -9 a real writer process at random moments, restart,
// and check that every acknowledged batch is there and nothing else is.
//
// The child opens a Store on real files (recovering what the last child
// left), then appends batches of 50 one-credit deducts whose op ids count up
// from what it recovered, syncs each batch, and only then writes the batch's
// last op id to a pipe: that write is its acknowledgement.  Every few batches
// it also writes a snapshot (inline, and in a forked child through
// MaybeSnapshot), so kills land inside snapshots too.  The parent
// reads a random number of acknowledgements, kills the child with SIGKILL,
// drains the pipe, and recovers the store itself.
//
// Cycles: TALLY_CRASH_CYCLES (50 by default, as CI runs it);
// tests/crash_soak.sh runs 1,000.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tally/commands.h"
#include "tests/temp_dir.h"
#include "wal/file.h"
#include "wal/store.h"

namespace tally::wal {
namespace {

constexpr uint64_t kOrg = 1;
constexpr uint64_t kWallet = 1;
constexpr uint64_t kBatch = 50;
constexpr uint64_t kOrgCreateOpId = uint64_t{1} << 40;
constexpr uint64_t kGrantOpId = kOrgCreateOpId + 1;
constexpr int64_t kInitial = int64_t{1} << 40;  // credits granted once, then deducted
constexpr int64_t kT0 = int64_t{1'700'000'000} * 1'000'000;

StoreOptions Options() {
  StoreOptions options;
  options.ledger.history_entries_max = 1 << 16;
  options.ledger.op_ids_max = 1 << 22;  // every op id of the test stays remembered
  options.log.segment_bytes = 1 << 20;
  options.snapshot_every_records = 3;
  options.log_sink = [](std::string_view) {};
  return options;
}

// Deducted is how many one-credit deducts the store holds.
int64_t Deducted(const Store& store) {
  auto b = store.ledger().GetBalance(kOrg, kWallet, Asset::Credits(), kT0);
  return b.ok() ? kInitial - b->available : 0;
}

// Child is the writer process; it never returns.
[[noreturn]] void Child(const std::string& dir, int ack_fd) {
  PosixFileSystem fs;
  auto store = Store::Open(&fs, dir, Options());
  if (!store.ok()) _exit(3);
  BatchOutput out;
  // Retried by every child: applied by the first, replayed after.
  std::vector<Command> setup = {cmd::OrgCreate(kOrg), cmd::Grant(kOrg, kWallet, kInitial)};
  setup[0].op_id = kOrgCreateOpId;
  setup[1].op_id = kGrantOpId;
  if (!(*store)->Apply(kT0, setup, &out).ok()) _exit(4);
  uint64_t next = static_cast<uint64_t>(Deducted(**store)) + 1;
  std::vector<Command> batch(kBatch, cmd::Deduct(kOrg, kWallet, 1));
  for (uint64_t round = 0;; ++round) {
    for (uint64_t i = 0; i < kBatch; ++i) batch[i].op_id = next + i;
    if (!(*store)->Apply(kT0 + static_cast<int64_t>(next), batch, &out).ok()) _exit(5);
    if (!(*store)->Sync().ok()) _exit(6);
    uint64_t acked = next + kBatch - 1;
    if (write(ack_fd, &acked, sizeof acked) != sizeof acked) _exit(7);
    next += kBatch;
    // Snapshots both ways: forked children started every few batches (the
    // kill lands while one runs: it must die with the writer and leave
    // nothing recovery trips on), and inline ones.
    if (!(*store)->MaybeSnapshot(static_cast<int64_t>(round)).ok()) _exit(9);
    if (round % 16 == 15 && !(*store)->WriteSnapshot().ok()) _exit(8);
  }
}

TEST(Crash, EveryAcknowledgedBatchSurvivesKillNine) {
  int cycles = 50;
  if (const char* env = std::getenv("TALLY_CRASH_CYCLES")) cycles = std::atoi(env);
  const tally::testing::TempDir temp("tally-crash");
  const std::string& dir = temp.path();
  std::mt19937_64 rng(std::random_device{}());
  uint64_t acked_max = 0;
  for (int cycle = 0; cycle < cycles; ++cycle) {
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      Child(dir, fds[1]);
    }
    close(fds[1]);
    // Let it acknowledge a random number of batches (bounded: a stuck child
    // fails the test instead of hanging it), then kill it mid-stride.
    uint64_t want = 1 + rng() % 12;
    uint64_t value = 0;
    for (uint64_t got = 0; got < want; ++got) {
      ssize_t n = read(fds[0], &value, sizeof value);
      if (n != sizeof value) break;
      acked_max = std::max(acked_max, value);
    }
    usleep(static_cast<useconds_t>(rng() % 3000));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer stopped by itself: exit "
                                     << WEXITSTATUS(status) << " in cycle " << cycle;
    // Acknowledgements written before the kill count too.
    while (read(fds[0], &value, sizeof value) == sizeof value) acked_max = std::max(acked_max, value);
    close(fds[0]);

    PosixFileSystem fs;
    auto store = Store::Open(&fs, dir, Options());
    ASSERT_TRUE(store.ok()) << "cycle " << cycle << ": " << store.status();
    int64_t balance = Deducted(**store);
    // Everything acknowledged is there; at most the one batch synced after
    // the last acknowledgement is there besides; and only whole batches.
    ASSERT_GE(static_cast<uint64_t>(balance), acked_max) << "lost acknowledged deducts, cycle " << cycle;
    ASSERT_LE(static_cast<uint64_t>(balance), acked_max + kBatch) << "cycle " << cycle;
    ASSERT_EQ(balance % static_cast<int64_t>(kBatch), 0) << "half a batch, cycle " << cycle;
    auto totals = (*store)->ledger().GetTotals(kOrg, Asset::Credits());
    ASSERT_TRUE(totals.ok());
    EXPECT_EQ(totals->in, totals->available + totals->held + totals->spent + totals->expired +
                              totals->voided + totals->adjusted_out);
    // A retry of the last acknowledged deduct is recognised, not applied again.
    if (acked_max > 0) {
      Command retry = cmd::Deduct(kOrg, kWallet, 1);
      retry.op_id = acked_max;
      BatchOutput out;
      ASSERT_TRUE((*store)->Apply(kT0 + static_cast<int64_t>(acked_max), std::span(&retry, 1),
                                  &out).ok());
      EXPECT_TRUE(out.results[0].replayed) << "cycle " << cycle;
      ASSERT_TRUE((*store)->Sync().ok());
    }
  }
  EXPECT_GT(acked_max, 0u);
}

}  // namespace
}  // namespace tally::wal
