// ledger_test.cc: the engine's behaviour, through the public Ledger API only.
//
// The first tests are the seed workflows of SPEC §2, each written as the story
// a user lives.  Then one test per result code the engine can give (each
// proving the refusal changed nothing), the events, and the queries.  The
// source of truth is docs/ENGINE.md.
#include "engine/ledger.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/engine/test_util.h"

namespace tally::testing {
namespace {

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();

// An org with a funded pool: the start of most stories.
void FundedOrg(Harness& h, int64_t pool, const OrgSettings& settings = {}) {
  h.Ok(OrgCreate(kOrg, settings));
  if (pool > 0) h.Ok(Topup(kOrg, pool));
}

std::vector<uint64_t> Ids(const std::vector<LotView>& lots) {
  std::vector<uint64_t> ids;
  for (const LotView& l : lots) ids.push_back(l.grant_id);
  return ids;
}

std::vector<HistoryKind> KindsOf(const std::vector<HistoryEntryView>& entries) {
  std::vector<HistoryKind> kinds;
  for (const HistoryEntryView& e : entries) kinds.push_back(e.kind);
  return kinds;
}

int64_t SumOf(const std::vector<HistoryEntryView>& entries, HistoryKind kind) {
  int64_t sum = 0;
  for (const HistoryEntryView& e : entries) sum += e.kind == kind ? e.amount : 0;
  return sum;
}

const UsageRow* FindUsage(const std::vector<UsageRow>& rows, uint64_t wallet, Asset asset) {
  for (const UsageRow& r : rows) {
    if (r.wallet_id == wallet && r.asset == asset) return &r;
  }
  return nullptr;
}

// ===========================================================================
// Seed workflows
// ===========================================================================

TEST(LedgerWorkflow, BulkAllocationToAllUsersBeyondPoolIsRefusedWithNumbersAndChangesNothing) {
  auto setup = [](Harness& h) {
    FundedOrg(h, 1000);
    for (uint64_t w : {1, 2, 3}) h.Ok(WalletUpsert(kOrg, w));
    // Everyone gets 100: pool 1000 -> 700.
    Result r = h.Ok(AllocateAll(kOrg, 100));
    EXPECT_EQ(r.pool_before(), 1000);
    EXPECT_EQ(r.allocated(), 300);
    EXPECT_EQ(r.pool_after(), 700);
    EXPECT_EQ(CountEvents(h.events(), EventKind::credits_allocated), 3u);
  };
  Harness h;
  setup(h);
  for (uint64_t w : {1, 2, 3}) EXPECT_EQ(h.Available(kOrg, w), 100);
  EXPECT_EQ(h.Available(kOrg, kPool), 700);
  const uint64_t entries = h.ledger().history_entries_total();

  // Then the admin tries 300 each: 900 asked, 700 there.
  Result r = h.Apply(AllocateAll(kOrg, 300));
  EXPECT_EQ(r.code, ResultCode::insufficient_pool) << Describe(r);
  EXPECT_EQ(r.available(), 700);
  EXPECT_EQ(r.requested(), 900);
  EXPECT_EQ(r.shortfall(), 200);
  EXPECT_TRUE(h.events().empty());
  for (uint64_t w : {1, 2, 3}) EXPECT_EQ(h.Available(kOrg, w), 100);
  EXPECT_EQ(h.Available(kOrg, kPool), 700);
  EXPECT_EQ(h.ledger().history_entries_total(), entries);
  OrgSummary s = h.Summary(kOrg);
  EXPECT_EQ(s.pool, 700);
  EXPECT_EQ(s.allocated, 300);
  ExpectInvariant(h, kOrg);

  // The same with a chosen list: one short target refuses the whole list.
  std::vector<WalletAmount> targets = {{1, 200}, {4, 400}, {2, 150}};
  r = h.Apply(Allocate(kOrg, targets));
  EXPECT_EQ(r.code, ResultCode::insufficient_pool) << Describe(r);
  EXPECT_EQ(r.available(), 700);
  EXPECT_EQ(r.requested(), 750);
  EXPECT_EQ(r.shortfall(), 50);
  EXPECT_EQ(h.Available(kOrg, 1), 100);
  EXPECT_EQ(h.Available(kOrg, 2), 100);
  EXPECT_FALSE(h.ledger().GetBalance(kOrg, 4, Credits(), h.now()).ok())
      << "a refused allocation created a wallet";

  // And the Digest: the refusal changed nothing but the op-id memory.
  ExpectRefusalChangesNothing(setup, AllocateAll(kOrg, 300), ResultCode::insufficient_pool);
}

TEST(LedgerWorkflow, ReclaimingCreditsGrowsThePool) {
  Harness h;
  h.Ok(OrgCreate(kOrg));
  const int64_t expiry = h.now() + 10 * kDay;
  const uint64_t g1 = h.Ok(Topup(kOrg, 1000, expiry)).id;
  const uint64_t g2 = h.Ok(Topup(kOrg, 500)).id;
  // The pool spends its soonest-expiring lot first: the user gets 600 of g1.
  std::vector<WalletAmount> targets = {{5, 600}};
  Result r = h.Ok(Allocate(kOrg, targets));
  EXPECT_EQ(r.pool_before(), 1500);
  EXPECT_EQ(r.pool_after(), 900);
  Balance w = h.GetBalance(kOrg, 5);
  ASSERT_EQ(w.lots.size(), 1u);
  EXPECT_EQ(w.lots[0].grant_id, g1);
  EXPECT_EQ(w.lots[0].expires_at_us, expiry);

  // The admin takes 200 back: the pool grows by 200, the lot keeps its expiry.
  r = h.Ok(Reclaim(kOrg, 5, 200));
  EXPECT_EQ(r.applied(), 200);
  EXPECT_EQ(r.remainder(), 0);
  EXPECT_EQ(r.balance_after(), 400);
  EXPECT_EQ(h.Available(kOrg, 5), 400);
  Balance pool = h.GetBalance(kOrg, kPool);
  EXPECT_EQ(pool.available, 1100);
  ASSERT_EQ(pool.lots.size(), 2u) << "the returned piece merges with its grant's lot";
  EXPECT_EQ(pool.lots[0].grant_id, g1);
  EXPECT_EQ(pool.lots[0].remaining, 600);
  EXPECT_EQ(pool.lots[0].expires_at_us, expiry);
  EXPECT_EQ(pool.lots[1].grant_id, g2);
  EXPECT_EQ(pool.lots[1].remaining, 500);

  // Then everything: the wallet is empty, the pool has it all again.
  r = h.Ok(ReclaimAll(kOrg, 5));
  EXPECT_EQ(r.applied(), 400);
  EXPECT_EQ(r.balance_after(), 0);
  EXPECT_EQ(h.Available(kOrg, 5), 0);
  EXPECT_EQ(h.Available(kOrg, kPool), 1500);
  // Reclaiming all of nothing is fine.
  r = h.Ok(ReclaimAll(kOrg, 5));
  EXPECT_EQ(r.applied(), 0);

  // Both sides wrote history: the wallet out, the pool in.
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 5);
  EXPECT_EQ(SumOf(wh, HistoryKind::reclaim), 600);
  for (const auto& e : wh) {
    if (e.kind == HistoryKind::reclaim) {
      EXPECT_TRUE(e.out);
    }
  }
  std::vector<HistoryEntryView> ph = h.WalletHistory(kOrg, kPool);
  EXPECT_EQ(SumOf(ph, HistoryKind::reclaim), 600);
  for (const auto& e : ph) {
    if (e.kind == HistoryKind::reclaim) {
      EXPECT_FALSE(e.out);
    }
  }
  // Reclaimed credits still expire with their grant.
  h.Advance(11 * kDay);
  EXPECT_EQ(h.Available(kOrg, kPool), 500);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, DeletedUsersCreditsReturnToThePool) {
  Harness h;
  FundedOrg(h, 1000);
  std::vector<WalletAmount> targets = {{7, 300}, {8, 100}};
  h.Ok(Allocate(kOrg, targets));
  const uint64_t hold = h.Ok(Hold(kOrg, 7, 100)).id;
  const uint64_t request = h.Ok(Request(kOrg, 7, 50, "more please")).id;
  h.Ok(Deduct(kOrg, 7, 20));
  EXPECT_EQ(h.Available(kOrg, 7), 180);
  EXPECT_EQ(h.Held(kOrg, 7), 100);
  const size_t history_before = h.WalletHistory(kOrg, 7).size();

  // The user leaves the company.
  Result r = h.Ok(WalletDelete(kOrg, 7));
  EXPECT_EQ(r.n[0], 280) << "moved: 180 available + 100 released from the hold";
  EXPECT_EQ(r.n[2], 880) << "pool balance after";
  EXPECT_EQ(h.Available(kOrg, kPool), 880);
  EXPECT_EQ(CountEvents(h.events(), EventKind::request_rejected), 1u);

  // Open holds are released (the hold is gone), pending requests rejected.
  EXPECT_EQ(h.Apply(Capture(kOrg, hold, 10)).code, ResultCode::unknown_hold);
  EXPECT_EQ(h.Apply(Release(kOrg, hold)).code, ResultCode::unknown_hold);
  EXPECT_TRUE(h.Requests(kOrg, RequestStatus::pending).empty());
  std::vector<RequestView> rejected = h.Requests(kOrg, RequestStatus::rejected);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].request_id, request);
  EXPECT_EQ(rejected[0].wallet_id, 7u);
  EXPECT_EQ(rejected[0].decision_note, "wallet deleted");

  // History is kept, and ends with the release and the return to the pool.
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 7);
  EXPECT_GT(wh.size(), history_before);
  ASSERT_FALSE(wh.empty());
  EXPECT_EQ(wh.front().kind, HistoryKind::wallet_delete);
  EXPECT_TRUE(wh.front().out);
  EXPECT_EQ(wh.front().balance_after, 0);
  EXPECT_EQ(SumOf(wh, HistoryKind::wallet_delete), 280);
  EXPECT_EQ(SumOf(wh, HistoryKind::release), 100);
  std::vector<HistoryEntryView> ph = h.WalletHistory(kOrg, kPool);
  EXPECT_EQ(SumOf(ph, HistoryKind::wallet_delete), 280);

  // The org no longer counts the user.
  OrgSummary s = h.Summary(kOrg);
  EXPECT_EQ(s.wallets, 1u);
  EXPECT_EQ(s.pool, 880);
  EXPECT_EQ(s.allocated, 100);
  EXPECT_EQ(s.total, 980);
  EXPECT_EQ(s.pending_requests, 0u);
  ExpectInvariant(h, kOrg);

  // The id may come back: a later grant revives the wallet, empty.
  h.Ok(Grant(kOrg, 7, 10));
  EXPECT_EQ(h.Available(kOrg, 7), 10);
  EXPECT_EQ(h.Held(kOrg, 7), 0);
  EXPECT_EQ(h.Summary(kOrg).wallets, 2u);
}

