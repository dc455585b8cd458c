// cli.cc: the `tally` commands: a table of specs, a builder per command that
// turns arguments into a plan, and one executor that sends any plan and
// prints its answer.  docs/CLI.md is the user's side of this file.
#include "tools/cli/cli.h"

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "tally/client.h"
#include "tally/commands.h"
#include "tally/limits.h"
#include "tally/result_code.h"
#include "tools/cli/output.h"
#include "tools/cli/parse.h"
#include "tools/cli/strings.h"

namespace tally::cli {
namespace {

using Plan = std::variant<HelpPlan, ApplyPlan, QueryPlan>;
using Builder = absl::StatusOr<Plan> (*)(const Args&, const Env&);

// CommandSpec is one command: its words, its help and its options.
struct CommandSpec {
  std::string_view name;     // "org create", "deduct"
  std::string_view usage;    // after "tally "
  std::string_view summary;  // one line
  std::string_view example;  // after "tally "
  std::vector<OptionSpec> options;
  bool changes = false;  // takes --op-id
  bool exports = false;  // takes --csv and --xlsx
  Builder build = nullptr;
};

absl::Status Usage(std::string message) { return absl::InvalidArgumentError(std::move(message)); }

#define TALLY_ASSIGN_OR_RETURN(lhs, expr)       \
  auto lhs##_or = (expr);                       \
  if (!lhs##_or.ok()) return lhs##_or.status(); \
  auto lhs = *std::move(lhs##_or)

absl::Status NeedPositionals(const Args& args, size_t min, size_t max, std::string_view what) {
  if (args.positionals.size() < min) return Usage(Cat("missing ", what));
  if (args.positionals.size() > max) {
    return Usage(Cat("unexpected argument \"", args.positionals[max], "\""));
  }
  return absl::OkStatus();
}

const std::string& Pos(const Args& args, size_t i) { return args.positionals[i]; }

absl::StatusOr<Asset> AssetOption(const Args& args) {
  const std::string* v = args.Get("asset");
  return v ? ParseAsset(*v) : absl::StatusOr<Asset>(Asset::Credits());
}

// TextOption reads --reason or --reference (synonyms: one free text).
absl::StatusOr<std::string> TextOption(const Args& args) {
  const std::string* reason = args.Get("reason");
  const std::string* reference = args.Get("reference");
  if (reason && reference) return Usage("give --reason or --reference, not both");
  const std::string* text = reason ? reason : reference;
  if (!text) return std::string();
  if (text->size() > text_bytes_max) {
    return Usage(Cat("--reason/--reference: ", text->size(), " bytes, at most ", text_bytes_max));
  }
  return *text;
}

// ExpiryOption reads --expires-in DURATION or --expires-at TIME (0: none).
absl::StatusOr<int64_t> TimeOrDuration(const Args& args, const Env& env, std::string_view in_name,
                                       std::string_view at_name) {
  const std::string* in = args.Get(in_name);
  const std::string* at = args.Get(at_name);
  if (in && at) return Usage(Cat("give --", in_name, " or --", at_name, ", not both"));
  if (in) {
    TALLY_ASSIGN_OR_RETURN(d, ParseDuration(*in, Cat("--", in_name)));
    return env.now_us + d;
  }
  if (at) {
    TALLY_ASSIGN_OR_RETURN(t, ParseTime(*at, Cat("--", at_name)));
    if (t <= env.now_us) {
      return Usage(Cat("--", at_name, ": \"", *at, "\" is not in the future"));
    }
    return t;
  }
  return int64_t{0};
}

absl::StatusOr<int32_t> PriorityOption(const Args& args) {
  const std::string* v = args.Get("priority");
  if (!v) return int32_t{0};
  bool negative = !v->empty() && (*v)[0] == '-';
  TALLY_ASSIGN_OR_RETURN(magnitude, ParseNonNegative(negative ? v->substr(1) : *v, "--priority"));
  if (magnitude > INT32_MAX) return Usage(Cat("--priority: \"", *v, "\" is out of range"));
  return static_cast<int32_t>(negative ? -magnitude : magnitude);
}

absl::StatusOr<int64_t> TimeOption(const Args& args, std::string_view name) {
  const std::string* v = args.Get(name);
  if (!v) return int64_t{0};
  return ParseTime(*v, Cat("--", name));
}

// WindowValue reads a duration where 0 (or "off") is allowed.
absl::StatusOr<int64_t> WindowValue(const std::string& text, std::string_view what) {
  if (text == "0" || text == "off") return int64_t{0};
  return ParseDuration(text, what);
}

// SettingsOptions fills settings and mask from the settings options.
absl::Status SettingsOptions(const Args& args, OrgSettings* settings, uint8_t* mask) {
  *mask = 0;
  if (const std::string* v = args.Get("credit-payments")) {
    TALLY_ASSIGN_OR_RETURN(on, ParseOnOff(*v, "--credit-payments"));
    settings->credit_payments = on;
    *mask |= setting_credit_payments;
  }
  if (const std::string* v = args.Get("low-balance-threshold")) {
    TALLY_ASSIGN_OR_RETURN(n, ParseNonNegative(*v, "--low-balance-threshold"));
    settings->low_balance_threshold = n;
    *mask |= setting_low_balance_threshold;
  }
  if (const std::string* v = args.Get("expiring-soon-window")) {
    TALLY_ASSIGN_OR_RETURN(us, WindowValue(*v, "--expiring-soon-window"));
    settings->expiring_soon_window_us = us;
    *mask |= setting_expiring_soon_window;
  }
  if (const std::string* v = args.Get("rollup-interval")) {
    TALLY_ASSIGN_OR_RETURN(us, WindowValue(*v, "--rollup-interval"));
    settings->deduct_rollup_interval_us = us;
    *mask |= setting_deduct_rollup_interval;
  }
  return absl::OkStatus();
}

ApplyPlan MakeApply(std::string name, Command command, std::string text = {}) {
  ApplyPlan plan;
  plan.name = std::move(name);
  plan.command = command;
  plan.text = std::move(text);
  return plan;
}

// ---- builders: changing commands --------------------------------------------

absl::StatusOr<Plan> BuildOrgCreate(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 1, 1, "ORG"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  OrgSettings settings;
  uint8_t mask = 0;
  if (auto s = SettingsOptions(args, &settings, &mask); !s.ok()) return s;
  // Fields not given keep the engine's defaults, which OrgSettings{} holds.
  return Plan(MakeApply("org create", cmd::OrgCreate(org, settings, settings_all)));
}

absl::StatusOr<Plan> BuildSettingsSet(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 1, 1, "ORG"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  OrgSettings settings;
  uint8_t mask = 0;
  if (auto s = SettingsOptions(args, &settings, &mask); !s.ok()) return s;
  if (mask == 0) {
    return Usage(
        "settings set needs at least one of --credit-payments, --low-balance-threshold, "
        "--expiring-soon-window, --rollup-interval");
  }
  return Plan(MakeApply("settings set", cmd::OrgSettingsCmd(org, settings, mask)));
}

absl::StatusOr<Plan> BuildTopup(const Args& args, const Env& env) {
  if (auto s = NeedPositionals(args, 2, 2, "ORG AMOUNT"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(amount, ParseAmount(Pos(args, 1), "AMOUNT"));
  TALLY_ASSIGN_OR_RETURN(expires, TimeOrDuration(args, env, "expires-in", "expires-at"));
  TALLY_ASSIGN_OR_RETURN(priority, PriorityOption(args));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  return Plan(MakeApply("topup", cmd::Topup(org, amount, expires, priority, asset), text));
}

absl::StatusOr<Plan> BuildAllocate(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 1, 1, "ORG"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  const std::string* all = args.Get("all");
  const std::string* to = args.Get("to");
  if ((all != nullptr) == (to != nullptr)) {
    return Usage("allocate needs --all AMOUNT (every wallet) or --to W1=A1,W2=A2, one of them");
  }
  if (all) {
    TALLY_ASSIGN_OR_RETURN(each, ParseAmount(*all, "--all"));
    return Plan(MakeApply("allocate", cmd::AllocateAll(org, each, asset), text));
  }
  TALLY_ASSIGN_OR_RETURN(targets, ParseTargets(*to));
  ApplyPlan plan = MakeApply("allocate", cmd::Allocate(org, {}, asset), text);
  plan.targets = std::move(targets);
  return Plan(std::move(plan));
}

absl::StatusOr<Plan> BuildReclaim(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 2, 3, "ORG WALLET"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseUserWallet(Pos(args, 1), "WALLET"));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  bool all = args.Has("all");
  if (all == (args.positionals.size() == 3)) {
    return Usage("reclaim needs AMOUNT or --all, one of them");
  }
  if (all) return Plan(MakeApply("reclaim", cmd::ReclaimAll(org, wallet, asset), text));
  TALLY_ASSIGN_OR_RETURN(amount, ParseAmount(Pos(args, 2), "AMOUNT"));
  return Plan(MakeApply("reclaim", cmd::Reclaim(org, wallet, amount, asset), text));
}

absl::StatusOr<Plan> BuildGrant(const Args& args, const Env& env) {
  if (auto s = NeedPositionals(args, 3, 3, "ORG WALLET AMOUNT"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseUserWallet(Pos(args, 1), "WALLET"));
  TALLY_ASSIGN_OR_RETURN(amount, ParseAmount(Pos(args, 2), "AMOUNT"));
  TALLY_ASSIGN_OR_RETURN(expires, TimeOrDuration(args, env, "expires-in", "expires-at"));
  TALLY_ASSIGN_OR_RETURN(priority, PriorityOption(args));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  return Plan(MakeApply("grant", cmd::Grant(org, wallet, amount, expires, priority, asset), text));
}

absl::StatusOr<Plan> BuildVoid(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 2, 2, "ORG GRANT"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(grant, ParseNonzeroId(Pos(args, 1), "GRANT"));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  return Plan(MakeApply("void", cmd::VoidGrant(org, grant), text));
}

absl::StatusOr<Plan> BuildAdjust(const Args& args, const Env& env) {
  if (auto s = NeedPositionals(args, 2, 2, "ORG WALLET"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseWallet(Pos(args, 1), "WALLET"));
  TALLY_ASSIGN_OR_RETURN(expires, TimeOrDuration(args, env, "expires-in", "expires-at"));
  TALLY_ASSIGN_OR_RETURN(priority, PriorityOption(args));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  const std::string* to = args.Get("to");
  const std::string* by = args.Get("by");
  if ((to != nullptr) == (by != nullptr)) {
    return Usage("adjust needs --to BALANCE (the new balance) or --by DELTA (+/-), one of them");
  }
  Command c;
  if (to) {
    TALLY_ASSIGN_OR_RETURN(target, ParseNonNegative(*to, "--to"));
    c = cmd::AdjustTo(org, wallet, target, asset);
  } else {
    TALLY_ASSIGN_OR_RETURN(delta, ParseSignedAmount(*by, "--by"));
    c = cmd::Adjust(org, wallet, delta, asset);
  }
  c.expires_at_us = expires;
  c.priority = priority;
  return Plan(MakeApply("adjust", c, text));
}

absl::StatusOr<Plan> BuildDeduct(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 3, 3, "ORG WALLET AMOUNT"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseWallet(Pos(args, 1), "WALLET"));
  TALLY_ASSIGN_OR_RETURN(amount, ParseAmount(Pos(args, 2), "AMOUNT"));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  return Plan(
      MakeApply("deduct", cmd::Deduct(org, wallet, amount, args.Has("partial"), asset), text));
}

absl::StatusOr<Plan> BuildHold(const Args& args, const Env& env) {
  if (auto s = NeedPositionals(args, 3, 3, "ORG WALLET AMOUNT"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseWallet(Pos(args, 1), "WALLET"));
  TALLY_ASSIGN_OR_RETURN(amount, ParseAmount(Pos(args, 2), "AMOUNT"));
  TALLY_ASSIGN_OR_RETURN(timeout, TimeOrDuration(args, env, "timeout", "timeout-at"));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  return Plan(
      MakeApply("hold", cmd::Hold(org, wallet, amount, timeout, args.Has("partial"), asset), text));
}

absl::StatusOr<Plan> BuildCapture(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 3, 3, "ORG HOLD AMOUNT"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(hold, ParseNonzeroId(Pos(args, 1), "HOLD"));
  TALLY_ASSIGN_OR_RETURN(amount, ParseAmount(Pos(args, 2), "AMOUNT"));
  return Plan(MakeApply("capture", cmd::Capture(org, hold, amount)));
}

absl::StatusOr<Plan> BuildRelease(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 2, 2, "ORG HOLD"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(hold, ParseNonzeroId(Pos(args, 1), "HOLD"));
  return Plan(MakeApply("release", cmd::Release(org, hold)));
}

absl::StatusOr<Plan> BuildRequest(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 3, 3, "ORG WALLET AMOUNT"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseUserWallet(Pos(args, 1), "WALLET"));
  TALLY_ASSIGN_OR_RETURN(amount, ParseAmount(Pos(args, 2), "AMOUNT"));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  return Plan(MakeApply("request", cmd::Request(org, wallet, amount, {}, asset), text));
}

absl::StatusOr<Plan> BuildApprove(const Args& args, const Env&) {
  bool all = args.Has("all");
  if (auto s = NeedPositionals(args, all ? 1 : 2, all ? 1 : 2, all ? "ORG" : "ORG REQUEST");
      !s.ok()) {
    return s;
  }
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  if (all) {
    if (args.Has("amount")) return Usage("--amount is for one request, not with --all");
    return Plan(MakeApply("approve", cmd::ApproveAll(org, asset)));
  }
  if (args.Has("asset")) return Usage("--asset is for --all; a request has its own asset");
  TALLY_ASSIGN_OR_RETURN(request, ParseNonzeroId(Pos(args, 1), "REQUEST"));
  int64_t amount = 0;
  if (const std::string* v = args.Get("amount")) {
    TALLY_ASSIGN_OR_RETURN(a, ParseAmount(*v, "--amount"));
    amount = a;
  }
  return Plan(MakeApply("approve", cmd::Approve(org, request, amount)));
}

absl::StatusOr<Plan> BuildReject(const Args& args, const Env&) {
  bool all = args.Has("all");
  if (auto s = NeedPositionals(args, all ? 1 : 2, all ? 1 : 2, all ? "ORG" : "ORG REQUEST");
      !s.ok()) {
    return s;
  }
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(text, TextOption(args));
  if (all) return Plan(MakeApply("reject", cmd::RejectAll(org, asset), text));
  if (args.Has("asset")) return Usage("--asset is for --all; a request has its own asset");
  TALLY_ASSIGN_OR_RETURN(request, ParseNonzeroId(Pos(args, 1), "REQUEST"));
  return Plan(MakeApply("reject", cmd::Reject(org, request), text));
}

absl::StatusOr<Plan> BuildWalletCreate(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 2, 2, "ORG WALLET"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseUserWallet(Pos(args, 1), "WALLET"));
  std::string label;
  if (const std::string* v = args.Get("label")) label = *v;
  if (label.size() > text_bytes_max) {
    return Usage(Cat("--label: ", label.size(), " bytes, at most ", text_bytes_max));
  }
  return Plan(MakeApply("wallet create", cmd::WalletUpsert(org, wallet), label));
}

absl::StatusOr<Plan> BuildWalletDelete(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 2, 2, "ORG WALLET"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseUserWallet(Pos(args, 1), "WALLET"));
  return Plan(MakeApply("wallet delete", cmd::WalletDelete(org, wallet)));
}

// ---- builders: queries -------------------------------------------------------

QueryPlan MakeQuery(QueryPlan::Kind kind, uint64_t org) {
  QueryPlan q;
  q.kind = kind;
  q.org_id = org;
  return q;
}

absl::StatusOr<Plan> BuildBalance(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 2, 2, "ORG WALLET"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  TALLY_ASSIGN_OR_RETURN(wallet, ParseWallet(Pos(args, 1), "WALLET"));
  TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
  TALLY_ASSIGN_OR_RETURN(at, TimeOption(args, "at"));
  QueryPlan q = MakeQuery(QueryPlan::Kind::balance, org);
  q.asset = asset;
  q.balance = {.org_id = org, .wallet_id = wallet, .asset = asset, .at_us = at};
  return Plan(q);
}

absl::StatusOr<Plan> BuildOrgQuery(const Args& args, QueryPlan::Kind kind, bool takes_asset) {
  if (auto s = NeedPositionals(args, 1, 1, "ORG"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  QueryPlan q = MakeQuery(kind, org);
  if (takes_asset) {
    TALLY_ASSIGN_OR_RETURN(asset, AssetOption(args));
    q.asset = asset;
  }
  return Plan(q);
}

absl::StatusOr<Plan> BuildSummary(const Args& args, const Env&) {
  return BuildOrgQuery(args, QueryPlan::Kind::summary, true);
}
absl::StatusOr<Plan> BuildTotals(const Args& args, const Env&) {
  return BuildOrgQuery(args, QueryPlan::Kind::totals, true);
}
absl::StatusOr<Plan> BuildSettingsShow(const Args& args, const Env&) {
  return BuildOrgQuery(args, QueryPlan::Kind::settings, false);
}

absl::Status TimeRange(const Args& args, int64_t* from_us, int64_t* to_us) {
  TALLY_ASSIGN_OR_RETURN(from, TimeOption(args, "from"));
  TALLY_ASSIGN_OR_RETURN(to, TimeOption(args, "to"));
  if (from != 0 && to != 0 && to <= from) return Usage("--to must be after --from");
  *from_us = from;
  *to_us = to;
  return absl::OkStatus();
}

absl::StatusOr<Plan> BuildHistory(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 1, 2, "ORG"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  QueryPlan q = MakeQuery(QueryPlan::Kind::history, org);
  q.history.org_id = org;
  if (args.positionals.size() == 2) {
    TALLY_ASSIGN_OR_RETURN(wallet, ParseWallet(Pos(args, 1), "WALLET"));
    q.history.wallet_id = wallet;
  } else {
    q.history.all_wallets = true;
  }
  if (auto s = TimeRange(args, &q.history.from_us, &q.history.to_us); !s.ok()) return s;
  if (const std::string* v = args.Get("asset")) {
    TALLY_ASSIGN_OR_RETURN(asset, ParseAsset(*v));
    q.history.asset = asset;
  } else {
    q.history.asset = Asset();  // every asset
  }
  if (const std::string* v = args.Get("kind")) {
    TALLY_ASSIGN_OR_RETURN(mask, ParseKinds(*v));
    q.history.kind_mask = mask;
  }
  if (const std::string* v = args.Get("cursor")) {
    TALLY_ASSIGN_OR_RETURN(cursor, ParseNonzeroId(*v, "--cursor"));
    q.history.cursor = cursor;
  }
  if (const std::string* v = args.Get("limit")) {
    TALLY_ASSIGN_OR_RETURN(limit, ParseAmount(*v, "--limit"));
    if (limit > history_limit_max) {
      return Usage(Cat("--limit: at most ", history_limit_max));
    }
    q.history_limit = static_cast<uint32_t>(limit);
  }
  q.history.limit = std::min(q.history_limit, wire_history_entries_max);
  return Plan(q);
}

absl::StatusOr<Plan> BuildRequests(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 1, 1, "ORG"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  QueryPlan q = MakeQuery(QueryPlan::Kind::requests, org);
  if (const std::string* v = args.Get("status")) {
    TALLY_ASSIGN_OR_RETURN(status, ParseRequestStatus(*v));
    q.status = status;
  }
  return Plan(q);
}

absl::StatusOr<Plan> BuildReport(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 1, 1, "ORG"); !s.ok()) return s;
  TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(Pos(args, 0), "ORG"));
  QueryPlan q = MakeQuery(QueryPlan::Kind::usage, org);
  if (auto s = TimeRange(args, &q.from_us, &q.to_us); !s.ok()) return s;
  return Plan(q);
}

absl::StatusOr<Plan> BuildEvents(const Args& args, const Env&) {
  if (auto s = NeedPositionals(args, 0, 0, ""); !s.ok()) return s;
  QueryPlan q = MakeQuery(QueryPlan::Kind::events, 0);
  if (const std::string* v = args.Get("org")) {
    TALLY_ASSIGN_OR_RETURN(org, ParseNonzeroId(*v, "--org"));
    q.org_id = org;
  }
  if (const std::string* v = args.Get("count")) {
    TALLY_ASSIGN_OR_RETURN(n, ParseAmount(*v, "--count"));
    q.events_max = static_cast<uint64_t>(n);
  }
  if (const std::string* v = args.Get("for")) {
    TALLY_ASSIGN_OR_RETURN(us, ParseDuration(*v, "--for"));
    q.events_for_us = us;
  }
  return Plan(q);
}

// ---- the command table -------------------------------------------------------

const std::vector<OptionSpec>& GlobalOptions() {
  static const std::vector<OptionSpec> options = {
      {"server"}, {"token"}, {"json", false}, {"csv", false}, {"xlsx"}, {"help", false}, {"op-id"}};
  return options;
}

const std::vector<CommandSpec>& Commands() {
  static const std::vector<OptionSpec> settings_options = {{"credit-payments"},
                                                           {"low-balance-threshold"},
                                                           {"expiring-soon-window"},
                                                           {"rollup-interval"}};
  static const std::vector<OptionSpec> lot_options = {
      {"expires-in"}, {"expires-at"}, {"priority"}, {"asset"}, {"reason"}, {"reference"}};
  static const std::vector<CommandSpec> commands = {
      {"org create",
       "org create ORG [--credit-payments on|off] [--low-balance-threshold N] "
       "[--expiring-soon-window 30d] [--rollup-interval 1m]",
       "create an org (its pool is wallet 0); settings not given keep their defaults",
       "org create 7 --low-balance-threshold 100", settings_options, true, false, BuildOrgCreate},
      {"settings show",
       "settings show ORG  (also: settings ORG)",
       "show an org's settings",
       "settings show 7",
       {},
       false,
       false,
       BuildSettingsShow},
      {"settings set",
       "settings set ORG [--credit-payments on|off] [--low-balance-threshold N] "
       "[--expiring-soon-window DURATION|0] [--rollup-interval DURATION|off]",
       "change an org's settings (only those given)", "settings set 7 --credit-payments off",
       settings_options, true, false, BuildSettingsSet},
      {"topup",
       "topup ORG AMOUNT [--expires-in 90d | --expires-at TIME] [--priority N] [--asset A] "
       "[--reference TEXT]",
       "buy credits into the org's pool (a new lot)", "topup 7 1000 --expires-in 365d", lot_options,
       true, false, BuildTopup},
      {"allocate",
       "allocate ORG (--all AMOUNT | --to W1=A1,W2=A2,...) [--asset A] [--reason TEXT]",
       "move credits from the pool to wallets, all or nothing (wallets are created)",
       "allocate 7 --to 42=50,43=20",
       {{"all"}, {"to"}, {"asset"}, {"reason"}, {"reference"}},
       true,
       false,
       BuildAllocate},
      {"reclaim",
       "reclaim ORG WALLET (AMOUNT | --all) [--asset A] [--reason TEXT]",
       "move credits from a wallet back to the pool (lots keep their expiry)",
       "reclaim 7 42 --all",
       {{"all", false}, {"asset"}, {"reason"}, {"reference"}},
       true,
       false,
       BuildReclaim},
      {"grant",
       "grant ORG WALLET AMOUNT [--expires-in 90d | --expires-at TIME] [--priority N] "
       "[--asset A] [--reason TEXT]",
       "a new lot straight into a wallet (promotion, compensation, package)",
       "grant 7 42 500 --expires-in 90d --reason welcome", lot_options, true, false, BuildGrant},
      {"void",
       "void ORG GRANT [--reason TEXT]",
       "remove what remains of a grant at once (spent credits stay spent)",
       "void 7 3 --reason 'granted in error'",
       {{"reason"}, {"reference"}},
       true,
       false,
       BuildVoid},
      {"adjust",
       "adjust ORG WALLET (--to BALANCE | --by DELTA) [--expires-in D | --expires-at T] "
       "[--priority N] [--asset A] [--reason TEXT]",
       "set a wallet's balance, or change it by a signed delta, with a note",
       "adjust 7 42 --to 200 --reason 'promo reset'",
       {{"to"},
        {"by"},
        {"expires-in"},
        {"expires-at"},
        {"priority"},
        {"asset"},
        {"reason"},
        {"reference"}},
       true,
       false,
       BuildAdjust},
      {"deduct",
       "deduct ORG WALLET AMOUNT [--partial] [--asset A] [--reference TEXT]",
       "spend credits; all or nothing, or with --partial what is there (an invoice)",
       "deduct 7 42 150 --partial --reference invoice-881",
       {{"partial", false}, {"asset"}, {"reason"}, {"reference"}},
       true,
       false,
       BuildDeduct},
      {"hold",
       "hold ORG WALLET AMOUNT [--partial] [--timeout 7d | --timeout-at TIME] [--asset A] "
       "[--reference TEXT]",
       "reserve credits for something not yet settled (shown as held)",
       "hold 7 42 80 --timeout 7d --reference invoice-882",
       {{"partial", false}, {"timeout"}, {"timeout-at"}, {"asset"}, {"reason"}, {"reference"}},
       true,
       false,
       BuildHold},
      {"capture",
       "capture ORG HOLD AMOUNT",
       "spend up to AMOUNT of a hold and release the rest",
       "capture 7 1 60",
       {},
       true,
       false,
       BuildCapture},
      {"release",
       "release ORG HOLD",
       "give a hold's credits back to the wallet",
       "release 7 1",
       {},
       true,
       false,
       BuildRelease},
      {"request",
       "request ORG WALLET AMOUNT [--asset A] [--reason TEXT]",
       "a user asks for credits (pending until approved or rejected)",
       "request 7 42 300 --reason 'quarter-end reports'",
       {{"asset"}, {"reason"}, {"reference"}},
       true,
       false,
       BuildRequest},
      {"approve",
       "approve ORG (REQUEST [--amount N] | --all [--asset A])",
       "approve a request (optionally for another amount) or every pending one, from the pool",
       "approve 7 1 --amount 200",
       {{"amount"}, {"all", false}, {"asset"}},
       true,
       false,
       BuildApprove},
      {"reject",
       "reject ORG (REQUEST | --all [--asset A]) [--reason TEXT]",
       "reject a request or every pending one",
       "reject 7 2 --reason 'over budget'",
       {{"all", false}, {"asset"}, {"reason"}, {"reference"}},
       true,
       false,
       BuildReject},
      {"wallet create",
       "wallet create ORG WALLET [--label TEXT]",
       "create a wallet (or revive a deleted one) and set its label",
       "wallet create 7 42 --label alice",
       {{"label"}},
       true,
       false,
       BuildWalletCreate},
      {"wallet delete",
       "wallet delete ORG WALLET",
       "delete a user's wallet: holds released, requests rejected, credits back to the pool",
       "wallet delete 7 42",
       {},
       true,
       false,
       BuildWalletDelete},
      {"balance",
       "balance ORG WALLET [--asset A] [--at TIME]",
       "available, held, expiring soon and the lots (WALLET 0 or pool: the pool)",
       "balance 7 42",
       {{"asset"}, {"at"}},
       false,
       false,
       BuildBalance},
      {"summary",
       "summary ORG [--asset A]",
       "pool, allocated, total, wallets and pending requests of an org",
       "summary 7",
       {{"asset"}},
       false,
       false,
       BuildSummary},
      {"history",
       "history ORG [WALLET] [--from TIME] [--to TIME] [--kind K1,K2] [--asset A] [--limit N] "
       "[--cursor C]",
       "changes to a wallet (or the whole org), newest first",
       "history 7 42 --kind deduct,capture --limit 20",
       {{"from"}, {"to"}, {"kind"}, {"asset"}, {"limit"}, {"cursor"}},
       false,
       true,
       BuildHistory},
      {"requests",
       "requests ORG [--status pending|approved|rejected]",
       "an org's credit requests by status (default pending)",
       "requests 7 --status pending",
       {{"status"}},
       false,
       true,
       BuildRequests},
      {"report",
       "report ORG [--from TIME] [--to TIME]",
       "usage: spent, granted, expired per wallet and asset over a time range",
       "report 7 --from 2026-11-01 --to 2026-12-01 --xlsx november.xlsx",
       {{"from"}, {"to"}},
       false,
       true,
       BuildReport},
      {"totals",
       "totals ORG [--asset A]",
       "an org's running totals, and whether the ledger invariant holds",
       "totals 7",
       {{"asset"}},
       false,
       false,
       BuildTotals},
      {"events",
       "events [--org ORG] [--count N] [--for DURATION]",
       "follow the event stream (one line per event) until --count or --for, or Ctrl-C",
       "events --org 7 --json",
       {{"org"}, {"count"}, {"for"}},
       false,
       false,
       BuildEvents},
  };
  return commands;
}

const CommandSpec* FindCommand(std::string_view name) {
  for (const CommandSpec& spec : Commands()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

std::string HelpText(const CommandSpec& spec) {
  std::string text = Cat("usage: tally ", spec.usage, "\n\n", spec.summary, "\n");
  if (spec.changes) {
    Append(&text,
           "\nA changing command: --op-id N makes a retry safe (applied once); without "
           "it a fresh id is picked and shown with --json.\n");
  }
  Append(&text, "\nexample: tally ", spec.example, "\n");
  Append(&text, "\nglobal options: --server HOST:PORT, --token TOKEN, --json",
         spec.exports ? ", --csv, --xlsx FILE" : "", "\n");
  return text;
}

// The words a command may take: "org create", "settings", "deduct"...
bool IsGroup(std::string_view word) {
  return word == "org" || word == "wallet" || word == "settings";
}

}  // namespace

Env EnvFromProcess() {
  Env env;
  if (const char* v = std::getenv("TALLY_SERVER"); v && *v) env.server = v;
  if (const char* v = std::getenv("TALLY_TOKEN"); v && *v) env.token = v;
  env.now_us = std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  env.new_op_id = NewOpId;
  return env;
}

std::string Overview() {
  std::string text =
      "usage: tally [--server HOST:PORT] [--token TOKEN] [--json] COMMAND ...\n\n"
      "commands:\n";
  for (const CommandSpec& spec : Commands()) {
    std::string name(spec.name);
    Append(&text, "  ", name, std::string(name.size() < 15 ? 15 - name.size() : 1, ' '),
           spec.summary, "\n");
  }
  Append(&text, "\nThe server is --server, else $TALLY_SERVER, else ", server_default,
         "; the token is --token, else $TALLY_TOKEN, else the first admin token in ",
         tokens_path_default,
         ".\nExit codes: 0 ok, 1 refused by the server, 2 usage error, "
         "3 cannot connect or authenticate, 4 cannot write output.\n"
         "tally help COMMAND (or tally COMMAND --help) shows one command.\n");
  return text;
}

std::optional<std::string> CommandHelp(const std::string& command) {
  const CommandSpec* spec = FindCommand(command);
  if (spec == nullptr && command == "settings") spec = FindCommand("settings show");
  if (spec == nullptr) return std::nullopt;
  return HelpText(*spec);
}

absl::StatusOr<Invocation> ParseInvocation(const std::vector<std::string>& argv, const Env& env) {
  // First find the command words: the first positionals that are not option
  // values.  Global options may come before them.
  std::vector<OptionSpec> globals = GlobalOptions();
  size_t i = 0;
  std::vector<std::string> before;  // global options before the command
  while (i < argv.size() && argv[i].size() > 2 && argv[i].rfind("--", 0) == 0) {
    std::string_view name = std::string_view(argv[i]).substr(2);
    bool has_eq = name.find('=') != std::string_view::npos;
    name = name.substr(0, name.find('='));
    bool takes_value = false;
    bool known = false;
    for (const OptionSpec& g : globals) {
      if (g.name == name) {
        known = true;
        takes_value = g.takes_value;
      }
    }
    if (!known) return Usage(Cat("unknown option --", name, " before the command"));
    before.push_back(argv[i++]);
    if (takes_value && !has_eq && i < argv.size()) before.push_back(argv[i++]);
  }
  Invocation inv;
  std::vector<std::string> rest(argv.begin() + static_cast<ptrdiff_t>(i), argv.end());
  if (rest.empty() || rest[0] == "help") {
    if (rest.size() > 1) {
      std::string name = rest[1];
      if (rest.size() > 2 && IsGroup(rest[1])) name += " " + rest[2];
      std::optional<std::string> help = CommandHelp(name);
      if (!help) return Usage(Cat("no command \"", name, "\"; see tally help"));
      inv.plan = HelpPlan{*help};
      return inv;
    }
    if (rest.empty()) {
      bool asked = false;
      for (const std::string& b : before) asked = asked || b == "--help";
      if (!asked) return Usage("no command given\n" + Overview());
    }
    inv.plan = HelpPlan{Overview()};
    return inv;
  }
  std::string name = rest[0];
  size_t words = 1;
  if (IsGroup(rest[0])) {
    if (rest.size() > 1 && FindCommand(rest[0] + " " + rest[1]) != nullptr) {
      name = rest[0] + " " + rest[1];
      words = 2;
    } else if (rest[0] == "settings") {
      name = "settings show";  // `tally settings ORG`
    } else {
      return Usage(Cat("\"", rest[0], "\" needs a subcommand: ",
                       rest[0] == "org" ? "create" : "create or delete"));
    }
  }
  const CommandSpec* spec = FindCommand(name);
  if (spec == nullptr) return Usage(Cat("no command \"", name, "\"; see tally help"));

  std::vector<OptionSpec> specs = globals;
  specs.insert(specs.end(), spec->options.begin(), spec->options.end());
  std::vector<std::string> tail = before;
  tail.insert(tail.end(), rest.begin() + static_cast<ptrdiff_t>(words), rest.end());
  absl::StatusOr<Args> args = SplitArgs(tail, specs);
  if (!args.ok()) return args.status();
  if (args->Has("help")) {
    inv.plan = HelpPlan{HelpText(*spec)};
    return inv;
  }
  if (const std::string* v = args->Get("server")) {
    if (absl::Status s = ParseServer(*v, "--server"); !s.ok()) return s;
    inv.globals.server = *v;
  } else if (env.server) {
    if (absl::Status s = ParseServer(*env.server, "TALLY_SERVER"); !s.ok()) return s;
  }
  if (const std::string* v = args->Get("token")) inv.globals.token = *v;
  int formats = args->Has("json") + args->Has("csv") + args->Has("xlsx");
  if (formats > 1) return Usage("give one of --json, --csv, --xlsx");
  if (args->Has("json")) inv.globals.format = Format::json;
  if (args->Has("csv") || args->Has("xlsx")) {
    if (!spec->exports) {
      return Usage(Cat("--csv and --xlsx are for history, requests and report, not ", spec->name));
    }
    inv.globals.format = args->Has("csv") ? Format::csv : Format::xlsx;
    if (const std::string* v = args->Get("xlsx")) {
      if (v->empty()) return Usage("--xlsx needs a file name");
      inv.globals.xlsx_path = *v;
    }
  }
  if (args->Has("op-id") && !spec->changes) {
    return Usage(Cat("--op-id is for changing commands, not ", spec->name));
  }
  absl::StatusOr<Plan> plan = spec->build(*args, env);
  if (!plan.ok()) return plan.status();
  if (ApplyPlan* apply = std::get_if<ApplyPlan>(&*plan)) {
    if (const std::string* v = args->Get("op-id")) {
      TALLY_ASSIGN_OR_RETURN(op_id, ParseNonzeroId(*v, "--op-id"));
      apply->command.op_id = op_id;
    } else {
      apply->command.op_id = env.new_op_id ? env.new_op_id() : NewOpId();
      apply->op_id_generated = true;
    }
  }
  inv.plan = std::move(*plan);
  return inv;
}

// ---- running a plan --------------------------------------------------------

namespace {

// Runner carries one run's output streams and format.
class Runner {
 public:
  Runner(const Invocation& inv, const Env& env, std::FILE* out, std::FILE* err)
      : inv_(inv), env_(env), out_(out), err_(err) {}

  int Run();

 private:
  int Connect();
  int RunApply(ApplyPlan plan);
  int RunQuery(const QueryPlan& q);
  int RunEvents(const QueryPlan& q);
  int QueryFailed(const absl::Status& status);
  int Emit(const Doc& doc);
  int Write(std::string_view text);
  int Fail(int code, std::string_view message) {
    std::fprintf(err_, "tally: %.*s\n", static_cast<int>(message.size()), message.data());
    return code;
  }

  const Invocation& inv_;
  const Env& env_;
  std::FILE* out_;
  std::FILE* err_;
  std::string server_;
  std::unique_ptr<Client> client_;
};

int Runner::Write(std::string_view text) {
  if (std::fwrite(text.data(), 1, text.size(), out_) != text.size() || std::fflush(out_) != 0 ||
      std::ferror(out_)) {
    return Fail(exit_output, Cat("cannot write output: ", std::strerror(errno)));
  }
  return exit_ok;
}

int Runner::Emit(const Doc& doc) {
  switch (inv_.globals.format) {
    case Format::json:
      return Write(RenderJson(doc));
    case Format::csv:
      return Write(RenderCsv(doc));
    case Format::xlsx: {
      absl::Status s = WriteXlsx(doc, inv_.globals.xlsx_path);
      if (!s.ok()) return Fail(exit_output, Message(s));
      size_t rows = doc.tables.empty() ? 0 : doc.tables.front().rows.size();
      return Write(Cat("wrote ", inv_.globals.xlsx_path, " (", rows, " rows)\n"));
    }
    case Format::text:
      return Write(RenderText(doc));
  }
  return exit_ok;
}

int Runner::Connect() {
  server_ = inv_.globals.server.value_or(env_.server.value_or(server_default));
  std::string token;
  if (inv_.globals.token) {
    token = *inv_.globals.token;
  } else if (env_.token) {
    token = *env_.token;
  } else {
    absl::StatusOr<std::string> from_file = TokenFromFile(env_.tokens_path);
    if (!from_file.ok()) {
      return Fail(exit_connect, Cat("no token: give --token or set TALLY_TOKEN (",
                                    Message(from_file.status()), ")"));
    }
    token = *from_file;
  }
  ClientOptions options;
  options.client_name = "tally-cli";
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_, token, options);
  if (!client.ok()) {
    std::optional<ResultCode> code = RefusalCode(client.status());
    if (code) return Fail(exit_connect, Message(client.status()));
    return Fail(exit_connect, Cat("cannot connect to ", server_, ": ", Message(client.status())));
  }
  client_ = *std::move(client);
  return exit_ok;
}

int Runner::Run() {
  if (const HelpPlan* help = std::get_if<HelpPlan>(&inv_.plan)) return Write(help->text);
  if (int rc = Connect(); rc != exit_ok) return rc;
  if (const ApplyPlan* apply = std::get_if<ApplyPlan>(&inv_.plan)) return RunApply(*apply);
  return RunQuery(std::get<QueryPlan>(inv_.plan));
}

Cell TimeCell(int64_t time_us) {
  if (time_us == 0) return Cell{};
  return FormatTime(time_us);
}

// RefusalDetail explains a refused command with the numbers SPEC gives.
std::string RefusalDetail(const ApplyPlan& plan, const Result& r, Doc* doc) {
  const Command& c = plan.command;
  switch (r.code) {
    case ResultCode::insufficient_funds:
    case ResultCode::insufficient_pool:
      doc->Add("available", r.available());
      doc->Add("requested", r.requested());
      doc->Add("shortfall", r.shortfall());
      return Cat("available ", r.available(), ", requested ", r.requested(), ", shortfall ",
                 r.shortfall());
    case ResultCode::hold_expired:
      doc->Add("applied", r.applied());
      doc->Add("remainder", r.remainder());
      return Cat("hold ", c.target_id, " of org ", c.org_id,
                 " timed out and was released; applied ", r.applied(), ", remainder ",
                 r.remainder());
    case ResultCode::unknown_org:
      return Cat("org ", c.org_id);
    case ResultCode::org_exists:
      return Cat("org ", c.org_id, " exists already");
    case ResultCode::unknown_wallet:
      return Cat("wallet ", c.wallet_id, " of org ", c.org_id);
    case ResultCode::invalid_wallet:
      return Cat("wallet ", c.wallet_id, " (", plan.name, " needs a user wallet)");
    case ResultCode::unknown_grant:
    case ResultCode::grant_voided:
      return Cat("grant ", c.target_id, " of org ", c.org_id);
    case ResultCode::unknown_hold:
      return Cat("hold ", c.target_id, " of org ", c.org_id);
    case ResultCode::unknown_request:
    case ResultCode::already_decided:
      return Cat("request ", c.target_id, " of org ", c.org_id);
    case ResultCode::credit_payments_disabled:
      return Cat("org ", c.org_id, " has credit payments switched off");
    case ResultCode::forbidden:
      return Cat("this token may not ", plan.name, " in org ", c.org_id);
    default:
      return Cat(plan.name, " in org ", c.org_id, " was not applied");
  }
}

// ResultFields adds the numbers a successful result of this kind carries.
void ResultFields(const ApplyPlan& plan, const Result& r, Doc* doc) {
  switch (plan.command.kind) {
    case CommandKind::org_create:
    case CommandKind::org_settings:
      doc->Add("org_id", plan.command.org_id);
      break;
    case CommandKind::topup:
    case CommandKind::grant:
      doc->Add("grant_id", r.id);
      doc->Add("applied", r.applied());
      doc->Add("balance_after", r.balance_after());
      break;
    case CommandKind::allocate:
    case CommandKind::approve:
      if (plan.command.kind == CommandKind::approve && (plan.command.flags & flag_all) == 0) {
        doc->Add("request_id", plan.command.target_id);
      }
      doc->Add("pool_before", r.pool_before());
      doc->Add("allocated", r.allocated());
      doc->Add("pool_after", r.pool_after());
      break;
    case CommandKind::reclaim:
      doc->Add("applied", r.applied());
      doc->Add("balance_after", r.balance_after());
      break;
    case CommandKind::void_grant:
      doc->Add("voided", r.n[0]);
      break;
    case CommandKind::adjust:
      doc->Add("change", r.n[0]);
      doc->Add("balance_after", r.balance_after());
      break;
    case CommandKind::hold:
      doc->Add("hold_id", r.id);
      [[fallthrough]];
    case CommandKind::deduct:
    case CommandKind::capture:
      doc->Add("applied", r.applied());
      doc->Add("remainder", r.remainder());
      doc->Add("balance_after", r.balance_after());
      break;
    case CommandKind::release:
      doc->Add("released", r.n[0]);
      doc->Add("balance_after", r.balance_after());
      break;
    case CommandKind::request:
      doc->Add("request_id", r.id);
      break;
    case CommandKind::reject:
      doc->Add("rejected", r.n[0]);
      break;
    case CommandKind::wallet_upsert:
      doc->Add("wallet_id", plan.command.wallet_id);
      break;
    case CommandKind::wallet_delete:
      doc->Add("moved", r.n[0]);
      doc->Add("pool_after", r.n[2]);
      break;
    case CommandKind::expire_sweep:
      break;
  }
}

int Runner::RunApply(ApplyPlan plan) {
  plan.Bind();
  std::string actor = client_->token_name();
  if (plan.command.kind == CommandKind::approve || plan.command.kind == CommandKind::reject) {
    plan.command.actor = actor;
  }
  absl::StatusOr<Result> result = client_->Apply(plan.command);
  if (!result.ok()) {
    if (std::optional<ResultCode> code = RefusalCode(result.status())) {
      if (*code == ResultCode::unauthenticated) return Fail(exit_connect, Message(result.status()));
      return QueryFailed(result.status());
    }
    // The reply never came: the command may or may not have been applied.
    return Fail(exit_connect, Cat("connection to ", server_, " failed: ", Message(result.status()),
                                  "; the outcome is unknown: retry with --op-id ",
                                  plan.command.op_id, " (applied at most once)"));
  }
  const Result& r = *result;
  Doc doc;
  if (!r.ok()) {
    Doc error;
    error.Add("error", std::string(ResultCodeName(r.code)));
    std::string detail = RefusalDetail(plan, r, &error);
    error.Add("detail", detail);
    error.Add("op_id", plan.command.op_id);
    if (r.replayed) error.Add("replayed", true);
    std::fprintf(err_, "tally: %s: %s\n", std::string(ResultCodeName(r.code)).c_str(),
                 detail.c_str());
    if (inv_.globals.format == Format::json) {
      if (int rc = Write(RenderJson(error)); rc != exit_ok) return rc;
    }
    return exit_refused;
  }
  doc.Add("result", std::string(ResultCodeName(r.code)));
  doc.Add("op_id", plan.command.op_id);
  doc.Add("replayed", r.replayed);
  ResultFields(plan, r, &doc);
  return Emit(doc);
}

int Runner::QueryFailed(const absl::Status& status) {
  std::optional<ResultCode> code = RefusalCode(status);
  if (!code) {
    return Fail(exit_connect, Cat("connection to ", server_, " failed: ", Message(status)));
  }
  if (*code == ResultCode::unauthenticated) return Fail(exit_connect, Message(status));
  std::string name(ResultCodeName(*code));
  std::string message = Message(status);
  std::string_view detail = message;
  if (message.rfind(name + ": ", 0) == 0)
    detail = std::string_view(message).substr(name.size() + 2);
  std::fprintf(err_, "tally: %s: %.*s\n", name.c_str(), static_cast<int>(detail.size()),
               detail.data());
  if (inv_.globals.format == Format::json) {
    Doc error;
    error.Add("error", name);
    error.Add("detail", std::string(detail));
    if (int rc = Write(RenderJson(error)); rc != exit_ok) return rc;
  }
  return exit_refused;
}

void AddHistoryRows(const std::vector<HistoryEntryView>& entries, Table* table) {
  for (const HistoryEntryView& e : entries) {
    table->rows.push_back({e.seq, FormatTime(e.time_us), e.wallet_id,
                           std::string(HistoryKindName(e.kind)), std::string(e.out ? "out" : "in"),
                           e.amount, e.balance_after, e.asset.name(), e.held, e.related_id,
                           e.reference, e.actor});
  }
}

int Runner::RunQuery(const QueryPlan& q) {
  Doc doc;
  switch (q.kind) {
    case QueryPlan::Kind::balance: {
      int64_t as_of_us = 0;
      absl::StatusOr<Balance> b = client_->GetBalance(q.balance, &as_of_us);
      if (!b.ok()) return QueryFailed(b.status());
      doc.Add("org_id", q.balance.org_id);
      doc.Add("wallet_id", q.balance.wallet_id);
      doc.Add("asset", q.balance.asset.name());
      doc.Add("available", b->available);
      if (q.balance.at_us != 0) {
        doc.Add("as_of", FormatTime(as_of_us));
        break;
      }
      doc.Add("held", b->held);
      doc.Add("expiring_soon", b->expiring_soon);
      Table& lots =
          doc.AddTable("lots", {"grant_id", "remaining", "expires_at", "priority", "asset"});
      for (const LotView& lot : b->lots) {
        lots.rows.push_back({lot.grant_id, lot.remaining, TimeCell(lot.expires_at_us),
                             int64_t{lot.priority}, lot.asset.name()});
      }
      break;
    }
    case QueryPlan::Kind::summary: {
      absl::StatusOr<OrgSummary> s = client_->GetOrgSummary(q.org_id, q.asset);
      if (!s.ok()) return QueryFailed(s.status());
      doc.Add("org_id", q.org_id);
      doc.Add("asset", q.asset.name());
      doc.Add("pool", s->pool);
      doc.Add("allocated", s->allocated);
      doc.Add("total", s->total);
      doc.Add("wallets", s->wallets);
      doc.Add("pending_requests", s->pending_requests);
      doc.Add("pending_requested", s->pending_requested);
      doc.Add("pool_if_all_approved", s->pool_if_all_approved);
      break;
    }
    case QueryPlan::Kind::history: {
      HistoryQuery query = q.history;
      Table table{"entries",
                  {"seq", "time", "wallet_id", "kind", "direction", "amount", "balance_after",
                   "asset", "held", "related_id", "reference", "actor"},
                  {}};
      uint64_t next_cursor = 0;
      bool truncated = false;
      // Page by page until the limit is reached or nothing older is left.
      while (table.rows.size() < q.history_limit) {
        query.limit = static_cast<uint32_t>(
            std::min<size_t>(q.history_limit - table.rows.size(), wire_history_entries_max));
        absl::StatusOr<HistoryPage> page = client_->GetHistory(query);
        if (!page.ok()) return QueryFailed(page.status());
        AddHistoryRows(page->entries, &table);
        next_cursor = page->next_cursor;
        truncated = page->truncated;
        if (next_cursor == 0 || page->entries.empty()) break;
        query.cursor = next_cursor;
      }
      doc.Add("org_id", q.history.org_id);
      if (q.history.all_wallets) {
        doc.Add("wallet_id", Cell{});
      } else {
        doc.Add("wallet_id", q.history.wallet_id);
      }
      doc.Add("next_cursor", next_cursor == 0 ? Cell{} : Cell{next_cursor});
      doc.Add("truncated", truncated);
      doc.tables.push_back(std::move(table));
      if (next_cursor != 0 &&
          (inv_.globals.format == Format::csv || inv_.globals.format == Format::xlsx)) {
        std::fprintf(err_, "tally: more entries: --cursor %llu\n",
                     static_cast<unsigned long long>(next_cursor));
      }
      break;
    }
    case QueryPlan::Kind::requests: {
      bool truncated = false;
      absl::StatusOr<std::vector<RequestView>> rows =
          client_->GetRequests(q.org_id, q.status, &truncated);
      if (!rows.ok()) return QueryFailed(rows.status());
      doc.Add("org_id", q.org_id);
      doc.Add("status", std::string(RequestStatusName(q.status)));
      doc.Add("truncated", truncated);
      Table& t = doc.AddTable(
          "requests", {"request_id", "wallet_id", "asset", "amount", "approved_amount", "status",
                       "created_at", "decided_at", "reason", "decided_by", "decision_note"});
      for (const RequestView& r : *rows) {
        t.rows.push_back({r.request_id, r.wallet_id, r.asset.name(), r.amount,
                          r.status == RequestStatus::approved ? Cell{r.approved_amount} : Cell{},
                          std::string(RequestStatusName(r.status)), TimeCell(r.created_at_us),
                          TimeCell(r.decided_at_us), r.reason, r.decided_by, r.decision_note});
      }
      break;
    }
    case QueryPlan::Kind::usage: {
      bool truncated = false;
      absl::StatusOr<std::vector<UsageRow>> rows =
          client_->GetUsage(q.org_id, q.from_us, q.to_us, &truncated);
      if (!rows.ok()) return QueryFailed(rows.status());
      doc.Add("org_id", q.org_id);
      doc.Add("from", TimeCell(q.from_us));
      doc.Add("to", TimeCell(q.to_us));
      doc.Add("truncated", truncated);
      Table& t = doc.AddTable("usage", {"wallet_id", "asset", "spent", "granted", "expired"});
      for (const UsageRow& r : *rows) {
        t.rows.push_back({r.wallet_id, r.asset.name(), r.spent, r.granted, r.expired});
      }
      break;
    }
    case QueryPlan::Kind::settings: {
      absl::StatusOr<OrgSettings> s = client_->GetSettings(q.org_id);
      if (!s.ok()) return QueryFailed(s.status());
      doc.Add("org_id", q.org_id);
      doc.Add("credit_payments", s->credit_payments);
      doc.Add("low_balance_threshold", s->low_balance_threshold);
      doc.Add("expiring_soon_window", FormatDuration(s->expiring_soon_window_us));
      doc.Add("expiring_soon_window_us", s->expiring_soon_window_us);
      doc.Add("rollup_interval", FormatDuration(s->deduct_rollup_interval_us));
      doc.Add("rollup_interval_us", s->deduct_rollup_interval_us);
      break;
    }
    case QueryPlan::Kind::totals: {
      absl::StatusOr<TotalsView> t = client_->GetTotals(q.org_id, q.asset);
      if (!t.ok()) return QueryFailed(t.status());
      doc.Add("org_id", q.org_id);
      doc.Add("asset", q.asset.name());
      doc.Add("in", t->in);
      doc.Add("available", t->available);
      doc.Add("held", t->held);
      doc.Add("spent", t->spent);
      doc.Add("expired", t->expired);
      doc.Add("voided", t->voided);
      doc.Add("adjusted_out", t->adjusted_out);
      // Compare in unsigned arithmetic: totals near int64's edge must not
      // make the check itself overflow.
      uint64_t out_sum = static_cast<uint64_t>(t->available) + static_cast<uint64_t>(t->held) +
                         static_cast<uint64_t>(t->spent) + static_cast<uint64_t>(t->expired) +
                         static_cast<uint64_t>(t->voided) + static_cast<uint64_t>(t->adjusted_out);
      doc.Add("balanced", out_sum == static_cast<uint64_t>(t->in));
      break;
    }
    case QueryPlan::Kind::events:
      return RunEvents(q);
  }
  return Emit(doc);
}

// Ctrl-C (or SIGTERM) ends `tally events` as a normal end of following.
volatile std::sig_atomic_t stop_following = 0;
void StopFollowing(int) { stop_following = 1; }

int Runner::RunEvents(const QueryPlan& q) {
  if (absl::Status s = client_->Subscribe(q.org_id); !s.ok()) return QueryFailed(s);
  struct sigaction action {};
  action.sa_handler = StopFollowing;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: the wait for events returns at once
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  uint64_t seen = 0;
  constexpr uint32_t poll_ms = 500;
  for (;;) {
    if (stop_following) return exit_ok;
    uint32_t wait_ms = poll_ms;
    if (q.events_for_us != 0) {
      int64_t left_us =
          q.events_for_us -
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
      if (left_us <= 0) return exit_ok;
      wait_ms = static_cast<uint32_t>(std::min<int64_t>(poll_ms, (left_us + 999) / 1000));
    }
    absl::StatusOr<std::vector<Event>> events = client_->NextEvents(wait_ms);
    if (stop_following) return exit_ok;
    if (!events.ok()) return QueryFailed(events.status());
    for (const Event& e : *events) {
      Doc doc;
      doc.Add("kind", std::string(EventKindName(e.kind)));
      doc.Add("time", FormatTime(e.time_us));
      doc.Add("org_id", e.org_id);
      doc.Add("wallet_id", e.wallet_id);
      doc.Add("id", e.id);
      doc.Add("asset", e.asset.name());
      doc.Add("amount", e.amount);
      doc.Add("balance_after", e.balance_after);
      std::string line;
      if (inv_.globals.format == Format::json) {
        line = RenderJson(doc);
      } else {
        for (size_t i = 0; i < doc.fields.size(); ++i) {
          const auto& [key, value] = doc.fields[i];
          Append(&line, i == 0 ? "" : "  ", i < 2 ? "" : key + "=", CellText(value));
        }
        line += "\n";
      }
      if (int rc = Write(line); rc != exit_ok) return rc;
      if (q.events_max != 0 && ++seen == q.events_max) return exit_ok;
    }
  }
}

}  // namespace

int Run(const std::vector<std::string>& argv, const Env& env, std::FILE* out, std::FILE* err) {
  absl::StatusOr<Invocation> inv = ParseInvocation(argv, env);
  if (!inv.ok()) {
    std::fprintf(err, "tally: %s\n", std::string(Message(inv.status())).c_str());
    // Point at the command's usage when there is one.
    for (size_t words = 2; words >= 1; --words) {
      if (argv.size() < words) continue;
      std::string name = argv[0];
      for (size_t w = 1; w < words; ++w) name += " " + argv[w];
      if (const CommandSpec* spec = FindCommand(name)) {
        std::fprintf(err, "usage: tally %s\n", std::string(spec->usage).c_str());
        break;
      }
    }
    return exit_usage;
  }
  return Runner(*inv, env, out, err).Run();
}

}  // namespace tally::cli
