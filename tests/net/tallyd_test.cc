// tallyd_test.cc: the real tallyd binary, driven through the client library
// over loopback TCP.  Each test starts its own tallyd on a free port with a
// temp data directory (tests/net/tallyd_process.h).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tally/client.h"
#include "tally/commands.h"
#include "tally/protocol.h"
#include "tally/shard.h"
#include "tests/net/raw_connection.h"
#include "tests/net/tallyd_process.h"

namespace tally {
namespace {

using testing::TallydProcess;
using testing::TempDir;

inline void PrintTo(ResultCode code, std::ostream* os) { *os << ResultCodeName(code); }

constexpr uint64_t kOrg = 7;

// Server runs one tallyd for a test and hands out connected clients.
// ResultsOf is an apply reply's results; a failed or refused reply fails
// the test and has none.
std::vector<Result> ResultsOf(const absl::StatusOr<Reply>& reply) {
  std::vector<Result> results;
  EXPECT_TRUE(reply.ok()) << reply.status();
  if (!reply.ok()) return results;
  EXPECT_TRUE(reply->ok()) << ResultCodeName(reply->status);
  int64_t time_us = 0;
  EXPECT_TRUE(proto::DecodeApplyReply(reply->body, &time_us, &results).ok());
  return results;
}

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

// Describe is everything the queries show of an org, as text: the totals,
// the summary, the settings, every request, the usage and the whole history
// with running balances, page by page.
std::string Describe(Client& client, uint64_t org) {
  std::ostringstream out;
  auto totals = client.GetTotals(org);
  if (!totals.ok()) return "totals: " + std::string(totals.status().message());
  out << "totals " << totals->in << " " << totals->available << " " << totals->held << " "
      << totals->spent << " " << totals->expired << " " << totals->voided << " "
      << totals->adjusted_out << "\n";
  auto summary = client.GetOrgSummary(org);
  if (!summary.ok()) return "summary failed";
  out << "summary " << summary->pool << " " << summary->allocated << " " << summary->wallets << " "
      << summary->pending_requests << " " << summary->pending_requested << "\n";
  auto settings = client.GetSettings(org);
  if (!settings.ok()) return "settings failed";
  out << "settings " << settings->credit_payments << " " << settings->low_balance_threshold << "\n";
  for (RequestStatus status :
       {RequestStatus::pending, RequestStatus::approved, RequestStatus::rejected}) {
    auto requests = client.GetRequests(org, status);
    if (!requests.ok()) return "requests failed";
    for (const RequestView& r : *requests) {
      out << "request " << r.request_id << " " << r.wallet_id << " " << r.amount << " "
          << r.approved_amount << " " << r.created_at_us << " " << r.decided_at_us << " "
          << r.decided_by << "\n";
    }
  }
  auto usage = client.GetUsage(org, 0, 0);
  if (!usage.ok()) return "usage failed";
  for (const UsageRow& u : *usage) {
    out << "usage " << u.wallet_id << " " << u.spent << " " << u.granted << " " << u.expired
        << "\n";
  }
  HistoryQuery q{.org_id = org, .all_wallets = true, .limit = 7};
  for (int page = 0; page < 1000; ++page) {
    auto h = client.GetHistory(q);
    if (!h.ok()) return "history failed";
    for (const HistoryEntryView& e : h->entries) {
      out << "history " << e.seq << " " << e.time_us << " " << e.wallet_id << " "
          << static_cast<int>(e.kind) << " " << e.out << " " << e.amount << " " << e.balance_after
          << " " << e.related_id << " " << e.reference << " " << e.actor << "\n";
    }
    if (h->next_cursor == 0) break;
    q.cursor = h->next_cursor;
  }
  return out.str();
}

TEST_F(TallydTest, RestartKeepsEverything) {
  StartServer();
  std::vector<uint64_t> orgs = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<std::string> before;
  {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    for (uint64_t org : orgs) {
      Ok(*client, cmd::OrgCreate(org));
      Ok(*client, cmd::Topup(org, 1000 + static_cast<int64_t>(org)));
      Ok(*client, cmd::Grant(org, 5, 100));
      Ok(*client, cmd::Deduct(org, 5, static_cast<int64_t>(org)));
      std::vector<WalletAmount> targets = {{6, 10}, {7, 20}};
      Ok(*client, cmd::Allocate(org, targets));
      uint64_t hold = Ok(*client, cmd::Hold(org, 7, 5)).id;
      Ok(*client, cmd::Capture(org, hold, 3));
      uint64_t request = Ok(*client, cmd::Request(org, 6, 40)).id;
      if (org % 2 == 0) Ok(*client, cmd::Approve(org, request));
      Ok(*client, cmd::Request(org, 6, 1));
    }
    for (uint64_t org : orgs) before.push_back(Describe(*client, org));
  }
  Restart();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  for (size_t i = 0; i < orgs.size(); ++i) {
    EXPECT_EQ(Describe(*client, orgs[i]), before[i]) << "org " << orgs[i];
    EXPECT_GT(before[i].size(), 200u);
  }
  auto pool = client->GetBalance({.org_id = 3, .wallet_id = 0});
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->available, 1003 - 30);
  auto wallet = client->GetBalance({.org_id = 3, .wallet_id = 5});
  ASSERT_TRUE(wallet.ok()) << wallet.status();
  EXPECT_EQ(wallet->available, 97);
}

// With the pre-fault on (tallyd's default), a server answers while its
// shards fault their tables in, stops cleanly in the middle of it, and a
// restart (the rings then continue after the snapshot's entries) keeps
// everything.
TEST_F(TallydTest, PrefaultOnServesStopsAndRestartsWithEverything) {
  StartServer({"--shards", "2", "--io-threads", "2", "--prefault", "on"});
  std::vector<uint64_t> orgs = {1, 2, 3, 4};
  std::vector<std::string> before;
  {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    for (uint64_t org : orgs) {
      Ok(*client, cmd::OrgCreate(org));
      Ok(*client, cmd::Topup(org, 1000));
      Ok(*client, cmd::Grant(org, 5, 100));
      for (int i = 0; i < 20; ++i) Ok(*client, cmd::Deduct(org, 5, 1));
    }
    for (uint64_t org : orgs) before.push_back(Describe(*client, org));
  }
  Restart();
  {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    for (size_t i = 0; i < orgs.size(); ++i) {
      EXPECT_EQ(Describe(*client, orgs[i]), before[i]) << "org " << orgs[i];
    }
    auto wallet = client->GetBalance({.org_id = 3, .wallet_id = 5});
    ASSERT_TRUE(wallet.ok()) << wallet.status();
    EXPECT_EQ(wallet->available, 80);
    Ok(*client, cmd::Deduct(3, 5, 1));
  }
  EXPECT_EQ(tallyd_.Terminate(), 0);
}

// ReadLines is the lines of a text file (empty: none or no file).
std::vector<std::string> ReadLines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The shards of a server recover side by side, each on its own thread, and
// the pre-fault runs ahead of each replay: after a clean stop and after a
// SIGKILL, every acknowledged deduct of orgs spread over all the shards is
// there, and each recovery line is whole and names its shard.
TEST_F(TallydTest, ShardsRecoverInParallelWithEveryAcknowledgedBalance) {
  constexpr uint32_t kShards = 4;
  constexpr uint64_t kOrgs = 16;
  constexpr uint64_t kWallets = 8;
  constexpr int64_t kGrant = 1000000;
  const std::string log = dir_.path() + "/stderr";
  tallyd_.set_stderr_path(log);
  StartServer({"--shards", "4", "--io-threads", "2", "--prefault", "on",
               "--snapshot-every-records", "0", "--snapshot-every-s", "0"});
  std::map<std::pair<uint64_t, uint64_t>, int64_t> expected;
  std::vector<bool> shard_used(kShards, false);
  {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    for (uint64_t org = 1; org <= kOrgs; ++org) {
      shard_used[ShardOf(org, kShards)] = true;
      Ok(*client, cmd::OrgCreate(org));
      for (uint64_t w = 1; w <= kWallets; ++w) {
        Ok(*client, cmd::Grant(org, w, kGrant));
        expected[{org, w}] = kGrant;
      }
    }
  }
  ASSERT_EQ(std::count(shard_used.begin(), shard_used.end(), true), int{kShards});
  // Frames of 256 deducts over every org and wallet, all acknowledged.
  auto deduct_frames = [&](int frames, int64_t amount) {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    uint64_t k = 0;
    for (int f = 0; f < frames; ++f) {
      std::vector<Command> frame;
      for (int i = 0; i < 256; ++i, ++k) {
        const uint64_t org = 1 + k % kOrgs;
        const uint64_t wallet = 1 + (k / kOrgs) % kWallets;
        Command d = cmd::Deduct(org, wallet, amount);
        d.op_id = next_op_id_++;
        frame.push_back(d);
      }
      absl::StatusOr<std::vector<Result>> results = client->Apply(frame);
      ASSERT_TRUE(results.ok()) << results.status();
      for (size_t i = 0; i < frame.size(); ++i) {
        ASSERT_EQ((*results)[i].code, ResultCode::ok);
        expected[{frame[i].org_id, frame[i].wallet_id}] -= amount;
      }
    }
  };
  auto expect_balances = [&] {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    for (const auto& [key, available] : expected) {
      auto b = client->GetBalance({.org_id = key.first, .wallet_id = key.second});
      ASSERT_TRUE(b.ok()) << b.status();
      EXPECT_EQ(b->available, available) << "org " << key.first << " wallet " << key.second;
    }
  };

  deduct_frames(40, 3);
  Restart();  // SIGTERM: a clean stop
  expect_balances();
  deduct_frames(40, 2);
  ASSERT_EQ(tallyd_.Kill(), -SIGKILL);
  ASSERT_TRUE(tallyd_.Start(data(), flags_).ok());
  expect_balances();
  deduct_frames(1, 1);
  expect_balances();
  EXPECT_EQ(tallyd_.Terminate(), 0);

  // Every recovery line is one whole line of one shard; each shard replayed
  // its log at each of the two starts.
  std::vector<int> replayed(kShards, 0);
  for (const std::string& line : ReadLines(log)) {
    if (line.find("recovery:") == std::string::npos) continue;
    uint32_t shard = kShards;
    char rest[8] = {};
    ASSERT_EQ(std::sscanf(line.c_str(), "tallyd: shard %u: recovery: %7s", &shard, rest), 2)
        << line;
    ASSERT_LT(shard, kShards) << line;
    EXPECT_NE(line.find(absl::StrCat("/shard-", shard)), std::string::npos) << line;
    EXPECT_EQ(line.find("tallyd:", 1), std::string::npos) << "two lines mixed: " << line;
    if (line.find(": replayed ") != std::string::npos) ++replayed[shard];
  }
  for (uint32_t shard = 0; shard < kShards; ++shard) {
    EXPECT_EQ(replayed[shard], 2) << "shard " << shard;
  }
}

// A shard that cannot recover stops the start, named, while the others
// recover beside it; with two, the lower-numbered one is named, as when the
// shards opened one after another.  Nothing listens; repaired, everything
// acknowledged is there.
TEST_F(TallydTest, AShardThatCannotRecoverStopsTheStartNamingIt) {
  const std::string log = dir_.path() + "/stderr";
  tallyd_.set_stderr_path(log);
  StartServer({"--shards", "4", "--io-threads", "2"});
  {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    for (uint64_t org = 1; org <= 16; ++org) {
      Ok(*client, cmd::OrgCreate(org));
      Ok(*client, cmd::Grant(org, 1, 100));
    }
  }
  ASSERT_EQ(tallyd_.Terminate(), 0);
  auto damage = [&](uint32_t shard) {
    const std::string manifest = absl::StrCat(data(), "/shard-", shard, "/MANIFEST");
    std::string good;
    {
      std::ifstream in(manifest, std::ios::binary);
      good.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::ofstream(manifest, std::ios::binary | std::ios::trunc) << "not a manifest";
    return [manifest, good] {
      std::ofstream(manifest, std::ios::binary | std::ios::trunc) << good;
    };
  };
  auto repair3 = damage(3);
  auto repair1 = damage(1);
  std::filesystem::remove(log);
  EXPECT_FALSE(tallyd_.Start(data(), flags_).ok());
  std::vector<std::string> lines = ReadLines(log);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.back().find("tallyd: shard 1: "), std::string::npos) << lines.back();
  EXPECT_NE(lines.back().find("MANIFEST"), std::string::npos) << lines.back();
  repair1();
  std::filesystem::remove(log);
  EXPECT_FALSE(tallyd_.Start(data(), flags_).ok());
  lines = ReadLines(log);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines.back().find("tallyd: shard 3: "), std::string::npos) << lines.back();
  repair3();
  ASSERT_TRUE(tallyd_.Start(data(), flags_).ok());
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  for (uint64_t org = 1; org <= 16; ++org) {
    auto b = client->GetBalance({.org_id = org, .wallet_id = 1});
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->available, 100);
  }
}