TEST(LedgerWorkflow, RequestApprovedWithAdjustedAmount) {
  Harness h;
  FundedOrg(h, 1000);
  Result r = h.Ok(Request(kOrg, 3, 200, "conference travel"));
  const uint64_t request = r.id;
  EXPECT_NE(request, 0u);
  ASSERT_EQ(h.events().size(), 1u);
  EXPECT_EQ(h.events()[0].kind, EventKind::request_created);
  EXPECT_EQ(h.events()[0].id, request);

  std::vector<RequestView> pending = h.Requests(kOrg, RequestStatus::pending);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].request_id, request);
  EXPECT_EQ(pending[0].wallet_id, 3u);
  EXPECT_EQ(pending[0].amount, 200);
  EXPECT_EQ(pending[0].reason, "conference travel");
  EXPECT_EQ(pending[0].status, RequestStatus::pending);
  EXPECT_EQ(pending[0].created_at_us, h.now());

  // The admin approves 150 of the 200 asked.
  h.Advance(kMinute);
  r = h.Ok(Approve(kOrg, request, 150, "admin-ann"));
  EXPECT_EQ(r.id, request);
  EXPECT_EQ(r.pool_before(), 1000);
  EXPECT_EQ(r.allocated(), 150);
  EXPECT_EQ(r.pool_after(), 850);
  EXPECT_EQ(CountEvents(h.events(), EventKind::request_approved), 1u);
  EXPECT_EQ(CountEvents(h.events(), EventKind::credits_allocated), 1u);
  EXPECT_EQ(h.Available(kOrg, 3), 150);
  EXPECT_EQ(h.Available(kOrg, kPool), 850);

  EXPECT_TRUE(h.Requests(kOrg, RequestStatus::pending).empty());
  std::vector<RequestView> approved = h.Requests(kOrg, RequestStatus::approved);
  ASSERT_EQ(approved.size(), 1u);
  EXPECT_EQ(approved[0].amount, 200);
  EXPECT_EQ(approved[0].approved_amount, 150);
  EXPECT_EQ(approved[0].decided_by, "admin-ann");
  EXPECT_EQ(approved[0].decided_at_us, h.now());
  EXPECT_EQ(approved[0].status, RequestStatus::approved);

  // A decided request stays decided.
  EXPECT_EQ(h.Apply(Approve(kOrg, request)).code, ResultCode::already_decided);
  EXPECT_EQ(h.Apply(Reject(kOrg, request, "no")).code, ResultCode::already_decided);
  EXPECT_EQ(h.Available(kOrg, 3), 150);

  // Amount 0 approves as asked.
  const uint64_t second = h.Ok(Request(kOrg, 3, 40)).id;
  EXPECT_NE(second, request);
  r = h.Ok(Approve(kOrg, second));
  EXPECT_EQ(r.allocated(), 40);
  EXPECT_EQ(h.Available(kOrg, 3), 190);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, ApproveAllWhenPoolIsShortChangesNothing) {
  auto setup = [](Harness& h) {
    FundedOrg(h, 300);
    h.Ok(Request(kOrg, 1, 100));
    h.Ok(Request(kOrg, 2, 150));
    h.Ok(Request(kOrg, 3, 200));
    h.Ok(Request(kOrg, 4, 999, "dollars", Usd()));  // another asset: not in "all"
  };
  Harness h;
  setup(h);
  OrgSummary s = h.Summary(kOrg);
  EXPECT_EQ(s.pending_requests, 3u);
  EXPECT_EQ(s.pending_requested, 450);
  EXPECT_EQ(s.pool_if_all_approved, -150);

  Result r = h.Apply(ApproveAll(kOrg));
  EXPECT_EQ(r.code, ResultCode::insufficient_pool) << Describe(r);
  EXPECT_EQ(r.available(), 300);
  EXPECT_EQ(r.requested(), 450);
  EXPECT_EQ(r.shortfall(), 150);
  EXPECT_TRUE(h.events().empty());
  EXPECT_EQ(h.Requests(kOrg, RequestStatus::pending).size(), 4u);
  EXPECT_TRUE(h.Requests(kOrg, RequestStatus::approved).empty());
  EXPECT_EQ(h.Available(kOrg, kPool), 300);
  for (uint64_t w : {1, 2, 3}) {
    // A request need not create its wallet; where one exists it is empty.
    auto b = h.ledger().GetBalance(kOrg, w, Credits(), h.now());
    if (b.ok()) {
      EXPECT_EQ(b->available, 0);
    }
  }
  ExpectRefusalChangesNothing(setup, ApproveAll(kOrg), ResultCode::insufficient_pool);

  // After a topup the same approve-all goes through, in id order.
  h.Ok(Topup(kOrg, 150));
  r = h.Ok(ApproveAll(kOrg, Credits(), "admin"));
  EXPECT_EQ(r.pool_before(), 450);
  EXPECT_EQ(r.allocated(), 450);
  EXPECT_EQ(r.pool_after(), 0);
  EXPECT_EQ(CountEvents(h.events(), EventKind::request_approved), 3u);
  EXPECT_EQ(h.Available(kOrg, 1), 100);
  EXPECT_EQ(h.Available(kOrg, 2), 150);
  EXPECT_EQ(h.Available(kOrg, 3), 200);
  std::vector<RequestView> approved = h.Requests(kOrg, RequestStatus::approved);
  ASSERT_EQ(approved.size(), 3u);
  EXPECT_LT(approved[0].request_id, approved[1].request_id);
  EXPECT_LT(approved[1].request_id, approved[2].request_id);
  // The USD request is still pending.
  std::vector<RequestView> pending = h.Requests(kOrg, RequestStatus::pending);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].asset, Usd());
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, InvoiceOf150With50CreditsApplies50AndReturns100) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 50));
  // All or nothing by default.
  Result r = h.Apply(Deduct(kOrg, 1, 150));
  EXPECT_EQ(r.code, ResultCode::insufficient_funds);
  EXPECT_EQ(r.available(), 50);
  EXPECT_EQ(r.requested(), 150);
  EXPECT_EQ(r.shortfall(), 100);
  EXPECT_EQ(h.Available(kOrg, 1), 50);

  // The invoice run asks for partial application.
  r = h.Ok(Deduct(kOrg, 1, 150, /*partial=*/true));
  EXPECT_EQ(r.applied(), 50);
  EXPECT_EQ(r.remainder(), 100);
  EXPECT_EQ(r.balance_after(), 0);
  EXPECT_EQ(h.Available(kOrg, 1), 0);
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_depleted), 1u);
  EXPECT_EQ(h.Totals(kOrg).spent, 50);

  // The next invoice finds nothing: applied 0, still ok.
  r = h.Ok(Deduct(kOrg, 1, 70, /*partial=*/true));
  EXPECT_EQ(r.applied(), 0);
  EXPECT_EQ(r.remainder(), 70);
  EXPECT_EQ(r.balance_after(), 0);
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_depleted), 0u)
      << "depleted is raised when the balance reaches zero, not while it stays there";
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, LotsExpiringSoonestAreSpentFirst) {
  Harness h;
  FundedOrg(h, 0);
  const int64_t t = h.now();
  const uint64_t never = h.Ok(Grant(kOrg, 1, 10)).id;
  const uint64_t in30d = h.Ok(Grant(kOrg, 1, 10, t + 30 * kDay)).id;
  const uint64_t in10d = h.Ok(Grant(kOrg, 1, 10, t + 10 * kDay)).id;
  const uint64_t first_by_priority = h.Ok(Grant(kOrg, 1, 10, 0, /*priority=*/-1)).id;
  const uint64_t in10d_younger = h.Ok(Grant(kOrg, 1, 10, t + 10 * kDay)).id;
  const uint64_t last_by_priority = h.Ok(Grant(kOrg, 1, 10, t + 1 * kDay, /*priority=*/1)).id;

  // Priority first, then soonest expiry (never last), then oldest.
  Balance b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 60);
  EXPECT_EQ(Ids(b.lots), (std::vector<uint64_t>{first_by_priority, in10d, in10d_younger, in30d,
                                                never, last_by_priority}));

  h.Ok(Deduct(kOrg, 1, 15));
  b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(Ids(b.lots),
            (std::vector<uint64_t>{in10d, in10d_younger, in30d, never, last_by_priority}));
  EXPECT_EQ(b.lots[0].remaining, 5);

  h.Ok(Deduct(kOrg, 1, 10));
  b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(Ids(b.lots), (std::vector<uint64_t>{in10d_younger, in30d, never, last_by_priority}));
  EXPECT_EQ(b.lots[0].remaining, 5);

  h.Ok(Deduct(kOrg, 1, 20));
  b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(Ids(b.lots), (std::vector<uint64_t>{never, last_by_priority}));
  EXPECT_EQ(b.lots[0].remaining, 5);
  EXPECT_EQ(b.lots[1].remaining, 10);

  // Once a lot's expiry has passed it is never spent, even before a sweep.
  h.Advance(1 * kDay);
  b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 5);
  EXPECT_EQ(Ids(b.lots), (std::vector<uint64_t>{never}));
  Result r = h.Apply(Deduct(kOrg, 1, 6));
  EXPECT_EQ(r.code, ResultCode::insufficient_funds);
  EXPECT_EQ(r.available(), 5);
  r = h.Ok(Deduct(kOrg, 1, 6, /*partial=*/true));
  EXPECT_EQ(r.applied(), 5);
  EXPECT_EQ(r.remainder(), 1);
  // The expired lot stays, skipped, until the sweep removes it.
  EXPECT_EQ(h.Totals(kOrg).expired, 0);
  h.Ok(Sweep());
  EXPECT_EQ(h.Totals(kOrg).expired, 10);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, VoidedGrantIsNeverSpentAndSpentCreditsStaySpent) {
  Harness h;
  FundedOrg(h, 0);
  const uint64_t mistaken = h.Ok(Grant(kOrg, 1, 100)).id;
  const uint64_t other = h.Ok(Grant(kOrg, 1, 50, 0, /*priority=*/1)).id;
  h.Ok(Deduct(kOrg, 1, 30));  // from `mistaken`, spent for good

  Result r = h.Ok(VoidGrant(kOrg, mistaken, "issued by mistake"));
  EXPECT_EQ(r.n[0], 70);
  ASSERT_EQ(CountEvents(h.events(), EventKind::credits_voided), 1u);
  EXPECT_EQ(h.events()[0].wallet_id, 1u);
  EXPECT_EQ(h.events()[0].amount, 70);
  Balance b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 50);
  EXPECT_EQ(Ids(b.lots), (std::vector<uint64_t>{other}));
  TotalsView t = h.Totals(kOrg);
  EXPECT_EQ(t.spent, 30);
  EXPECT_EQ(t.voided, 70);

  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_FALSE(wh.empty());
  EXPECT_EQ(wh[0].kind, HistoryKind::void_grant);
  EXPECT_TRUE(wh[0].out);
  EXPECT_EQ(wh[0].amount, 70);
  EXPECT_EQ(wh[0].balance_after, 50);
  EXPECT_EQ(wh[0].reference, "issued by mistake");
  EXPECT_EQ(wh[0].related_id, mistaken);

  // The voided credits are not there to spend.
  r = h.Apply(Deduct(kOrg, 1, 60));
  EXPECT_EQ(r.code, ResultCode::insufficient_funds);
  EXPECT_EQ(r.available(), 50);
  EXPECT_EQ(h.Apply(VoidGrant(kOrg, mistaken)).code, ResultCode::grant_voided);

  // A pool grant spread over the pool, two wallets and a hold: every piece goes.
  const uint64_t spread = h.Ok(Topup(kOrg, 100)).id;
  std::vector<WalletAmount> targets = {{2, 40}, {3, 30}};
  h.Ok(Allocate(kOrg, targets));
  h.Ok(Hold(kOrg, 2, 10));
  r = h.Ok(VoidGrant(kOrg, spread, "chargeback"));
  EXPECT_EQ(r.n[0], 100);
  EXPECT_EQ(CountEvents(h.events(), EventKind::credits_voided), 4u)
      << "one per piece: the pool's, wallet 2's available and held pieces, wallet 3's";
  std::map<uint64_t, int> voided_events;  // by wallet
  int64_t voided_from_wallet_2 = 0;
  for (const Event& e : h.events()) {
    if (e.kind != EventKind::credits_voided) continue;
    ++voided_events[e.wallet_id];
    if (e.wallet_id == 2) voided_from_wallet_2 += e.amount;
  }
  EXPECT_EQ(voided_events, (std::map<uint64_t, int>{{0, 1}, {2, 2}, {3, 1}}))
      << "credits.voided is raised per piece removed";
  EXPECT_EQ(voided_from_wallet_2, 40) << "30 available + 10 held";
  EXPECT_EQ(h.Available(kOrg, kPool), 0);
  EXPECT_EQ(h.Available(kOrg, 2), 0);
  EXPECT_EQ(h.Held(kOrg, 2), 0);
  EXPECT_EQ(h.Available(kOrg, 3), 0);
  bool held_void = false;
  for (const auto& e : h.WalletHistory(kOrg, 2)) {
    if (e.kind == HistoryKind::void_grant && e.held) {
      held_void = true;
      EXPECT_EQ(e.amount, 10);
    }
  }
  EXPECT_TRUE(held_void) << "the held piece is voided with held = true";
  EXPECT_EQ(h.Totals(kOrg).voided, 170);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, HoldShowsAsPendingIsCapturedPartlyAndTheRestReleased) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 100));

  // An unpaid invoice of 60 reserves credits: they show as pending.
  Result r = h.Ok(Hold(kOrg, 1, 60));
  const uint64_t hold = r.id;
  EXPECT_NE(hold, 0u);
  EXPECT_EQ(r.applied(), 60);
  EXPECT_EQ(r.remainder(), 0);
  EXPECT_EQ(r.balance_after(), 40);
  Balance b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 40);
  EXPECT_EQ(b.held, 60);
  EXPECT_EQ(h.Totals(kOrg).held, 60);
  // Held credits cannot be spent.
  EXPECT_EQ(h.Apply(Deduct(kOrg, 1, 41)).code, ResultCode::insufficient_funds);

  // The invoice settles at 45: 45 spent, 15 back.
  r = h.Ok(Capture(kOrg, hold, 45));
  EXPECT_EQ(r.applied(), 45);
  EXPECT_EQ(r.remainder(), 0);
  EXPECT_EQ(r.balance_after(), 55);
  b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 55);
  EXPECT_EQ(b.held, 0);
  TotalsView t = h.Totals(kOrg);
  EXPECT_EQ(t.spent, 45);
  EXPECT_EQ(t.held, 0);
  // The hold is closed.
  EXPECT_EQ(h.Apply(Capture(kOrg, hold, 1)).code, ResultCode::unknown_hold);
  EXPECT_EQ(h.Apply(Release(kOrg, hold)).code, ResultCode::unknown_hold);

  // History: hold out of available, capture of held credits, release back.
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_GE(wh.size(), 4u);
  const std::vector<HistoryKind> kinds = KindsOf(wh);
  EXPECT_EQ(std::vector<HistoryKind>(kinds.begin(), kinds.begin() + 4),
            (std::vector<HistoryKind>{HistoryKind::release, HistoryKind::capture, HistoryKind::hold,
                                      HistoryKind::grant}));
  EXPECT_EQ(wh[2].amount, 60);
  EXPECT_TRUE(wh[2].out);
  EXPECT_EQ(wh[2].balance_after, 40);
  EXPECT_EQ(wh[1].amount, 45);
  EXPECT_TRUE(wh[1].held);
  EXPECT_EQ(wh[1].balance_after, 40) << "a capture moves held credits: available unchanged";
  EXPECT_EQ(wh[0].amount, 15);
  EXPECT_FALSE(wh[0].out);
  EXPECT_EQ(wh[0].balance_after, 55);

  // Capturing more than held spends the hold and says what is left.
  const uint64_t second = h.Ok(Hold(kOrg, 1, 30)).id;
  r = h.Ok(Capture(kOrg, second, 50));
  EXPECT_EQ(r.applied(), 30);
  EXPECT_EQ(r.remainder(), 20);
  EXPECT_EQ(r.balance_after(), 25);

  // A plain release returns everything.
  const uint64_t third = h.Ok(Hold(kOrg, 1, 20)).id;
  EXPECT_EQ(h.Available(kOrg, 1), 5);
  r = h.Ok(Release(kOrg, third));
  EXPECT_EQ(r.n[0], 20);
  EXPECT_EQ(r.n[2], 25);
  EXPECT_EQ(h.Available(kOrg, 1), 25);
  EXPECT_EQ(h.Held(kOrg, 1), 0);

  // A partial hold takes what is there; with nothing there, no hold is made.
  r = h.Ok(Hold(kOrg, 1, 40, 0, /*partial=*/true));
  EXPECT_EQ(r.applied(), 25);
  EXPECT_EQ(r.remainder(), 15);
  EXPECT_NE(r.id, 0u);
  r = h.Ok(Hold(kOrg, 1, 40, 0, /*partial=*/true));
  EXPECT_EQ(r.applied(), 0);
  EXPECT_EQ(r.id, 0u);
  r = h.Apply(Hold(kOrg, 1, 1));
  EXPECT_EQ(r.code, ResultCode::insufficient_funds);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, HoldTimesOut) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 100));

  // Timed out by the sweep, with no other traffic.
  h.Ok(Hold(kOrg, 1, 40, h.now() + kHour));
  EXPECT_EQ(h.Available(kOrg, 1), 60);
  h.Advance(2 * kHour);
  Result r = h.Ok(Sweep());
  EXPECT_EQ(r.n[0], 0) << "lots expired";
  EXPECT_EQ(r.n[1], 1) << "holds released";
  EXPECT_EQ(r.n[2], 0) << "more remaining";
  EXPECT_EQ(h.Available(kOrg, 1), 100);
  EXPECT_EQ(h.Held(kOrg, 1), 0);
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_FALSE(wh.empty());
  EXPECT_EQ(wh[0].kind, HistoryKind::release);
  EXPECT_EQ(wh[0].amount, 40);
  EXPECT_EQ(wh[0].balance_after, 100);

  // Captured after its timeout: released, and the answer is hold_expired.
  const uint64_t late = h.Ok(Hold(kOrg, 1, 30, h.now() + kHour)).id;
  h.Advance(kHour + kSecond);
  r = h.Apply(Capture(kOrg, late, 30));
  EXPECT_EQ(r.code, ResultCode::hold_expired) << Describe(r);
  EXPECT_EQ(h.Available(kOrg, 1), 100);
  EXPECT_EQ(h.Held(kOrg, 1), 0);
  EXPECT_EQ(h.Totals(kOrg).spent, 0);
  EXPECT_EQ(h.Apply(Capture(kOrg, late, 30)).code, ResultCode::unknown_hold);

  // A timeout must be in the future.
  EXPECT_EQ(h.Apply(Hold(kOrg, 1, 10, h.now())).code, ResultCode::invalid_time);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, PromoBalanceSetToAnAbsoluteAmount) {
  Harness h;
  FundedOrg(h, 0);
  const uint64_t welcome = h.Ok(Grant(kOrg, 1, 100, h.now() + 5 * kDay)).id;

  Command up = AdjustTo(kOrg, 1, 250);
  up.text = "promo reset";
  Result r = h.Ok(up);
  EXPECT_EQ(r.n[0], 150) << "signed change";
  EXPECT_EQ(r.balance_after(), 250);
  EXPECT_EQ(CountEvents(h.events(), EventKind::credits_granted), 1u);
  Balance b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 250);
  ASSERT_EQ(b.lots.size(), 2u);
  EXPECT_EQ(b.lots[0].grant_id, welcome);
  EXPECT_EQ(b.lots[1].remaining, 150);
  EXPECT_EQ(b.lots[1].expires_at_us, 0);
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_FALSE(wh.empty());
  EXPECT_EQ(wh[0].kind, HistoryKind::adjust);
  EXPECT_FALSE(wh[0].out);
  EXPECT_EQ(wh[0].amount, 150);
  EXPECT_EQ(wh[0].reference, "promo reset");

  // Down to 80: spent in consumption order (the expiring welcome lot first).
  r = h.Ok(AdjustTo(kOrg, 1, 80));
  EXPECT_EQ(r.n[0], -170);
  EXPECT_EQ(r.balance_after(), 80);
  b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 80);
  ASSERT_EQ(b.lots.size(), 1u);
  EXPECT_NE(b.lots[0].grant_id, welcome);
  TotalsView t = h.Totals(kOrg);
  EXPECT_EQ(t.in, 250);
  EXPECT_EQ(t.adjusted_out, 170);
  EXPECT_EQ(t.spent, 0) << "an adjustment down is not spending";
  wh = h.WalletHistory(kOrg, 1);
  EXPECT_EQ(wh[0].kind, HistoryKind::adjust);
  EXPECT_TRUE(wh[0].out);
  EXPECT_EQ(wh[0].amount, 170);

  // Setting what is already there changes nothing and writes no history.
  const uint64_t entries = h.ledger().history_entries_total();
  r = h.Ok(AdjustTo(kOrg, 1, 80));
  EXPECT_EQ(r.n[0], 0);
  EXPECT_EQ(h.ledger().history_entries_total(), entries);

  // To zero is allowed; below zero is not.
  r = h.Ok(AdjustTo(kOrg, 1, 0));
  EXPECT_EQ(r.n[0], -80);
  EXPECT_EQ(h.Available(kOrg, 1), 0);
  EXPECT_EQ(h.Apply(AdjustTo(kOrg, 1, -1)).code, ResultCode::invalid_amount);

  // Deltas work too; a delta below the balance is refused.
  r = h.Ok(Adjust(kOrg, 1, 30));
  EXPECT_EQ(r.balance_after(), 30);
  r = h.Apply(Adjust(kOrg, 1, -31));
  EXPECT_EQ(r.code, ResultCode::insufficient_funds);
  EXPECT_EQ(h.Apply(Adjust(kOrg, 1, 0)).code, ResultCode::invalid_amount);
  r = h.Ok(Adjust(kOrg, 1, -30));
  EXPECT_EQ(r.balance_after(), 0);

  // An upward adjust can carry an expiry and a priority, like any lot.
  Command promo = AdjustTo(kOrg, 1, 10);
  promo.expires_at_us = h.now() + kDay;
  promo.priority = -5;
  h.Ok(promo);
  b = h.GetBalance(kOrg, 1);
  ASSERT_EQ(b.lots.size(), 1u);
  EXPECT_EQ(b.lots[0].expires_at_us, h.now() + kDay);
  EXPECT_EQ(b.lots[0].priority, -5);

  // The pool can be adjusted too.
  r = h.Ok(AdjustTo(kOrg, kPool, 500));
  EXPECT_EQ(h.Available(kOrg, kPool), 500);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerWorkflow, HistoryRunningBalancesAddUp) {
  Harness h;
  FundedOrg(h, 1000);
  std::vector<WalletAmount> targets = {{1, 300}, {2, 50}};
  h.Ok(Allocate(kOrg, targets));
  h.Ok(Grant(kOrg, 1, 500, 0, 0, Usd()));
  h.Advance(kSecond);
  h.Ok(Deduct(kOrg, 1, 25));
  h.Ok(Deduct(kOrg, 1, 100, false, Usd()));
  uint64_t hold = h.Ok(Hold(kOrg, 1, 50)).id;
  h.Advance(kSecond);
  h.Ok(Capture(kOrg, hold, 30));
  hold = h.Ok(Hold(kOrg, 1, 40, 0, false, Usd())).id;
  h.Ok(Release(kOrg, hold));
  h.Ok(Reclaim(kOrg, 1, 20));
  h.Ok(Adjust(kOrg, 1, 15));
  h.Ok(Adjust(kOrg, 1, -5));
  const uint64_t doomed = h.Ok(Grant(kOrg, 1, 40)).id;
  h.Ok(Deduct(kOrg, 1, 200));
  h.Ok(VoidGrant(kOrg, doomed));
  h.Ok(Grant(kOrg, 1, 10, h.now() + kMinute));
  hold = h.Ok(Hold(kOrg, 1, 5, h.now() + kHour)).id;
  h.Advance(kHour);
  h.Ok(Sweep());  // expires the 10-lot; the expiring hold too
  h.Advance(kSecond);
  h.Ok(Deduct(kOrg, 1, 1000, /*partial=*/true));
  h.Ok(Deduct(kOrg, 2, 7));
  h.Ok(Grant(kOrg, 1, 3));

  // Paged three at a time, each entry comes exactly once, newest first.
  std::vector<HistoryEntryView> entries = h.WalletHistory(kOrg, 1, /*page_limit=*/3);
  ASSERT_GT(entries.size(), 15u);
  std::set<uint64_t> seqs;
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_TRUE(seqs.insert(entries[i].seq).second) << "seq " << entries[i].seq << " twice";
    if (i > 0) {
      EXPECT_LT(entries[i].seq, entries[i - 1].seq) << "not newest first";
    }
    if (i > 0) {
      EXPECT_LE(entries[i].time_us, entries[i - 1].time_us);
    }
    EXPECT_EQ(entries[i].wallet_id, 1u);
    EXPECT_EQ(entries[i].time_us % kMs, 0);
  }
  // A single big page says the same.
  std::vector<HistoryEntryView> one_page = h.WalletHistory(kOrg, 1, 1000);
  ASSERT_EQ(one_page.size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) EXPECT_EQ(one_page[i].seq, entries[i].seq);

  // Oldest to newest, per asset: every entry moves available by its amount,
  // except entries that move held credits.
  std::map<std::string, int64_t> balance;  // by asset name
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    const HistoryEntryView& e = *it;
    EXPECT_GT(e.amount, 0) << "seq " << e.seq;
    int64_t& running = balance[e.asset.name()];
    int64_t expected = e.held ? running : (e.out ? running - e.amount : running + e.amount);
    EXPECT_EQ(e.balance_after, expected)
        << "seq " << e.seq << " kind " << HistoryKindName(e.kind) << " amount " << e.amount
        << (e.out ? " out" : " in") << (e.held ? " held" : "");
    running = e.balance_after;
  }
  EXPECT_EQ(balance[Credits().name()], h.Available(kOrg, 1));
  EXPECT_EQ(balance[Usd().name()], h.Available(kOrg, 1, Usd()));
  EXPECT_EQ(h.Available(kOrg, 1), 3);
  EXPECT_EQ(h.Available(kOrg, 1, Usd()), 400);

  // The org's history is every wallet's, each entry once, newest first.
  HistoryQuery q;
  q.org_id = kOrg;
  q.all_wallets = true;
  std::vector<HistoryEntryView> org = h.History(q, /*page_limit=*/4);
  size_t per_wallet = 0;
  for (uint64_t w : {kPool, uint64_t{1}, uint64_t{2}}) {
    per_wallet += h.WalletHistory(kOrg, w).size();
  }
  EXPECT_EQ(org.size(), per_wallet);
  std::set<uint64_t> org_seqs;
  for (size_t i = 0; i < org.size(); ++i) {
    EXPECT_TRUE(org_seqs.insert(org[i].seq).second);
    if (i > 0) {
      EXPECT_LT(org[i].seq, org[i - 1].seq);
    }
  }
  EXPECT_EQ(org.size(), h.ledger().history_entries_total());
  ExpectInvariant(h, kOrg);
  ExpectInvariant(h, kOrg, Usd());
}

