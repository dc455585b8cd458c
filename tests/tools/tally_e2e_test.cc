// tally_e2e_test.cc: the real `tally` binary against a real tallyd on a free
// loopback port with a temp data directory, run the way a script runs it:
// argv in; exit code, stdout and stderr out; --json parsed back.  One tallyd
// serves the whole suite; every test works in its own org.
#include <algorithm>
#include <atomic>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tally/client.h"
#include "tally/commands.h"
#include "tests/net/tallyd_process.h"
#include "tests/tools/json.h"
#include "tests/tools/tally_process.h"

namespace tally {
namespace {

using testing::Json;
using testing::ParseJson;
using testing::RunTally;
using testing::TallydProcess;
using testing::TallyRun;
using testing::TempDir;

class TallyCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    tallyd_ = new TallydProcess();
    absl::Status s = tallyd_->Start(dir_->path() + "/data", {"--shards", "2", "--io-threads", "2"});
    ASSERT_TRUE(s.ok()) << s;
    token_ = tallyd_->AdminToken();
    ASSERT_FALSE(token_.empty());
  }
  static void TearDownTestSuite() {
    if (tallyd_ != nullptr) {
      EXPECT_EQ(tallyd_->Terminate(), 0);
    }
    delete tallyd_;
    delete dir_;
    tallyd_ = nullptr;
    dir_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(tallyd_, nullptr);
    ASSERT_TRUE(tallyd_->running());
    org_ = std::to_string(next_org_++);
  }

  // T runs `tally --server <tallyd> --token <admin> args...`.
  static TallyRun T(std::vector<std::string> args) {
    std::vector<std::string> full = {"--server", tallyd_->address(), "--token", token_};
    full.insert(full.end(), args.begin(), args.end());
    return RunTally(full);
  }
  // J runs the command with --json, expects exit 0 and returns the object.
  static Json J(std::vector<std::string> args) {
    args.push_back("--json");
    TallyRun r = T(args);
    EXPECT_EQ(r.exit_code, 0) << args[0] << ": " << r.err;
    std::optional<Json> j = ParseJson(r.out);
    EXPECT_TRUE(j.has_value()) << "not JSON: " << r.out;
    return j.value_or(Json{});
  }
  // Refused runs a command that the server must refuse: exit 1, the code
  // name first on stderr; returns the --json error object.
  static Json Refused(std::vector<std::string> args, const std::string& code) {
    TallyRun text = T(args);
    EXPECT_EQ(text.exit_code, 1) << text.out << text.err;
    EXPECT_EQ(text.err.rfind("tally: " + code + ": ", 0), 0u) << text.err;
    EXPECT_EQ(std::count(text.err.begin(), text.err.end(), '\n'), 1) << text.err;
    args.push_back("--json");
    TallyRun json = T(args);
    EXPECT_EQ(json.exit_code, 1);
    std::optional<Json> j = ParseJson(json.out);
    EXPECT_TRUE(j.has_value()) << "not JSON: " << json.out;
    if (!j) return Json{};
    EXPECT_EQ((*j)["error"].Str(), code);
    return *j;
  }
  void NewOrg() { J({"org", "create", org_}); }

  static TempDir* dir_;
  static TallydProcess* tallyd_;
  static std::string token_;
  static uint64_t next_org_;
  std::string org_;
};

TempDir* TallyCli::dir_ = nullptr;
TallydProcess* TallyCli::tallyd_ = nullptr;
std::string TallyCli::token_;
uint64_t TallyCli::next_org_ = 100;

