// The CLI's first half: argv to the Command or query it sends, and bad
// input refused with exit 2 before anything is sent.  (The second half, the
// real binary against a real tallyd, is tests/tools/tally_e2e_test.cc.)
#include "tools/cli/cli.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace tally::cli {
namespace {

constexpr int64_t now_us = int64_t{1796211249} * 1000000;  // 2026-12-02T11:34:09Z
constexpr int64_t day_us = int64_t{86400} * 1000000;

uint64_t FixedOpId() { return 4242; }

Env TestEnv() {
  Env env;
  env.now_us = now_us;
  env.new_op_id = FixedOpId;
  env.tokens_path = "/nonexistent/tally-cli-test/tokens";
  return env;
}

ApplyPlan Apply(std::vector<std::string> argv) {
  absl::StatusOr<Invocation> inv = ParseInvocation(argv, TestEnv());
  EXPECT_TRUE(inv.ok()) << inv.status();
  if (!inv.ok()) return {};
  const ApplyPlan* plan = std::get_if<ApplyPlan>(&inv->plan);
  EXPECT_NE(plan, nullptr);
  if (plan == nullptr) return {};
  // Texts and targets live in the plan (Bind() points the Command at them when sending).
  return *plan;
}

QueryPlan Query(std::vector<std::string> argv) {
  absl::StatusOr<Invocation> inv = ParseInvocation(argv, TestEnv());
  EXPECT_TRUE(inv.ok()) << inv.status();
  if (!inv.ok()) return {};
  const QueryPlan* plan = std::get_if<QueryPlan>(&inv->plan);
  EXPECT_NE(plan, nullptr);
  return plan ? *plan : QueryPlan{};
}

std::string Refusal(std::vector<std::string> argv) {
  absl::StatusOr<Invocation> inv = ParseInvocation(argv, TestEnv());
  EXPECT_FALSE(inv.ok()) << argv[0];
  return inv.ok() ? "" : std::string(inv.status().message());
}

TEST(Cli, OrgCreateCarriesEverySettingWithDefaultsForTheRest) {
  ApplyPlan p =
      Apply({"org", "create", "7", "--low-balance-threshold", "100", "--credit-payments", "off"});
  EXPECT_EQ(p.command.kind, CommandKind::org_create);
  EXPECT_EQ(p.command.org_id, 7u);
  EXPECT_EQ(p.command.settings_mask, settings_all);
  EXPECT_FALSE(p.command.settings.credit_payments);
  EXPECT_EQ(p.command.settings.low_balance_threshold, 100);
  EXPECT_EQ(p.command.settings.expiring_soon_window_us, expiring_soon_window_us_default);
  EXPECT_EQ(p.command.op_id, 4242u);
  EXPECT_TRUE(p.op_id_generated);
}

TEST(Cli, SettingsSetMarksOnlyTheGivenFields) {
  ApplyPlan p =
      Apply({"settings", "set", "7", "--expiring-soon-window", "14d", "--rollup-interval", "1m"});
  EXPECT_EQ(p.command.kind, CommandKind::org_settings);
  EXPECT_EQ(p.command.settings_mask, setting_expiring_soon_window | setting_deduct_rollup_interval);
  EXPECT_EQ(p.command.settings.expiring_soon_window_us, 14 * day_us);
  EXPECT_EQ(p.command.settings.deduct_rollup_interval_us, int64_t{60} * 1000000);
  EXPECT_NE(Refusal({"settings", "set", "7"}).find("at least one"), std::string::npos);
  QueryPlan show = Query({"settings", "7"});
  EXPECT_EQ(show.kind, QueryPlan::Kind::settings);
  EXPECT_EQ(show.org_id, 7u);
}

TEST(Cli, TopupWithRelativeExpiryPriorityAssetAndReference) {
  ApplyPlan p = Apply({"topup", "7", "1000", "--expires-in", "90d", "--priority", "-2", "--asset",
                       "USD", "--reference", "PO-17", "--op-id", "99"});
  EXPECT_EQ(p.command.kind, CommandKind::topup);
  EXPECT_EQ(p.command.amount, 1000);
  EXPECT_EQ(p.command.expires_at_us, now_us + 90 * day_us);
  EXPECT_EQ(p.command.priority, -2);
  EXPECT_EQ(p.command.asset.name(), "USD");
  EXPECT_EQ(p.text, "PO-17");
  EXPECT_EQ(p.command.op_id, 99u);
  EXPECT_FALSE(p.op_id_generated);
}

TEST(Cli, GrantWithAbsoluteExpiryInTheFutureOnly) {
  ApplyPlan p = Apply(
      {"grant", "7", "42", "500", "--expires-at", "2027-01-01T00:00:00Z", "--reason", "welcome"});
  EXPECT_EQ(p.command.kind, CommandKind::grant);
  EXPECT_EQ(p.command.wallet_id, 42u);
  EXPECT_EQ(p.command.expires_at_us, int64_t{1798761600} * 1000000);
  EXPECT_EQ(p.text, "welcome");
  EXPECT_NE(Refusal({"grant", "7", "42", "5", "--expires-at", "2020-01-01T00:00:00Z"})
                .find("not in the future"),
            std::string::npos);
  EXPECT_NE(Refusal({"grant", "7", "42", "5", "--expires-in", "1d", "--expires-at", "2030-01-01"})
                .find("not both"),
            std::string::npos);
  EXPECT_FALSE(Refusal({"grant", "7", "pool", "5"}).empty());
}

TEST(Cli, AllocateToEveryWalletOrToAList) {
  ApplyPlan all = Apply({"allocate", "7", "--all", "100"});
  EXPECT_EQ(all.command.kind, CommandKind::allocate);
  EXPECT_EQ(all.command.flags, flag_all);
  EXPECT_EQ(all.command.amount, 100);
  ApplyPlan list = Apply({"allocate", "7", "--to", "42=50,43=20"});
  EXPECT_EQ(list.command.flags, 0);
  ASSERT_EQ(list.targets.size(), 2u);
  EXPECT_EQ(list.targets[1].wallet_id, 43u);
  EXPECT_EQ(list.targets[1].amount, 20);
  EXPECT_FALSE(Refusal({"allocate", "7"}).empty());
  EXPECT_FALSE(Refusal({"allocate", "7", "--all", "1", "--to", "4=1"}).empty());
  EXPECT_FALSE(Refusal({"allocate", "7", "--to", "4=1.5"}).empty());
}

TEST(Cli, ReclaimAnAmountOrAll) {
  ApplyPlan p = Apply({"reclaim", "7", "42", "30"});
  EXPECT_EQ(p.command.kind, CommandKind::reclaim);
  EXPECT_EQ(p.command.amount, 30);
  ApplyPlan all = Apply({"reclaim", "7", "42", "--all"});
  EXPECT_EQ(all.command.flags, flag_all);
  EXPECT_FALSE(Refusal({"reclaim", "7", "42"}).empty());
  EXPECT_FALSE(Refusal({"reclaim", "7", "42", "5", "--all"}).empty());
}

TEST(Cli, VoidAdjustDeductHoldCaptureRelease) {
  ApplyPlan v = Apply({"void", "7", "3", "--reason", "error"});
  EXPECT_EQ(v.command.kind, CommandKind::void_grant);
  EXPECT_EQ(v.command.target_id, 3u);
  EXPECT_EQ(v.text, "error");

  ApplyPlan to = Apply({"adjust", "7", "42", "--to", "0"});
  EXPECT_EQ(to.command.kind, CommandKind::adjust);
  EXPECT_EQ(to.command.flags, flag_target);
  EXPECT_EQ(to.command.amount, 0);
  ApplyPlan by = Apply({"adjust", "7", "42", "--by", "-40"});
  EXPECT_EQ(by.command.flags, 0);
  EXPECT_EQ(by.command.amount, -40);
  EXPECT_FALSE(Refusal({"adjust", "7", "42", "--by", "0"}).empty());
  EXPECT_FALSE(Refusal({"adjust", "7", "42"}).empty());

  ApplyPlan d = Apply({"deduct", "7", "42", "150", "--partial", "--reference", "inv-1"});
  EXPECT_EQ(d.command.kind, CommandKind::deduct);
  EXPECT_EQ(d.command.flags, flag_partial);
  EXPECT_EQ(d.command.amount, 150);
  EXPECT_EQ(d.text, "inv-1");
  EXPECT_EQ(Apply({"deduct", "7", "pool", "1"}).command.wallet_id, 0u);

  ApplyPlan h = Apply({"hold", "7", "42", "80", "--timeout", "7d"});
  EXPECT_EQ(h.command.kind, CommandKind::hold);
  EXPECT_EQ(h.command.expires_at_us, now_us + 7 * day_us);
  ApplyPlan c = Apply({"capture", "7", "1", "60"});
  EXPECT_EQ(c.command.kind, CommandKind::capture);
  EXPECT_EQ(c.command.target_id, 1u);
  EXPECT_EQ(c.command.amount, 60);
  ApplyPlan r = Apply({"release", "7", "1"});
  EXPECT_EQ(r.command.kind, CommandKind::release);
  EXPECT_EQ(r.command.target_id, 1u);
}

TEST(Cli, RequestApproveRejectAndTheirAllForms) {
  ApplyPlan req = Apply({"request", "7", "42", "300", "--reason", "reports"});
  EXPECT_EQ(req.command.kind, CommandKind::request);
  EXPECT_EQ(req.text, "reports");
  ApplyPlan ap = Apply({"approve", "7", "1", "--amount", "200"});
  EXPECT_EQ(ap.command.kind, CommandKind::approve);
  EXPECT_EQ(ap.command.target_id, 1u);
  EXPECT_EQ(ap.command.amount, 200);
  ApplyPlan ap_all = Apply({"approve", "7", "--all"});
  EXPECT_EQ(ap_all.command.flags, flag_all);
  EXPECT_FALSE(Refusal({"approve", "7", "--all", "--amount", "5"}).empty());
  EXPECT_FALSE(Refusal({"approve", "7"}).empty());
  ApplyPlan rj = Apply({"reject", "7", "2", "--reason", "budget"});
  EXPECT_EQ(rj.command.kind, CommandKind::reject);
  EXPECT_EQ(rj.text, "budget");
  EXPECT_EQ(Apply({"reject", "7", "--all"}).command.flags, flag_all);
}

TEST(Cli, WalletCreateAndDelete) {
  ApplyPlan c = Apply({"wallet", "create", "7", "42", "--label", "alice"});
  EXPECT_EQ(c.command.kind, CommandKind::wallet_upsert);
  EXPECT_EQ(c.text, "alice");
  ApplyPlan d = Apply({"wallet", "delete", "7", "42"});
  EXPECT_EQ(d.command.kind, CommandKind::wallet_delete);
  EXPECT_EQ(d.command.wallet_id, 42u);
  EXPECT_FALSE(Refusal({"wallet", "7", "42"}).empty());
}

TEST(Cli, QueriesCarryTheirFilters) {
  QueryPlan b = Query({"balance", "7", "42", "--at", "2026-12-01T00:00:00Z", "--asset", "USD"});
  EXPECT_EQ(b.kind, QueryPlan::Kind::balance);
  EXPECT_EQ(b.balance.wallet_id, 42u);
  EXPECT_EQ(b.balance.at_us, int64_t{1796083200} * 1000000);
  EXPECT_EQ(b.balance.asset.name(), "USD");

  QueryPlan h = Query({"history", "7", "42", "--kind", "deduct,capture", "--from", "2026-12-01",
                       "--limit", "5000", "--cursor", "77"});
  EXPECT_EQ(h.kind, QueryPlan::Kind::history);
  EXPECT_FALSE(h.history.all_wallets);
  EXPECT_EQ(h.history.kind_mask, (1u << 7) | (1u << 10));
  EXPECT_EQ(h.history.from_us, int64_t{1796083200} * 1000000);
  EXPECT_EQ(h.history.cursor, 77u);
  EXPECT_EQ(h.history_limit, 5000u);
  EXPECT_TRUE(h.history.asset.empty());
  EXPECT_TRUE(Query({"history", "7"}).history.all_wallets);
  EXPECT_FALSE(Refusal({"history", "7", "--from", "2026-12-02", "--to", "2026-12-01"}).empty());

  EXPECT_EQ(Query({"requests", "7", "--status", "rejected"}).status, RequestStatus::rejected);
  EXPECT_EQ(Query({"requests", "7"}).status, RequestStatus::pending);
  QueryPlan rep = Query({"report", "7", "--to", "2026-12-01"});
  EXPECT_EQ(rep.kind, QueryPlan::Kind::usage);
  EXPECT_EQ(rep.to_us, int64_t{1796083200} * 1000000);
  EXPECT_EQ(Query({"summary", "7", "--asset", "EUR"}).asset.name(), "EUR");
  EXPECT_EQ(Query({"totals", "7"}).kind, QueryPlan::Kind::totals);
  QueryPlan ev = Query({"events", "--org", "7", "--count", "3", "--for", "10s"});
  EXPECT_EQ(ev.kind, QueryPlan::Kind::events);
  EXPECT_EQ(ev.org_id, 7u);
  EXPECT_EQ(ev.events_max, 3u);
  EXPECT_EQ(ev.events_for_us, int64_t{10} * 1000000);
}

TEST(Cli, GlobalOptionsBeforeOrAfterTheCommand) {
  absl::StatusOr<Invocation> inv = ParseInvocation(
      {"--server", "10.0.0.1:9", "--json", "deduct", "7", "42", "3", "--token", "t0"}, TestEnv());
  ASSERT_TRUE(inv.ok()) << inv.status();
  EXPECT_EQ(inv->globals.server, "10.0.0.1:9");
  EXPECT_EQ(inv->globals.token, "t0");
  EXPECT_EQ(inv->globals.format, Format::json);
  absl::StatusOr<Invocation> xlsx =
      ParseInvocation({"history", "7", "--xlsx", "out.xlsx"}, TestEnv());
  ASSERT_TRUE(xlsx.ok());
  EXPECT_EQ(xlsx->globals.format, Format::xlsx);
  EXPECT_EQ(xlsx->globals.xlsx_path, "out.xlsx");
}

TEST(Cli, UsageErrorsNameTheProblem) {
  EXPECT_NE(Refusal({"deduct", "7", "42", "1.5"}).find("whole number"), std::string::npos);
  EXPECT_NE(Refusal({"deduct", "7", "42"}).find("missing"), std::string::npos);
  EXPECT_NE(Refusal({"deduct", "7", "42", "3", "9"}).find("unexpected"), std::string::npos);
  EXPECT_NE(Refusal({"deduct", "7", "42", "3", "--frobnicate"}).find("unknown option"),
            std::string::npos);
  EXPECT_NE(Refusal({"spend", "7"}).find("no command"), std::string::npos);
  EXPECT_NE(Refusal({"balance", "7", "42", "--csv"}).find("--csv"), std::string::npos);
  EXPECT_NE(Refusal({"balance", "7", "42", "--op-id", "5"}).find("--op-id"), std::string::npos);
  EXPECT_NE(Refusal({"deduct", "7", "42", "3", "--op-id", "0"}).find("--op-id"), std::string::npos);
  EXPECT_NE(Refusal({"history", "7", "--json", "--csv"}).find("one of"), std::string::npos);
  EXPECT_NE(Refusal({"deduct", "0", "42", "3"}).find("ORG"), std::string::npos);
  EXPECT_NE(Refusal({"deduct", "7", "42", "3", "--reason", std::string(300, 'x')}).find("256"),
            std::string::npos);
  EXPECT_NE(Refusal({}).find("no command"), std::string::npos);
  EXPECT_NE(Refusal({"--server", "localhost", "summary", "7"}).find("HOST:PORT"),
            std::string::npos);
  Env env = TestEnv();
  env.server = "localhost";
  absl::StatusOr<Invocation> bad_env = ParseInvocation({"summary", "7"}, env);
  ASSERT_FALSE(bad_env.ok());
  EXPECT_NE(bad_env.status().message().find("TALLY_SERVER"), absl::string_view::npos);
}

TEST(Cli, HelpForEveryCommandAndOverview) {
  for (const char* name : {"org create", "settings show", "settings set",  "topup",   "allocate",
                           "reclaim",    "grant",         "void",          "adjust",  "deduct",
                           "hold",       "capture",       "release",       "request", "approve",
                           "reject",     "wallet create", "wallet delete", "balance", "summary",
                           "history",    "requests",      "report",        "totals",  "events"}) {
    std::optional<std::string> help = CommandHelp(name);
    ASSERT_TRUE(help.has_value()) << name;
    EXPECT_NE(help->find(std::string("usage: tally ") + name), std::string::npos) << *help;
    EXPECT_NE(help->find("example: tally"), std::string::npos);
    EXPECT_NE(Overview().find(name), std::string::npos) << name;
  }
  absl::StatusOr<Invocation> inv = ParseInvocation({"deduct", "--help"}, TestEnv());
  ASSERT_TRUE(inv.ok());
  EXPECT_NE(std::get<HelpPlan>(inv->plan).text.find("deduct ORG WALLET AMOUNT"), std::string::npos);
  inv = ParseInvocation({"help", "wallet", "delete"}, TestEnv());
  ASSERT_TRUE(inv.ok());
  EXPECT_NE(std::get<HelpPlan>(inv->plan).text.find("wallet delete ORG WALLET"), std::string::npos);
}

// Run end to end without a server: exit codes for usage errors, for no
// server and for no token, with nothing printed on stdout.
TEST(CliRun, ExitCodesWithoutAServer) {
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  ASSERT_NE(out, nullptr);
  ASSERT_NE(err, nullptr);
  auto read_all = [](std::FILE* f) {
    std::fflush(f);
    std::rewind(f);
    std::string text;
    char buf[512];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    std::rewind(f);
    return text;
  };
  EXPECT_EQ(tally::cli::Run({"deduct", "7", "42", "1.5"}, TestEnv(), out, err), exit_usage);
  std::string e = read_all(err);
  EXPECT_NE(e.find("tally: AMOUNT: \"1.5\""), std::string::npos) << e;
  EXPECT_NE(e.find("usage: tally deduct"), std::string::npos) << e;

  // Port 1 on loopback: nothing listens there.
  EXPECT_EQ(tally::cli::Run({"--server", "127.0.0.1:1", "--token", "t", "balance", "7", "42"},
                            TestEnv(), out, err),
            exit_connect);
  // No token anywhere: cannot authenticate.
  EXPECT_EQ(tally::cli::Run({"--server", "127.0.0.1:1", "balance", "7", "42"}, TestEnv(), out, err),
            exit_connect);
  EXPECT_NE(read_all(err).find("no token"), std::string::npos);
  EXPECT_EQ(read_all(out), "");
  std::fclose(out);
  std::fclose(err);
}

// Output that cannot be written (a full device) is exit 4, not a silent 0.
TEST(CliRun, OutputThatCannotBeWrittenExitsFour) {
  std::FILE* full = std::fopen("/dev/full", "w");
  if (full == nullptr) GTEST_SKIP() << "no /dev/full";
  std::FILE* err = std::tmpfile();
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(tally::cli::Run({"help"}, TestEnv(), full, err), exit_output);
  std::fclose(full);
  std::rewind(err);
  char line[256] = {};
  ASSERT_NE(std::fgets(line, sizeof line, err), nullptr);
  EXPECT_EQ(std::string(line).rfind("tally: cannot write output", 0), 0u) << line;
  std::fclose(err);
}

}  // namespace
}  // namespace tally::cli