TEST(TallydFlags, PrefaultTakesOnOrOffOnly) {
  TempDir dir;
  TallydProcess tallyd;
  EXPECT_FALSE(tallyd.Start(dir.path() + "/data", {"--prefault", "maybe"}).ok());
  TallydProcess off;
  ASSERT_TRUE(off.Start(dir.path() + "/data", {"--prefault", "off"}).ok());
  EXPECT_EQ(off.Terminate(), 0);
}

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
constexpr int64_t kDayUs = int64_t{24} * 3600 * 1000000;

// Every operation of SPEC §2 and every query, as the seed stories tell them,
// through the client and the real server.
TEST_F(TallydTest, SeedStoriesEveryOperationAndQueryEndToEnd) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Ok(*c, cmd::OrgCreate(kOrg));
  // Buy credits for the org: one lot expires in 10 days, one never.
  const int64_t expiry = NowUs() + 10 * kDayUs;
  const uint64_t g1 = Ok(*c, cmd::Topup(kOrg, 1000, expiry)).id;
  const uint64_t g2 = Ok(*c, cmd::Topup(kOrg, 500)).id;
  EXPECT_NE(g1, 0u);
  EXPECT_NE(g2, 0u);
  for (uint64_t w : {1, 2, 3}) Ok(*c, cmd::WalletUpsert(kOrg, w, "user"));

  // Allocate to all users, then to chosen users with different amounts.
  Result r = Ok(*c, cmd::AllocateAll(kOrg, 100));
  EXPECT_EQ(r.pool_before(), 1500);
  EXPECT_EQ(r.allocated(), 300);
  EXPECT_EQ(r.pool_after(), 1200);
  std::vector<WalletAmount> targets = {{1, 50}, {4, 20}};
  r = Ok(*c, cmd::Allocate(kOrg, targets));
  EXPECT_EQ(r.pool_after(), 1130);
  // Beyond the pool: refused with the numbers, nothing changes.
  Command too_much = cmd::AllocateAll(kOrg, 1000);
  too_much.op_id = next_op_id_++;
  absl::StatusOr<Result> refused = c->Apply(too_much);
  ASSERT_TRUE(refused.ok()) << refused.status();
  EXPECT_EQ(refused->code, ResultCode::insufficient_pool);
  EXPECT_EQ(refused->available(), 1130);
  EXPECT_EQ(refused->requested(), 4000);
  EXPECT_EQ(refused->shortfall(), 2870);

  // Remove credits from a user: the pool grows.
  r = Ok(*c, cmd::Reclaim(kOrg, 1, 30));
  EXPECT_EQ(r.applied(), 30);
  EXPECT_EQ(r.balance_after(), 120);

  // Grant a promotional lot with expiry and reason, then void another.
  Command welcome = cmd::Grant(kOrg, 2, 40, expiry);
  welcome.text = "welcome";
  const uint64_t promo = Ok(*c, welcome).id;
  EXPECT_NE(promo, 0u);
  const uint64_t wrong = Ok(*c, cmd::Grant(kOrg, 2, 25)).id;
  Ok(*c, cmd::VoidGrant(kOrg, wrong, "granted by mistake"));
  // Set the promo credit to a new amount with a note.
  Command reset = cmd::AdjustTo(kOrg, 3, 60);
  reset.text = "promo reset";
  r = Ok(*c, reset);
  EXPECT_EQ(r.balance_after(), 60);

  // A metered call, and an invoice paid partly in credits.
  r = Ok(*c, cmd::Deduct(kOrg, 2, 10));
  EXPECT_EQ(r.applied(), 10);
  Command invoice = cmd::Deduct(kOrg, 3, 100, /*partial=*/true);
  r = Ok(*c, invoice);
  EXPECT_EQ(r.applied(), 60);
  EXPECT_EQ(r.remainder(), 40);
  Command short_deduct = cmd::Deduct(kOrg, 3, 1);
  short_deduct.op_id = next_op_id_++;
  refused = c->Apply(short_deduct);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, ResultCode::insufficient_funds);

  // Credits applied to an unpaid invoice show as pending, then captured.
  const uint64_t hold = Ok(*c, cmd::Hold(kOrg, 1, 50)).id;
  absl::StatusOr<Balance> b = c->GetBalance({.org_id = kOrg, .wallet_id = 1});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->held, 50);
  EXPECT_EQ(b->available, 70);
  r = Ok(*c, cmd::Capture(kOrg, hold, 20));
  EXPECT_EQ(r.applied(), 20);
  const uint64_t hold2 = Ok(*c, cmd::Hold(kOrg, 1, 10)).id;
  Ok(*c, cmd::Release(kOrg, hold2));
  b = c->GetBalance({.org_id = kOrg, .wallet_id = 1});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->held, 0);
  EXPECT_EQ(b->available, 100);

  // A user asks for credits; one is approved with an adjusted amount, one
  // rejected, then two more approved all at once.
  const uint64_t q1 = Ok(*c, cmd::Request(kOrg, 2, 80, "project")).id;
  const uint64_t q2 = Ok(*c, cmd::Request(kOrg, 2, 5000, "too much")).id;
  r = Ok(*c, cmd::Approve(kOrg, q1, 70));
  EXPECT_EQ(r.allocated(), 70);
  Ok(*c, cmd::Reject(kOrg, q2, "no"));
  Ok(*c, cmd::Request(kOrg, 3, 10));
  Ok(*c, cmd::Request(kOrg, 4, 15));
  absl::StatusOr<OrgSummary> summary = c->GetOrgSummary(kOrg);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->pending_requests, 2u);
  EXPECT_EQ(summary->pending_requested, 25);
  EXPECT_EQ(summary->pool_if_all_approved, summary->pool - 25);
  Ok(*c, cmd::ApproveAll(kOrg));
  auto approved = c->GetRequests(kOrg, RequestStatus::approved);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->size(), 3u);
  auto rejected = c->GetRequests(kOrg, RequestStatus::rejected);
  ASSERT_TRUE(rejected.ok());
  ASSERT_EQ(rejected->size(), 1u);
  EXPECT_EQ((*rejected)[0].request_id, q2);
  EXPECT_EQ((*rejected)[0].decision_note, "no");
  EXPECT_EQ((*rejected)[0].decided_by, "admin") << "the token's name is the actor";

  // The user is deleted: unused credits go back to the pool.
  summary = c->GetOrgSummary(kOrg);
  ASSERT_TRUE(summary.ok());
  const int64_t total_before = summary->total;
  Ok(*c, cmd::WalletDelete(kOrg, 4));
  summary = c->GetOrgSummary(kOrg);
  ASSERT_TRUE(summary.ok());
  EXPECT_EQ(summary->total, total_before);
  EXPECT_EQ(summary->wallets, 3u);
  b = c->GetBalance({.org_id = kOrg, .wallet_id = 4});
  EXPECT_EQ(RefusalCode(b.status()), ResultCode::unknown_wallet);

  // The agency disables credit payments.
  OrgSettings off;
  off.credit_payments = false;
  Ok(*c, cmd::OrgSettingsCmd(kOrg, off, setting_credit_payments));
  auto settings = c->GetSettings(kOrg);
  ASSERT_TRUE(settings.ok()) << settings.status();
  EXPECT_FALSE(settings->credit_payments);
  Command disabled = cmd::Deduct(kOrg, 2, 1);
  disabled.op_id = next_op_id_++;
  refused = c->Apply(disabled);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->code, ResultCode::credit_payments_disabled);

  // History of a wallet, newest first, with the running balance.
  HistoryQuery hq{.org_id = kOrg, .wallet_id = 2, .limit = 100};
  auto page = c->GetHistory(hq);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_FALSE(page->entries.empty());
  EXPECT_EQ(page->entries.front().kind, HistoryKind::allocate) << "the approval came last";
  b = c->GetBalance({.org_id = kOrg, .wallet_id = 2});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(page->entries.front().balance_after, b->available);
  bool saw_void = false;
  for (const HistoryEntryView& e : page->entries) {
    if (e.kind == HistoryKind::void_grant) {
      saw_void = true;
      EXPECT_EQ(e.amount, 25);
      EXPECT_EQ(e.reference, "granted by mistake");
    }
  }
  EXPECT_TRUE(saw_void);
  // Org-wide, paged by the cursor.
  HistoryQuery org_q{.org_id = kOrg, .all_wallets = true, .limit = 5};
  auto first = c->GetHistory(org_q);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->entries.size(), 5u);
  ASSERT_NE(first->next_cursor, 0u);
  org_q.cursor = first->next_cursor;
  auto second = c->GetHistory(org_q);
  ASSERT_TRUE(second.ok());
  ASSERT_FALSE(second->entries.empty());
  EXPECT_LT(second->entries.front().seq, first->entries.back().seq);

  // Usage report and the invariant from the running totals.
  auto usage = c->GetUsage(kOrg, 0, 0);
  ASSERT_TRUE(usage.ok()) << usage.status();
  int64_t spent = 0;
  for (const UsageRow& row : *usage) spent += row.spent;
  EXPECT_EQ(spent, 10 + 60 + 20 + 40) << "deducts, capture and the adjust down from 100 to 60";
  auto totals = c->GetTotals(kOrg);
  ASSERT_TRUE(totals.ok()) << totals.status();
  EXPECT_EQ(totals->in, totals->available + totals->held + totals->spent + totals->expired +
                            totals->voided + totals->adjusted_out);
  EXPECT_EQ(totals->voided, 25);
  EXPECT_EQ(totals->spent, 90);
}