TEST_F(TallyCli, TopupAllocateBalanceSummaryInJsonAndText) {
  NewOrg();
  Json topup = J({"topup", org_, "1000", "--reference", "PO-1"});
  EXPECT_EQ(topup["result"].Str(), "ok");
  EXPECT_EQ(topup["applied"].Int(), 1000);
  EXPECT_GT(topup["grant_id"].Uint(), 0u);
  EXPECT_GT(topup["op_id"].Uint(), 0u);
  EXPECT_LT(topup["op_id"].Uint(), uint64_t{1} << 53);

  Json alloc = J({"allocate", org_, "--to", "42=50,43=20"});
  EXPECT_EQ(alloc["pool_before"].Int(), 1000);
  EXPECT_EQ(alloc["allocated"].Int(), 70);
  EXPECT_EQ(alloc["pool_after"].Int(), 930);
  Json all = J({"allocate", org_, "--all", "10"});
  EXPECT_EQ(all["allocated"].Int(), 20);

  Json b = J({"balance", org_, "42"});
  EXPECT_EQ(b["available"].Int(), 60);
  EXPECT_EQ(b["held"].Int(), 0);
  EXPECT_EQ(b["expiring_soon"].Int(), 0);
  ASSERT_EQ(b["lots"].size(), 1u);
  EXPECT_EQ(b["lots"][0]["grant_id"].Uint(), topup["grant_id"].Uint());
  EXPECT_EQ(b["lots"][0]["remaining"].Int(), 60);
  EXPECT_TRUE(b["lots"][0]["expires_at"].IsNull());
  EXPECT_EQ(b["lots"][0]["priority"].Int(), 0);

  Json s = J({"summary", org_});
  EXPECT_EQ(s["pool"].Int(), 910);
  EXPECT_EQ(s["allocated"].Int(), 90);
  EXPECT_EQ(s["total"].Int(), 1000);
  EXPECT_EQ(s["wallets"].Int(), 2);
  EXPECT_EQ(s["pending_requests"].Int(), 0);
  EXPECT_EQ(s["pending_requested"].Int(), 0);
  EXPECT_EQ(s["pool_if_all_approved"].Int(), 910);

  TallyRun text = T({"summary", org_});
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_EQ(text.out.rfind("org_id ", 0), 0u) << text.out;
  EXPECT_NE(text.out.find(" 910\n"), std::string::npos) << text.out;
}