TEST(LedgerWorkflow, RetriedOperationIdReturnsFirstResultAndChangesNothing) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 100));

  Command deduct = Deduct(kOrg, 1, 30);
  deduct.op_id = 500;
  Result first = h.Ok(deduct);
  EXPECT_EQ(first.balance_after(), 70);

  // The network dropped the answer; the service retries.
  const uint64_t digest = h.ledger().Digest();
  const uint64_t entries = h.ledger().history_entries_total();
  Result retry = h.Apply(deduct);
  EXPECT_TRUE(retry.replayed);
  EXPECT_EQ(retry.code, first.code);
  EXPECT_EQ(retry.applied(), 30);
  EXPECT_EQ(retry.balance_after(), 70);
  EXPECT_TRUE(h.events().empty());
  EXPECT_EQ(h.Available(kOrg, 1), 70);
  EXPECT_EQ(h.ledger().history_entries_total(), entries);
  EXPECT_EQ(h.ledger().Digest(), digest);

  // Whatever the retry carries, the first result stands.
  Command changed = Deduct(kOrg, 1, 50);
  changed.op_id = 500;
  retry = h.Apply(changed);
  EXPECT_TRUE(retry.replayed);
  EXPECT_EQ(retry.applied(), 30);
  EXPECT_EQ(h.Available(kOrg, 1), 70);

  // A retried refusal is refused again, even once it would succeed.
  Command big = Deduct(kOrg, 1, 1000);
  big.op_id = 501;
  Result refused = h.Apply(big);
  EXPECT_EQ(refused.code, ResultCode::insufficient_funds);
  EXPECT_FALSE(refused.replayed);
  h.Ok(Grant(kOrg, 1, 2000));
  retry = h.Apply(big);
  EXPECT_TRUE(retry.replayed);
  EXPECT_EQ(retry.code, ResultCode::insufficient_funds);
  EXPECT_EQ(retry.available(), 70);
  EXPECT_EQ(retry.shortfall(), 930);
  EXPECT_EQ(h.Available(kOrg, 1), 2070);

  // A retried hold returns the same hold, not a second one.
  Command hold = Hold(kOrg, 1, 10);
  hold.op_id = 502;
  Result held = h.Ok(hold);
  retry = h.Apply(hold);
  EXPECT_TRUE(retry.replayed);
  EXPECT_EQ(retry.id, held.id);
  EXPECT_EQ(h.Held(kOrg, 1), 10);

  // A retry inside the same batch is a retry too.
  Command twice = Deduct(kOrg, 1, 1);
  twice.op_id = 503;
  std::vector<Result> results = h.ApplyBatch({twice, twice});
  ASSERT_EQ(results.size(), 2u);
  EXPECT_FALSE(results[0].replayed);
  EXPECT_TRUE(results[1].replayed);
  EXPECT_EQ(h.Available(kOrg, 1), 2059);

  // The key is (org, op id): the same id in another org is another operation.
  h.Ok(OrgCreate(2));
  h.Ok(Grant(2, 1, 100));
  Command elsewhere = Deduct(2, 1, 30);
  elsewhere.op_id = 500;
  Result r = h.Ok(elsewhere);
  EXPECT_FALSE(r.replayed);
  EXPECT_EQ(h.Available(2, 1), 70);

  // History carries the op id of a deduct, so callers can check an effect.
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  bool found = false;
  for (const auto& e : wh) found |= e.kind == HistoryKind::deduct && e.related_id == 500;
  EXPECT_TRUE(found);
}

// ===========================================================================
// Refusals: one per result code, each proving nothing changed
// ===========================================================================

// A typical org: funded pool, a user with a grant, a hold and a request.
void TypicalOrg(Harness& h) {
  FundedOrg(h, 1000);
  h.Ok(Grant(kOrg, 1, 100, h.now() + 10 * kDay));
  h.Ok(Hold(kOrg, 1, 10));
  h.Ok(Request(kOrg, 1, 50));
}

TEST(LedgerRefusal, UnknownOrg) {
  Harness h;
  TypicalOrg(h);
  EXPECT_EQ(h.Apply(Deduct(kNoSuchOrg, 1, 1)).code, ResultCode::unknown_org);
  EXPECT_EQ(h.Apply(Topup(kNoSuchOrg, 1)).code, ResultCode::unknown_org);
  EXPECT_EQ(h.Apply(Grant(kNoSuchOrg, 1, 1)).code, ResultCode::unknown_org);
  EXPECT_EQ(h.Apply(OrgSettingsCmd(kNoSuchOrg, {}, settings_all)).code, ResultCode::unknown_org);
  auto b = h.ledger().GetBalance(kNoSuchOrg, 1, Credits(), h.now());
  EXPECT_TRUE(absl::IsNotFound(b.status()));
  EXPECT_EQ(b.status().message(), "unknown_org");
  EXPECT_FALSE(h.ledger().GetOrgSummary(kNoSuchOrg, Credits(), h.now()).ok());
  EXPECT_EQ(h.ledger().org_count(), 1u);
  ExpectRefusalChangesNothing(TypicalOrg, Grant(77, 1, 10), ResultCode::unknown_org);
}

TEST(LedgerRefusal, UnknownWallet) {
  Harness h;
  TypicalOrg(h);
  EXPECT_EQ(h.Apply(Deduct(kOrg, 42, 1)).code, ResultCode::unknown_wallet);
  EXPECT_EQ(h.Apply(Hold(kOrg, 42, 1)).code, ResultCode::unknown_wallet);
  EXPECT_EQ(h.Apply(Reclaim(kOrg, 42, 1)).code, ResultCode::unknown_wallet);
  EXPECT_EQ(h.Apply(Adjust(kOrg, 42, 1)).code, ResultCode::unknown_wallet);
  EXPECT_EQ(h.Apply(WalletDelete(kOrg, 42)).code, ResultCode::unknown_wallet);
  auto b = h.ledger().GetBalance(kOrg, 42, Credits(), h.now());
  EXPECT_TRUE(absl::IsNotFound(b.status()));
  EXPECT_EQ(b.status().message(), "unknown_wallet");
  ExpectRefusalChangesNothing(TypicalOrg, Deduct(kOrg, 42, 1), ResultCode::unknown_wallet);
  ExpectRefusalChangesNothing(TypicalOrg, Adjust(kOrg, 42, 5), ResultCode::unknown_wallet);
}

TEST(LedgerRefusal, UnknownGrant) {
  Harness h;
  TypicalOrg(h);
  EXPECT_EQ(h.Apply(VoidGrant(kOrg, 12345)).code, ResultCode::unknown_grant);
  ExpectRefusalChangesNothing(TypicalOrg, VoidGrant(kOrg, 12345), ResultCode::unknown_grant);
}