TEST_F(TallydTest, RetriedOperationIdIsAppliedOnceAlsoAfterRestart) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Ok(*c, cmd::OrgCreate(kOrg));
  Ok(*c, cmd::Topup(kOrg, 100));
  Command d = cmd::Deduct(kOrg, 0, 7);
  d.op_id = 424242;
  absl::StatusOr<Result> first = c->Apply(d);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->code, ResultCode::ok);
  EXPECT_FALSE(first->replayed);
  absl::StatusOr<Result> again = c->Apply(d);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->code, ResultCode::ok);
  EXPECT_TRUE(again->replayed);
  EXPECT_EQ(again->balance_after(), first->balance_after());
  c.reset();
  Restart();
  c = Connect();
  ASSERT_NE(c, nullptr);
  absl::StatusOr<Result> after = c->Apply(d);
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->replayed);
  auto b = c->GetBalance({.org_id = kOrg, .wallet_id = 0});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->available, 93);
}

// One frame carries commands of many orgs, so of many shards; each is
// answered in request order.
TEST_F(TallydTest, FrameAcrossShardsIsAnsweredInOrder) {
  StartServer({"--shards", "4", "--io-threads", "2"});
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  std::vector<Command> setup;
  for (uint64_t org = 1; org <= 16; ++org) {
    setup.push_back(cmd::OrgCreate(org));
    setup.push_back(cmd::Topup(org, 1000));
  }
  for (Command& cmd : setup) cmd.op_id = next_op_id_++;
  auto results = c->Apply(setup);
  ASSERT_TRUE(results.ok()) << results.status();
  for (const Result& r : *results) EXPECT_EQ(r.code, ResultCode::ok);
  std::vector<uint32_t> shards_used(4);
  std::vector<Command> deducts;
  for (uint64_t org = 1; org <= 16; ++org) {
    deducts.push_back(cmd::Deduct(org, 0, static_cast<int64_t>(org)));
    deducts.back().op_id = next_op_id_++;
    ++shards_used[ShardOf(org, 4)];
  }
  for (uint32_t n : shards_used) EXPECT_GT(n, 0u) << "the orgs should cover every shard";
  results = c->Apply(deducts);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 16u);
  for (uint64_t org = 1; org <= 16; ++org) {
    EXPECT_EQ((*results)[org - 1].balance_after(), 1000 - static_cast<int64_t>(org));
  }
}