TEST_F(TallyCli, BulkAllocationBeyondThePoolIsRefusedWithTheNumbersAndChangesNothing) {
  NewOrg();
  J({"topup", org_, "100"});
  TallyRun r = T({"allocate", org_, "--to", "42=80,43=80"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "tally: insufficient_pool: available 100, requested 160, shortfall 60\n");
  EXPECT_EQ(r.out, "");
  Json e = Refused({"allocate", org_, "--to", "42=80,43=80"}, "insufficient_pool");
  EXPECT_EQ(e["available"].Int(), 100);
  EXPECT_EQ(e["requested"].Int(), 160);
  EXPECT_EQ(e["shortfall"].Int(), 60);
  Json s = J({"summary", org_});
  EXPECT_EQ(s["pool"].Int(), 100);
  EXPECT_EQ(s["allocated"].Int(), 0);
  EXPECT_EQ(s["wallets"].Int(), 0);
}

TEST_F(TallyCli, ARequestApprovedWithAnAdjustedAmount) {
  NewOrg();
  J({"topup", org_, "1000"});
  Json req = J({"request", org_, "42", "300", "--reason", "quarter-end reports"});
  uint64_t id = req["request_id"].Uint();
  ASSERT_GT(id, 0u);
  Json pending = J({"requests", org_, "--status", "pending"});
  ASSERT_EQ(pending["requests"].size(), 1u);
  EXPECT_EQ(pending["requests"][0]["request_id"].Uint(), id);
  EXPECT_EQ(pending["requests"][0]["amount"].Int(), 300);
  EXPECT_EQ(pending["requests"][0]["reason"].Str(), "quarter-end reports");
  EXPECT_EQ(J({"summary", org_})["pending_requested"].Int(), 300);

  Json ok = J({"approve", org_, std::to_string(id), "--amount", "200"});
  EXPECT_EQ(ok["request_id"].Uint(), id);
  EXPECT_EQ(ok["allocated"].Int(), 200);
  EXPECT_EQ(ok["pool_after"].Int(), 800);
  Json approved = J({"requests", org_, "--status", "approved"});
  ASSERT_EQ(approved["requests"].size(), 1u);
  EXPECT_EQ(approved["requests"][0]["approved_amount"].Int(), 200);
  EXPECT_EQ(approved["requests"][0]["status"].Str(), "approved");
  EXPECT_EQ(approved["requests"][0]["decided_by"].Str(), "admin");
  EXPECT_EQ(J({"balance", org_, "42"})["available"].Int(), 200);
  Refused({"approve", org_, std::to_string(id)}, "already_decided");
  Refused({"approve", org_, "999"}, "unknown_request");
}

TEST_F(TallyCli, ApproveAllRejectAndRejectAll) {
  NewOrg();
  J({"topup", org_, "100"});
  J({"request", org_, "42", "60"});
  J({"request", org_, "43", "60"});
  // All or nothing: 120 asked, 100 in the pool.
  Json e = Refused({"approve", org_, "--all"}, "insufficient_pool");
  EXPECT_EQ(e["shortfall"].Int(), 20);
  EXPECT_EQ(J({"requests", org_})["requests"].size(), 2u);
  Json one = J({"reject", org_, "2", "--reason", "over budget"});
  EXPECT_EQ(one["rejected"].Int(), 1);
  Json all = J({"approve", org_, "--all"});
  EXPECT_EQ(all["allocated"].Int(), 60);
  J({"request", org_, "44", "5"});
  J({"request", org_, "45", "5"});
  EXPECT_EQ(J({"reject", org_, "--all"})["rejected"].Int(), 2);
  Json rejected = J({"requests", org_, "--status", "rejected"});
  ASSERT_EQ(rejected["requests"].size(), 3u);
  bool saw_note = false;
  for (const Json& r : rejected["requests"].items) {
    saw_note = saw_note || r["decision_note"].Str() == "over budget";
  }
  EXPECT_TRUE(saw_note);
}

TEST_F(TallyCli, AnInvoiceOf150With50CreditsApplies50) {
  NewOrg();
  J({"grant", org_, "42", "50", "--reason", "welcome"});
  Json e =
      Refused({"deduct", org_, "42", "150", "--reference", "invoice-881"}, "insufficient_funds");
  EXPECT_EQ(e["available"].Int(), 50);
  EXPECT_EQ(e["requested"].Int(), 150);
  EXPECT_EQ(e["shortfall"].Int(), 100);
  Json d = J({"deduct", org_, "42", "150", "--partial", "--reference", "invoice-881"});
  EXPECT_EQ(d["applied"].Int(), 50);
  EXPECT_EQ(d["remainder"].Int(), 100);
  EXPECT_EQ(d["balance_after"].Int(), 0);
}

TEST_F(TallyCli, AHoldCapturedInPartAndAnotherReleased) {
  NewOrg();
  J({"grant", org_, "42", "100"});
  Json h = J({"hold", org_, "42", "80", "--timeout", "7d", "--reference", "invoice-882"});
  uint64_t hold = h["hold_id"].Uint();
  ASSERT_GT(hold, 0u);
  EXPECT_EQ(h["applied"].Int(), 80);
  Json b = J({"balance", org_, "42"});
  EXPECT_EQ(b["available"].Int(), 20);
  EXPECT_EQ(b["held"].Int(), 80);
  Json c = J({"capture", org_, std::to_string(hold), "60"});
  EXPECT_EQ(c["applied"].Int(), 60);
  b = J({"balance", org_, "42"});
  EXPECT_EQ(b["available"].Int(), 40);
  EXPECT_EQ(b["held"].Int(), 0);
  Refused({"capture", org_, std::to_string(hold), "1"}, "unknown_hold");

  Json h2 = J({"hold", org_, "42", "30"});
  Json rel = J({"release", org_, std::to_string(h2["hold_id"].Uint())});
  EXPECT_EQ(rel["released"].Int(), 30);
  EXPECT_EQ(J({"balance", org_, "42"})["available"].Int(), 40);
}

TEST_F(TallyCli, GrantWithExpiryVoidReclaimAndAdjust) {
  NewOrg();
  Json g = J({"grant", org_, "42", "500", "--expires-in", "90d", "--reason", "promo"});
  Json b = J({"balance", org_, "42"});
  ASSERT_EQ(b["lots"].size(), 1u);
  EXPECT_FALSE(b["lots"][0]["expires_at"].IsNull());
  EXPECT_EQ(b["expiring_soon"].Int(), 0);  // 90 days out, the window is 30
  J({"deduct", org_, "42", "100"});
  Json v = J({"void", org_, std::to_string(g["grant_id"].Uint()), "--reason", "granted in error"});
  EXPECT_EQ(v["voided"].Int(), 400);
  EXPECT_EQ(J({"balance", org_, "42"})["available"].Int(), 0);
  Refused({"void", org_, std::to_string(g["grant_id"].Uint())}, "grant_voided");

  J({"topup", org_, "100"});
  J({"allocate", org_, "--to", "43=70"});
  Json rc = J({"reclaim", org_, "43", "30"});
  EXPECT_EQ(rc["applied"].Int(), 30);
  EXPECT_EQ(rc["balance_after"].Int(), 40);
  Json rall = J({"reclaim", org_, "43", "--all"});
  EXPECT_EQ(rall["applied"].Int(), 40);
  EXPECT_EQ(J({"summary", org_})["pool"].Int(), 100);

  Json up = J({"adjust", org_, "42", "--to", "200", "--reason", "promo reset"});
  EXPECT_EQ(up["change"].Int(), 200);
  EXPECT_EQ(up["balance_after"].Int(), 200);
  Json down = J({"adjust", org_, "42", "--by", "-50"});
  // Adjust needs a wallet that exists.
  Refused({"adjust", org_, "44", "--to", "5"}, "unknown_wallet");
  EXPECT_EQ(down["change"].Int(), -50);
  EXPECT_EQ(down["balance_after"].Int(), 150);
}

TEST_F(TallyCli, WalletCreateAndDeleteSendsCreditsBackToThePool) {
  NewOrg();
  J({"wallet", "create", org_, "42", "--label", "alice"});
  J({"topup", org_, "100"});
  J({"allocate", org_, "--all", "40"});
  Json d = J({"wallet", "delete", org_, "42"});
  EXPECT_EQ(d["moved"].Int(), 40);
  EXPECT_EQ(d["pool_after"].Int(), 100);
  Json s = J({"summary", org_});
  EXPECT_EQ(s["wallets"].Int(), 0);
  EXPECT_EQ(s["pool"].Int(), 100);
}

TEST_F(TallyCli, SettingsSwitchCreditPaymentsOff) {
  NewOrg();
  Json shown = J({"settings", "show", org_});
  EXPECT_TRUE(shown["credit_payments"].Bool());
  EXPECT_EQ(shown["expiring_soon_window"].Str(), "30d");
  J({"settings", "set", org_, "--credit-payments", "off", "--low-balance-threshold", "10"});
  shown = J({"settings", org_});
  EXPECT_FALSE(shown["credit_payments"].Bool());
  EXPECT_EQ(shown["low_balance_threshold"].Int(), 10);
  J({"grant", org_, "42", "50"});
  Refused({"deduct", org_, "42", "5"}, "credit_payments_disabled");
  EXPECT_EQ(J({"balance", org_, "42"})["available"].Int(), 50);
}

TEST_F(TallyCli, HistoryFiltersPagesAndExports) {
  NewOrg();
  J({"grant", org_, "42", "100", "--reason", "welcome, \"new\""});
  for (int i = 0; i < 5; ++i) J({"deduct", org_, "42", "3", "--reference", "call"});
  Json h = J({"history", org_, "42"});
  ASSERT_EQ(h["entries"].size(), 6u);
  const Json& newest = h["entries"][0];
  EXPECT_EQ(newest["kind"].Str(), "deduct");
  EXPECT_EQ(newest["direction"].Str(), "out");
  EXPECT_EQ(newest["amount"].Int(), 3);
  EXPECT_EQ(newest["balance_after"].Int(), 85);
  EXPECT_EQ(newest["reference"].Str(), "call");
  EXPECT_GT(newest["seq"].Uint(), h["entries"][1]["seq"].Uint());
  EXPECT_EQ(newest["time"].Str().size(), std::string("2026-12-02T11:34:09.250Z").size());
  EXPECT_TRUE(h.Has("actor") || newest.Has("actor"));
  const Json& oldest = h["entries"][5];
  EXPECT_EQ(oldest["kind"].Str(), "grant");
  EXPECT_EQ(oldest["direction"].Str(), "in");
  EXPECT_EQ(oldest["reference"].Str(), "welcome, \"new\"");

  Json grants = J({"history", org_, "42", "--kind", "grant"});
  EXPECT_EQ(grants["entries"].size(), 1u);
  // Pages of two, continued with the cursor.
  Json page = J({"history", org_, "42", "--limit", "2"});
  ASSERT_EQ(page["entries"].size(), 2u);
  ASSERT_FALSE(page["next_cursor"].IsNull());
  Json next = J({"history", org_, "42", "--limit", "2", "--cursor",
                 std::to_string(page["next_cursor"].Uint())});
  ASSERT_EQ(next["entries"].size(), 2u);
  EXPECT_LT(next["entries"][0]["seq"].Uint(), page["entries"][1]["seq"].Uint());
  // The whole org, in the future: nothing.
  EXPECT_EQ(J({"history", org_, "--from", "2099-01-01"})["entries"].size(), 0u);
  EXPECT_EQ(J({"history", org_})["entries"].size(), 6u);

  TallyRun csv = T({"history", org_, "42", "--csv"});
  EXPECT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_EQ(csv.out.rfind("seq,time,wallet_id,kind,direction,amount,balance_after", 0), 0u);
  EXPECT_NE(csv.out.find(",grant,in,100,100,credits,"), std::string::npos) << csv.out;
  EXPECT_NE(csv.out.find("\"welcome, \"\"new\"\"\""), std::string::npos) << csv.out;
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 7);

  std::string xlsx = dir_->path() + "/history-" + org_ + ".xlsx";
  TallyRun x = T({"history", org_, "42", "--xlsx", xlsx});
  EXPECT_EQ(x.exit_code, 0) << x.err;
  std::ifstream f(xlsx, std::ios::binary);
  char magic[4] = {};
  f.read(magic, 4);
  EXPECT_EQ(std::string(magic, 4), std::string("PK\x03\x04", 4));
}