TEST(LedgerRefusal, UnknownHold) {
  Harness h;
  TypicalOrg(h);
  EXPECT_EQ(h.Apply(Capture(kOrg, 77, 1)).code, ResultCode::unknown_hold);
  EXPECT_EQ(h.Apply(Release(kOrg, 77)).code, ResultCode::unknown_hold);
  EXPECT_EQ(h.Held(kOrg, 1), 10);
  ExpectRefusalChangesNothing(TypicalOrg, Capture(kOrg, 77, 1), ResultCode::unknown_hold);
  ExpectRefusalChangesNothing(TypicalOrg, Release(kOrg, 77), ResultCode::unknown_hold);
}

TEST(LedgerRefusal, UnknownRequest) {
  Harness h;
  TypicalOrg(h);
  EXPECT_EQ(h.Apply(Approve(kOrg, 9)).code, ResultCode::unknown_request);
  EXPECT_EQ(h.Apply(Reject(kOrg, 9)).code, ResultCode::unknown_request);
  ExpectRefusalChangesNothing(TypicalOrg, Approve(kOrg, 9), ResultCode::unknown_request);
  ExpectRefusalChangesNothing(TypicalOrg, Reject(kOrg, 9), ResultCode::unknown_request);
}

TEST(LedgerRefusal, AlreadyDecided) {
  auto setup = [](Harness& h) {
    TypicalOrg(h);
    h.Ok(Reject(kOrg, 1, "budget frozen", "admin"));
  };
  Harness h;
  setup(h);
  std::vector<RequestView> rejected = h.Requests(kOrg, RequestStatus::rejected);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].decision_note, "budget frozen");
  EXPECT_EQ(rejected[0].decided_by, "admin");
  EXPECT_EQ(h.Apply(Approve(kOrg, 1)).code, ResultCode::already_decided);
  EXPECT_EQ(h.Apply(Reject(kOrg, 1)).code, ResultCode::already_decided);
  EXPECT_EQ(h.Available(kOrg, kPool), 1000);
  ExpectRefusalChangesNothing(setup, Approve(kOrg, 1), ResultCode::already_decided);
}

TEST(LedgerRefusal, CreditPaymentsDisabled) {
  auto setup = [](Harness& h) {
    TypicalOrg(h);
    OrgSettings off;
    off.credit_payments = false;
    h.Ok(OrgSettingsCmd(kOrg, off, setting_credit_payments));
  };
  Harness h;
  setup(h);
  EXPECT_FALSE(h.ledger().GetSettings(kOrg)->credit_payments);
  EXPECT_EQ(h.Apply(Deduct(kOrg, 1, 1)).code, ResultCode::credit_payments_disabled);
  EXPECT_EQ(h.Apply(Deduct(kOrg, 1, 1, true)).code, ResultCode::credit_payments_disabled);
  EXPECT_EQ(h.Apply(Hold(kOrg, 1, 1)).code, ResultCode::credit_payments_disabled);
  EXPECT_EQ(h.Available(kOrg, 1), 90);
  // Admins can still move credits around.
  h.Ok(Grant(kOrg, 1, 5));
  std::vector<WalletAmount> targets = {{1, 5}};
  h.Ok(Allocate(kOrg, targets));
  ExpectRefusalChangesNothing(setup, Deduct(kOrg, 1, 1), ResultCode::credit_payments_disabled);

  // Switched back on, payments work again; the other settings kept their values.
  OrgSettings on;
  on.credit_payments = true;
  on.low_balance_threshold = 12345;  // not in the mask: ignored
  h.Ok(OrgSettingsCmd(kOrg, on, setting_credit_payments));
  EXPECT_EQ(h.ledger().GetSettings(kOrg)->low_balance_threshold, 0);
  EXPECT_EQ(h.Ok(Deduct(kOrg, 1, 1)).balance_after(), 99);
}

TEST(LedgerRefusal, InvalidAmountZeroOrNegative) {
  Harness h;
  TypicalOrg(h);
  std::vector<WalletAmount> zero_target = {{2, 0}};
  std::vector<WalletAmount> negative_target = {{2, 10}, {3, -1}};
  const std::vector<Command> refused = {
      Deduct(kOrg, 1, 0),
      Deduct(kOrg, 1, -5),
      Deduct(kOrg, 1, 0, true),
      Topup(kOrg, 0),
      Topup(kOrg, -1),
      Grant(kOrg, 1, 0),
      Grant(kOrg, 1, -100),
      Hold(kOrg, 1, 0),
      Hold(kOrg, 1, -1, 0, true),
      Reclaim(kOrg, 1, 0),
      Reclaim(kOrg, 1, -3),
      Request(kOrg, 1, 0),
      Request(kOrg, 1, -1),
      Allocate(kOrg, zero_target),
      Allocate(kOrg, negative_target),
      AllocateAll(kOrg, 0),
      AllocateAll(kOrg, -1),
      Capture(kOrg, 1, 0),
      Capture(kOrg, 1, -1),
      Adjust(kOrg, 1, 0),
      AdjustTo(kOrg, 1, -1),
      Deduct(kOrg, 1, std::numeric_limits<int64_t>::min()),
  };
  for (size_t i = 0; i < refused.size(); ++i) {
    Result r = h.Apply(refused[i]);
    EXPECT_EQ(r.code, ResultCode::invalid_amount)
        << "command #" << i << " kind " << int(refused[i].kind) << ": " << Describe(r);
  }
  EXPECT_EQ(h.Available(kOrg, 1), 90);
  EXPECT_EQ(h.Held(kOrg, 1), 10);
  EXPECT_EQ(h.Available(kOrg, kPool), 1000);
  for (const Command& c : refused) {
    ExpectRefusalChangesNothing(TypicalOrg, c, ResultCode::invalid_amount);
  }
}

TEST(LedgerRefusal, AmountOverflowNearInt64Max) {
  auto setup = [](Harness& h) {
    h.Ok(OrgCreate(kOrg));
    h.Ok(Grant(kOrg, 1, kMax - 10));
  };
  Harness h;
  setup(h);
  // The wallet's balance would leave int64.
  Result r = h.Apply(Grant(kOrg, 1, 11));
  EXPECT_EQ(r.code, ResultCode::amount_overflow) << Describe(r);
  EXPECT_EQ(h.Available(kOrg, 1), kMax - 10);
  ExpectRefusalChangesNothing(setup, Grant(kOrg, 1, 11), ResultCode::amount_overflow);
  ExpectRefusalChangesNothing(setup, Adjust(kOrg, 1, 11), ResultCode::amount_overflow);
  // Up to exactly INT64_MAX is fine.
  r = h.Ok(Grant(kOrg, 1, 10));
  EXPECT_EQ(r.balance_after(), kMax);
  // The org's totals of what came in would leave int64, in another wallet.
  r = h.Apply(Grant(kOrg, 2, 1));
  EXPECT_EQ(r.code, ResultCode::amount_overflow) << Describe(r);
  r = h.Apply(Topup(kOrg, 1));
  EXPECT_EQ(r.code, ResultCode::amount_overflow) << Describe(r);
  ExpectInvariant(h, kOrg);

  // An allocation list whose sum leaves int64.
  Harness pool;
  pool.Ok(OrgCreate(kOrg));
  pool.Ok(Topup(kOrg, 100));
  std::vector<WalletAmount> targets = {{1, kMax}, {2, kMax}};
  r = pool.Apply(Allocate(kOrg, targets));
  EXPECT_EQ(r.code, ResultCode::amount_overflow) << Describe(r);
  // Every wallet getting a huge amount.
  for (uint64_t w = 1; w <= 3; ++w) pool.Ok(WalletUpsert(kOrg, w));
  r = pool.Apply(AllocateAll(kOrg, kMax / 2));
  EXPECT_EQ(r.code, ResultCode::amount_overflow) << Describe(r);
  EXPECT_EQ(pool.Available(kOrg, kPool), 100);
}

TEST(LedgerRefusal, InvalidTime) {
  Harness h;
  TypicalOrg(h);
  const int64_t now = h.now();
  const std::vector<Command> refused = {
      Grant(kOrg, 1, 10, now), Grant(kOrg, 1, 10, now - kSecond), Topup(kOrg, 10, now - kDay),
      Hold(kOrg, 1, 10, now),  Hold(kOrg, 1, 10, now - kMs),      Grant(kOrg, 1, 10, -5),
  };
  for (size_t i = 0; i < refused.size(); ++i) {
    Result r = h.Apply(refused[i]);
    EXPECT_EQ(r.code, ResultCode::invalid_time) << "command #" << i << ": " << Describe(r);
  }
  Command up = Adjust(kOrg, 1, 10);
  up.expires_at_us = now;
  EXPECT_EQ(h.Apply(up).code, ResultCode::invalid_time);
  EXPECT_EQ(h.Available(kOrg, 1), 90);
  for (const Command& c : refused) {
    ExpectRefusalChangesNothing(TypicalOrg, c, ResultCode::invalid_time);
  }
  // One microsecond later is fine.
  h.Ok(Grant(kOrg, 1, 10, now + 1));
}

TEST(LedgerRefusal, InvalidAsset) {
  Harness h;
  TypicalOrg(h);
  Command none = Deduct(kOrg, 1, 1);
  none.asset = Asset::FromPacked(0);
  Command dash = Grant(kOrg, 1, 1);
  dash.asset = Asset::FromPacked(uint64_t{'a'} | uint64_t{'-'} << 8);
  Command hole = Topup(kOrg, 1);
  hole.asset = Asset::FromPacked(uint64_t{'a'} | uint64_t{'b'} << 16);  // "a\0b"
  for (const Command& c : {none, dash, hole}) {
    EXPECT_EQ(h.Apply(c).code, ResultCode::invalid_asset);
    ExpectRefusalChangesNothing(TypicalOrg, c, ResultCode::invalid_asset);
  }
}

TEST(LedgerRefusal, InvalidOperationIdIsNotRemembered) {
  Harness h;
  TypicalOrg(h);
  const uint64_t digest = h.ledger().Digest();
  Command c = Deduct(kOrg, 1, 5);
  c.op_id = 0;
  Result r = h.ApplyRaw(c);
  EXPECT_EQ(r.code, ResultCode::invalid_operation_id);
  EXPECT_TRUE(h.events().empty());
  EXPECT_EQ(h.ledger().Digest(), digest) << "op id 0 is not remembered: nothing at all changed";
  // It comes before every other check.
  Command worse = Deduct(kNoSuchOrg, 1, -5);
  worse.op_id = 0;
  EXPECT_EQ(h.ApplyRaw(worse).code, ResultCode::invalid_operation_id);
  EXPECT_EQ(h.ledger().Digest(), digest);
  EXPECT_EQ(h.Available(kOrg, 1), 90);
}

TEST(LedgerRefusal, OrgExists) {
  Harness h;
  TypicalOrg(h);
  OrgSettings other;
  other.credit_payments = false;
  Result r = h.Apply(OrgCreate(kOrg, other));
  EXPECT_EQ(r.code, ResultCode::org_exists);
  EXPECT_TRUE(h.ledger().GetSettings(kOrg)->credit_payments);
  EXPECT_EQ(h.Available(kOrg, kPool), 1000);
  ExpectRefusalChangesNothing(TypicalOrg, OrgCreate(kOrg, other), ResultCode::org_exists);
}

TEST(LedgerRefusal, GrantVoided) {
  auto setup = [](Harness& h) {
    TypicalOrg(h);
    h.Ok(VoidGrant(kOrg, 2, "wrong user"));  // grant 1 is the topup, 2 the user's grant
  };
  Harness h;
  setup(h);
  EXPECT_EQ(h.Available(kOrg, 1), 0);
  EXPECT_EQ(h.Apply(VoidGrant(kOrg, 2)).code, ResultCode::grant_voided);
  ExpectRefusalChangesNothing(setup, VoidGrant(kOrg, 2), ResultCode::grant_voided);
}

TEST(LedgerRefusal, LimitExceededForOverLongText) {
  Harness h;
  TypicalOrg(h);
  const std::string longest(text_bytes_max, 'x');
  const std::string too_long(text_bytes_max + 1, 'x');
  Command fits = Grant(kOrg, 1, 1);
  fits.text = longest;
  h.Ok(fits);

  Command reason = Grant(kOrg, 1, 1);
  reason.text = too_long;
  Command actor = Deduct(kOrg, 1, 1);
  actor.actor = too_long;
  Command label = WalletUpsert(kOrg, 5, too_long);
  Command why = Request(kOrg, 1, 5, too_long);
  for (const Command& c : {reason, actor, label, why}) {
    Result r = h.Apply(c);
    EXPECT_EQ(r.code, ResultCode::limit_exceeded) << Describe(r);
    ExpectRefusalChangesNothing(TypicalOrg, c, ResultCode::limit_exceeded);
  }
  EXPECT_EQ(h.Available(kOrg, 1), 91);
}

TEST(LedgerRefusal, LimitExceededForTooManyLotsInAWallet) {
  Harness h;
  FundedOrg(h, 0);
  std::vector<Command> grants(wallet_lots_max, Grant(kOrg, 1, 1));
  std::vector<Result> results = h.ApplyBatch(grants);
  for (const Result& r : results) ASSERT_EQ(r.code, ResultCode::ok) << Describe(r);
  EXPECT_EQ(h.GetBalance(kOrg, 1).lots.size(), wallet_lots_max);
  Result r = h.Apply(Grant(kOrg, 1, 1));
  EXPECT_EQ(r.code, ResultCode::limit_exceeded) << Describe(r);
  EXPECT_EQ(h.Available(kOrg, 1), int64_t{wallet_lots_max});
}

TEST(LedgerRefusal, InsufficientFundsCarriesTheNumbers) {
  auto setup = [](Harness& h) { TypicalOrg(h); };
  Harness h;
  setup(h);
  Result r = h.Apply(Deduct(kOrg, 1, 95));
  EXPECT_EQ(r.code, ResultCode::insufficient_funds);
  EXPECT_EQ(r.available(), 90);
  EXPECT_EQ(r.requested(), 95);
  EXPECT_EQ(r.shortfall(), 5);
  r = h.Apply(Reclaim(kOrg, 1, 91));
  EXPECT_EQ(r.code, ResultCode::insufficient_funds);
  EXPECT_EQ(r.shortfall(), 1);
  ExpectRefusalChangesNothing(setup, Deduct(kOrg, 1, 95), ResultCode::insufficient_funds);
  ExpectRefusalChangesNothing(setup, Hold(kOrg, 1, 95), ResultCode::insufficient_funds);
  ExpectRefusalChangesNothing(setup, Reclaim(kOrg, 1, 91), ResultCode::insufficient_funds);
  ExpectRefusalChangesNothing(setup, Adjust(kOrg, 1, -91), ResultCode::insufficient_funds);
}

TEST(LedgerRefusal, InvalidWalletWhereAUserWalletIsNeeded) {
  Harness h;
  TypicalOrg(h);
  std::vector<WalletAmount> to_pool = {{kPool, 10}};
  EXPECT_EQ(h.Apply(Grant(kOrg, kPool, 10)).code, ResultCode::invalid_wallet);
  EXPECT_EQ(h.Apply(Allocate(kOrg, to_pool)).code, ResultCode::invalid_wallet);
  ExpectRefusalChangesNothing(TypicalOrg, Grant(kOrg, kPool, 10), ResultCode::invalid_wallet);
}

