// tallyd_disk_test.cc: a shard's disk refuses writes inside the real tallyd.
//
// tallyd runs with RLIMIT_FSIZE set (tests/net/tallyd_process.h), so every
// write at an offset past the limit fails with EFBIG, as a full or failing
// disk would refuse it: the log segment (preallocated by an earlier run) or
// the history file of the shard under load is the first to hit it.  What the
// issue asks (issue 3, "a failed write is fatal for that shard's writes")
// is checked from outside, through the client:
//   - the loaded shard stops acknowledging: `unavailable`, then for every
//     later change and query, with the reason named;
//   - the other shard carries on;
//   - after a restart with a working disk, every acknowledged deduct is
//     there, and the refused ones were applied at most once: retried with
//     their op ids, each is applied exactly once.
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tally/client.h"
#include "tally/commands.h"
#include "tally/shard.h"
#include "tests/net/tallyd_process.h"

namespace tally {
namespace {

using testing::TallydProcess;
using testing::TempDir;

inline void PrintTo(ResultCode code, std::ostream* os) { *os << ResultCodeName(code); }

constexpr uint32_t kShards = 2;
constexpr uint64_t kWallets = 100;
constexpr int64_t kFunds = int64_t{1} << 40;  // per wallet: never runs dry here
constexpr size_t kFrameDeducts = 500;
// Enough room for the start's own writes (tokens, shard count, manifest,
// segment headers, the set-up's records), little enough that ~1,000 frames
// of deducts cross it.
constexpr uint64_t kFileBytesMax = 1 << 20;
constexpr int kFramesMax = 1000;

// Snapshots off: only the log and the history file grow.
std::vector<std::string> Flags() {
  return {"--shards", std::to_string(kShards), "--io-threads", "1", "--snapshot-every-records",
          "0",        "--snapshot-every-s",     "0",            "--sweep-every-ms", "0"};
}

// OrgOnShard is the smallest org id from `from` on that shard `shard` owns.
uint64_t OrgOnShard(uint32_t shard, uint64_t from) {
  uint64_t org = from;
  while (ShardOf(org, kShards) != shard) ++org;
  return org;
}

class TallydDiskTest : public ::testing::Test {
 protected:
  std::string data() const { return dir_.path() + "/data"; }
  std::unique_ptr<Client> Connect() {
    auto client = Client::Connect(tallyd_.address(), tallyd_.AdminToken());
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }
  // Fund creates `org` with kWallets wallets of kFunds each.
  void Fund(Client& client, uint64_t org) {
    std::vector<Command> setup = {cmd::OrgCreate(org), cmd::Topup(org, kFunds * kWallets),
                                  cmd::AllocateAll(org, kFunds)};
    for (uint64_t w = 1; w <= kWallets; ++w) {
      setup.insert(setup.end() - 1, cmd::WalletUpsert(org, w));
    }
    for (Command& c : setup) c.op_id = next_op_id_++;
    absl::StatusOr<std::vector<Result>> results = client.Apply(setup);
    ASSERT_TRUE(results.ok()) << results.status();
    for (const Result& r : *results) ASSERT_EQ(r.code, ResultCode::ok);
  }
  std::vector<Command> DeductFrame(uint64_t org) {
    std::vector<Command> frame;
    for (size_t i = 0; i < kFrameDeducts; ++i) {
      Command c = cmd::Deduct(org, 1 + (next_op_id_ % kWallets), 1 + (next_op_id_ % 7));
      c.op_id = next_op_id_++;
      frame.push_back(c);
    }
    return frame;
  }
  static int64_t Sum(const std::vector<Command>& frame) {
    int64_t sum = 0;
    for (const Command& c : frame) sum += c.amount;
    return sum;
  }
  int64_t Spent(Client& client, uint64_t org) {
    absl::StatusOr<TotalsView> totals = client.GetTotals(org);
    EXPECT_TRUE(totals.ok()) << totals.status();
    return totals.ok() ? totals->spent : -1;
  }