// More entries than one reply carries (2,000): --limit is fetched page by
// page; a CSV that stops early names the cursor to go on from on stderr.
TEST_F(TallyCli, HistoryBeyondOnePageIsFetchedPageByPage) {
  NewOrg();
  J({"grant", org_, "42", "1000000"});
  auto client = Client::Connect(tallyd_->address(), token_);
  ASSERT_TRUE(client.ok()) << client.status();
  const uint64_t org = std::stoull(org_);
  std::vector<Command> deducts;
  for (uint64_t i = 0; i < 2500; ++i) {
    Command c = cmd::Deduct(org, 42, 1);
    c.op_id = 1000000 + i;
    deducts.push_back(c);
  }
  auto results = (*client)->Apply(deducts);
  ASSERT_TRUE(results.ok()) << results.status();
  Json some = J({"history", org_, "42", "--limit", "2400"});
  ASSERT_EQ(some["entries"].size(), 2400u);
  EXPECT_FALSE(some["next_cursor"].IsNull());
  Json all = J({"history", org_, "42", "--limit", "3000"});
  ASSERT_EQ(all["entries"].size(), 2501u);
  EXPECT_TRUE(all["next_cursor"].IsNull());
  EXPECT_EQ(all["entries"][2500]["kind"].Str(), "grant");
  for (size_t i = 1; i < all["entries"].size(); ++i) {
    ASSERT_LT(all["entries"][i]["seq"].Uint(), all["entries"][i - 1]["seq"].Uint()) << i;
  }
  TallyRun csv = T({"history", org_, "42", "--limit", "10", "--csv"});
  EXPECT_EQ(csv.exit_code, 0);
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 11);
  EXPECT_NE(csv.err.find("more entries: --cursor "), std::string::npos) << csv.err;
}

