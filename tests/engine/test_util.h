// test_util.h: a small harness for driving a Ledger through its public API.
//
// Tests read as the story a user lives, so the harness keeps the clock, hands
// out fresh operation ids and builds commands by name:
//
//   tally::testing::Harness h;
//   h.Ok(OrgCreate(kOrg));
//   h.Ok(Topup(kOrg, 1000));
//   Result r = h.Apply(Deduct(kOrg, 0, 30));
//   EXPECT_EQ(h.Available(kOrg, 0), 970);
//
// Commands built here do not own their texts or targets (like every Command):
// keep the strings and target vectors alive until the command is applied.
#ifndef TALLY_TESTS_ENGINE_TEST_UTIL_H_
#define TALLY_TESTS_ENGINE_TEST_UTIL_H_

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/ledger.h"
#include "gtest/gtest.h"
#include "tally/command.h"
#include "tally/commands.h"
#include "tally/query.h"
#include "tally/result_code.h"

namespace tally {

// Readable failure messages for the engine's enums and assets (found by ADL).
inline void PrintTo(ResultCode code, std::ostream* os) { *os << ResultCodeName(code); }
inline void PrintTo(EventKind kind, std::ostream* os) { *os << EventKindName(kind); }
inline void PrintTo(HistoryKind kind, std::ostream* os) { *os << HistoryKindName(kind); }
inline void PrintTo(RequestStatus status, std::ostream* os) { *os << RequestStatusName(status); }
inline void PrintTo(const Asset& asset, std::ostream* os) { *os << '"' << asset.name() << '"'; }

}  // namespace tally