TEST(LedgerRefusal, InvalidSettings) {
  Harness h;
  TypicalOrg(h);
  OrgSettings bad;
  bad.low_balance_threshold = -1;
  EXPECT_EQ(h.Apply(OrgSettingsCmd(kOrg, bad, setting_low_balance_threshold)).code,
            ResultCode::invalid_settings);
  OrgSettings bad_window;
  bad_window.expiring_soon_window_us = -1;
  EXPECT_EQ(h.Apply(OrgSettingsCmd(kOrg, bad_window, setting_expiring_soon_window)).code,
            ResultCode::invalid_settings);
  OrgSettings bad_rollup;
  bad_rollup.deduct_rollup_interval_us = -1;
  EXPECT_EQ(h.Apply(OrgSettingsCmd(kOrg, bad_rollup, setting_deduct_rollup_interval)).code,
            ResultCode::invalid_settings);
  EXPECT_EQ(h.Apply(OrgCreate(2, bad)).code, ResultCode::invalid_settings);
  EXPECT_EQ(h.ledger().org_count(), 1u);
  ExpectRefusalChangesNothing(TypicalOrg, OrgSettingsCmd(kOrg, bad, settings_all),
                              ResultCode::invalid_settings);
}

TEST(LedgerRefusal, InvalidCommandKind) {
  Harness h;
  TypicalOrg(h);
  Command unknown = Deduct(kOrg, 1, 1);
  unknown.kind = static_cast<CommandKind>(command_kind_max + 1);
  EXPECT_EQ(h.Apply(unknown).code, ResultCode::invalid_command);
  Command zero = Deduct(kOrg, 1, 1);
  zero.kind = static_cast<CommandKind>(0);
  EXPECT_EQ(h.Apply(zero).code, ResultCode::invalid_command);
  ExpectRefusalChangesNothing(TypicalOrg, unknown, ResultCode::invalid_command);
}

TEST(LedgerRefusal, ChecksComeInTheDocumentedOrder) {
  Harness h;
  TypicalOrg(h);
  // Fields before org: a bad amount on an unknown org is invalid_amount.
  EXPECT_EQ(h.Apply(Deduct(kNoSuchOrg, 1, 0)).code, ResultCode::invalid_amount);
  Command bad_asset = Deduct(kNoSuchOrg, 1, 1);
  bad_asset.asset = Asset::FromPacked(0);
  EXPECT_EQ(h.Apply(bad_asset).code, ResultCode::invalid_asset);
  Command bad_text = Deduct(kNoSuchOrg, 1, 1);
  const std::string too_long(text_bytes_max + 1, 'y');
  bad_text.text = too_long;
  EXPECT_EQ(h.Apply(bad_text).code, ResultCode::limit_exceeded);
  EXPECT_EQ(h.Apply(Grant(kNoSuchOrg, 1, 1, h.now())).code, ResultCode::invalid_time);
  // Org before wallet.
  EXPECT_EQ(h.Apply(Deduct(kNoSuchOrg, 42, 1)).code, ResultCode::unknown_org);
  // Wallet before the operation's own conditions.
  OrgSettings off;
  off.credit_payments = false;
  h.Ok(OrgSettingsCmd(kOrg, off, setting_credit_payments));
  EXPECT_EQ(h.Apply(Deduct(kOrg, 42, 1)).code, ResultCode::unknown_wallet);
}

// ===========================================================================
// Ids, time
// ===========================================================================

TEST(LedgerIds, GrantHoldAndRequestIdsCountFromOnePerOrgAndKind) {
  Harness h;
  h.Ok(OrgCreate(kOrg));
  h.Ok(OrgCreate(2));
  EXPECT_EQ(h.Ok(Topup(kOrg, 100)).id, 1u);
  EXPECT_EQ(h.Ok(Grant(kOrg, 1, 100)).id, 2u);
  EXPECT_EQ(h.Ok(Grant(2, 1, 100)).id, 1u);
  EXPECT_EQ(h.Ok(Hold(kOrg, 1, 10)).id, 1u);
  EXPECT_EQ(h.Ok(Hold(kOrg, 1, 10)).id, 2u);
  EXPECT_EQ(h.Ok(Hold(2, 1, 10)).id, 1u);
  EXPECT_EQ(h.Ok(Request(kOrg, 1, 10)).id, 1u);
  EXPECT_EQ(h.Ok(Request(2, 1, 10)).id, 1u);
  // A refused grant uses no id.
  EXPECT_EQ(h.Apply(Grant(kOrg, 1, -1)).code, ResultCode::invalid_amount);
  EXPECT_EQ(h.Ok(Grant(kOrg, 1, 100)).id, 3u);
}

TEST(LedgerTime, ABatchStampedEarlierIsAppliedAtThePreviousTime) {
  Harness h;
  h.Ok(OrgCreate(kOrg));
  EXPECT_EQ(h.output().time_us, kT0);
  EXPECT_EQ(h.ledger().last_time_us(), kT0);
  h.SetNow(kT0 - kHour);
  h.Ok(Grant(kOrg, 1, 10, kT0 - kMinute + kHour));  // after kT0: valid
  EXPECT_EQ(h.output().time_us, kT0);
  EXPECT_EQ(h.ledger().last_time_us(), kT0);
  // Expiries are checked against the raised time.
  EXPECT_EQ(h.Apply(Grant(kOrg, 1, 10, kT0 - kMinute)).code, ResultCode::invalid_time);
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_EQ(wh.size(), 1u);
  EXPECT_EQ(wh[0].time_us, kT0);
}

// ===========================================================================
// Events
// ===========================================================================

TEST(LedgerEvents, BalanceLowIsRaisedWhenTheThresholdIsCrossedDownward) {
  Harness h;
  OrgSettings s;
  s.low_balance_threshold = 50;
  h.Ok(OrgCreate(kOrg, s));
  h.Ok(Grant(kOrg, 1, 100));
  h.Ok(Deduct(kOrg, 1, 40));  // 60: above
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_low), 0u);
  h.Ok(Deduct(kOrg, 1, 10));  // 50: still >= threshold
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_low), 0u);
  h.Ok(Deduct(kOrg, 1, 1));  // 49: crossed
  ASSERT_EQ(h.events().size(), 1u);
  const Event& e = h.events()[0];
  EXPECT_EQ(e.kind, EventKind::balance_low);
  EXPECT_EQ(e.org_id, kOrg);
  EXPECT_EQ(e.wallet_id, 1u);
  EXPECT_EQ(e.asset, Credits());
  EXPECT_EQ(e.balance_after, 49);
  EXPECT_EQ(e.time_us, h.now());
  h.Ok(Deduct(kOrg, 1, 9));  // 40: already below
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_low), 0u);
  h.Ok(Grant(kOrg, 1, 60));  // 100
  h.Ok(Hold(kOrg, 1, 70));   // 30: a hold takes available below too
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_low), 1u);
  h.Ok(Grant(kOrg, 1, 70));  // 100
  // Straight to zero: low and depleted.
  h.Ok(Deduct(kOrg, 1, 100));
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_low), 1u);
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_depleted), 1u);

  // Threshold 0: no balance.low at all.
  h.Ok(OrgCreate(2));
  h.Ok(Grant(2, 1, 10));
  h.Ok(Deduct(2, 1, 9));
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_low), 0u);
}

TEST(LedgerEvents, BalanceDepletedWhenAvailableReachesZero) {
  Harness h;
  FundedOrg(h, 100);
  h.Ok(Grant(kOrg, 1, 10));
  h.Ok(Deduct(kOrg, 1, 4));
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_depleted), 0u);
  h.Ok(Deduct(kOrg, 1, 6));
  ASSERT_EQ(CountEvents(h.events(), EventKind::balance_depleted), 1u);
  EXPECT_EQ(h.events().back().wallet_id, 1u);
  EXPECT_EQ(h.events().back().balance_after, 0);
  // The pool can be depleted too (allocating it all).
  std::vector<WalletAmount> targets = {{1, 100}};
  h.Ok(Allocate(kOrg, targets));
  bool pool_depleted = false;
  for (const Event& e : h.events()) {
    pool_depleted |= e.kind == EventKind::balance_depleted && e.wallet_id == kPool;
  }
  EXPECT_TRUE(pool_depleted);
  // Reclaiming everything depletes the wallet.
  h.Ok(ReclaimAll(kOrg, 1));
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_depleted), 1u);
}

TEST(LedgerEvents, CreditsExpireBySweepWithNoOtherTraffic) {
  Harness h;
  FundedOrg(h, 0);
  const uint64_t grant = h.Ok(Grant(kOrg, 1, 10, h.now() + kHour)).id;
  h.Ok(Grant(kOrg, 1, 5));
  h.Advance(2 * kHour);
  // The query already leaves the expired lot out; the state still has it.
  EXPECT_EQ(h.Available(kOrg, 1), 5);
  EXPECT_EQ(h.Totals(kOrg).expired, 0);

  Result r = h.Ok(Sweep());
  EXPECT_EQ(r.n[0], 1);
  EXPECT_EQ(r.n[1], 0);
  EXPECT_EQ(r.n[2], 0);
  ASSERT_EQ(h.events().size(), 1u);
  const Event& e = h.events()[0];
  EXPECT_EQ(e.kind, EventKind::credits_expired);
  EXPECT_EQ(e.wallet_id, 1u);
  EXPECT_EQ(e.id, grant);
  EXPECT_EQ(e.amount, 10);
  EXPECT_EQ(e.balance_after, 5);
  EXPECT_EQ(h.Totals(kOrg).expired, 10);
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_FALSE(wh.empty());
  EXPECT_EQ(wh[0].kind, HistoryKind::expire);
  EXPECT_TRUE(wh[0].out);
  EXPECT_EQ(wh[0].amount, 10);
  EXPECT_EQ(wh[0].balance_after, 5);
  EXPECT_EQ(wh[0].related_id, grant);

  // Nothing left to do: a second sweep is quiet.
  r = h.Ok(Sweep());
  EXPECT_EQ(r.n[0], 0);
  EXPECT_TRUE(h.events().empty());
  ExpectInvariant(h, kOrg);
}

TEST(LedgerEvents, ExpiredHeldLotsExpireWithHeldHistory) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 10, h.now() + kHour));
  const uint64_t hold = h.Ok(Hold(kOrg, 1, 10)).id;
  h.Advance(2 * kHour);
  h.Ok(Sweep());
  TotalsView t = h.Totals(kOrg);
  // Either the sweep expires the held lot now or the release does later;
  // in both cases the credits are expired, never returned.
  h.Apply(Release(kOrg, hold));
  t = h.Totals(kOrg);
  EXPECT_EQ(t.expired, 10);
  EXPECT_EQ(t.held, 0);
  EXPECT_EQ(h.Available(kOrg, 1), 0);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerEvents, GrantedAllocatedAndRequestEvents) {
  Harness h;
  h.Ok(OrgCreate(kOrg));
  h.Ok(Topup(kOrg, 100));
  ASSERT_EQ(h.events().size(), 1u);
  EXPECT_EQ(h.events()[0].kind, EventKind::credits_granted);
  EXPECT_EQ(h.events()[0].wallet_id, kPool);
  EXPECT_EQ(h.events()[0].amount, 100);
  EXPECT_EQ(h.events()[0].id, 1u);

  h.Ok(Grant(kOrg, 1, 7));
  ASSERT_EQ(h.events().size(), 1u);
  EXPECT_EQ(h.events()[0].kind, EventKind::credits_granted);
  EXPECT_EQ(h.events()[0].balance_after, 7);

  h.Ok(Adjust(kOrg, 1, 3));
  EXPECT_EQ(CountEvents(h.events(), EventKind::credits_granted), 1u);

  std::vector<WalletAmount> targets = {{1, 10}, {2, 20}};
  h.Ok(Allocate(kOrg, targets));
  ASSERT_EQ(CountEvents(h.events(), EventKind::credits_allocated), 2u);
  std::vector<Event> allocated;
  for (const Event& e : h.events()) {
    if (e.kind == EventKind::credits_allocated) allocated.push_back(e);
  }
  EXPECT_EQ(allocated[0].wallet_id, 1u);
  EXPECT_EQ(allocated[0].amount, 10);
  EXPECT_EQ(allocated[0].balance_after, 20);
  EXPECT_EQ(allocated[1].wallet_id, 2u);
  EXPECT_EQ(allocated[1].amount, 20);

  const uint64_t a = h.Ok(Request(kOrg, 2, 5)).id;
  EXPECT_EQ(Kinds(h.events()), (std::vector<EventKind>{EventKind::request_created}));
  const uint64_t b = h.Ok(Request(kOrg, 2, 6)).id;
  h.Ok(Approve(kOrg, a));
  EXPECT_EQ(CountEvents(h.events(), EventKind::request_approved), 1u);
  h.Ok(Reject(kOrg, b, "no"));
  EXPECT_EQ(Kinds(h.events()), (std::vector<EventKind>{EventKind::request_rejected}));
  EXPECT_EQ(h.events()[0].id, b);

  // Reject-all rejects every pending request of the asset.
  h.Ok(Request(kOrg, 1, 1));
  h.Ok(Request(kOrg, 2, 1));
  Result r = h.Ok(RejectAll(kOrg, Credits(), "quarter closed"));
  EXPECT_EQ(r.n[0], 2);
  EXPECT_EQ(CountEvents(h.events(), EventKind::request_rejected), 2u);
  EXPECT_TRUE(h.Requests(kOrg, RequestStatus::pending).empty());
}

TEST(LedgerEvents, BatchEventsComeInCommandOrder) {
  Harness h;
  h.Ok(OrgCreate(kOrg));
  std::vector<Result> results =
      h.ApplyBatch({Topup(kOrg, 10), Grant(kOrg, 1, 5), Request(kOrg, 1, 3)});
  for (const Result& r : results) EXPECT_EQ(r.code, ResultCode::ok);
  EXPECT_EQ(Kinds(h.events()),
            (std::vector<EventKind>{EventKind::credits_granted, EventKind::credits_granted,
                                    EventKind::request_created}));
}

// ===========================================================================
// Queries
// ===========================================================================

TEST(LedgerQuery, ExpiringSoonCountsAvailableWithinTheOrgsWindow) {
  Harness h;
  FundedOrg(h, 0);  // default window: 30 days
  const int64_t t = h.now();
  h.Ok(Grant(kOrg, 1, 10, t + 10 * kDay));
  h.Ok(Grant(kOrg, 1, 20, t + 40 * kDay));
  h.Ok(Grant(kOrg, 1, 30));
  Balance b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 60);
  EXPECT_EQ(b.expiring_soon, 10);

  h.Advance(15 * kDay);  // the 10 expired; the 20 is 25 days out
  b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.available, 50);
  EXPECT_EQ(b.expiring_soon, 20);

  // Held credits are not "expiring soon" available.
  h.Ok(Hold(kOrg, 1, 15));
  b = h.GetBalance(kOrg, 1);
  EXPECT_EQ(b.held, 15);
  EXPECT_EQ(b.expiring_soon, 5);

  OrgSettings narrow;
  narrow.expiring_soon_window_us = kDay;
  h.Ok(OrgSettingsCmd(kOrg, narrow, setting_expiring_soon_window));
  EXPECT_EQ(h.GetBalance(kOrg, 1).expiring_soon, 0);
  EXPECT_EQ(h.ledger().GetSettings(kOrg)->expiring_soon_window_us, kDay);
}