TEST_F(TallyCli, UsageReportAndTotals) {
  NewOrg();
  J({"topup", org_, "1000"});
  J({"allocate", org_, "--to", "42=100"});
  J({"deduct", org_, "42", "30"});
  Json rep = J({"report", org_});
  bool found = false;
  for (const Json& row : rep["usage"].items) {
    if (row["wallet_id"].Uint() == 42) {
      found = true;
      EXPECT_EQ(row["spent"].Int(), 30);
      EXPECT_EQ(row["granted"].Int(), 100);
      EXPECT_EQ(row["expired"].Int(), 0);
      EXPECT_EQ(row["asset"].Str(), "credits");
    }
  }
  EXPECT_TRUE(found) << rep["usage"].size();
  TallyRun csv = T({"report", org_, "--csv"});
  EXPECT_EQ(csv.exit_code, 0);
  EXPECT_EQ(csv.out.rfind("wallet_id,asset,spent,granted,expired\r\n", 0), 0u) << csv.out;

  Json t = J({"totals", org_});
  EXPECT_EQ(t["in"].Int(), 1000);
  EXPECT_EQ(t["spent"].Int(), 30);
  EXPECT_EQ(t["available"].Int(), 970);
  EXPECT_TRUE(t["balanced"].Bool());
}

TEST_F(TallyCli, RequestsExportAsCsvAndXlsx) {
  NewOrg();
  J({"request", org_, "42", "300", "--reason", "reports"});
  TallyRun csv = T({"requests", org_, "--csv"});
  EXPECT_EQ(csv.exit_code, 0) << csv.err;
  EXPECT_EQ(csv.out.rfind("request_id,wallet_id,asset,amount,approved_amount,status", 0), 0u);
  EXPECT_NE(csv.out.find(",42,credits,300,,pending,"), std::string::npos) << csv.out;
  std::string xlsx = dir_->path() + "/requests-" + org_ + ".xlsx";
  TallyRun x = T({"requests", org_, "--xlsx", xlsx});
  EXPECT_EQ(x.exit_code, 0) << x.err;
  EXPECT_GT(std::filesystem::file_size(xlsx), 1000u);
}