  TempDir dir_;
  TallydProcess tallyd_;
  uint64_t next_op_id_ = 1;
};

TEST_F(TallydDiskTest, AShardWhoseDiskRefusesWritesStopsAcknowledgingAndLosesNothing) {
  const uint64_t loaded = OrgOnShard(0, 100);  // the shard whose files will hit the limit
  const uint64_t other = OrgOnShard(1, 100);

  // First run, no limit: the orgs are funded, and each shard's first log
  // segment is created and preallocated (64 MiB) while the disk still works.
  ASSERT_TRUE(tallyd_.Start(data(), Flags()).ok());
  {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    Fund(*client, loaded);
    Fund(*client, other);
  }
  ASSERT_EQ(tallyd_.Terminate(), 0);

  // Second run: writes past 1 MiB into any file fail.
  tallyd_.set_file_bytes_max(kFileBytesMax);
  ASSERT_TRUE(tallyd_.Start(data(), Flags()).ok());
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  int64_t acknowledged = 0;
  std::vector<std::vector<Command>> refused;
  for (int f = 0; f < kFramesMax && refused.empty(); ++f) {
    std::vector<Command> frame = DeductFrame(loaded);
    absl::StatusOr<std::vector<Result>> results = client->Apply(frame);
    ASSERT_TRUE(results.ok()) << results.status();
    ASSERT_EQ(results->size(), frame.size());
    // A frame to one shard is one batch: all acknowledged, or none.
    if ((*results)[0].code == ResultCode::ok) {
      for (const Result& r : *results) ASSERT_EQ(r.code, ResultCode::ok);
      acknowledged += Sum(frame);
    } else {
      for (const Result& r : *results) ASSERT_EQ(r.code, ResultCode::unavailable);
      refused.push_back(frame);
    }
  }
  ASSERT_EQ(refused.size(), 1u) << "the disk never refused a write within " << kFramesMax
                                << " frames";
  ASSERT_GT(acknowledged, 0);

  // From now on that shard acknowledges nothing, and says why.
  std::vector<Command> later = DeductFrame(loaded);
  absl::StatusOr<std::vector<Result>> again = client->Apply(later);
  ASSERT_TRUE(again.ok()) << again.status();
  for (const Result& r : *again) EXPECT_EQ(r.code, ResultCode::unavailable);
  refused.push_back(later);
  absl::StatusOr<TotalsView> query = client->GetTotals(loaded);
  ASSERT_FALSE(query.ok());
  EXPECT_EQ(RefusalCode(query.status()), ResultCode::unavailable);
  EXPECT_NE(query.status().message().find("shard 0 cannot log"), std::string::npos)
      << query.status();
  EXPECT_NE(query.status().message().find("too large"), std::string::npos) << query.status();

  // The other shard carries on.
  Command other_deduct = cmd::Deduct(other, 1, 5);
  other_deduct.op_id = next_op_id_++;
  absl::StatusOr<Result> other_result = client->Apply(other_deduct);
  ASSERT_TRUE(other_result.ok()) << other_result.status();
  EXPECT_EQ(other_result->code, ResultCode::ok);
  EXPECT_EQ(Spent(*client, other), 5);
  client.reset();
  tallyd_.Kill();

  // Third run, the disk works again.  Every acknowledged deduct is there;
  // a refused frame may have reached the log before the failure (its
  // outcome was unknown to the caller), so up to the refused sums more.
  tallyd_.set_file_bytes_max(0);
  ASSERT_TRUE(tallyd_.Start(data(), Flags()).ok());
  client = Connect();
  ASSERT_NE(client, nullptr);
  int64_t refused_sum = 0;
  for (const std::vector<Command>& frame : refused) refused_sum += Sum(frame);
  int64_t spent = Spent(*client, loaded);
  EXPECT_GE(spent, acknowledged);
  EXPECT_LE(spent, acknowledged + refused_sum);
  EXPECT_EQ(Spent(*client, other), 5);
  // Retried with the same op ids, each refused deduct is applied once:
  // fresh, or `replayed` if it had reached the log.
  for (const std::vector<Command>& frame : refused) {
    absl::StatusOr<std::vector<Result>> results = client->Apply(frame);
    ASSERT_TRUE(results.ok()) << results.status();
    for (const Result& r : *results) EXPECT_EQ(r.code, ResultCode::ok);
  }
  EXPECT_EQ(Spent(*client, loaded), acknowledged + refused_sum);
  // And once more changes nothing.
  for (const std::vector<Command>& frame : refused) {
    absl::StatusOr<std::vector<Result>> results = client->Apply(frame);
    ASSERT_TRUE(results.ok()) << results.status();
    for (const Result& r : *results) EXPECT_TRUE(r.replayed);
  }
  EXPECT_EQ(Spent(*client, loaded), acknowledged + refused_sum);
  EXPECT_EQ(tallyd_.Terminate(), 0);
}

}  // namespace
}  // namespace tally