// Frames near the 4 MiB body bound, pipelined so that many queue for one
// shard while it syncs: a round takes no more of them than one log record
// holds (wal_record_payload_bytes_max), so every command is applied and
// the shard goes on, rather than failing its log for good.
TEST_F(TallydTest, BigFramesQueuedTogetherFitTheLogRecordsAndAllApply) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Ok(*c, cmd::OrgCreate(kOrg));
  Ok(*c, cmd::Topup(kOrg, 1'000'000'000));
  const std::string text(text_bytes_max, 't');
  const std::string actor(text_bytes_max, 'a');
  constexpr int kFrames = 8;
  constexpr int kPerFrame = 7'000;  // ~556 bytes each: ~3.9 MB a frame
  std::vector<Command> frame(kPerFrame);
  for (int f = 0; f < kFrames; ++f) {
    for (Command& d : frame) {
      d = cmd::Deduct(kOrg, 0, 1);
      d.text = text;
      d.actor = actor;
      d.op_id = next_op_id_++;
    }
    ASSERT_TRUE(c->SendApply(frame).ok());
  }
  ASSERT_TRUE(c->Flush().ok());
  for (int f = 0; f < kFrames; ++f) {
    const std::vector<Result> results = ResultsOf(c->Receive());
    ASSERT_EQ(results.size(), static_cast<size_t>(kPerFrame));
    for (const Result& r : results) ASSERT_EQ(r.code, ResultCode::ok) << "frame " << f;
  }
  auto pool = c->GetBalance({.org_id = kOrg});
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->available, 1'000'000'000 - kFrames * kPerFrame);
  Ok(*c, cmd::Deduct(kOrg, 0, 1));  // the shard still takes changes
}

// Several big frames queued together on one org's pool (a shard round of
// several big parts): every result is the one of its own command (the
// pool's balance after it counts down across the frames in order), the
// deducts past the balance are refused where they fall, in a later frame
// than the first, and a restart replays the log to the same balance.
TEST_F(TallydTest, BigFramesQueuedTogetherHaveEachResultInItsPlace) {
  StartServer();
  constexpr int kFrames = 6;
  constexpr int kPerFrame = 3'000;
  constexpr int64_t kTopup = 4 * kPerFrame + 500;  // runs out in the fifth frame
  {
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    Ok(*c, cmd::OrgCreate(kOrg));
    Ok(*c, cmd::Topup(kOrg, kTopup));
    std::vector<Command> frame(kPerFrame);
    for (int f = 0; f < kFrames; ++f) {
      for (Command& d : frame) {
        d = cmd::Deduct(kOrg, 0, 1);
        d.op_id = next_op_id_++;
      }
      ASSERT_TRUE(c->SendApply(frame).ok());
    }
    ASSERT_TRUE(c->Flush().ok());
    int64_t expected_after = kTopup;
    for (int f = 0; f < kFrames; ++f) {
      const std::vector<Result> results = ResultsOf(c->Receive());
      ASSERT_EQ(results.size(), static_cast<size_t>(kPerFrame));
      for (int k = 0; k < kPerFrame; ++k) {
        if (expected_after > 0) {
          --expected_after;
          ASSERT_EQ(results[k].code, ResultCode::ok) << "frame " << f << " command " << k;
          ASSERT_EQ(results[k].balance_after(), expected_after) << "frame " << f << " command " << k;
        } else {
          ASSERT_EQ(results[k].code, ResultCode::insufficient_funds)
              << "frame " << f << " command " << k;
        }
      }
    }
    auto pool = c->GetBalance({.org_id = kOrg});
    ASSERT_TRUE(pool.ok()) << pool.status();
    EXPECT_EQ(pool->available, 0);
  }
  Restart();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto pool = c->GetBalance({.org_id = kOrg});
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->available, 0);
  Ok(*c, cmd::Topup(kOrg, 5));
  Ok(*c, cmd::Deduct(kOrg, 0, 5));  // the shard still takes changes
}