TEST_F(TallyCli, ARetriedOpIdIsAppliedOnce) {
  NewOrg();
  J({"grant", org_, "42", "100"});
  Json first = J({"deduct", org_, "42", "30", "--op-id", "777"});
  EXPECT_FALSE(first["replayed"].Bool());
  Json again = J({"deduct", org_, "42", "30", "--op-id", "777"});
  EXPECT_TRUE(again["replayed"].Bool());
  EXPECT_EQ(again["applied"].Int(), 30);
  EXPECT_EQ(J({"balance", org_, "42"})["available"].Int(), 70);
  // A generated op id is printed, and retrying with it is a replay too.
  Json gen = J({"deduct", org_, "42", "5"});
  Json retry = J({"deduct", org_, "42", "5", "--op-id", std::to_string(gen["op_id"].Uint())});
  EXPECT_TRUE(retry["replayed"].Bool());
  EXPECT_EQ(J({"balance", org_, "42"})["available"].Int(), 65);
}

TEST_F(TallyCli, BalanceAtAPastTime) {
  NewOrg();
  J({"grant", org_, "42", "100"});
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // Everything after this moment is not in the answer.
  auto now = std::chrono::system_clock::now() + std::chrono::milliseconds(5);
  int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  J({"deduct", org_, "42", "40"});
  time_t seconds = static_cast<time_t>(now_ms / 1000);
  char at[64];
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  std::strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string at_text =
      std::string(at) + "." + std::to_string(1000 + now_ms % 1000).substr(1) + "Z";
  Json past = J({"balance", org_, "42", "--at", at_text});
  EXPECT_EQ(past["available"].Int(), 100) << at_text;
  EXPECT_EQ(J({"balance", org_, "42"})["available"].Int(), 60);
}