TEST(LedgerQuery, BalanceAtAPastTime) {
  Harness h;
  FundedOrg(h, 0);
  const int64_t t0 = h.now();
  h.Ok(Grant(kOrg, 1, 100));
  h.Advance(kMinute);
  const int64_t t1 = h.now();
  h.Ok(Deduct(kOrg, 1, 30));
  h.Advance(kMinute);
  const int64_t t2 = h.now();
  h.Ok(Deduct(kOrg, 1, 20));
  h.Ok(Grant(kOrg, 1, 5, 0, 0, Usd()));

  auto at = [&](int64_t when, Asset asset = Credits()) {
    auto v = h.ledger().BalanceAt(kOrg, 1, asset, when);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  };
  EXPECT_EQ(at(t0 - kSecond), 0) << "before the first entry";
  EXPECT_EQ(at(t0), 100);
  EXPECT_EQ(at(t1 - kMs), 100);
  EXPECT_EQ(at(t1), 70);
  EXPECT_EQ(at(t2 - kMs), 70);
  EXPECT_EQ(at(t2), 50);
  EXPECT_EQ(at(t2 + kDay), 50);
  EXPECT_EQ(at(t2 + kDay, Usd()), 5);
  EXPECT_EQ(at(t1, Usd()), 0);
  EXPECT_FALSE(h.ledger().BalanceAt(kNoSuchOrg, 1, Credits(), t1).ok());
  EXPECT_FALSE(h.ledger().BalanceAt(kOrg, 42, Credits(), t1).ok());
}

TEST(LedgerQuery, BalanceAtBeyondTheInMemoryHistoryIsOutOfRange) {
  LedgerOptions small;
  small.history_entries_max = history_chunk_entries;
  Harness h(small);
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, int64_t{history_chunk_entries} * 2));
  h.Advance(kSecond);
  const int64_t early = h.now();
  std::vector<Command> deducts(4096, Deduct(kOrg, 1, 1));
  for (uint64_t i = 0; i < history_chunk_entries / 4096 + 1; ++i) {
    h.Advance(kSecond);
    h.ApplyBatch(deducts);
  }
  auto v = h.ledger().BalanceAt(kOrg, 1, Credits(), early);
  EXPECT_TRUE(absl::IsOutOfRange(v.status())) << v.status();
  HistoryQuery q;
  q.org_id = kOrg;
  q.wallet_id = 1;
  q.limit = history_page_entries_max;
  bool truncated = false;
  size_t seen = 0;
  for (int i = 0; i < 100; ++i) {
    auto page = h.ledger().GetHistory(q);
    ASSERT_TRUE(page.ok());
    seen += page->entries.size();
    truncated |= page->truncated;
    if (page->next_cursor == 0) break;
    q.cursor = page->next_cursor;
  }
  EXPECT_TRUE(truncated) << "older entries left memory: the last page says so";
  EXPECT_LE(seen, history_chunk_entries);
}

TEST(LedgerQuery, DeductRollupIntervalRecordsOneEntryPerWalletPerInterval) {
  Harness h;
  OrgSettings s;
  s.deduct_rollup_interval_us = kMinute;
  h.Ok(OrgCreate(kOrg, s));
  h.Ok(Grant(kOrg, 1, 1000));
  h.Ok(Grant(kOrg, 2, 1000));
  for (int i = 1; i <= 3; ++i) {
    h.SetNow(kT0 + i * 10 * kSecond);
    h.Ok(Deduct(kOrg, 1, 5));
    h.Ok(Deduct(kOrg, 2, 1));
  }
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_EQ(wh.size(), 2u);
  EXPECT_EQ(wh[0].kind, HistoryKind::deduct_rollup);
  EXPECT_TRUE(wh[0].out);
  EXPECT_EQ(wh[0].amount, 15);
  EXPECT_EQ(wh[0].balance_after, 985);
  EXPECT_EQ(h.WalletHistory(kOrg, 2).size(), 2u);

  // The next minute starts another rollup.
  h.SetNow(kT0 + kMinute + kSecond);
  h.Ok(Deduct(kOrg, 1, 7));
  wh = h.WalletHistory(kOrg, 1);
  ASSERT_EQ(wh.size(), 3u);
  EXPECT_EQ(wh[0].kind, HistoryKind::deduct_rollup);
  EXPECT_EQ(wh[0].amount, 7);
  EXPECT_EQ(wh[0].balance_after, 978);
  EXPECT_EQ(wh[1].amount, 15);

  // Another change in between starts a new one, even in the same minute.
  h.Ok(Grant(kOrg, 1, 2));
  h.Ok(Deduct(kOrg, 1, 1));
  wh = h.WalletHistory(kOrg, 1);
  ASSERT_EQ(wh.size(), 5u);
  EXPECT_EQ(wh[0].kind, HistoryKind::deduct_rollup);
  EXPECT_EQ(wh[0].amount, 1);
  EXPECT_EQ(wh[0].balance_after, 979);
  // Another asset is its own rollup.
  h.Ok(Grant(kOrg, 1, 10, 0, 0, Usd()));
  h.Ok(Deduct(kOrg, 1, 3, false, Usd()));
  h.Ok(Deduct(kOrg, 1, 1));
  wh = h.WalletHistory(kOrg, 1);
  EXPECT_EQ(wh[0].kind, HistoryKind::deduct_rollup);
  EXPECT_EQ(wh[0].asset, Credits());
  EXPECT_EQ(wh[0].amount, 1);
  EXPECT_EQ(h.Totals(kOrg).spent, 15 + 3 + 7 + 1 + 1) << "wallet 1 and wallet 2";
  EXPECT_EQ(h.Totals(kOrg, Usd()).spent, 3);

  // Without the setting, one entry per deduct.
  h.Ok(OrgCreate(2));
  h.Ok(Grant(2, 1, 100));
  h.Ok(Deduct(2, 1, 1));
  h.Ok(Deduct(2, 1, 1));
  std::vector<HistoryEntryView> plain = h.WalletHistory(2, 1);
  EXPECT_EQ(KindsOf(plain), (std::vector<HistoryKind>{HistoryKind::deduct, HistoryKind::deduct,
                                                      HistoryKind::grant}));
}

TEST(LedgerQuery, OrgSummaryFields) {
  Harness h;
  FundedOrg(h, 1000);
  std::vector<WalletAmount> targets = {{1, 200}, {2, 100}};
  h.Ok(Allocate(kOrg, targets));
  h.Ok(Hold(kOrg, 2, 30));
  h.Ok(Request(kOrg, 1, 50));
  h.Ok(Request(kOrg, 2, 400));
  h.Ok(Request(kOrg, 2, 5, "", Usd()));
  h.Ok(WalletUpsert(kOrg, 4, "Dana"));
  h.Ok(Grant(kOrg, 5, 10, 0, 0, Usd()));

  OrgSummary s = h.Summary(kOrg);
  EXPECT_EQ(s.pool, 700);
  EXPECT_EQ(s.allocated, 300) << "available + held of user wallets";
  EXPECT_EQ(s.total, 1000);
  EXPECT_EQ(s.wallets, 4u);
  EXPECT_EQ(s.pending_requests, 2u);
  EXPECT_EQ(s.pending_requested, 450);
  EXPECT_EQ(s.pool_if_all_approved, 250);

  OrgSummary usd = h.Summary(kOrg, Usd());
  EXPECT_EQ(usd.pool, 0);
  EXPECT_EQ(usd.allocated, 10);
  EXPECT_EQ(usd.total, 10);
  EXPECT_EQ(usd.pending_requests, 1u);
  EXPECT_EQ(usd.pending_requested, 5);
  EXPECT_EQ(usd.pool_if_all_approved, -5);

  h.Ok(WalletDelete(kOrg, 4));
  EXPECT_EQ(h.Summary(kOrg).wallets, 3u);
}

TEST(LedgerQuery, UsageReportPerWalletAndAssetOverATimeRange) {
  Harness h;
  const int64_t t0 = h.now();
  FundedOrg(h, 1000);
  std::vector<WalletAmount> targets = {{1, 100}};
  h.Ok(Allocate(kOrg, targets));
  h.Ok(Grant(kOrg, 2, 50, t0 + kHour));
  h.Ok(Grant(kOrg, 2, 8, 0, 0, Usd()));
  h.Ok(Deduct(kOrg, 1, 30));
  const uint64_t hold = h.Ok(Hold(kOrg, 1, 20)).id;
  h.Ok(Capture(kOrg, hold, 15));
  h.Ok(Adjust(kOrg, 1, -5));
  h.Ok(Adjust(kOrg, 1, 12));
  h.Ok(Deduct(kOrg, 2, 3, false, Usd()));
  h.Advance(2 * kHour);
  h.Ok(Sweep());
  h.Advance(kHour);
  const int64_t t_late = h.now();
  h.Ok(Deduct(kOrg, 1, 10));

  auto usage = h.ledger().GetUsage(kOrg, t0, t_late);
  ASSERT_TRUE(usage.ok()) << usage.status();
  const UsageRow* pool = FindUsage(*usage, kPool, Credits());
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->granted, 1000);
  EXPECT_EQ(pool->spent, 0);
  const UsageRow* w1 = FindUsage(*usage, 1, Credits());
  ASSERT_NE(w1, nullptr);
  EXPECT_EQ(w1->granted, 112) << "allocated in + adjust up";
  EXPECT_EQ(w1->spent, 50) << "deduct + capture + adjust down";
  EXPECT_EQ(w1->expired, 0);
  const UsageRow* w2 = FindUsage(*usage, 2, Credits());
  ASSERT_NE(w2, nullptr);
  EXPECT_EQ(w2->granted, 50);
  EXPECT_EQ(w2->expired, 50);
  const UsageRow* w2usd = FindUsage(*usage, 2, Usd());
  ASSERT_NE(w2usd, nullptr);
  EXPECT_EQ(w2usd->granted, 8);
  EXPECT_EQ(w2usd->spent, 3);

  // A later range sees only the later deduct.
  usage = h.ledger().GetUsage(kOrg, t_late, t_late + kHour);
  ASSERT_TRUE(usage.ok());
  w1 = FindUsage(*usage, 1, Credits());
  ASSERT_NE(w1, nullptr);
  EXPECT_EQ(w1->spent, 10);
  EXPECT_EQ(w1->granted, 0);
  const UsageRow* w2late = FindUsage(*usage, 2, Credits());
  if (w2late != nullptr) {
    EXPECT_EQ(w2late->expired, 0);
  }
  EXPECT_FALSE(h.ledger().GetUsage(kNoSuchOrg, t0, t_late).ok());
}

TEST(LedgerQuery, HistoryFiltersByKindAssetAndTime) {
  Harness h;
  FundedOrg(h, 0);
  const int64_t t0 = h.now();
  h.Ok(Grant(kOrg, 1, 100));
  h.Ok(Grant(kOrg, 1, 100, 0, 0, Usd()));
  h.Advance(kMinute);
  const int64_t t1 = h.now();
  h.Ok(Deduct(kOrg, 1, 1));
  h.Ok(Deduct(kOrg, 1, 2, false, Usd()));
  h.Advance(kMinute);
  const int64_t t2 = h.now();
  h.Ok(Deduct(kOrg, 1, 3));
  h.Ok(Hold(kOrg, 1, 4));

  HistoryQuery q;
  q.org_id = kOrg;
  q.wallet_id = 1;
  EXPECT_EQ(h.History(q).size(), 6u);

  q.kind_mask = 1u << static_cast<int>(HistoryKind::deduct);
  std::vector<HistoryEntryView> deducts = h.History(q);
  ASSERT_EQ(deducts.size(), 3u);
  EXPECT_EQ(deducts[0].amount, 3);
  EXPECT_EQ(deducts[1].amount, 2);
  EXPECT_EQ(deducts[2].amount, 1);

  q.asset = Credits();
  deducts = h.History(q);
  ASSERT_EQ(deducts.size(), 2u);
  EXPECT_EQ(deducts[0].amount, 3);
  EXPECT_EQ(deducts[1].amount, 1);

  q.kind_mask =
      (1u << static_cast<int>(HistoryKind::deduct)) | (1u << static_cast<int>(HistoryKind::hold));
  q.asset = Asset();
  q.from_us = t1;
  q.to_us = t2;  // exclusive
  std::vector<HistoryEntryView> ranged = h.History(q);
  ASSERT_EQ(ranged.size(), 2u);
  for (const auto& e : ranged) EXPECT_EQ(e.time_us, t1);

  q.from_us = t2;
  q.to_us = 0;  // no bound
  ranged = h.History(q);
  EXPECT_EQ(KindsOf(ranged), (std::vector<HistoryKind>{HistoryKind::hold, HistoryKind::deduct}));

  q.kind_mask = 0;
  q.from_us = 0;
  q.to_us = t1;
  ranged = h.History(q);
  ASSERT_EQ(ranged.size(), 2u);
  for (const auto& e : ranged) {
    EXPECT_EQ(e.time_us, t0);
    EXPECT_EQ(e.kind, HistoryKind::grant);
  }

  // Paged with a filter: one at a time, still each once.
  q = HistoryQuery{};
  q.org_id = kOrg;
  q.wallet_id = 1;
  q.kind_mask = 1u << static_cast<int>(HistoryKind::deduct);
  EXPECT_EQ(h.History(q, /*page_limit=*/1).size(), 3u);

  // Unknown org or wallet.
  q.org_id = kNoSuchOrg;
  EXPECT_FALSE(h.ledger().GetHistory(q).ok());
  q.org_id = kOrg;
  q.wallet_id = 42;
  EXPECT_FALSE(h.ledger().GetHistory(q).ok());
}

TEST(LedgerQuery, HistoryPerOrgCoversEveryWalletAndNoOtherOrg) {
  Harness h;
  FundedOrg(h, 100);
  h.Ok(OrgCreate(2));
  h.Ok(Grant(2, 1, 9));
  std::vector<WalletAmount> targets = {{1, 10}, {2, 20}};
  h.Ok(Allocate(kOrg, targets));
  h.Ok(Deduct(kOrg, 2, 5));

  HistoryQuery q;
  q.org_id = kOrg;
  q.all_wallets = true;
  std::vector<HistoryEntryView> org = h.History(q);
  // topup, allocate (pool), allocate (1), allocate (2), deduct (2)
  ASSERT_EQ(org.size(), 5u);
  EXPECT_EQ(org[0].kind, HistoryKind::deduct);
  EXPECT_EQ(org[0].wallet_id, 2u);
  EXPECT_EQ(org.back().kind, HistoryKind::topup);
  EXPECT_EQ(org.back().wallet_id, kPool);
  std::set<uint64_t> wallets;
  for (const auto& e : org) wallets.insert(e.wallet_id);
  EXPECT_EQ(wallets, (std::set<uint64_t>{0, 1, 2}));
  // The pool's allocate entry is the total, out.
  bool pool_total = false;
  for (const auto& e : org) {
    if (e.wallet_id == kPool && e.kind == HistoryKind::allocate) {
      pool_total = true;
      EXPECT_TRUE(e.out);
      EXPECT_EQ(e.amount, 30);
      EXPECT_EQ(e.balance_after, 70);
    }
  }
  EXPECT_TRUE(pool_total);
  q.org_id = 2;
  EXPECT_EQ(h.History(q).size(), 1u);
}