namespace tally::testing {

// Times are microseconds since the epoch.  kT0 is a whole minute
// (2023-11-14T22:14:00Z) so rollup intervals start at a known place.
inline constexpr int64_t kMs = 1000;
inline constexpr int64_t kSecond = 1000 * kMs;
inline constexpr int64_t kMinute = 60 * kSecond;
inline constexpr int64_t kHour = 60 * kMinute;
inline constexpr int64_t kDay = 24 * kHour;
inline constexpr int64_t kT0 = int64_t{1'700'000'040} * kSecond;
static_assert(kT0 % kMinute == 0);

inline constexpr uint64_t kOrg = 1;
inline constexpr uint64_t kPool = 0;
// An org id no test creates; commands on it are refused identically everywhere.
inline constexpr uint64_t kNoSuchOrg = 0xdead'beefULL;

inline Asset Credits() { return Asset::Credits(); }
inline Asset Usd() { return Asset::Parse("USD").value(); }

// Command builders: include/tally/commands.h.
using namespace ::tally::cmd;

// ---- Printing, so failures say which code came back ----------------------

inline std::string Describe(const Result& r) {
  return std::string(ResultCodeName(r.code)) + (r.replayed ? " (replayed)" : "") +
         " id=" + std::to_string(r.id) + " n=[" + std::to_string(r.n[0]) + ", " +
         std::to_string(r.n[1]) + ", " + std::to_string(r.n[2]) + "]";
}

inline std::vector<EventKind> Kinds(const std::vector<Event>& events) {
  std::vector<EventKind> kinds;
  for (const Event& e : events) kinds.push_back(e.kind);
  return kinds;
}

inline size_t CountEvents(const std::vector<Event>& events, EventKind kind) {
  size_t n = 0;
  for (const Event& e : events) n += e.kind == kind ? 1 : 0;
  return n;
}

// ---- The harness ----------------------------------------------------------

class Harness {
 public:
  explicit Harness(const LedgerOptions& options = {}) : ledger_(options) {}

  Ledger& ledger() { return ledger_; }
  const Ledger& ledger() const { return ledger_; }
  int64_t now() const { return now_us_; }
  void Advance(int64_t us) { now_us_ += us; }
  void SetNow(int64_t us) { now_us_ = us; }
  uint64_t NextOpId() { return next_op_id_++; }

  // Apply applies one command at now(); op_id 0 is replaced by a fresh id
  // (expire_sweep keeps 0).  Use ApplyRaw to send op id 0 on purpose.
  Result Apply(Command c) {
    if (c.op_id == 0 && c.kind != CommandKind::expire_sweep) c.op_id = NextOpId();
    return ApplyRaw(c);
  }

  Result ApplyRaw(const Command& c) {
    ledger_.Apply(now_us_, std::span<const Command>(&c, 1), &out_);
    EXPECT_EQ(out_.results.size(), 1u);
    return out_.results.empty() ? Result{} : out_.results[0];
  }

  // ApplyBatch applies several commands in one batch (op ids filled in).
  std::vector<Result> ApplyBatch(std::vector<Command> commands) {
    for (Command& c : commands) {
      if (c.op_id == 0 && c.kind != CommandKind::expire_sweep) c.op_id = NextOpId();
    }
    ledger_.Apply(now_us_, commands, &out_);
    EXPECT_EQ(out_.results.size(), commands.size());
    return out_.results;
  }

  // Ok applies and asserts success, returning the result.
  Result Ok(const Command& c) {
    Result r = Apply(c);
    EXPECT_EQ(r.code, ResultCode::ok) << Describe(r);
    return r;
  }

  // Events of the last Apply.
  const std::vector<Event>& events() const { return out_.events; }
  const BatchOutput& output() const { return out_; }

  Balance GetBalance(uint64_t org, uint64_t wallet, Asset asset = Asset::Credits()) const {
    auto b = ledger_.GetBalance(org, wallet, asset, now_us_);
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? *b : Balance{};
  }
  int64_t Available(uint64_t org, uint64_t wallet, Asset asset = Asset::Credits()) const {
    return GetBalance(org, wallet, asset).available;
  }
  int64_t Held(uint64_t org, uint64_t wallet, Asset asset = Asset::Credits()) const {
    return GetBalance(org, wallet, asset).held;
  }
  OrgSummary Summary(uint64_t org, Asset asset = Asset::Credits()) const {
    auto s = ledger_.GetOrgSummary(org, asset, now_us_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : OrgSummary{};
  }
  TotalsView Totals(uint64_t org, Asset asset = Asset::Credits()) const {
    auto t = ledger_.GetTotals(org, asset);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : TotalsView{};
  }
  std::vector<RequestView> Requests(uint64_t org, RequestStatus status) const {
    auto r = ledger_.GetRequests(org, status);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<RequestView>{};
  }

  // History returns every in-memory entry the query selects, newest first,
  // following cursors page by page (`page_limit` entries a page).
  std::vector<HistoryEntryView> History(HistoryQuery q, uint32_t page_limit = 100) const {
    std::vector<HistoryEntryView> all;
    q.limit = page_limit;
    q.cursor = 0;
    for (int pages = 0; pages < 100000; ++pages) {
      auto page = ledger_.GetHistory(q);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      EXPECT_LE(page->entries.size(), page_limit);
      all.insert(all.end(), page->entries.begin(), page->entries.end());
      if (page->next_cursor == 0) break;
      q.cursor = page->next_cursor;
    }
    return all;
  }
  std::vector<HistoryEntryView> WalletHistory(uint64_t org, uint64_t wallet,
                                              uint32_t page_limit = 100) const {
    HistoryQuery q;
    q.org_id = org;
    q.wallet_id = wallet;
    return History(q, page_limit);
  }

 private:
  Ledger ledger_;
  int64_t now_us_ = kT0;
  uint64_t next_op_id_ = 1;
  BatchOutput out_;
};

// ExpectInvariant checks SPEC §1 for one org and asset: everything that came
// in is available, held, spent, expired, voided or adjusted out; no counter is
// negative.
inline void ExpectInvariant(const Harness& h, uint64_t org, Asset asset = Asset::Credits()) {
  TotalsView t = h.Totals(org, asset);
  EXPECT_EQ(t.in, t.available + t.held + t.spent + t.expired + t.voided + t.adjusted_out)
      << "in=" << t.in << " available=" << t.available << " held=" << t.held << " spent=" << t.spent
      << " expired=" << t.expired << " voided=" << t.voided << " adjusted_out=" << t.adjusted_out;
  EXPECT_GE(t.available, 0);
  EXPECT_GE(t.held, 0);
  EXPECT_GE(t.spent, 0);
  EXPECT_GE(t.expired, 0);
  EXPECT_GE(t.voided, 0);
  EXPECT_GE(t.adjusted_out, 0);
}

// A refused command is remembered under its op id (docs/ENGINE.md), so the
// Digest right after a refusal may differ from the one before by that memory
// alone.  ExpectRefusalChangesNothing proves "nothing else changed": it builds
// two ledgers with `setup`, sends `refused` to one and an unrelated refusal
// (under the same op id) to the other, then makes both forget every op id by
// letting the retention window pass twice, and compares the digests.
inline void ExpectRefusalChangesNothing(const std::function<void(Harness&)>& setup, Command refused,
                                        ResultCode expected) {
  Harness a;
  Harness b;
  setup(a);
  setup(b);
  ASSERT_EQ(a.ledger().Digest(), b.ledger().Digest()) << "setup is not deterministic";
  const uint64_t entries_before = a.ledger().history_entries_total();
  const uint64_t wallets_before = a.ledger().wallet_count();
  const uint64_t orgs_before = a.ledger().org_count();

  const uint64_t op = a.NextOpId();
  b.NextOpId();
  if (refused.op_id == 0 && refused.kind != CommandKind::expire_sweep) refused.op_id = op;
  Result ra = a.ApplyRaw(refused);
  EXPECT_EQ(ra.code, expected) << Describe(ra);
  EXPECT_FALSE(ra.replayed);
  EXPECT_TRUE(a.events().empty()) << "a refusal raised events";
  EXPECT_EQ(a.ledger().history_entries_total(), entries_before) << "a refusal wrote history";
  EXPECT_EQ(a.ledger().wallet_count(), wallets_before) << "a refusal created a wallet";
  EXPECT_EQ(a.ledger().org_count(), orgs_before) << "a refusal created an org";

  Command other = Deduct(kNoSuchOrg, 1, 1);
  other.op_id = refused.op_id;
  Result rb = b.ApplyRaw(other);
  EXPECT_EQ(rb.code, ResultCode::unknown_org) << Describe(rb);

  // Each round passes the retention window, so the op-id generation in use
  // is retired; two rounds forget it.  The fillers are identical on both.
  for (int round = 0; round < 3; ++round) {
    a.Advance(op_ids_retention_us_default + kHour);
    b.Advance(op_ids_retention_us_default + kHour);
    Command filler = Deduct(kNoSuchOrg, 1, 1);
    a.Apply(filler);
    b.Apply(filler);
  }
  EXPECT_EQ(a.ledger().Digest(), b.ledger().Digest())
      << "the refusal (" << ResultCodeName(expected) << ") changed state beyond op-id memory";
}

}  // namespace tally::testing

#endif  // TALLY_TESTS_ENGINE_TEST_UTIL_H_