// Three times the in-flight bound of requests pipelined on one connection
// before the first reply is read: wherever the server pauses reading, it
// resumes, and every reply comes back, matched by request id.
TEST_F(TallydTest, PipelinedRequestsBeyondTheInFlightBoundAreAllAnswered) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Ok(*c, cmd::OrgCreate(kOrg));
  Ok(*c, cmd::Topup(kOrg, 1'000'000));
  constexpr int kRequests = 3 * connection_requests_in_flight_max;
  std::vector<Command> deducts(kRequests);
  std::map<uint64_t, int> kind_of;  // request id -> 0 apply, 1 balance
  for (int i = 0; i < kRequests; ++i) {
    if (i % 2 == 0) {
      deducts[i] = cmd::Deduct(kOrg, 0, 1);
      deducts[i].op_id = next_op_id_++;
      auto id = c->SendApply(std::span(&deducts[i], 1));
      ASSERT_TRUE(id.ok());
      kind_of[*id] = 0;
    } else {
      std::string body;
      proto::EncodeBalanceRequest({.org_id = kOrg}, &body);
      kind_of[c->SendQuery(proto::Opcode::balance, body)] = 1;
    }
  }
  ASSERT_TRUE(c->Flush().ok());
  int applied = 0;
  for (int i = 0; i < kRequests; ++i) {
    auto reply = c->Receive();
    ASSERT_TRUE(reply.ok()) << reply.status();
    auto it = kind_of.find(reply->request_id);
    ASSERT_NE(it, kind_of.end()) << "reply to an unknown request id";
    EXPECT_EQ(reply->status, ResultCode::ok);
    if (it->second == 0) {
      const std::vector<Result> results = ResultsOf(reply);
      ASSERT_EQ(results.size(), 1u);
      applied += results[0].ok() ? 1 : 0;
    }
    kind_of.erase(it);
  }
  EXPECT_TRUE(kind_of.empty());
  EXPECT_EQ(applied, kRequests / 2);
  auto b = c->GetBalance({.org_id = kOrg});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->available, 1'000'000 - kRequests / 2);
}