TEST(LedgerQuery, HistoryCarriesReferenceActorAndRelatedIds) {
  Harness h;
  FundedOrg(h, 0);
  Command grant = Grant(kOrg, 1, 50);
  grant.text = "welcome bonus";
  grant.actor = "admin-ann";
  const uint64_t grant_id = h.Ok(grant).id;
  const uint64_t hold = h.Ok(Hold(kOrg, 1, 5)).id;
  Command deduct = Deduct(kOrg, 1, 2);
  deduct.op_id = 9999;
  deduct.text = "GET /report";
  h.Ok(deduct);

  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_EQ(wh.size(), 3u);
  EXPECT_EQ(wh[0].kind, HistoryKind::deduct);
  EXPECT_EQ(wh[0].related_id, 9999u);
  EXPECT_EQ(wh[0].reference, "GET /report");
  EXPECT_EQ(wh[1].kind, HistoryKind::hold);
  EXPECT_EQ(wh[1].related_id, hold);
  EXPECT_EQ(wh[2].kind, HistoryKind::grant);
  EXPECT_EQ(wh[2].related_id, grant_id);
  EXPECT_EQ(wh[2].reference, "welcome bonus");
  EXPECT_EQ(wh[2].actor, "admin-ann");
  EXPECT_EQ(wh[2].asset, Credits());
}

TEST(LedgerQuery, RequestsByStatus) {
  Harness h;
  FundedOrg(h, 1000);
  const uint64_t a = h.Ok(Request(kOrg, 1, 10, "a")).id;
  const uint64_t b = h.Ok(Request(kOrg, 2, 20, "b")).id;
  const uint64_t c = h.Ok(Request(kOrg, 3, 30, "c")).id;
  h.Ok(Approve(kOrg, b, 0, "boss"));
  h.Ok(Reject(kOrg, c, "too much", "boss"));

  std::vector<RequestView> pending = h.Requests(kOrg, RequestStatus::pending);
  ASSERT_EQ(pending.size(), 1u);
  EXPECT_EQ(pending[0].request_id, a);
  EXPECT_EQ(pending[0].reason, "a");
  std::vector<RequestView> approved = h.Requests(kOrg, RequestStatus::approved);
  ASSERT_EQ(approved.size(), 1u);
  EXPECT_EQ(approved[0].request_id, b);
  EXPECT_EQ(approved[0].approved_amount, 20);
  EXPECT_EQ(approved[0].decided_by, "boss");
  std::vector<RequestView> rejected = h.Requests(kOrg, RequestStatus::rejected);
  ASSERT_EQ(rejected.size(), 1u);
  EXPECT_EQ(rejected[0].request_id, c);
  EXPECT_EQ(rejected[0].amount, 30);
  EXPECT_EQ(rejected[0].approved_amount, 0);
  EXPECT_EQ(rejected[0].decision_note, "too much");
  EXPECT_EQ(rejected[0].decided_by, "boss");
  EXPECT_FALSE(h.ledger().GetRequests(kNoSuchOrg, RequestStatus::pending).ok());

  // A short pool leaves the request pending.
  const uint64_t big = h.Ok(Request(kOrg, 1, 5000)).id;
  Result r = h.Apply(Approve(kOrg, big));
  EXPECT_EQ(r.code, ResultCode::insufficient_pool);
  EXPECT_EQ(r.available(), 980);
  EXPECT_EQ(r.requested(), 5000);
  EXPECT_EQ(h.Requests(kOrg, RequestStatus::pending).size(), 2u);
}

TEST(LedgerQuery, WalletLabelAndUpsert) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(WalletUpsert(kOrg, 9, "Alice"));
  EXPECT_EQ(h.Available(kOrg, 9), 0);
  EXPECT_EQ(h.Summary(kOrg).wallets, 1u);
  h.Ok(WalletUpsert(kOrg, 9, "Alice B."));  // relabel: still one wallet
  EXPECT_EQ(h.Summary(kOrg).wallets, 1u);
  EXPECT_EQ(h.Apply(WalletUpsert(kOrg, kPool, "pool")).code, ResultCode::invalid_wallet);
  // Deleted, then upserted again: alive and empty.
  h.Ok(Grant(kOrg, 9, 5));
  h.Ok(WalletDelete(kOrg, 9));
  EXPECT_EQ(h.Summary(kOrg).wallets, 0u);
  h.Ok(WalletUpsert(kOrg, 9, "Alice again"));
  EXPECT_EQ(h.Summary(kOrg).wallets, 1u);
  EXPECT_EQ(h.Available(kOrg, 9), 0);
  EXPECT_EQ(h.Available(kOrg, kPool), 5);
}

// ===========================================================================
// Expiry, edges
// ===========================================================================

TEST(LedgerExpiry, ExpiredPoolLotsAreNeitherAllocatedNorCounted) {
  Harness h;
  h.Ok(OrgCreate(kOrg));
  h.Ok(Topup(kOrg, 100, h.now() + kHour));
  h.Ok(Topup(kOrg, 50));
  h.Advance(2 * kHour);
  EXPECT_EQ(h.Summary(kOrg).pool, 50);
  std::vector<WalletAmount> targets = {{1, 60}};
  Result r = h.Apply(Allocate(kOrg, targets));
  EXPECT_EQ(r.code, ResultCode::insufficient_pool) << Describe(r);
  EXPECT_EQ(r.available(), 50);
  EXPECT_EQ(r.shortfall(), 10);
  targets = {{1, 50}};
  r = h.Ok(Allocate(kOrg, targets));
  EXPECT_EQ(r.pool_before(), 50);
  EXPECT_EQ(r.pool_after(), 0);
  Balance b = h.GetBalance(kOrg, 1);
  ASSERT_EQ(b.lots.size(), 1u);
  EXPECT_EQ(b.lots[0].expires_at_us, 0) << "the expired lot was not moved";
  ExpectInvariant(h, kOrg);
}

TEST(LedgerExpiry, ReclaimAllAndWalletDeleteLeaveExpiredLotsToExpire) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 10, h.now() + kHour));
  h.Ok(Grant(kOrg, 1, 20));
  h.Ok(Grant(kOrg, 2, 7, h.now() + kHour));
  h.Ok(Grant(kOrg, 2, 3));
  h.Advance(2 * kHour);
  Result r = h.Ok(ReclaimAll(kOrg, 1));
  EXPECT_EQ(r.applied(), 20) << "only what is available";
  EXPECT_EQ(h.Available(kOrg, kPool), 20);
  r = h.Ok(WalletDelete(kOrg, 2));
  EXPECT_EQ(r.n[0], 3) << "moved: the unexpired lot";
  EXPECT_EQ(h.Available(kOrg, kPool), 23);
  EXPECT_EQ(h.Totals(kOrg).expired, 7) << "deleting a wallet removes its expired lots";
  h.Ok(Sweep());
  EXPECT_EQ(h.Totals(kOrg).expired, 17);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerExpiry, SweepIsBoundedAndSaysWhenMoreRemain) {
  Harness h;
  h.Ok(OrgCreate(kOrg));
  const uint64_t wallets = sweep_lots_max + 1;
  std::vector<Command> upserts;
  for (uint64_t w = 1; w < wallets; ++w) upserts.push_back(WalletUpsert(kOrg, w));
  h.ApplyBatch(upserts);  // batch_commands_max at most
  h.Ok(WalletUpsert(kOrg, wallets));
  h.Ok(Topup(kOrg, static_cast<int64_t>(wallets), h.now() + kMinute));
  Result r = h.Ok(AllocateAll(kOrg, 1));
  EXPECT_EQ(r.allocated(), static_cast<int64_t>(wallets));
  h.Advance(2 * kMinute);
  r = h.Ok(Sweep());
  EXPECT_EQ(r.n[0], sweep_lots_max);
  EXPECT_EQ(r.n[2], 1) << "more remaining";
  r = h.Ok(Sweep());
  EXPECT_EQ(r.n[0], 1);
  EXPECT_EQ(r.n[2], 0);
  EXPECT_EQ(h.Totals(kOrg).expired, static_cast<int64_t>(wallets));
  ExpectInvariant(h, kOrg);
}

TEST(LedgerExpiry, CaptureNeverSpendsHeldCreditsThatExpired) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 10, h.now() + kHour));
  h.Ok(Grant(kOrg, 1, 10));
  const uint64_t hold = h.Ok(Hold(kOrg, 1, 15)).id;  // 10 expiring + 5 of the other
  EXPECT_EQ(h.Available(kOrg, 1), 5);
  h.Advance(2 * kHour);
  Result r = h.Ok(Capture(kOrg, hold, 15));
  EXPECT_EQ(r.applied(), 5);
  EXPECT_EQ(r.remainder(), 10);
  EXPECT_EQ(r.balance_after(), 5);
  TotalsView t = h.Totals(kOrg);
  EXPECT_EQ(t.spent, 5);
  EXPECT_EQ(t.expired, 10) << "capturing a hold expires its expired lots";
  EXPECT_EQ(t.held, 0);
  bool held_expire = false;
  for (const auto& e : h.WalletHistory(kOrg, 1)) {
    if (e.kind == HistoryKind::expire) {
      held_expire = true;
      EXPECT_TRUE(e.held);
      EXPECT_EQ(e.amount, 10);
      EXPECT_EQ(e.balance_after, 5);
    }
  }
  EXPECT_TRUE(held_expire);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerExpiry, ReleaseReturnsUnexpiredLotsAndExpiresTheRest) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 10, h.now() + kHour));
  h.Ok(Grant(kOrg, 1, 10));
  const uint64_t hold = h.Ok(Hold(kOrg, 1, 15)).id;
  h.Advance(2 * kHour);
  Result r = h.Ok(Release(kOrg, hold));
  EXPECT_EQ(r.n[0], 5) << "released";
  EXPECT_EQ(r.n[2], 10) << "balance after";
  EXPECT_EQ(h.Available(kOrg, 1), 10);
  EXPECT_EQ(h.Held(kOrg, 1), 0);
  EXPECT_EQ(h.Totals(kOrg).expired, 10);
  ExpectInvariant(h, kOrg);
}

// A wallet of `lots` one-credit lots, each its own grant.
void WalletWithLots(Harness& h, uint64_t wallet, uint32_t lots) {
  std::vector<Command> grants(lots, Grant(kOrg, wallet, 1));
  for (const Result& r : h.ApplyBatch(grants)) EXPECT_EQ(r.code, ResultCode::ok) << Describe(r);
}

TEST(LedgerRefusal, LimitExceededForCommandsThatBringCreditsIntoAFullWallet) {
  auto setup = [](Harness& h) {
    FundedOrg(h, 100);
    WalletWithLots(h, 1, wallet_lots_max);
  };
  Harness h;
  setup(h);
  ASSERT_EQ(h.GetBalance(kOrg, 1).lots.size(), wallet_lots_max);
  std::vector<WalletAmount> targets = {{1, 5}};
  const std::vector<Command> refused = {Grant(kOrg, 1, 1), Adjust(kOrg, 1, 5),
                                        AdjustTo(kOrg, 1, wallet_lots_max + 5),
                                        Allocate(kOrg, targets), AllocateAll(kOrg, 5)};
  for (const Command& c : refused) {
    Result r = h.Apply(c);
    EXPECT_EQ(r.code, ResultCode::limit_exceeded) << "kind " << int(c.kind) << ": " << Describe(r);
    ExpectRefusalChangesNothing(setup, c, ResultCode::limit_exceeded);
  }
  EXPECT_EQ(h.Available(kOrg, 1), int64_t{wallet_lots_max});
  EXPECT_EQ(h.Available(kOrg, kPool), 100);
}

TEST(LedgerRefusal, LimitExceededForCommandsThatBringCreditsIntoAFullPool) {
  auto setup = [](Harness& h) {
    h.Ok(OrgCreate(kOrg));
    h.Ok(Grant(kOrg, 1, 10));  // grant 1: a lot the pool does not have
    std::vector<Command> topups(wallet_lots_max, Topup(kOrg, 1));
    for (const Result& r : h.ApplyBatch(topups)) EXPECT_EQ(r.code, ResultCode::ok);
  };
  Harness h;
  setup(h);
  ASSERT_EQ(h.GetBalance(kOrg, kPool).lots.size(), wallet_lots_max);
  for (const Command& c : {Topup(kOrg, 1), Reclaim(kOrg, 1, 1), ReclaimAll(kOrg, 1)}) {
    Result r = h.Apply(c);
    EXPECT_EQ(r.code, ResultCode::limit_exceeded) << "kind " << int(c.kind) << ": " << Describe(r);
    ExpectRefusalChangesNothing(setup, c, ResultCode::limit_exceeded);
  }
  EXPECT_EQ(h.Available(kOrg, 1), 10);
}

TEST(LedgerRefusal, LimitExceededForAnAllocationCountsThePiecesEachTargetReceives) {
  auto setup = [](Harness& h) {
    h.Ok(OrgCreate(kOrg));
    h.Ok(Topup(kOrg, 10));                      // spent second
    h.Ok(Topup(kOrg, 10, h.now() + kDay));      // spent first
    WalletWithLots(h, 1, wallet_lots_max - 1);  // room for one more lot
  };
  Harness h;
  setup(h);
  // 11 takes a piece of each pool lot: two lots, one too many.
  std::vector<WalletAmount> two_pieces = {{1, 11}};
  Result r = h.Apply(Allocate(kOrg, two_pieces));
  EXPECT_EQ(r.code, ResultCode::limit_exceeded) << Describe(r);
  EXPECT_EQ(h.Available(kOrg, kPool), 20);
  ExpectRefusalChangesNothing(setup, Allocate(kOrg, two_pieces), ResultCode::limit_exceeded);
  // 10 comes from one pool lot: it fits.
  std::vector<WalletAmount> one_piece = {{1, 10}};
  h.Ok(Allocate(kOrg, one_piece));
  EXPECT_EQ(h.GetBalance(kOrg, 1).lots.size(), wallet_lots_max);
  EXPECT_EQ(h.Available(kOrg, 1), int64_t{wallet_lots_max} - 1 + 10);
}

