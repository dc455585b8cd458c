// tally_demo: drives one engine Ledger through the seed workflow of SPEC §2 and
// prints what each step answered, the balances, the org summary and the digest.
//
// It uses only the public API (engine/ledger.h, include/tally/) and a fixed
// start time, so every run prints the same output, digest included: the engine
// never reads a clock, the demo hands it the time of each batch.
//
// Usage: tally-demo   (no arguments)
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/ledger.h"
#include "tally/asset.h"
#include "tally/command.h"
#include "tally/query.h"
#include "tally/result_code.h"

namespace {

using tally::Command;
using tally::CommandKind;
using tally::Result;
using tally::ResultCode;

constexpr int64_t us_per_minute = int64_t{60} * 1000000;
constexpr int64_t us_per_day = int64_t{24} * 60 * us_per_minute;
// 2026-01-01T00:00:00Z.
constexpr int64_t start_time_us = int64_t{1767225600} * 1000000;

constexpr uint64_t org_id = 1001;
constexpr uint64_t pool_id = 0;
constexpr uint64_t alice = 1, bob = 2, carol = 3, dave = 4, erin = 5;

// Labels the demo gives its wallets; it keeps them itself because the wallet
// label is for exports, not part of a balance.
const std::map<uint64_t, std::string_view> wallet_labels = {
    {pool_id, "(pool)"}, {alice, "alice"}, {bob, "bob"},
    {carol, "carol"},    {dave, "dave"},   {erin, "erin"},
};

std::string_view Label(uint64_t wallet_id) {
  auto it = wallet_labels.find(wallet_id);
  return it == wallet_labels.end() ? "?" : it->second;
}

// Rfc3339 formats a time in µs since the epoch as UTC, to the second.
std::string Rfc3339(int64_t time_us) {
  if (time_us == 0) return "never";
  std::time_t seconds = static_cast<std::time_t>(time_us / 1000000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// Demo applies one command per batch at the demo's clock and prints the answer.
class Demo {
 public:
  int64_t now_us() const { return now_us_; }
  void Advance(int64_t us) { now_us_ += us; }
  const tally::Ledger& ledger() const { return ledger_; }

  // Run applies `command` (with a fresh op id unless it carries one) and
  // prints the step, its result and its events.
  Result Run(std::string_view step, Command command) {
    if (command.op_id == 0 && command.kind != CommandKind::expire_sweep) {
      command.op_id = next_op_id_++;
    }
    command.org_id = org_id;
    if (command.actor.empty()) command.actor = "demo-admin";
    ledger_.Apply(now_us_, std::span(&command, 1), &out_);
    const Result& result = out_.results.at(0);
    std::string_view code = tally::ResultCodeName(result.code);
    std::string numbers = Numbers(command, result);
    if (numbers.empty()) {
      std::printf("%-46.*s %.*s\n", static_cast<int>(step.size()), step.data(),
                  static_cast<int>(code.size()), code.data());
    } else {
      std::printf("%-46.*s %-20.*s %s\n", static_cast<int>(step.size()), step.data(),
                  static_cast<int>(code.size()), code.data(), numbers.c_str());
    }
    for (const tally::Event& event : out_.events) {
      std::string_view name = tally::EventKindName(event.kind);
      std::printf("    event %-18.*s wallet %-7.*s amount %6" PRId64 "  balance after %6" PRId64
                  "\n",
                  static_cast<int>(name.size()), name.data(),
                  static_cast<int>(Label(event.wallet_id).size()), Label(event.wallet_id).data(),
                  event.amount, event.balance_after);
    }
    return result;
  }

 private:
  // Numbers names the result's three numbers the way docs/ENGINE.md reads
  // them for this kind of command.
  static std::string Numbers(const Command& command, const Result& result) {
    char text[160] = "";
    if (result.code == ResultCode::insufficient_funds ||
        result.code == ResultCode::insufficient_pool) {
      std::snprintf(text, sizeof text,
                    "available %" PRId64 ", requested %" PRId64 ", shortfall %" PRId64,
                    result.available(), result.requested(), result.shortfall());
    } else if (result.ok() || result.code == ResultCode::hold_expired) {
      FormatNumbers(command.kind, result, text, sizeof text);
    }
    std::string numbers = text;
    if (result.id != 0) {
      numbers += numbers.empty() ? "id " : ", id ";
      numbers += std::to_string(result.id);
    }
    if (result.replayed) numbers += " (a replay: nothing changed)";
    return numbers;
  }

  static void FormatNumbers(CommandKind kind, const Result& result, char* text, size_t size) {
    switch (kind) {
      case CommandKind::topup:
      case CommandKind::grant:
      case CommandKind::deduct:
      case CommandKind::hold:
      case CommandKind::capture:
      case CommandKind::reclaim:
      case CommandKind::adjust:
        std::snprintf(text, size,
                      "applied %" PRId64 ", remainder %" PRId64 ", balance after %" PRId64,
                      result.applied(), result.remainder(), result.balance_after());
        break;
      case CommandKind::release:
        std::snprintf(text, size, "released %" PRId64 ", balance after %" PRId64, result.n[0],
                      result.n[2]);
        break;
      case CommandKind::allocate:
      case CommandKind::approve:
        std::snprintf(text, size,
                      "pool before %" PRId64 ", allocated %" PRId64 ", pool after %" PRId64,
                      result.pool_before(), result.allocated(), result.pool_after());
        break;
      case CommandKind::void_grant:
        std::snprintf(text, size, "voided %" PRId64, result.n[0]);
        break;
      case CommandKind::reject:
        std::snprintf(text, size, "rejected %" PRId64, result.n[0]);
        break;
      case CommandKind::wallet_delete:
        std::snprintf(text, size, "moved to pool %" PRId64 ", pool after %" PRId64, result.n[0],
                      result.n[2]);
        break;
      case CommandKind::expire_sweep:
        std::snprintf(text, size,
                      "lots expired %" PRId64 ", holds released %" PRId64
                      ", more remaining %" PRId64,
                      result.n[0], result.n[1], result.n[2]);
        break;
      default:  // org_create, org_settings, request, wallet_upsert: no numbers
        break;
    }
  }

  tally::Ledger ledger_;
  tally::BatchOutput out_;
  int64_t now_us_ = start_time_us;
  uint64_t next_op_id_ = 1;
};

void PrintBalances(const tally::Ledger& ledger, int64_t now_us) {
  std::printf("\nBalances at %s (credits)\n", Rfc3339(now_us).c_str());
  std::printf("%-7s %-7s %10s %8s %14s  %s\n", "wallet", "label", "available", "held",
              "expiring soon", "lots (grant:remaining, expires)");
  for (const auto& [wallet_id, label] : wallet_labels) {
    absl::StatusOr<tally::Balance> balance =
        ledger.GetBalance(org_id, wallet_id, tally::Asset::Credits(), now_us);
    if (!balance.ok()) {
      // A deleted wallet answers unknown_wallet; its credits went to the pool.
      std::printf("%-7" PRIu64 " %-7.*s %10s %8s %14s  (%s)\n", wallet_id,
                  static_cast<int>(label.size()), label.data(), "-", "-", "-",
                  std::string(balance.status().message()).c_str());
      continue;
    }
    std::string lots;
    for (const tally::LotView& lot : balance->lots) {
      if (!lots.empty()) lots += "  ";
      char piece[80];
      std::snprintf(piece, sizeof piece, "#%" PRIu64 ":%" PRId64 "%s%.10s", lot.grant_id,
                    lot.remaining, lot.expires_at_us != 0 ? " until " : "",
                    lot.expires_at_us != 0 ? Rfc3339(lot.expires_at_us).c_str() : "");
      lots += piece;
    }
    std::printf("%-7" PRIu64 " %-7.*s %10" PRId64 " %8" PRId64 " %14" PRId64 "  %s\n", wallet_id,
                static_cast<int>(label.size()), label.data(), balance->available, balance->held,
                balance->expiring_soon, lots.c_str());
  }
}

void PrintSummary(const tally::Ledger& ledger, int64_t now_us) {
  absl::StatusOr<tally::OrgSummary> summary =
      ledger.GetOrgSummary(org_id, tally::Asset::Credits(), now_us);
  if (!summary.ok()) {
    std::printf("\nOrg summary: %s\n", std::string(summary.status().message()).c_str());
    return;
  }
  std::printf("\nOrg %" PRIu64 " summary (credits)\n", org_id);
  std::printf("  pool                  %10" PRId64 "\n", summary->pool);
  std::printf("  allocated             %10" PRId64 "\n", summary->allocated);
  std::printf("  total                 %10" PRId64 "\n", summary->total);
  std::printf("  wallets               %10" PRIu64 "\n", summary->wallets);
  std::printf("  pending requests      %10" PRIu64 "\n", summary->pending_requests);
  std::printf("  pending requested     %10" PRId64 "\n", summary->pending_requested);
  std::printf("  pool if all approved  %10" PRId64 "\n", summary->pool_if_all_approved);

  absl::StatusOr<tally::TotalsView> totals = ledger.GetTotals(org_id, tally::Asset::Credits());
  if (!totals.ok()) return;
  int64_t out = totals->available + totals->held + totals->spent + totals->expired +
                totals->voided + totals->adjusted_out;
  std::printf("\nOrg %" PRIu64 " totals (credits): in %" PRId64 " = available %" PRId64
              " + held %" PRId64 " + spent %" PRId64 " + expired %" PRId64 " + voided %" PRId64
              " + adjusted out %" PRId64 " -> %s\n",
              org_id, totals->in, totals->available, totals->held, totals->spent, totals->expired,
              totals->voided, totals->adjusted_out,
              out == totals->in ? "invariant holds" : "INVARIANT BROKEN");
}

void PrintHistory(const tally::Ledger& ledger, uint64_t wallet_id) {
  tally::HistoryQuery query{.org_id = org_id, .wallet_id = wallet_id, .limit = 50};
  absl::StatusOr<tally::HistoryPage> page = ledger.GetHistory(query);
  std::string_view label = Label(wallet_id);
  std::printf("\nHistory of %.*s (newest first)\n", static_cast<int>(label.size()), label.data());
  if (!page.ok()) {
    std::printf("  %s\n", std::string(page.status().message()).c_str());
    return;
  }
  std::printf("%5s  %-20s %-13s %-4s %7s %14s  %s\n", "seq", "time", "kind", "dir", "amount",
              "balance after", "reference");
  for (const tally::HistoryEntryView& entry : page->entries) {
    std::string_view kind = tally::HistoryKindName(entry.kind);
    std::printf("%5" PRIu64 "  %-20s %-13.*s %-4s %7" PRId64 " %14" PRId64 "  %s%s\n", entry.seq,
                Rfc3339(entry.time_us).c_str(), static_cast<int>(kind.size()), kind.data(),
                entry.out ? "out" : "in", entry.amount, entry.balance_after,
                entry.reference.c_str(), entry.held ? " (held)" : "");
  }
}

}  // namespace

int main() {
  Demo demo;
  std::printf("tally demo: one ledger, org %" PRIu64 ", starting %s\n\n", org_id,
              Rfc3339(demo.now_us()).c_str());

  // An org that hears about wallets dropping under 200 credits.
  demo.Run("create org 1001 (low balance under 200)",
           {.kind = CommandKind::org_create,
            .settings_mask = tally::setting_low_balance_threshold,
            .settings = {.low_balance_threshold = 200}});

  // The company buys credits: one lot that never expires, one promo lot that
  // expires in 30 days (spent first: sooner expiry goes first).
  demo.Run("top up pool 10000 (no expiry)",
           {.kind = CommandKind::topup, .amount = 10000, .text = "order PO-2026-001"});
  demo.Run("top up pool 2000 (expires in 30 days)",
           {.kind = CommandKind::topup,
            .amount = 2000,
            .expires_at_us = demo.now_us() + 30 * us_per_day,
            .text = "Q1 promo bundle"});

  for (uint64_t wallet_id : {alice, bob, carol, dave}) {
    std::string step = "add wallet ";
    step += Label(wallet_id);
    demo.Run(
        step,
        {.kind = CommandKind::wallet_upsert, .wallet_id = wallet_id, .text = Label(wallet_id)});
  }

  demo.Advance(5 * us_per_minute);
  const tally::WalletAmount split[] = {{alice, 1500}, {bob, 1000}, {carol, 800}};
  demo.Run("allocate alice 1500, bob 1000, carol 800",
           {.kind = CommandKind::allocate, .text = "January budget", .targets = split});
  demo.Run(
      "allocate 100 to every wallet",
      {.kind = CommandKind::allocate, .flags = tally::flag_all, .amount = 100, .text = "welcome"});
  const tally::WalletAmount too_much[] = {{carol, 50000}};
  demo.Run("allocate carol 50000 (more than the pool)",
           {.kind = CommandKind::allocate, .text = "oops", .targets = too_much});

  // A user asks for credits; the admin approves a smaller amount.
  demo.Advance(5 * us_per_minute);
  Result asked = demo.Run("dave requests 500", {.kind = CommandKind::request,
                                                .wallet_id = dave,
                                                .amount = 500,
                                                .text = "onboarding project",
                                                .actor = "dave"});
  demo.Run(
      "approve dave's request as 300",
      {.kind = CommandKind::approve, .target_id = asked.id, .amount = 300, .actor = "admin@acme"});

  // Metered use: a deduct, and its retry with the same op id.
  demo.Advance(5 * us_per_minute);
  demo.Run("alice: metered deduct 40", {.kind = CommandKind::deduct,
                                        .op_id = 9001,
                                        .wallet_id = alice,
                                        .amount = 40,
                                        .text = "report run r-17"});
  demo.Run("alice: same deduct retried (op id 9001)", {.kind = CommandKind::deduct,
                                                       .op_id = 9001,
                                                       .wallet_id = alice,
                                                       .amount = 40,
                                                       .text = "report run r-17"});

  // An invoice of 150 against a wallet holding 50: credits pay what they can.
  demo.Run("erin: welcome grant 50",
           {.kind = CommandKind::grant, .wallet_id = erin, .amount = 50, .text = "welcome"});
  demo.Run("erin: invoice 150, all or nothing",
           {.kind = CommandKind::deduct, .wallet_id = erin, .amount = 150, .text = "INV-2001"});
  demo.Run("erin: invoice 150, partial", {.kind = CommandKind::deduct,
                                          .flags = tally::flag_partial,
                                          .wallet_id = erin,
                                          .amount = 150,
                                          .text = "INV-2001"});

  // An unpaid invoice: 400 held (pending), 250 captured, the rest released.
  demo.Advance(5 * us_per_minute);
  Result hold = demo.Run("carol: hold 400 for INV-2002 (7 day timeout)",
                         {.kind = CommandKind::hold,
                          .wallet_id = carol,
                          .amount = 400,
                          .expires_at_us = demo.now_us() + 7 * us_per_day,
                          .text = "INV-2002"});
  demo.Run("carol: capture 250, the other 150 released",
           {.kind = CommandKind::capture, .target_id = hold.id, .amount = 250});

  // A compensation grant, partly spent, then voided: spent credits stay spent.
  demo.Advance(5 * us_per_minute);
  Result compensation = demo.Run("bob: compensation grant 200 (14 days)",
                                 {.kind = CommandKind::grant,
                                  .wallet_id = bob,
                                  .amount = 200,
                                  .expires_at_us = demo.now_us() + 14 * us_per_day,
                                  .text = "service compensation"});
  demo.Run("bob: metered deduct 120",
           {.kind = CommandKind::deduct, .wallet_id = bob, .amount = 120, .text = "lookup batch"});
  demo.Run(
      "void bob's compensation grant",
      {.kind = CommandKind::void_grant, .target_id = compensation.id, .text = "granted in error"});

  // A purchased package that will be "expiring soon" at the end.
  demo.Run("carol: purchased package 300 (45 days)",
           {.kind = CommandKind::grant,
            .wallet_id = carol,
            .amount = 300,
            .expires_at_us = demo.now_us() + 45 * us_per_day,
            .text = "package PK-300"});

  // A user leaves: the unused credits go back to the pool.
  demo.Advance(5 * us_per_minute);
  demo.Run("delete dave's wallet", {.kind = CommandKind::wallet_delete, .wallet_id = dave});

  // A month passes: the promo lots allocated on day one expire, wherever they are.
  demo.Advance(31 * us_per_day);
  std::printf("\n... 31 days later, %s\n", Rfc3339(demo.now_us()).c_str());
  demo.Run("expire sweep", {.kind = CommandKind::expire_sweep});

  PrintBalances(demo.ledger(), demo.now_us());
  PrintSummary(demo.ledger(), demo.now_us());
  PrintHistory(demo.ledger(), bob);
  std::printf("\nDigest %016" PRIx64 "\n", demo.ledger().Digest());
  return 0;
}