// The shard count is stored with the data; a different explicit one is an
// error, no flag at all takes the stored one.
TEST_F(TallydTest, ShardCountIsFixedPerDataDirectory) {
  StartServer({"--shards", "3", "--io-threads", "1"});
  ASSERT_EQ(tallyd_.Terminate(), 0);
  TallydProcess other;
  EXPECT_FALSE(other.Start(data(), {"--shards", "5"}).ok());
  ASSERT_TRUE(tallyd_.Start(data(), {"--io-threads", "1"}).ok());
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->shards(), 3u);
}

// A new data directory with no --shards gets half the cores, at least one
// (the shard threads leave the other half to the I/O threads and clients),
// and keeps that count.
TEST_F(TallydTest, NewDataDirectoryWithoutShardsFlagGetsHalfTheCores) {
  StartServer({"--io-threads", "1"});
  const uint32_t want = std::max(1u, std::thread::hardware_concurrency() / 2);
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->shards(), want);
  std::ifstream stored(data() + "/shards");
  uint32_t count = 0;
  ASSERT_TRUE(stored >> count);
  EXPECT_EQ(count, want);
}

// ---- tokens ------------------------------------------------------------------

class TallydTokensTest : public TallydTest {
 protected:
  void SetUp() override {
    std::string path = dir_.path() + "/tokens";
    std::ofstream out(path);
    out << "# test tokens\n"
        << "boss-token admin boss\n"
        << "\n"
        << "meter-token service meter\n"
        << "viewer-token read viewer\n"
        << "seven-token read seven-only 7\n"
        << "seven-svc service seven-meter 7,9\n";
    out.close();
    StartServer({"--shards", "2", "--io-threads", "2", "--tokens", path});
    auto admin = Connect("boss-token");
    ASSERT_NE(admin, nullptr);
    for (uint64_t org : {7, 8}) {
      Ok(*admin, cmd::OrgCreate(org));
      Ok(*admin, cmd::Topup(org, 1000));
    }
  }
};

TEST_F(TallydTokensTest, FrameBeforeHelloIsRefusedAndClosed) {
  testing::RawConnection raw(tallyd_.port());
  ASSERT_TRUE(raw.connected());
  std::string body;
  proto::EncodeBalanceRequest({.org_id = 7}, &body);
  ASSERT_TRUE(raw.Write(testing::Frame(proto::Opcode::balance, 5, body)));
  auto frame = raw.ReadFrame();
  ASSERT_TRUE(frame.has_value());
  EXPECT_EQ(frame->header.opcode, proto::Opcode::error);
  EXPECT_EQ(frame->header.result(), ResultCode::unauthenticated);
  EXPECT_EQ(frame->header.request_id, 5u);
  EXPECT_TRUE(raw.ClosedByPeer());
}

TEST_F(TallydTokensTest, UnknownTokenIsRefused) {
  auto client = Client::Connect(tallyd_.address(), "no-such-token");
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(RefusalCode(client.status()), ResultCode::unauthenticated) << client.status();
}

TEST_F(TallydTokensTest, ServiceTokenMayDeductButNotAllocate) {
  auto meter = Connect("meter-token");
  ASSERT_NE(meter, nullptr);
  EXPECT_EQ(meter->role(), proto::Role::service);
  Command allocate = cmd::AllocateAll(7, 10);
  allocate.op_id = 9001;
  Command deduct = cmd::Deduct(7, 0, 5);
  deduct.op_id = 9002;
  std::vector<Command> frame = {allocate, deduct};
  auto results = meter->Apply(frame);
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_EQ((*results)[0].code, ResultCode::forbidden);
  EXPECT_EQ((*results)[1].code, ResultCode::ok) << "the others in the frame are applied";
  EXPECT_TRUE(meter->GetBalance({.org_id = 7}).ok());
  auto summary = meter->GetOrgSummary(7);
  EXPECT_EQ(RefusalCode(summary.status()), ResultCode::forbidden) << summary.status();
  // Nothing was allocated; the deduct was.
  auto admin = Connect("boss-token");
  auto pool = admin->GetBalance({.org_id = 7});
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ(pool->available, 995);
}