TEST(LedgerEdges, CreditsComingBackAreNeverRefusedForTheLotLimit) {
  Harness h;
  FundedOrg(h, 0);
  WalletWithLots(h, 1, wallet_lots_max);
  // Two holds take two whole lots out; two grants fill the wallet again.
  const uint64_t first = h.Ok(Hold(kOrg, 1, 1)).id;
  const uint64_t second = h.Ok(Hold(kOrg, 1, 1)).id;
  h.Ok(Grant(kOrg, 1, 1));
  h.Ok(Grant(kOrg, 1, 1));
  ASSERT_EQ(h.GetBalance(kOrg, 1).lots.size(), wallet_lots_max);

  // Released: back in, past the limit by what was held.
  Result r = h.Ok(Release(kOrg, first));
  EXPECT_EQ(r.n[0], 1);
  EXPECT_EQ(h.GetBalance(kOrg, 1).lots.size(), wallet_lots_max + 1);
  // The other hold is captured whole: nothing comes back.
  h.Ok(Capture(kOrg, second, 1));
  EXPECT_EQ(h.Held(kOrg, 1), 0);
  // Nothing more comes in while the wallet is past the limit.
  EXPECT_EQ(h.Apply(Grant(kOrg, 1, 1)).code, ResultCode::limit_exceeded);
  // A deleted wallet's lots go to the pool whatever the pool holds.
  h.Ok(WalletDelete(kOrg, 1));
  EXPECT_EQ(h.Available(kOrg, kPool), int64_t{wallet_lots_max} + 1);
  EXPECT_EQ(h.GetBalance(kOrg, kPool).lots.size(), wallet_lots_max + 1);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerEdges, ACaptureInPartReturnsTheRestEvenIntoAFullWallet) {
  Harness h;
  FundedOrg(h, 0);
  WalletWithLots(h, 1, wallet_lots_max);
  const uint64_t hold = h.Ok(Hold(kOrg, 1, 2)).id;  // two whole lots
  h.Ok(Grant(kOrg, 1, 1));
  h.Ok(Grant(kOrg, 1, 1));
  ASSERT_EQ(h.GetBalance(kOrg, 1).lots.size(), wallet_lots_max);
  Result r = h.Ok(Capture(kOrg, hold, 1));
  EXPECT_EQ(r.applied(), 1);
  EXPECT_EQ(h.Available(kOrg, 1), int64_t{wallet_lots_max} + 1);
  EXPECT_EQ(h.GetBalance(kOrg, 1).lots.size(), wallet_lots_max + 1);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerEdges, ADeletedWalletRevivedByAnAllocationKeepsItsHistory) {
  Harness h;
  FundedOrg(h, 100);
  h.Ok(Grant(kOrg, 5, 10));
  h.Ok(WalletDelete(kOrg, 5));
  const size_t before = h.WalletHistory(kOrg, 5).size();
  std::vector<WalletAmount> targets = {{5, 30}};
  h.Ok(Allocate(kOrg, targets));
  Balance b = h.GetBalance(kOrg, 5);
  EXPECT_EQ(b.available, 30) << "revived empty, then allocated";
  EXPECT_EQ(h.Summary(kOrg).wallets, 1u);
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 5);
  EXPECT_EQ(wh.size(), before + 1);
  EXPECT_EQ(wh[0].kind, HistoryKind::allocate);
  EXPECT_EQ(wh[0].balance_after, 30);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerQuery, BalanceAtFollowsHoldsAndCaptures) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 100));
  h.Advance(kMinute);
  const int64_t t1 = h.now();
  const uint64_t hold = h.Ok(Hold(kOrg, 1, 30)).id;
  h.Advance(kMinute);
  const int64_t t2 = h.now();
  h.Ok(Capture(kOrg, hold, 20));  // 20 spent from held, 10 back
  auto at = [&](int64_t when) { return h.ledger().BalanceAt(kOrg, 1, Credits(), when).value(); };
  EXPECT_EQ(at(t1 - kMs), 100);
  EXPECT_EQ(at(t1), 70);
  EXPECT_EQ(at(t2), 80);
  EXPECT_EQ(h.Available(kOrg, 1), 80);
}

TEST(LedgerEvents, EveryCommandThatLowersAvailableCanRaiseLowAndDepleted) {
  Harness h;
  OrgSettings s;
  s.low_balance_threshold = 50;
  FundedOrg(h, 1000, s);
  h.Ok(Grant(kOrg, 1, 100));
  h.Ok(Reclaim(kOrg, 1, 60));  // 40
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_low), 1u) << "reclaim";
  h.Ok(AdjustTo(kOrg, 1, 100));
  h.Ok(AdjustTo(kOrg, 1, 10));
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_low), 1u) << "adjust down";
  h.Ok(AdjustTo(kOrg, 1, 0));
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_depleted), 1u) << "adjust to zero";
  // Expiry by the sweep, with no other traffic.
  h.Ok(Grant(kOrg, 1, 5, h.now() + kMinute));
  h.Advance(2 * kMinute);
  h.Ok(Sweep());
  EXPECT_EQ(CountEvents(h.events(), EventKind::balance_depleted), 1u) << "sweep";
  EXPECT_EQ(CountEvents(h.events(), EventKind::credits_expired), 1u);
}

TEST(LedgerEdges, AllocateToAllSkipsDeletedWalletsAndAllowsDuplicateTargets) {
  Harness h;
  FundedOrg(h, 1000);
  for (uint64_t w : {1, 2, 3}) h.Ok(WalletUpsert(kOrg, w));
  h.Ok(WalletDelete(kOrg, 2));
  Result r = h.Ok(AllocateAll(kOrg, 10));
  EXPECT_EQ(r.allocated(), 20);
  EXPECT_EQ(CountEvents(h.events(), EventKind::credits_allocated), 2u);
  EXPECT_EQ(h.Summary(kOrg).wallets, 2u);
  std::vector<WalletAmount> twice = {{1, 5}, {1, 7}};
  r = h.Ok(Allocate(kOrg, twice));
  EXPECT_EQ(r.allocated(), 12);
  EXPECT_EQ(h.Available(kOrg, 1), 22);
  // Too long a list.
  std::vector<WalletAmount> many(allocate_targets_max + 1, WalletAmount{1, 1});
  EXPECT_EQ(h.Apply(Allocate(kOrg, many)).code, ResultCode::limit_exceeded);
  ExpectInvariant(h, kOrg);
}

TEST(LedgerEdges, ABatchMixesResultsAndARefusalDoesNotStopTheRest) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 10));
  std::vector<Result> results = h.ApplyBatch(
      {Deduct(kOrg, 1, 4), Deduct(kOrg, 1, 100), Deduct(kOrg, 42, 1), Deduct(kOrg, 1, 6)});
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].code, ResultCode::ok);
  EXPECT_EQ(results[0].balance_after(), 6);
  EXPECT_EQ(results[1].code, ResultCode::insufficient_funds);
  EXPECT_EQ(results[1].available(), 6);
  EXPECT_EQ(results[2].code, ResultCode::unknown_wallet);
  EXPECT_EQ(results[3].code, ResultCode::ok);
  EXPECT_EQ(results[3].balance_after(), 0);
  EXPECT_EQ(h.Available(kOrg, 1), 0);
}

TEST(LedgerEdges, HistoryTimesHaveMillisecondResolution) {
  Harness h;
  FundedOrg(h, 0);
  h.SetNow(kT0 + 1500);  // 1.5 ms
  h.Ok(Grant(kOrg, 1, 1));
  std::vector<HistoryEntryView> wh = h.WalletHistory(kOrg, 1);
  ASSERT_EQ(wh.size(), 1u);
  EXPECT_EQ(wh[0].time_us, kT0 + 1000);
  HistoryQuery q;
  q.org_id = kOrg;
  q.wallet_id = 1;
  auto page = h.ledger().GetHistory(q);
  ASSERT_TRUE(page.ok());
  EXPECT_FALSE(page->truncated) << "everything is still in memory";
  EXPECT_EQ(page->next_cursor, 0u);
}

TEST(LedgerEdges, CreditPaymentsOffAlsoRefusesPartialHolds) {
  Harness h;
  OrgSettings off;
  off.credit_payments = false;
  h.Ok(OrgCreate(kOrg, off));
  h.Ok(Grant(kOrg, 1, 10));
  EXPECT_EQ(h.Apply(Hold(kOrg, 1, 5, 0, /*partial=*/true)).code,
            ResultCode::credit_payments_disabled);
  EXPECT_EQ(h.Available(kOrg, 1), 10);
}

// ===========================================================================
// Determinism and the invariant
// ===========================================================================

void MixedStory(Harness& h) {
  FundedOrg(h, 10000);
  h.Ok(Topup(kOrg, 500, h.now() + kDay));
  std::vector<WalletAmount> targets = {{3, 300}, {1, 100}, {2, 200}};
  h.Ok(Allocate(kOrg, targets));
  h.Ok(Grant(kOrg, 4, 50, h.now() + kHour));
  h.Ok(Deduct(kOrg, 1, 10));
  const uint64_t hold = h.Ok(Hold(kOrg, 2, 20)).id;
  h.Ok(Capture(kOrg, hold, 5));
  h.Ok(Request(kOrg, 3, 40));
  h.Ok(Approve(kOrg, 1));
  h.Ok(VoidGrant(kOrg, 1));
  h.Advance(2 * kHour);
  h.Ok(Sweep());
  h.Ok(WalletDelete(kOrg, 3));
}

TEST(LedgerDeterminism, SameCommandsSameDigest) {
  Harness a;
  Harness b;
  MixedStory(a);
  MixedStory(b);
  EXPECT_EQ(a.ledger().Digest(), b.ledger().Digest());
  EXPECT_EQ(a.ledger().history_entries_total(), b.ledger().history_entries_total());
  ExpectInvariant(a, kOrg);
  // One more credit anywhere shows.
  b.Ok(Grant(kOrg, 1, 1));
  EXPECT_NE(a.ledger().Digest(), b.ledger().Digest());
}

TEST(LedgerDeterminism, DigestDoesNotDependOnOrgCreationOrder) {
  Harness a;
  Harness b;
  a.ApplyBatch({OrgCreate(1), OrgCreate(2)});
  b.ApplyBatch({OrgCreate(2), OrgCreate(1)});
  // Same ids remembered in both: op ids 1 and 2 under different orgs, so
  // compare after the op-id memory has forgotten them.
  for (int round = 0; round < 3; ++round) {
    a.Advance(op_ids_retention_us_default + kHour);
    b.Advance(op_ids_retention_us_default + kHour);
    a.Apply(Deduct(kNoSuchOrg, 1, 1));
    b.Apply(Deduct(kNoSuchOrg, 1, 1));
  }
  EXPECT_EQ(a.ledger().Digest(), b.ledger().Digest());
}

TEST(LedgerDeterminism, OpIdsAreForgottenAfterTheWindowAndAppliedAgain) {
  Harness h;
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 100));
  Command d = Deduct(kOrg, 1, 1);
  d.op_id = 4242;
  h.Ok(d);
  // Within half the retention: remembered.
  h.Advance(op_ids_retention_us_default / 2 - kSecond);
  EXPECT_TRUE(h.Apply(d).replayed);
  // After twice the retention (and two generations of traffic): forgotten.
  for (int i = 0; i < 3; ++i) {
    h.Advance(op_ids_retention_us_default);
    h.Apply(Deduct(kNoSuchOrg, 1, 1));
  }
  Result r = h.Apply(d);
  EXPECT_FALSE(r.replayed);
  EXPECT_EQ(r.code, ResultCode::ok);
  EXPECT_EQ(h.Available(kOrg, 1), 98);
}

TEST(LedgerDeterminism, OpIdsAreRememberedForAtLeastHalfTheCountWindow) {
  LedgerOptions small;
  small.op_ids_max = 64;
  Harness h(small);
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 1000));
  Command d = Deduct(kOrg, 1, 1);
  d.op_id = 1u << 30;
  h.Ok(d);
  for (int i = 0; i < 31; ++i) h.Ok(Deduct(kOrg, 1, 1));  // op_ids_max / 2 - 1 later ids
  EXPECT_TRUE(h.Apply(d).replayed);
  for (int i = 0; i < 200; ++i) h.Ok(Deduct(kOrg, 1, 1));
  EXPECT_FALSE(h.Apply(d).replayed) << "at most twice op_ids_max later: forgotten";
}

TEST(LedgerDeterminism, OpIdWindowHoldsOverMoreGenerationsThanTheTableHasTags) {
  // engine/op_memory.h: both generations share one table whose slots carry
  // a 16-bit generation tag; tags come back after 65,535 generations.  Over
  // 75,000 generations of 4 ids, every id is still remembered for 4 later
  // ids, and an id forgotten long ago (its slot's tag reused many times
  // over) is applied again, never replayed.
  LedgerOptions small;
  small.op_ids_max = 8;  // generations of 4
  Harness h(small);
  FundedOrg(h, 0);
  constexpr uint64_t ids = 300'000;
  h.Ok(Grant(kOrg, 1, 2 * ids));
  constexpr uint64_t first_id = uint64_t{1} << 40;
  int64_t applied = 0;
  for (uint64_t i = 0; i < ids; ++i) {
    Command d = Deduct(kOrg, 1, 1);
    d.op_id = first_id + i;
    Result r = h.Apply(d);
    ASSERT_EQ(r.code, ResultCode::ok) << i;
    ASSERT_FALSE(r.replayed) << "a fresh id taken for a retry, id " << i;
    ++applied;
    if (i >= 3) {  // at most 4 later ids, counting an old id taken again below
      d.op_id = first_id + i - 3;
      ASSERT_TRUE(h.Apply(d).replayed) << "forgotten within the window, id " << i - 3;
    }
    if (i % 997 == 0 && i >= 1000) {
      d.op_id = first_id + i - 1000;  // forgotten: a new operation
      Result again = h.Apply(d);
      ASSERT_FALSE(again.replayed) << "replayed long after the window, id " << i - 1000;
      ++applied;
    }
  }
  EXPECT_EQ(h.Available(kOrg, 1), 2 * static_cast<int64_t>(ids) - applied);
}

TEST(LedgerDeterminism, ABatchLongerThanAGenerationForgetsItsOwnOldestIdsWithoutHarm) {
  // docs/ENGINE.md: a batch holding more ids than a generation (op_ids_max
  // / 2) may forget its own first ids before it ends; a repeat at the end is
  // then a new operation.  It must still be applied exactly as one.
  LedgerOptions small;
  small.op_ids_max = 8;  // generations of 4
  Harness h(small);
  FundedOrg(h, 0);
  h.Ok(Grant(kOrg, 1, 1000));
  std::vector<Command> batch;
  for (int i = 0; i < 12; ++i) batch.push_back(Deduct(kOrg, 1, 1));
  for (size_t i = 0; i < batch.size(); ++i) batch[i].op_id = 9000 + i;
  batch.push_back(batch[0]);   // forgotten by now: applied again
  batch.push_back(batch[11]);  // still remembered: a retry
  std::vector<Result> results = h.ApplyBatch(batch);
  ASSERT_EQ(results.size(), 14u);
  EXPECT_FALSE(results[12].replayed);
  EXPECT_EQ(results[12].code, ResultCode::ok);
  EXPECT_TRUE(results[13].replayed);
  EXPECT_EQ(results[13].balance_after(), results[11].balance_after());
  EXPECT_EQ(h.Available(kOrg, 1), 1000 - 13);
}

}  // namespace
}  // namespace tally::testing
