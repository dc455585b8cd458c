// tallyd_test.cc: the real tallyd binary, driven through the client library
// over loopback TCP.  Each test starts its own tallyd on a free port with a
// temp data directory (tests/net/tallyd_process.h).
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
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

constexpr uint64_t kOrg = 7;

// Server runs one tallyd for a test and hands out connected clients.
class TallydTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> flags = {}) {
    if (flags.empty()) flags = {"--shards", "2", "--io-threads", "2"};
    flags_ = flags;
    ASSERT_TRUE(tallyd_.Start(data(), flags_).ok());
  }
  void Restart() {
    ASSERT_EQ(tallyd_.Terminate(), 0);
    ASSERT_TRUE(tallyd_.Start(data(), flags_).ok());
  }
  std::string data() const { return dir_.path() + "/data"; }
  std::unique_ptr<Client> Connect(std::string token = "") {
    if (token.empty()) token = tallyd_.AdminToken();
    auto client = Client::Connect(tallyd_.address(), token);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }
  // Ok applies one command that must succeed, with a fresh op id.
  Result Ok(Client& client, Command c) {
    c.op_id = next_op_id_++;
    absl::StatusOr<Result> r = client.Apply(c);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return Result{.code = ResultCode::unavailable};
    EXPECT_EQ(r->code, ResultCode::ok) << "command kind " << static_cast<int>(c.kind);
    return *r;
  }

  TempDir dir_;
  TallydProcess tallyd_;
  std::vector<std::string> flags_;
  uint64_t next_op_id_ = 1;
};

TEST_F(TallydTest, HelloReportsRoleShardsAndTokenName) {
  StartServer();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->role(), proto::Role::admin);
  EXPECT_EQ(client->shards(), 2u);
  EXPECT_EQ(client->token_name(), "admin");
}

TEST_F(TallydTest, DeductIsAppliedAndVisibleToBalance) {
  StartServer();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  Ok(*client, cmd::OrgCreate(kOrg));
  Ok(*client, cmd::Topup(kOrg, 1000));
  Result r = Ok(*client, cmd::Deduct(kOrg, 0, 30));
  EXPECT_EQ(r.applied(), 30);
  EXPECT_EQ(r.balance_after(), 970);
  absl::StatusOr<Balance> b = client->GetBalance({.org_id = kOrg, .wallet_id = 0});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->available, 970);
}

TEST_F(TallydTest, QueryOfUnknownOrgIsRefusedByName) {
  StartServer();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  absl::StatusOr<Balance> b = client->GetBalance({.org_id = 99, .wallet_id = 0});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(RefusalCode(b.status()), ResultCode::unknown_org);
  // The connection carries on.
  Ok(*client, cmd::OrgCreate(99));
  EXPECT_TRUE(client->GetBalance({.org_id = 99, .wallet_id = 0}).ok());
}

TEST_F(TallydTest, RestartKeepsEverything) {
  StartServer();
  std::vector<uint64_t> orgs = {1, 2, 3, 4, 5, 6, 7, 8};
  {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    for (uint64_t org : orgs) {
      Ok(*client, cmd::OrgCreate(org));
      Ok(*client, cmd::Topup(org, 1000 + static_cast<int64_t>(org)));
      Ok(*client, cmd::Grant(org, 5, 100));
      Ok(*client, cmd::Deduct(org, 5, static_cast<int64_t>(org)));
    }
  }
  Restart();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  for (uint64_t org : orgs) {
    auto pool = client->GetBalance({.org_id = org, .wallet_id = 0});
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_EQ(pool->available, 1000 + static_cast<int64_t>(org));
    auto wallet = client->GetBalance({.org_id = org, .wallet_id = 5});
    ASSERT_TRUE(wallet.ok()) << wallet.status();
    EXPECT_EQ(wallet->available, 100 - static_cast<int64_t>(org));
  }
}

}  // namespace
}  // namespace tally