// A shard logs a round's commands as the frames carried them when the server
// changed none of them (a service's deducts: Store::ApplyEncoded), and
// encodes them again when it named an actor (an admin's grants), also when
// both kinds share a round.  After a kill -9 the log is replayed: every
// balance, reference and actor is what the acknowledged frames said.
TEST_F(TallydTokensTest, CommandsLoggedAsSentAndRenamedOnesAreReplayedAfterAKill) {
  auto admin = Connect("boss-token");
  auto meter = Connect("meter-token");
  ASSERT_NE(admin, nullptr);
  ASSERT_NE(meter, nullptr);
  constexpr uint64_t kFirstOrg = 101;
  constexpr uint64_t kOrgs = 12;
  constexpr int64_t kGranted = 100'000;
  std::vector<uint32_t> per_shard(2);
  for (uint64_t org = kFirstOrg; org < kFirstOrg + kOrgs; ++org) {
    Ok(*admin, cmd::OrgCreate(org));
    Ok(*admin, cmd::Grant(org, 1, kGranted));
    ++per_shard[ShardOf(org, 2)];
  }
  for (uint32_t n : per_shard) EXPECT_GT(n, 0u) << "the orgs should cover both shards";

  // 40 frames of three deducts per org from the service and 8 frames of
  // grants from the admin, all sent before any reply is read, so the shards'
  // rounds hold many parts of every kind: big parts logged as sent, small
  // ones and renamed ones encoded again.
  constexpr int kFrames = 40;
  std::map<uint64_t, int64_t> wallet1;  // org -> expected balance of wallet 1
  std::map<uint64_t, int64_t> wallet2;  // org -> expected balance of wallet 2
  std::vector<std::string> refs;
  refs.reserve(kFrames * 3 * kOrgs);
  int sent = 0;
  for (int f = 0; f < kFrames; ++f) {
    std::vector<Command> frame;
    for (int rep = 0; rep < 3; ++rep) {
      for (uint64_t org = kFirstOrg; org < kFirstOrg + kOrgs; ++org) {
        int64_t amount = 1 + static_cast<int64_t>((static_cast<uint64_t>(f + rep) + org) % 7);
        Command d = cmd::Deduct(org, 1, amount);
        refs.push_back(absl::StrCat("invoice-", f, "-", rep, "-", org));
        d.text = refs.back();
        if (f % 5 == 0) d.actor = "meter-7";  // named by the client: logged as sent
        d.op_id = next_op_id_++;
        frame.push_back(d);
        wallet1[org] += amount;
      }
    }
    ASSERT_TRUE(meter->SendApply(frame).ok());
    ++sent;
    if (f % 5 == 0) {
      std::vector<Command> grants;
      for (uint64_t org = kFirstOrg; org < kFirstOrg + kOrgs; ++org) {
        grants.push_back(cmd::Grant(org, 2, 10 + f));
        grants.back().op_id = next_op_id_++;
        wallet2[org] += 10 + f;
      }
      ASSERT_TRUE(admin->SendApply(grants).ok());
      ASSERT_TRUE(admin->Flush().ok());
    }
    ASSERT_TRUE(meter->Flush().ok());
  }
  auto receive_all = [](Client& client, int frames) {
    for (int i = 0; i < frames; ++i) {
      const std::vector<Result> results = ResultsOf(client.Receive());
      ASSERT_FALSE(results.empty());
      for (const Result& r : results) EXPECT_EQ(r.code, ResultCode::ok);
    }
  };
  receive_all(*meter, sent);
  receive_all(*admin, kFrames / 5);
  // Each org's whole history, in the order the shards applied it: the log
  // must replay exactly that order, not only the same sums.
  auto org_history = [&](Client& client, uint64_t org) {
    std::vector<std::string> lines;
    auto page = client.GetHistory({.org_id = org, .all_wallets = true, .limit = 1000});
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) return lines;
    for (const HistoryEntryView& e : page->entries) {
      lines.push_back(absl::StrCat(e.seq, " ", e.time_us, " ", e.wallet_id, " ",
                                   static_cast<int>(e.kind), " ", e.amount, " ", e.balance_after,
                                   " ", e.related_id, " ", e.reference, " ", e.actor));
    }
    return lines;
  };
  std::map<uint64_t, std::vector<std::string>> before;
  for (uint64_t org = kFirstOrg; org < kFirstOrg + kOrgs; ++org) {
    before[org] = org_history(*admin, org);
  }

  ASSERT_EQ(tallyd_.Kill(), -SIGKILL);
  ASSERT_TRUE(tallyd_.Start(data(), flags_).ok());
  auto reader = Connect("boss-token");
  ASSERT_NE(reader, nullptr);
  for (uint64_t org = kFirstOrg; org < kFirstOrg + kOrgs; ++org) {
    SCOPED_TRACE(org);
    auto one = reader->GetBalance({.org_id = org, .wallet_id = 1});
    ASSERT_TRUE(one.ok()) << one.status();
    EXPECT_EQ(one->available, kGranted - wallet1[org]);
    auto two = reader->GetBalance({.org_id = org, .wallet_id = 2});
    ASSERT_TRUE(two.ok()) << two.status();
    EXPECT_EQ(two->available, wallet2[org]);
    EXPECT_EQ(org_history(*reader, org), before[org]);
    // The newest deducts (frames 39 to 36, no actor) and frame 35's (actor
    // named by the client), and the newest grant, named by the server.
    auto page = reader->GetHistory({.org_id = org, .wallet_id = 1, .limit = 13});
    ASSERT_TRUE(page.ok()) << page.status();
    ASSERT_EQ(page->entries.size(), 13u);
    for (int e = 0; e < 12; ++e) {
      EXPECT_EQ(page->entries[e].reference,
                absl::StrCat("invoice-", 39 - e / 3, "-", 2 - e % 3, "-", org));
      EXPECT_EQ(page->entries[e].actor, "");
    }
    EXPECT_EQ(page->entries[12].reference, absl::StrCat("invoice-35-2-", org));
    EXPECT_EQ(page->entries[12].actor, "meter-7");
    auto grants = reader->GetHistory({.org_id = org, .wallet_id = 2, .limit = 1});
    ASSERT_TRUE(grants.ok()) << grants.status();
    ASSERT_EQ(grants->entries.size(), 1u);
    EXPECT_EQ(grants->entries[0].actor, "boss");
  }
}

TEST_F(TallydTokensTest, ReadTokenMayQueryButNotChange) {
  auto viewer = Connect("viewer-token");
  ASSERT_NE(viewer, nullptr);
  Command deduct = cmd::Deduct(7, 0, 5);
  deduct.op_id = 77;
  auto r = viewer->Apply(deduct);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->code, ResultCode::forbidden);
  auto summary = viewer->GetOrgSummary(8);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->pool, 1000);
}

TEST_F(TallydTokensTest, OrgLimitedTokenCannotReadOrChangeAnotherOrg) {
  auto seven = Connect("seven-token");
  ASSERT_NE(seven, nullptr);
  EXPECT_TRUE(seven->GetBalance({.org_id = 7}).ok());
  auto other = seven->GetBalance({.org_id = 8});
  EXPECT_EQ(RefusalCode(other.status()), ResultCode::forbidden) << other.status();
  auto history = seven->GetHistory({.org_id = 8, .all_wallets = true});
  EXPECT_EQ(RefusalCode(history.status()), ResultCode::forbidden);
  auto svc = Connect("seven-svc");
  ASSERT_NE(svc, nullptr);
  Command mine = cmd::Deduct(7, 0, 1);
  mine.op_id = 1;
  Command theirs = cmd::Deduct(8, 0, 1);
  theirs.op_id = 2;
  std::vector<Command> frame = {mine, theirs};
  auto results = svc->Apply(frame);
  ASSERT_TRUE(results.ok());
  EXPECT_EQ((*results)[0].code, ResultCode::ok);
  EXPECT_EQ((*results)[1].code, ResultCode::forbidden);
}

TEST_F(TallydTest, BadTokenFileStopsTheStart) {
  std::string path = dir_.path() + "/bad-tokens";
  std::ofstream(path) << "abc superuser boss\n";
  TallydProcess bad;
  EXPECT_FALSE(bad.Start(data(), {"--tokens", path}).ok());
  TallydProcess missing;
  EXPECT_FALSE(missing.Start(data(), {"--tokens", dir_.path() + "/no-such-file"}).ok());
}