TEST_F(TallyCli, EventsFollowTheStream) {
  NewOrg();
  TallyRun events;
  std::atomic<bool> done{false};
  std::thread follower([&] {
    events = T({"events", "--org", org_, "--count", "2", "--for", "20s", "--json"});
    done = true;
  });
  // Grant until the follower has seen two events (it may subscribe late).
  for (int i = 0; i < 100 && !done; ++i) {
    J({"grant", org_, "42", "10"});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  follower.join();
  EXPECT_EQ(events.exit_code, 0) << events.err;
  std::vector<std::string> lines;
  for (size_t at = 0, end; (end = events.out.find('\n', at)) != std::string::npos; at = end + 1) {
    lines.push_back(events.out.substr(at, end - at));
  }
  ASSERT_EQ(lines.size(), 2u) << events.out;
  for (const std::string& line : lines) {
    std::optional<Json> e = ParseJson(line);
    ASSERT_TRUE(e.has_value()) << line;
    EXPECT_EQ((*e)["kind"].Str(), "credits.granted");
    EXPECT_EQ((*e)["org_id"].Str(), org_);
    EXPECT_EQ((*e)["wallet_id"].Uint(), 42u);
    EXPECT_EQ((*e)["amount"].Int(), 10);
  }
  // Unbounded, in text: one line per event until Ctrl-C, which ends it with 0.
  std::atomic<pid_t> follower_pid{0};
  TallyRun text;
  std::thread text_follower([&] {
    text = RunTally({"--server", tallyd_->address(), "--token", token_, "events", "--org", org_},
                    {}, "", 20000, [&](pid_t pid) { follower_pid = pid; });
  });
  for (int i = 0; i < 100 && follower_pid == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Grants for two seconds: the follower subscribes within that and prints
  // each event as it comes.
  for (int i = 0; i < 20; ++i) {
    J({"grant", org_, "43", "7"});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(follower_pid.load(), 0);
  ::kill(follower_pid.load(), SIGINT);
  text_follower.join();
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_EQ(text.out.rfind("credits.granted  20", 0), 0u) << text.out;
  EXPECT_NE(text.out.find("Z  org_id=" + org_ + "  wallet_id=43  id="), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("  amount=7  balance_after="), std::string::npos) << text.out;
  // Bounded by time alone: no events, exit 0 after --for.
  TallyRun quiet = T({"events", "--org", org_, "--for", "1s"});
  EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(quiet.out, "");
}

TEST_F(TallyCli, RefusalsAndUnknownThingsExitOneWithTheCodeName) {
  Refused({"balance", "999999", "42"}, "unknown_org");
  Refused({"deduct", "999999", "42", "1"}, "unknown_org");
  NewOrg();
  Refused({"org", "create", org_}, "org_exists");
  Refused({"release", org_, "12345"}, "unknown_hold");
}

TEST_F(TallyCli, BadInputExitsTwoAndSendsNothing) {
  NewOrg();
  J({"topup", org_, "100"});
  for (std::vector<std::string> bad :
       {std::vector<std::string>{"topup", org_, "1.5"},
        {"topup", org_, "-5"},
        {"topup", org_, "100", "--expires-in", "soon"},
        {"allocate", org_, "--to", "42=x"},
        {"grant", org_, "42", "5", "--expires-at", "2026-13-01T00:00:00Z"},
        {"frobnicate"},
        {"deduct", org_, "42"},
        {"history", org_, "--kind", "spend"}}) {
    TallyRun r = T(bad);
    EXPECT_EQ(r.exit_code, 2) << bad[0] << " " << r.err;
    EXPECT_EQ(r.err.rfind("tally: ", 0), 0u) << r.err;
    EXPECT_EQ(r.out, "");
  }
  Json s = J({"summary", org_});
  EXPECT_EQ(s["pool"].Int(), 100);
  EXPECT_EQ(s["total"].Int(), 100);
}

TEST_F(TallyCli, WrongTokenOrNoServerExitsThree) {
  TallyRun wrong =
      RunTally({"--server", tallyd_->address(), "--token", "not-a-token", "summary", "1"});
  EXPECT_EQ(wrong.exit_code, 3) << wrong.err;
  EXPECT_NE(wrong.err.find("unauthenticated"), std::string::npos) << wrong.err;
  // A port nothing listens on: bind one, close it, connect to it.
  TallyRun none = RunTally({"--server", "127.0.0.1:1", "--token", token_, "summary", "1"});
  EXPECT_EQ(none.exit_code, 3) << none.err;
  EXPECT_NE(none.err.find("cannot connect"), std::string::npos) << none.err;
}

TEST_F(TallyCli, ServerAndTokenFromTheEnvironmentOrTheDataDirectory) {
  NewOrg();
  J({"topup", org_, "5"});
  TallyRun env = RunTally({"summary", org_, "--json"},
                          {"TALLY_SERVER=" + tallyd_->address(), "TALLY_TOKEN=" + token_});
  EXPECT_EQ(env.exit_code, 0) << env.err;
  EXPECT_EQ(ParseJson(env.out).value_or(Json{})["pool"].Int(), 5);
  // No token given: the first admin token of ./tally-data/tokens.
  TempDir cwd;
  std::filesystem::create_directories(cwd.path() + "/tally-data");
  std::filesystem::copy_file(dir_->path() + "/data/tokens", cwd.path() + "/tally-data/tokens");
  TallyRun file =
      RunTally({"summary", org_, "--json"}, {"TALLY_SERVER=" + tallyd_->address()}, cwd.path());
  EXPECT_EQ(file.exit_code, 0) << file.err;
  EXPECT_EQ(ParseJson(file.out).value_or(Json{})["pool"].Int(), 5);
  // Neither: exit 3 naming what to do.
  TempDir empty;
  TallyRun none = RunTally({"summary", org_}, {"TALLY_SERVER=" + tallyd_->address()}, empty.path());
  EXPECT_EQ(none.exit_code, 3);
  EXPECT_NE(none.err.find("TALLY_TOKEN"), std::string::npos) << none.err;
}

TEST_F(TallyCli, OutputThatCannotBeWrittenExitsFour) {
  NewOrg();
  J({"grant", org_, "42", "5"});
  TallyRun r = T({"history", org_, "42", "--xlsx", dir_->path() + "/no-such-dir/h.xlsx"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("no-such-dir"), std::string::npos) << r.err;
}

TEST(TallyCliOutput, AReaderThatWentAwayIsExitFourNotSigpipe) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);  // nobody will read
  std::string path = TALLY_PATH;
  char help[] = "help";
  char* argv[] = {path.data(), help, nullptr};
  char* envp[] = {nullptr};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    int null_fd = ::open("/dev/null", O_WRONLY);
    ::dup2(null_fd, STDERR_FILENO);
    ::execve(argv[0], argv, envp);
    ::_exit(127);
  }
  ::close(fds[1]);
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "ended by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 4);
}

TEST_F(TallyCli, HelpNeedsNoServer) {
  TallyRun overview = RunTally({"help"});
  EXPECT_EQ(overview.exit_code, 0);
  EXPECT_NE(overview.out.find("wallet delete"), std::string::npos);
  TallyRun one = RunTally({"approve", "--help"});
  EXPECT_EQ(one.exit_code, 0);
  EXPECT_NE(one.out.find("usage: tally approve ORG"), std::string::npos) << one.out;
  TallyRun nothing = RunTally({});
  EXPECT_EQ(nothing.exit_code, 2);
}

// Tokens from a file: roles and org lists are enforced, and the CLI reports a
// refusal for the token's rights as `forbidden` (exit 1).  The same tallyd is
// then restarted: what the CLI changed before is all there after.
TEST(TallyCliTokens, RolesAndOrgListsAreRefusedAsForbiddenAndARestartKeepsEverything) {
  TempDir dir;
  std::string tokens = dir.path() + "/tokens";
  {
    std::ofstream f(tokens);
    f << "# test tokens\n"
         "boss-token admin boss\n"
         "meter-token service meter\n"
         "seven-viewer read viewer7 7\n";
  }
  TallydProcess tallyd;
  std::vector<std::string> flags = {"--shards", "2", "--io-threads", "2", "--tokens", tokens};
  ASSERT_TRUE(tallyd.Start(dir.path() + "/data", flags).ok());
  auto as = [&](const std::string& token, std::vector<std::string> args) {
    std::vector<std::string> full = {"--server", tallyd.address(), "--token", token};
    full.insert(full.end(), args.begin(), args.end());
    return RunTally(full);
  };
  for (const char* org : {"7", "8"}) {
    ASSERT_EQ(as("boss-token", {"org", "create", org}).exit_code, 0);
    ASSERT_EQ(as("boss-token", {"topup", org, "1000"}).exit_code, 0);
  }
  // A service token deducts, but may not allocate.
  EXPECT_EQ(as("meter-token", {"deduct", "7", "pool", "5"}).exit_code, 0);
  TallyRun alloc = as("meter-token", {"allocate", "7", "--all", "10"});
  EXPECT_EQ(alloc.exit_code, 1);
  EXPECT_EQ(alloc.err.rfind("tally: forbidden: ", 0), 0u) << alloc.err;
  TallyRun summary = as("meter-token", {"summary", "7", "--json"});
  EXPECT_EQ(summary.exit_code, 1);
  EXPECT_EQ(ParseJson(summary.out).value_or(Json{})["error"].Str(), "forbidden") << summary.out;
  // A read token limited to org 7 reads 7, not 8, and changes nothing.
  EXPECT_EQ(as("seven-viewer", {"balance", "7", "pool"}).exit_code, 0);
  TallyRun other = as("seven-viewer", {"balance", "8", "pool"});
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_EQ(other.err.rfind("tally: forbidden: ", 0), 0u) << other.err;
  EXPECT_EQ(as("seven-viewer", {"deduct", "7", "pool", "1"}).exit_code, 1);

  ASSERT_EQ(tallyd.Terminate(), 0);
  ASSERT_TRUE(tallyd.Start(dir.path() + "/data", flags).ok());
  TallyRun after = as("boss-token", {"balance", "7", "pool", "--json"});
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_EQ(ParseJson(after.out).value_or(Json{})["available"].Int(), 995);
  TallyRun hist = as("boss-token", {"history", "7", "pool", "--json"});
  EXPECT_EQ(ParseJson(hist.out).value_or(Json{})["entries"].size(), 2u) << hist.out;
  EXPECT_EQ(tallyd.Terminate(), 0);
}

}  // namespace
}  // namespace tally
