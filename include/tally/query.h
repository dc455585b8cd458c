// query.h: what the read-only queries of SPEC §2 answer.
//
// Queries never change a ledger and are not logged.  Each takes the time to
// read at (`now_us`), because "available" excludes lots whose expiry has
// passed even before the sweep has removed them.
#ifndef TALLY_QUERY_H_
#define TALLY_QUERY_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tally/asset.h"

namespace tally {

// HistoryKind is the kind of one history entry.  On-disk and on-wire.
enum class HistoryKind : uint8_t {
  topup = 1,     // in: a lot bought into the pool
  allocate = 2,  // pool out / wallet in (also request approvals)
  reclaim = 3,   // wallet out / pool in
  grant = 4,     // in: a lot granted straight into a wallet
  void_grant = 5,
  adjust = 6,    // in (up) or out (down)
  deduct = 7,    // out: spent
  deduct_rollup = 8,  // out: several deducts in one interval, summed
  hold = 9,      // out of available into held
  capture = 10,  // held credits spent (held = true)
  release = 11,  // held back into available
  expire = 12,
  wallet_delete = 13,  // wallet out / pool in: a deleted user's lots return
};
inline constexpr uint8_t history_kind_max = 13;

std::string_view HistoryKindName(HistoryKind kind);  // "topup", "deduct", ...

// LotView is one lot as a balance shows it.
struct LotView {
  uint64_t grant_id = 0;
  Asset asset;
  int64_t remaining = 0;
  int64_t expires_at_us = 0;  // 0 = never
  int32_t priority = 0;
};

// Balance is one wallet's balance of one asset.
struct Balance {
  int64_t available = 0;      // spendable now: lots not expired, not held
  int64_t held = 0;           // reserved by open holds (pending)
  int64_t expiring_soon = 0;  // available that expires within the org's window
  std::vector<LotView> lots;  // available lots, in consumption order
};

// OrgSummary is an org's totals for one asset (SPEC §2 "org summary").
struct OrgSummary {
  int64_t pool = 0;       // available in the pool
  int64_t allocated = 0;  // available + held in every user wallet
  int64_t total = 0;      // pool + allocated
  uint64_t wallets = 0;   // user wallets, not deleted
  uint64_t pending_requests = 0;
  int64_t pending_requested = 0;
  int64_t pool_if_all_approved = 0;  // pool - pending_requested (may be < 0)
};

// HistoryEntryView is one line of a wallet's history.
struct HistoryEntryView {
  uint64_t seq = 0;          // 1, 2, 3 ... per wallet
  int64_t time_us = 0;       // millisecond resolution
  uint64_t wallet_id = 0;
  HistoryKind kind{};
  bool out = false;          // direction: out of the wallet (else in)
  bool held = false;         // moved held credits, not available ones
  Asset asset;
  int64_t amount = 0;        // always > 0
  int64_t balance_after = 0; // the wallet's available balance of the asset
  uint64_t related_id = 0;   // grant, hold, request or operation id
  std::string reference;
  std::string actor;
};

// HistoryQuery selects entries, newest first.
struct HistoryQuery {
  uint64_t org_id = 0;
  bool all_wallets = false;   // the whole org; else wallet_id only
  uint64_t wallet_id = 0;
  int64_t from_us = 0;        // inclusive; 0 = no bound
  int64_t to_us = 0;          // exclusive; 0 = no bound
  Asset asset;                // empty(): every asset
  uint32_t kind_mask = 0;     // bit (1 << kind); 0: every kind
  uint64_t cursor = 0;        // from the previous page; 0 = newest
  uint32_t limit = 100;
};

// HistoryPage is one page; next_cursor 0 means there is no older entry in
// memory.  `truncated` says older entries exist but left memory.
struct HistoryPage {
  std::vector<HistoryEntryView> entries;
  uint64_t next_cursor = 0;
  bool truncated = false;
};

enum class RequestStatus : uint8_t { pending = 1, approved = 2, rejected = 3 };
std::string_view RequestStatusName(RequestStatus status);

// RequestView is one credit request.
struct RequestView {
  uint64_t request_id = 0;
  uint64_t wallet_id = 0;
  Asset asset;
  int64_t amount = 0;           // as asked
  int64_t approved_amount = 0;  // as approved (0 unless approved)
  RequestStatus status{};
  int64_t created_at_us = 0;
  int64_t decided_at_us = 0;
  std::string reason;           // the asker's reason
  std::string decided_by;
  std::string decision_note;    // rejection reason
};

// UsageRow is one wallet's usage of one asset over a time range.
struct UsageRow {
  uint64_t wallet_id = 0;
  Asset asset;
  int64_t spent = 0;    // deduct, capture, adjust down
  int64_t granted = 0;  // topup, grant, adjust up, allocated in
  int64_t expired = 0;
};

// TotalsView is one org's running totals for one asset: the SPEC §1
// invariant is in == available + held + spent + expired + voided + adjusted_out.
struct TotalsView {
  int64_t in = 0;            // topups, grants, adjusts up
  int64_t available = 0;     // in every wallet, pool included, not expired-swept
  int64_t held = 0;
  int64_t spent = 0;         // deducts and captures
  int64_t expired = 0;
  int64_t voided = 0;
  int64_t adjusted_out = 0;
};

}  // namespace tally

#endif  // TALLY_QUERY_H_