// With snapshots every few records, the shards write snapshots while they
// serve, and a restart (snapshot + the log after it) keeps everything.
TEST_F(TallydTest, SnapshotsAreTakenAndARestartFromThemKeepsEverything) {
  StartServer({"--shards", "2", "--io-threads", "2", "--snapshot-every-records", "5"});
  std::vector<uint64_t> orgs = {1, 2, 3, 4};
  std::vector<std::string> before;
  {
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    for (int round = 0; round < 10; ++round) {
      for (uint64_t org : orgs) {
        if (round == 0) Ok(*c, cmd::OrgCreate(org));
        Ok(*c, cmd::Grant(org, 1 + round % 3, 10));
        Ok(*c, cmd::Deduct(org, 1 + round % 3, 1));
      }
    }
    // Snapshots are written by a child process: give them a moment to land.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool found = false;
    while (!found && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      Ok(*c, cmd::Grant(1, 1, 1));  // a batch, so the shard reaps its child
      for (const auto& entry : std::filesystem::directory_iterator(data() + "/shard-0")) {
        found = found || entry.path().extension() == ".snap";
      }
      for (const auto& entry : std::filesystem::directory_iterator(data() + "/shard-1")) {
        found = found || entry.path().extension() == ".snap";
      }
    }
    EXPECT_TRUE(found) << "no snapshot file in either shard";
    for (uint64_t org : orgs) before.push_back(Describe(*c, org));
  }
  Restart();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  for (size_t i = 0; i < orgs.size(); ++i) EXPECT_EQ(Describe(*c, orgs[i]), before[i]);
}

// ---- events --------------------------------------------------------------------

// WaitForEvent reads events until one of `kind` arrives (bounded).
std::optional<Event> WaitForEvent(Client& subscriber, EventKind kind, int timeout_ms,
                                  std::vector<Event>* seen = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    auto events = subscriber.NextEvents(100);
    if (!events.ok()) return std::nullopt;
    for (const Event& e : *events) {
      if (seen != nullptr) seen->push_back(e);
      if (e.kind == kind) return e;
    }
  }
  return std::nullopt;
}

TEST_F(TallydTest, SubscriberGetsEventsOfADeductAfterItIsDurable) {
  StartServer();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Ok(*c, cmd::OrgCreate(kOrg));
  Ok(*c, cmd::OrgCreate(kOrg + 1));
  auto subscriber = Connect();
  ASSERT_NE(subscriber, nullptr);
  ASSERT_TRUE(subscriber->Subscribe(kOrg).ok());
  Ok(*c, cmd::Grant(kOrg + 1, 3, 50));  // another org: not for this subscriber
  Ok(*c, cmd::Grant(kOrg, 3, 50));
  Ok(*c, cmd::Deduct(kOrg, 3, 50));
  std::vector<Event> seen;
  auto depleted = WaitForEvent(*subscriber, EventKind::balance_depleted, 5000, &seen);
  ASSERT_TRUE(depleted.has_value());
  EXPECT_EQ(depleted->org_id, kOrg);
  EXPECT_EQ(depleted->wallet_id, 3u);
  EXPECT_EQ(depleted->balance_after, 0);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front().kind, EventKind::credits_granted) << "events come in the shard's order";
  for (const Event& e : seen) EXPECT_EQ(e.org_id, kOrg);
}

TEST_F(TallydTest, ExpiryHappensWithNoTrafficAndRaisesAnEvent) {
  StartServer({"--shards", "2", "--io-threads", "2", "--sweep-every-ms", "100"});
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Ok(*c, cmd::OrgCreate(kOrg));
  auto subscriber = Connect();
  ASSERT_NE(subscriber, nullptr);
  ASSERT_TRUE(subscriber->Subscribe(0).ok());
  Ok(*c, cmd::Grant(kOrg, 4, 80, NowUs() + 700 * 1000));
  auto b = c->GetBalance({.org_id = kOrg, .wallet_id = 4});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->available, 80);
  // No request from here on: the server's own timer expires the lot.
  auto expired = WaitForEvent(*subscriber, EventKind::credits_expired, 10000);
  ASSERT_TRUE(expired.has_value()) << "no credits.expired within 10 s";
  EXPECT_EQ(expired->amount, 80);
  EXPECT_EQ(expired->wallet_id, 4u);
  auto totals = c->GetTotals(kOrg);
  ASSERT_TRUE(totals.ok());
  EXPECT_EQ(totals->expired, 80);
}

TEST_F(TallydTest, HoldTimesOutWithNoTraffic) {
  StartServer({"--shards", "1", "--io-threads", "1", "--sweep-every-ms", "50"});
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  Ok(*c, cmd::OrgCreate(kOrg));
  Ok(*c, cmd::Grant(kOrg, 4, 80));
  Ok(*c, cmd::Hold(kOrg, 4, 30, NowUs() + 300 * 1000));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  int64_t held = -1;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto b = c->GetBalance({.org_id = kOrg, .wallet_id = 4});
    ASSERT_TRUE(b.ok());
    held = b->held;
    if (held == 0) {
      EXPECT_EQ(b->available, 80);
      break;
    }
  }
  EXPECT_EQ(held, 0) << "the hold was not released by its timeout";
}

TEST_F(TallydTest, SubscribedConnectionTakesNoFurtherRequests) {
  StartServer();
  testing::RawConnection raw(tallyd_.port());
  ASSERT_TRUE(raw.Write(testing::HelloFrame(tallyd_.AdminToken())));
  ASSERT_TRUE(raw.ReadFrame().has_value());
  std::string body;
  proto::EncodeSubscribeRequest({.org_id = 0}, &body);
  ASSERT_TRUE(raw.Write(testing::Frame(proto::Opcode::subscribe, 2, body)));
  auto ok = raw.ReadFrame();
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->header.result(), ResultCode::ok);
  body.clear();
  proto::EncodeBalanceRequest({.org_id = 1}, &body);
  ASSERT_TRUE(raw.Write(testing::Frame(proto::Opcode::balance, 3, body)));
  auto error = raw.ReadFrame();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->header.opcode, proto::Opcode::error);
  EXPECT_TRUE(raw.ClosedByPeer());
}

}  // namespace
}  // namespace tally
