// model_test.cc: the engine against a deliberately naive model of docs/ENGINE.md.
//
// The model below is the ledger written the slow, obvious way: std::map and
// std::vector, lots kept sorted by std::sort after every change, every sum
// recomputed by a loop.  A seeded driver throws a million random commands (a
// few orgs, a thousand wallets, three assets, random expiries, priorities and
// hold timeouts, time mostly creeping forward and now and then jumping days,
// invalid inputs, retries of earlier operation ids) at both in batches, and
// every Result must agree.  After every batch the SPEC §1 invariant is checked
// against the engine's totals; every ~1000 batches every balance, lot list and
// org summary is compared.
//
// Where docs/ENGINE.md is silent, the model picks the reading closest to
// ../shared/SPEC.md; those picks are the named constants in `policy` below
// (flip one, and write the choice into docs/ENGINE.md, to settle it the other
// way).  The driver stays well away from the lot limits (wallet_lots_max,
// hold_lots_max, sweep_lots_max) and from the few orders of checks the doc
// leaves open; the model stops the test if the workload drifts near them.
//
// Environment: TALLY_MODEL_OPS (default 1,000,000) and TALLY_MODEL_SEED.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/ledger.h"
#include "gtest/gtest.h"
#include "tally/command.h"
#include "tally/limits.h"
#include "tally/query.h"
#include "tally/result_code.h"

namespace tally {
namespace {

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();


// ---------------------------------------------------------------------------
// Printing.

std::string KindName(CommandKind kind) {
  static const char* const names[] = {
      "kind0",  "org_create", "org_settings", "topup",   "allocate",      "reclaim",
      "grant",  "void_grant", "adjust",       "deduct",  "hold",          "capture",
      "release", "request",   "approve",      "reject",  "wallet_upsert", "wallet_delete",
      "expire_sweep"};
  auto k = static_cast<uint8_t>(kind);
  if (k <= command_kind_max) return names[k];
  return "kind" + std::to_string(k);
}

std::string AssetText(Asset asset) {
  if (asset.Valid()) return asset.name();
  char buf[64];
  std::snprintf(buf, sizeof buf, "invalid:0x%" PRIx64 ":0x%" PRIx64, asset.lo(), asset.hi());
  return buf;
}

std::string Describe(const Command& c) {
  std::ostringstream os;
  os << KindName(c.kind) << " op_id=" << c.op_id << " org=" << c.org_id
     << " wallet=" << c.wallet_id << " target_id=" << c.target_id
     << " asset=" << AssetText(c.asset) << " amount=" << c.amount
     << " flags=" << int{c.flags} << " expires_at=" << c.expires_at_us
     << " priority=" << c.priority << " text_bytes=" << c.text.size()
     << " actor_bytes=" << c.actor.size();
  if (c.kind == CommandKind::org_create || c.kind == CommandKind::org_settings) {
    os << " mask=" << int{c.settings_mask} << " credit_payments=" << c.settings.credit_payments
       << " threshold=" << c.settings.low_balance_threshold
       << " window=" << c.settings.expiring_soon_window_us
       << " rollup=" << c.settings.deduct_rollup_interval_us;
  }
  if (!c.targets.empty()) {
    os << " targets=[";
    for (size_t i = 0; i < c.targets.size() && i < 12; ++i) {
      os << (i ? " " : "") << c.targets[i].wallet_id << ":" << c.targets[i].amount;
    }
    if (c.targets.size() > 12) os << " …(" << c.targets.size() << ")";
    os << "]";
  }
  return os.str();
}

std::string Describe(const Result& r) {
  std::ostringstream os;
  os << ResultCodeName(r.code) << (r.replayed ? " replayed" : "") << " id=" << r.id << " n=["
     << r.n[0] << ", " << r.n[1] << ", " << r.n[2] << "]";
  return os.str();
}

bool Same(const Result& a, const Result& b) {
  return a.code == b.code && a.replayed == b.replayed && a.id == b.id && a.n[0] == b.n[0] &&
         a.n[1] == b.n[1] && a.n[2] == b.n[2];
}

Result Code(ResultCode code) { return Result{.code = code}; }
Result Ok(int64_t a = 0, int64_t b = 0, int64_t c = 0, uint64_t id = 0) {
  return Result{.code = ResultCode::ok, .id = id, .n = {a, b, c}};
}
Result Short(ResultCode code, int64_t available, int64_t requested) {
  return Result{.code = code, .n = {available, requested, requested - available}};
}

bool AddOverflows(int64_t a, int64_t b) {
  int64_t sum;
  return __builtin_add_overflow(a, b, &sum);
}

// ---------------------------------------------------------------------------
// The model.

namespace model {

struct Lot {
  uint64_t grant = 0;
  Asset asset;
  int64_t remaining = 0;
  int64_t expires = 0;  // 0 = never
  int32_t priority = 0;
};

int64_t ExpiryKey(const Lot& l) { return l.expires == 0 ? kInt64Max : l.expires; }

// SpentBefore: priority, then soonest expiry (never last), then oldest grant.
bool SpentBefore(const Lot& a, const Lot& b) {
  if (a.priority != b.priority) return a.priority < b.priority;
  if (ExpiryKey(a) != ExpiryKey(b)) return ExpiryKey(a) < ExpiryKey(b);
  return a.grant < b.grant;
}

bool Expired(const Lot& l, int64_t now) { return l.expires != 0 && l.expires <= now; }

using Lots = std::vector<Lot>;  // kept in consumption order

int64_t Available(const Lots& lots, Asset asset, int64_t now) {
  int64_t sum = 0;
  for (const Lot& l : lots) {
    if (l.asset == asset && !Expired(l, now)) sum += l.remaining;
  }
  return sum;
}

// Book counts expired lots too: they stay booked until something removes them.
int64_t Book(const Lots& lots, Asset asset) {
  int64_t sum = 0;
  for (const Lot& l : lots) {
    if (l.asset == asset) sum += l.remaining;
  }
  return sum;
}

// Put adds a piece of a lot, merging it with a lot of the same grant.
void Put(Lots& lots, const Lot& piece) {
  for (Lot& l : lots) {
    if (l.grant == piece.grant) {
      l.remaining += piece.remaining;
      return;
    }
  }
  lots.push_back(piece);
  std::sort(lots.begin(), lots.end(), SpentBefore);
}

struct Wallet {
  bool live = true;
  Lots lots;
};

struct Hold {
  uint64_t wallet = 0;
  Asset asset;
  int64_t timeout = 0;  // 0 = none
  Lots lots;
};

struct Request {
  uint64_t wallet = 0;
  Asset asset;
  int64_t amount = 0;
  RequestStatus status = RequestStatus::pending;
  int64_t approved = 0;
};

struct Counters {
  int64_t in = 0;
  int64_t spent = 0;
  int64_t expired = 0;
  int64_t voided = 0;
  int64_t adjusted_out = 0;
};

struct Org {
  OrgSettings settings;
  std::map<uint64_t, Wallet> wallets;  // 0 is the pool
  std::vector<uint64_t> created;       // user wallets in creation order
  std::map<uint64_t, bool> grants;     // grant id -> voided
  std::map<uint64_t, Hold> holds;      // open holds
  std::map<uint64_t, Request> requests;
  std::map<Asset, Counters> counters;
  uint64_t next_grant = 1;
  uint64_t next_hold = 1;
  uint64_t next_request = 1;
};

bool UsesAsset(const Command& c) {
  switch (c.kind) {
    case CommandKind::topup:
    case CommandKind::allocate:
    case CommandKind::reclaim:
    case CommandKind::grant:
    case CommandKind::adjust:
    case CommandKind::deduct:
    case CommandKind::hold:
    case CommandKind::request:
      return true;
    case CommandKind::approve:
    case CommandKind::reject:
      return (c.flags & flag_all) != 0;
    default:
      return false;
  }
}

bool UsesExpiry(CommandKind kind) {
  return kind == CommandKind::topup || kind == CommandKind::grant ||
         kind == CommandKind::adjust || kind == CommandKind::hold;
}

// Ledger is the model of one engine::Ledger.
class Ledger {
 public:
  // Remembered ids live at least this long (op_ids_retention_us / 2).
  static constexpr int64_t kRememberedAtLeastUs = op_ids_retention_us_default / 2;

  int64_t BeginBatch(int64_t time_us) {
    now_ = std::max(now_, time_us);
    return now_;
  }
  int64_t now() const { return now_; }

  Result Apply(const Command& c) {
    if (c.kind == CommandKind::expire_sweep) return Sweep();
    if (c.op_id == 0) return Code(ResultCode::invalid_operation_id);
    Key key{c.org_id, c.op_id};
    if (auto it = ops_.find(key); it != ops_.end()) {
      if (now_ - it->second.time_us <= kRememberedAtLeastUs) {
        Result again = it->second.result;
        again.replayed = true;
        return again;
      }
      if (!Forgotten(it->second.time_us)) {
        Fault("driver retried an op id in the window where the doc allows either answer");
      }
    }
    Result r = Execute(c);
    ops_[key] = Remembered{r, now_};
    if (id_times_.empty() || id_times_.back() != now_) id_times_.push_back(now_);
    return r;
  }

  // Knows says whether (org, op) is remembered (or was, and may still be).
  bool Knows(uint64_t org_id, uint64_t op_id) const {
    return ops_.count(Key{org_id, op_id}) != 0;
  }

  // AppliedAt is when (org, op) was last applied (not replayed), or -1.
  int64_t AppliedAt(uint64_t org_id, uint64_t op_id) const {
    auto it = ops_.find(Key{org_id, op_id});
    return it == ops_.end() ? -1 : it->second.time_us;
  }

  // Forgotten says whether an id first applied at `time_us` is certainly
  // forgotten: two generations have been retired since.  A generation is
  // retired by the first new id more than op_ids_retention_us / 2 after it
  // began, and it began no later than that id.
  bool Forgotten(int64_t time_us) const {
    auto first = std::upper_bound(id_times_.begin(), id_times_.end(),
                                  time_us + kRememberedAtLeastUs + kSecond);
    if (first == id_times_.end()) return false;
    auto second =
        std::upper_bound(first, id_times_.end(), *first + kRememberedAtLeastUs + kSecond);
    return second != id_times_.end();
  }

  // ForgetOld drops memory the engine certainly dropped too.
  void ForgetOld() {
    for (auto it = ops_.begin(); it != ops_.end();) {
      it = Forgotten(it->second.time_us) ? ops_.erase(it) : std::next(it);
    }
  }

  const std::string& fault() const { return fault_; }
  const std::map<uint64_t, Org>& orgs() const { return orgs_; }
  const Org* FindOrg(uint64_t id) const {
    auto it = orgs_.find(id);
    return it == orgs_.end() ? nullptr : &it->second;
  }

  // ---- queries, the model's way ----

  // Held sums a wallet's open holds of an asset, expired lots left out.
  int64_t Held(const Org& o, uint64_t wallet, Asset asset) const {
    int64_t sum = 0;
    for (const auto& [id, h] : o.holds) {
      if (h.wallet == wallet) sum += Available(h.lots, asset, now_);
    }
    return sum;
  }

  Balance GetBalance(const Org& o, uint64_t wallet, Asset asset, int64_t now) const {
    Balance b;
    const Wallet& w = o.wallets.at(wallet);
    for (const Lot& l : w.lots) {
      if (l.asset != asset || Expired(l, now)) continue;
      b.available += l.remaining;
      if (l.expires != 0 && l.expires <= now + o.settings.expiring_soon_window_us) {
        b.expiring_soon += l.remaining;
      }
      b.lots.push_back(LotView{l.grant, l.asset, l.remaining, l.expires,
                               l.priority});
    }
    b.held = Held(o, wallet, asset);
    return b;
  }

  OrgSummary GetOrgSummary(const Org& o, Asset asset) const {
    OrgSummary s;
    s.pool = Available(o.wallets.at(0).lots, asset, now_);
    for (const auto& [id, w] : o.wallets) {
      if (id == 0 || !w.live) continue;
      ++s.wallets;
      s.allocated += Available(w.lots, asset, now_) + Held(o, id, asset);
    }
    s.total = s.pool + s.allocated;
    for (const auto& [id, r] : o.requests) {
      if (r.status == RequestStatus::pending && r.asset == asset) {
        ++s.pending_requests;
        s.pending_requested += r.amount;
      }
    }
    s.pool_if_all_approved = s.pool - s.pending_requested;
    return s;
  }

  // Shape is how big the state got, to keep the driver in range.
  struct Shape {
    size_t wallet_lots_max = 0;
    size_t pool_lots_max = 0;
    size_t holds = 0;
    size_t pending_requests = 0;
    size_t lots = 0;
  };
  Shape GetShape() const {
    Shape s;
    for (const auto& [org_id, o] : orgs_) {
      for (const auto& [id, w] : o.wallets) {
        (id == 0 ? s.pool_lots_max : s.wallet_lots_max) =
            std::max(id == 0 ? s.pool_lots_max : s.wallet_lots_max, w.lots.size());
        s.lots += w.lots.size();
      }
      s.holds += o.holds.size();
      for (const auto& [id, r] : o.requests) s.pending_requests += r.status == RequestStatus::pending;
    }
    return s;
  }

  // GetTotals: every asset's totals of an org, sums taken lot by lot.
  std::map<Asset, TotalsView> GetTotals(const Org& o) const {
    std::map<Asset, TotalsView> totals;
    for (const auto& [asset, c] : o.counters) {
      TotalsView& t = totals[asset];
      t.in = c.in;
      t.spent = c.spent;
      t.expired = c.expired;
      t.voided = c.voided;
      t.adjusted_out = c.adjusted_out;
    }
    for (const auto& [id, w] : o.wallets) {
      for (const Lot& l : w.lots) totals[l.asset].available += l.remaining;
    }
    for (const auto& [id, h] : o.holds) {
      for (const Lot& l : h.lots) totals[l.asset].held += l.remaining;
    }
    return totals;
  }


 private:
  struct Key {
    uint64_t org;
    uint64_t op;
    bool operator==(const Key& o) const { return org == o.org && op == o.op; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<uint64_t>()(k.org * 0x9e3779b97f4a7c15ULL ^ k.op);
    }
  };
  struct Remembered {
    Result result;
    int64_t time_us = 0;
  };

  void Fault(const std::string& what) {
    if (fault_.empty()) fault_ = what;
  }

  // CheckRoom stops the test when the workload reaches a limit whose exact
  // answer the doc leaves open (the driver is tuned to stay well below).
  void CheckRoom(const Lots& lots, size_t more, const char* what) {
    if (lots.size() + more > wallet_lots_max * 7 / 8) {
      Fault(std::string("workload came near wallet_lots_max: ") + what);
    }
  }

  Counters& C(Org& o, Asset asset) { return o.counters[asset]; }

  // Take removes `amount` of an asset from unexpired lots in consumption
  // order and returns the pieces.  The caller checked it is there.
  Lots Take(Lots& lots, Asset asset, int64_t amount) {
    Lots pieces;
    for (Lot& l : lots) {
      if (amount == 0) break;
      if (l.asset != asset || Expired(l, now_)) continue;
      int64_t take = std::min(l.remaining, amount);
      Lot piece = l;
      piece.remaining = take;
      pieces.push_back(piece);
      l.remaining -= take;
      amount -= take;
    }
    if (amount != 0) Fault("model: Take short");
    std::erase_if(lots, [](const Lot& l) { return l.remaining == 0; });
    return pieces;
  }

  // ExpireLots removes expired lots, booking them as expired; returns how many.
  int64_t ExpireLots(Org& o, Lots& lots) {
    int64_t count = 0;
    for (const Lot& l : lots) {
      if (Expired(l, now_)) {
        C(o, l.asset).expired += l.remaining;
        ++count;
      }
    }
    std::erase_if(lots, [&](const Lot& l) { return Expired(l, now_); });
    return count;
  }

  // WalletFor finds a user wallet, creating or reviving it.
  Wallet& WalletFor(Org& o, uint64_t id) {
    auto it = o.wallets.find(id);
    if (it == o.wallets.end()) {
      o.created.push_back(id);
      return o.wallets[id];
    }
    it->second.live = true;
    return it->second;
  }

  // LiveBalance is a wallet's available balance, 0 when absent or deleted.
  int64_t LiveBalance(const Org& o, uint64_t id, Asset asset) const {
    auto it = o.wallets.find(id);
    if (it == o.wallets.end() || !it->second.live) return 0;
    return Available(it->second.lots, asset, now_);
  }

  Wallet* Live(Org& o, uint64_t id) {
    auto it = o.wallets.find(id);
    if (it == o.wallets.end() || !it->second.live) return nullptr;
    return &it->second;
  }

  // CloseHold: expired lots expire, the rest go back to the wallet.
  // Returns how many lots expired and how much went back.
  std::pair<int64_t, int64_t> CloseHold(Org& o, uint64_t hold_id) {
    Hold h = o.holds.at(hold_id);
    o.holds.erase(hold_id);
    int64_t expired = ExpireLots(o, h.lots);
    Wallet& w = o.wallets.at(h.wallet);
    CheckRoom(w.lots, h.lots.size(), "release");
    int64_t returned = 0;
    for (const Lot& l : h.lots) {
      Put(w.lots, l);
      returned += l.remaining;
    }
    return {expired, returned};
  }

  // ---- commands ----

  ResultCode CheckAmount(const Command& c) const {
    switch (c.kind) {
      case CommandKind::topup:
      case CommandKind::grant:
      case CommandKind::deduct:
      case CommandKind::hold:
      case CommandKind::capture:
      case CommandKind::request:
        return c.amount > 0 ? ResultCode::ok : ResultCode::invalid_amount;
      case CommandKind::allocate:
        if (c.flags & flag_all) return c.amount > 0 ? ResultCode::ok : ResultCode::invalid_amount;
        for (const WalletAmount& t : c.targets) {
          if (t.amount <= 0) return ResultCode::invalid_amount;
        }
        return ResultCode::ok;
      case CommandKind::reclaim:
        return (c.flags & flag_all) || c.amount > 0 ? ResultCode::ok : ResultCode::invalid_amount;
      case CommandKind::adjust:
        if (c.flags & flag_target) return c.amount >= 0 ? ResultCode::ok : ResultCode::invalid_amount;
        return c.amount != 0 ? ResultCode::ok : ResultCode::invalid_amount;
      case CommandKind::approve:
        return c.amount >= 0 ? ResultCode::ok : ResultCode::invalid_amount;
      default:
        return ResultCode::ok;
    }
  }

  static bool SettingsValid(const Command& c) {
    const OrgSettings& s = c.settings;
    if ((c.settings_mask & setting_low_balance_threshold) && s.low_balance_threshold < 0) {
      return false;
    }
    if ((c.settings_mask & setting_expiring_soon_window) && s.expiring_soon_window_us < 0) {
      return false;
    }
    if ((c.settings_mask & setting_deduct_rollup_interval) && s.deduct_rollup_interval_us < 0) {
      return false;
    }
    return true;
  }

  static void SetSettings(const Command& c, OrgSettings* to) {
    const OrgSettings& s = c.settings;
    if (c.settings_mask & setting_credit_payments) to->credit_payments = s.credit_payments;
    if (c.settings_mask & setting_low_balance_threshold) {
      to->low_balance_threshold = s.low_balance_threshold;
    }
    if (c.settings_mask & setting_expiring_soon_window) {
      to->expiring_soon_window_us = s.expiring_soon_window_us;
    }
    if (c.settings_mask & setting_deduct_rollup_interval) {
      to->deduct_rollup_interval_us = s.deduct_rollup_interval_us;
    }
  }

  Result Execute(const Command& c) {
    auto kind = static_cast<uint8_t>(c.kind);
    if (kind == 0 || kind > command_kind_max) return Code(ResultCode::invalid_command);
    // Fields, in the doc's order: amount, asset, text length, time.
    if (ResultCode code = CheckAmount(c); code != ResultCode::ok) return Code(code);
    if (UsesAsset(c) && !c.asset.Valid()) return Code(ResultCode::invalid_asset);
    if (c.text.size() > text_bytes_max || c.actor.size() > text_bytes_max) {
      return Code(ResultCode::limit_exceeded);
    }
    if (UsesExpiry(c.kind) && c.expires_at_us != 0 && c.expires_at_us <= now_) {
      return Code(ResultCode::invalid_time);
    }
    if ((c.kind == CommandKind::org_create || c.kind == CommandKind::org_settings) &&
        !SettingsValid(c)) {
      return Code(ResultCode::invalid_settings);
    }
    if (c.kind == CommandKind::org_create) {
      if (orgs_.count(c.org_id)) return Code(ResultCode::org_exists);
      Org& o = orgs_[c.org_id];
      SetSettings(c, &o.settings);
      o.wallets[0] = Wallet{};
      return Ok();
    }
    auto oit = orgs_.find(c.org_id);
    if (oit == orgs_.end()) return Code(ResultCode::unknown_org);
    Org& o = oit->second;
    Asset asset = c.asset;
    switch (c.kind) {
      case CommandKind::org_settings:
        SetSettings(c, &o.settings);
        return Ok();
      case CommandKind::topup: return AddLot(o, c, 0);
      case CommandKind::grant:
        if (c.wallet_id == 0) return Code(ResultCode::invalid_wallet);
        return AddLot(o, c, c.wallet_id);
      case CommandKind::allocate: {
        std::vector<WalletAmount> targets;
        if (c.flags & flag_all) {
          for (uint64_t id : o.created) {
            if (o.wallets.at(id).live) targets.push_back({id, c.amount});
          }
        } else {
          for (const WalletAmount& t : c.targets) {
            if (t.wallet_id == 0) return Code(ResultCode::invalid_wallet);
          }
          targets.assign(c.targets.begin(), c.targets.end());
        }
        return Transfer(o, asset, targets);
      }
      case CommandKind::reclaim: {
        if (c.wallet_id == 0) return Code(ResultCode::invalid_wallet);
        Wallet* w = Live(o, c.wallet_id);
        if (w == nullptr) return Code(ResultCode::unknown_wallet);
        int64_t avail = Available(w->lots, asset, now_);
        int64_t amount = (c.flags & flag_all) ? avail : c.amount;
        if (amount > avail) return Short(ResultCode::insufficient_funds, avail, amount);
        Lots& pool = o.wallets.at(0).lots;
        Lots pieces = Take(w->lots, asset, amount);
        CheckRoom(pool, pieces.size(), "reclaim");
        for (const Lot& l : pieces) Put(pool, l);
        return Ok(amount, 0, avail - amount);
      }
      case CommandKind::void_grant: {
        auto git = o.grants.find(c.target_id);
        if (git == o.grants.end()) return Code(ResultCode::unknown_grant);
        if (git->second) return Code(ResultCode::grant_voided);
        git->second = true;
        int64_t voided = 0;
        auto void_in = [&](Lots& lots) {
          for (const Lot& l : lots) {
            // Expired lots are never moved; the sweep books them as expired.
            if (l.grant == c.target_id && !Expired(l, now_)) {
              voided += l.remaining;
              C(o, l.asset).voided += l.remaining;
            }
          }
          std::erase_if(lots,
                        [&](const Lot& l) { return l.grant == c.target_id && !Expired(l, now_); });
        };
        for (auto& [id, w] : o.wallets) void_in(w.lots);
        for (auto& [id, h] : o.holds) void_in(h.lots);
        return Ok(voided, 0, 0);
      }
      case CommandKind::adjust: {
        Wallet* w = Live(o, c.wallet_id);
        if (w == nullptr) return Code(ResultCode::unknown_wallet);
        int64_t avail = Available(w->lots, asset, now_);
        int64_t delta = (c.flags & flag_target) ? c.amount - avail : c.amount;
        if (delta == 0) return Ok(0, 0, avail);
        if (delta > 0) {
          if (AddOverflows(C(o, asset).in, delta) || AddOverflows(avail, delta)) {
            return Code(ResultCode::amount_overflow);
          }
          CheckRoom(w->lots, 1, "adjust up");
          uint64_t grant = o.next_grant++;
          o.grants[grant] = false;
          Put(w->lots, Lot{grant, asset, delta, c.expires_at_us, c.priority});
          C(o, asset).in += delta;
          return Ok(delta, 0, avail + delta, grant);
        }
        int64_t down = -delta;
        if (down > avail) return Short(ResultCode::insufficient_funds, avail, down);
        Take(w->lots, asset, down);
        C(o, asset).adjusted_out += down;
        return Ok(delta, 0, avail - down);
      }
      case CommandKind::deduct:
      case CommandKind::hold: {
        Wallet* w = Live(o, c.wallet_id);
        if (w == nullptr) return Code(ResultCode::unknown_wallet);
        if (!o.settings.credit_payments) return Code(ResultCode::credit_payments_disabled);
        int64_t avail = Available(w->lots, asset, now_);
        bool partial = (c.flags & flag_partial) != 0;
        if (!partial && c.amount > avail) {
          return Short(ResultCode::insufficient_funds, avail, c.amount);
        }
        int64_t applied = std::min(avail, c.amount);
        if (applied == 0) return Ok(0, c.amount, avail);
        Lots pieces = Take(w->lots, asset, applied);
        if (c.kind == CommandKind::deduct) {
          C(o, asset).spent += applied;
          return Ok(applied, c.amount - applied, avail - applied);
        }
        if (pieces.size() > hold_lots_max) Fault("workload passed hold_lots_max");
        uint64_t hold_id = o.next_hold++;
        Hold& h = o.holds[hold_id];
        h.wallet = c.wallet_id;
        h.asset = asset;
        h.timeout = c.expires_at_us;
        for (const Lot& l : pieces) Put(h.lots, l);
        return Ok(applied, c.amount - applied, avail - applied, hold_id);
      }
      case CommandKind::capture: {
        auto hit = o.holds.find(c.target_id);
        if (hit == o.holds.end()) return Code(ResultCode::unknown_hold);
        uint64_t wallet = hit->second.wallet;
        Asset hold_asset = hit->second.asset;
        if (hit->second.timeout != 0 && hit->second.timeout <= now_) {
          CloseHold(o, c.target_id);
          Result r = Code(ResultCode::hold_expired);
          r.n[1] = c.amount;  // nothing applied: the whole amount remains
          r.n[2] = Available(o.wallets.at(wallet).lots, hold_asset, now_);
          return r;
        }
        Hold& h = hit->second;
        ExpireLots(o, h.lots);
        int64_t applied = std::min(c.amount, Available(h.lots, hold_asset, now_));
        Take(h.lots, hold_asset, applied);
        C(o, hold_asset).spent += applied;
        CloseHold(o, c.target_id);
        return Ok(applied, c.amount - applied,
                  Available(o.wallets.at(wallet).lots, hold_asset, now_));
      }
      case CommandKind::release: {
        auto hit = o.holds.find(c.target_id);
        if (hit == o.holds.end()) return Code(ResultCode::unknown_hold);
        uint64_t wallet = hit->second.wallet;
        Asset hold_asset = hit->second.asset;
        auto [expired, returned] = CloseHold(o, c.target_id);
        return Ok(returned, 0, Available(o.wallets.at(wallet).lots, hold_asset, now_));
      }
      case CommandKind::request: {
        if (c.wallet_id == 0) return Code(ResultCode::invalid_wallet);
        uint64_t id = o.next_request++;
        o.requests[id] = Request{c.wallet_id, asset, c.amount, RequestStatus::pending, 0};
        return Ok(0, 0, 0, id);
      }
      case CommandKind::approve: {
        if (c.flags & flag_all) {
          std::vector<WalletAmount> targets;
          std::vector<uint64_t> ids;
          for (const auto& [id, r] : o.requests) {
            if (r.status == RequestStatus::pending && r.asset == asset) {
              targets.push_back({r.wallet, r.amount});
              ids.push_back(id);
            }
          }
          Result result = Transfer(o, asset, targets);
          if (result.ok()) {
            for (uint64_t id : ids) {
              o.requests.at(id).status = RequestStatus::approved;
              o.requests.at(id).approved = o.requests.at(id).amount;
            }
          }
          return result;
        }
        auto rit = o.requests.find(c.target_id);
        if (rit == o.requests.end()) return Code(ResultCode::unknown_request);
        Request& r = rit->second;
        if (r.status != RequestStatus::pending) return Code(ResultCode::already_decided);
        int64_t amount = c.amount == 0 ? r.amount : c.amount;
        std::vector<WalletAmount> targets{{r.wallet, amount}};
        Result result = Transfer(o, r.asset, targets);
        if (!result.ok()) return result;
        r.status = RequestStatus::approved;
        r.approved = amount;
        result.id = c.target_id;
        return result;
      }
      case CommandKind::reject: {
        if (c.flags & flag_all) {
          int64_t count = 0;
          for (auto& [id, r] : o.requests) {
            if (r.status == RequestStatus::pending && r.asset == asset) {
              r.status = RequestStatus::rejected;
              ++count;
            }
          }
          return Ok(count, 0, 0);
        }
        auto rit = o.requests.find(c.target_id);
        if (rit == o.requests.end()) return Code(ResultCode::unknown_request);
        if (rit->second.status != RequestStatus::pending) {
          return Code(ResultCode::already_decided);
        }
        rit->second.status = RequestStatus::rejected;
        return Ok(1, 0, 0);
      }
      case CommandKind::wallet_upsert:
        if (c.wallet_id == 0) return Code(ResultCode::invalid_wallet);
        WalletFor(o, c.wallet_id);
        return Ok();
      case CommandKind::wallet_delete: {
        if (c.wallet_id == 0) return Code(ResultCode::invalid_wallet);
        if (Live(o, c.wallet_id) == nullptr) return Code(ResultCode::unknown_wallet);
        std::vector<uint64_t> holds;
        for (const auto& [id, h] : o.holds) {
          if (h.wallet == c.wallet_id) holds.push_back(id);
        }
        for (uint64_t id : holds) CloseHold(o, id);
        for (auto& [id, r] : o.requests) {
          if (r.wallet == c.wallet_id && r.status == RequestStatus::pending) {
            r.status = RequestStatus::rejected;
          }
        }
        Wallet& w = o.wallets.at(c.wallet_id);
        ExpireLots(o, w.lots);
        Lots& pool = o.wallets.at(0).lots;
        CheckRoom(pool, w.lots.size(), "wallet_delete");
        int64_t moved = 0;
        for (const Lot& l : w.lots) {
          if (l.asset == asset) moved += l.remaining;
          Put(pool, l);
        }
        w.lots.clear();
        w.live = false;
        return Ok(moved, 0, Available(pool, asset, now_));
      }
      default:
        return Code(ResultCode::invalid_command);
    }
  }

  // AddLot: topup (wallet 0) and grant.
  Result AddLot(Org& o, const Command& c, uint64_t wallet) {
    Asset asset = c.asset;
    int64_t before = LiveBalance(o, wallet, asset);
    if (AddOverflows(C(o, asset).in, c.amount) || AddOverflows(before, c.amount)) {
      return Code(ResultCode::amount_overflow);
    }
    Wallet& w = wallet == 0 ? o.wallets.at(0) : WalletFor(o, wallet);
    CheckRoom(w.lots, 1, "topup/grant");
    uint64_t grant = o.next_grant++;
    o.grants[grant] = false;
    Put(w.lots, Lot{grant, asset, c.amount, c.expires_at_us, c.priority});
    C(o, asset).in += c.amount;
    return Ok(c.amount, 0, before + c.amount, grant);
  }

  // Transfer: pool -> targets in consumption order, all or nothing.
  Result Transfer(Org& o, Asset asset, const std::vector<WalletAmount>& targets) {
    int64_t total = 0;
    for (const WalletAmount& t : targets) {
      if (AddOverflows(total, t.amount)) return Code(ResultCode::amount_overflow);
      total += t.amount;
    }
    Lots& pool = o.wallets.at(0).lots;
    int64_t pool_before = Available(pool, asset, now_);
    if (total > pool_before) return Short(ResultCode::insufficient_pool, pool_before, total);
    for (const WalletAmount& t : targets) {
      auto it = o.wallets.find(t.wallet_id);
      size_t has = (it == o.wallets.end() || !it->second.live) ? 0 : it->second.lots.size();
      if (has + pool.size() > wallet_lots_max * 7 / 8) {
        Fault("workload came near the allocation lot limit (wallet lots + pool lots)");
      }
    }
    for (const WalletAmount& t : targets) {
      Wallet& w = WalletFor(o, t.wallet_id);
      for (const Lot& l : Take(pool, asset, t.amount)) Put(w.lots, l);
    }
    return Ok(pool_before, total, pool_before - total);
  }

  Result Sweep() {
    int64_t lots = 0;
    int64_t holds = 0;
    for (auto& [org_id, o] : orgs_) {
      for (auto& [id, w] : o.wallets) lots += ExpireLots(o, w.lots);
      std::vector<uint64_t> timed_out;
      for (auto& [id, h] : o.holds) {
        if (h.timeout != 0 && h.timeout <= now_) {
          timed_out.push_back(id);
        } else {
          lots += ExpireLots(o, h.lots);
        }
      }
      for (uint64_t id : timed_out) {
        auto [expired, returned] = CloseHold(o, id);
        lots += expired;  // lots of timed-out holds count too
        ++holds;
      }
    }
    if (lots + holds >= sweep_lots_max) Fault("workload passed sweep_lots_max");
    return Ok(lots, holds, 0);
  }

  std::map<uint64_t, Org> orgs_;
  int64_t now_ = 0;
  std::unordered_map<Key, Remembered, KeyHash> ops_;
  std::vector<int64_t> id_times_;  // times new ids were remembered, ascending
  std::string fault_;
};

}  // namespace model

// ---------------------------------------------------------------------------
// The driver.

// OwnedCmd is a Command with its texts and targets.
struct OwnedCmd {
  Command c;
  std::string text;
  std::string actor;
  std::vector<WalletAmount> targets;

  Command View() const {
    Command v = c;
    v.text = text;
    v.actor = actor;
    v.targets = targets;
    return v;
  }
};

constexpr uint64_t kOrgIds[] = {101, 202, 303, 404};
constexpr uint64_t kNoSuchOrg = 999;
constexpr uint64_t kWalletsPerOrg = 250;
constexpr uint64_t kNoSuchWallet = 1'000'000'007;
constexpr int64_t kT0 = int64_t{1'700'000'000} * kSecond;

Asset Usd() { return *Asset::Parse("USD"); }
Asset ApiCalls() { return *Asset::Parse("api_calls"); }
std::vector<Asset> AllAssets() { return {Asset::Credits(), Usd(), ApiCalls()}; }

// Workload makes random batches and their expected results from the model.
class Workload {
 public:
  Workload(uint64_t seed, model::Ledger* m) : rng_(seed), m_(m) {}

  struct Batch {
    int64_t time_us = 0;  // as sent
    int64_t effective_us = 0;
    std::vector<OwnedCmd> owned;
    std::vector<Command> commands;  // views of owned
    std::vector<Result> expected;
  };

  // Setup creates the orgs (one of them with settings).
  void Setup(Batch* b) {
    Start(b, kT0);
    for (uint64_t org : kOrgIds) {
      OwnedCmd o = Base(CommandKind::org_create, org);
      if (org == kOrgIds[1]) {
        o.c.settings.low_balance_threshold = 100;
        o.c.settings.expiring_soon_window_us = 3 * kDay;
        o.c.settings_mask = setting_low_balance_threshold | setting_expiring_soon_window;
      }
      Add(b, std::move(o));
    }
    OwnedCmd again = Base(CommandKind::org_create, kOrgIds[0]);  // org_exists
    Add(b, std::move(again));
    Finish(b);
  }

  void Next(Batch* b) {
    int64_t t = last_sent_;
    uint64_t r = Below(1000);
    if (r < 850) {
      t += static_cast<int64_t>(Below(5 * kSecond));
    } else if (r < 970) {
      t += kMinute + static_cast<int64_t>(Below(2 * kHour));
    } else if (r < 990) {
      t += 6 * kHour + static_cast<int64_t>(Below(3 * kDay));
    } else {
      t -= static_cast<int64_t>(Below(kHour));  // late stamp: raised to the last time
    }
    Start(b, t);
    // Phases: sometimes the timer sweeps often, sometimes hardly at all, so
    // commands meet expired lots and timed-out holds the sweep left behind.
    if (batches_++ % 300 == 0) sweep_per_mille_ = Pick(std::vector<uint64_t>{800, 500, 100, 0});
    size_t size = 1 + Below(200);
    if (Chance(sweep_per_mille_)) Add(b, Sweep());
    while (b->owned.size() < size) Add(b, Random());
    Finish(b);
  }

  uint64_t ops_made() const { return ops_made_; }
  uint64_t old_retries() const { return old_retries_; }

 private:
  // ---- randomness ----
  uint64_t Below(uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  int64_t Between(int64_t lo, int64_t hi) {  // inclusive
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo) + 1));
  }
  bool Chance(uint64_t per_mille) { return Below(1000) < per_mille; }
  template <typename T>
  T Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

  void Start(Batch* b, int64_t t) {
    last_sent_ = t;
    b->time_us = t;
    b->effective_us = m_->BeginBatch(t);
    now_ = b->effective_us;
    b->owned.clear();
    b->commands.clear();
    b->expected.clear();
    b->owned.reserve(256);
  }

  void Add(Batch* b, OwnedCmd o) {
    b->owned.push_back(std::move(o));
    const OwnedCmd& added = b->owned.back();
    b->expected.push_back(m_->Apply(added.View()));
    ++ops_made_;
    // A replay's first application is older than now: keep that one only.
    if (!b->expected.back().replayed) Remember(added);
  }

  void Finish(Batch* b) {
    for (const OwnedCmd& o : b->owned) b->commands.push_back(o.View());
  }

  // Past is an earlier command; the model knows when it was applied.
  struct Past {
    OwnedCmd cmd;
  };

  void Remember(const OwnedCmd& o) {
    if (o.c.op_id == 0) return;
    recent_[recent_next_ % recent_.size()] = Past{o};
    ++recent_next_;
    if (Chance(10)) {
      if (archive_.size() < 2048) {
        archive_.push_back(Past{o});
      } else {
        archive_[Below(archive_.size())] = Past{o};
      }
    }
  }

  // ---- building blocks ----
  OwnedCmd Base(CommandKind kind, uint64_t org) {
    OwnedCmd o;
    o.c.kind = kind;
    o.c.op_id = next_op_++;
    o.c.org_id = org;
    return o;
  }

  uint64_t AnyOrg() {
    return Chance(3) ? kNoSuchOrg : kOrgIds[Below(std::size(kOrgIds))];
  }
  const model::Org* ModelOrg(uint64_t org) { return m_->FindOrg(org); }

  uint64_t AnyWallet() {
    uint64_t r = Below(1000);
    if (r < 5) return kNoSuchWallet;
    return 1 + Below(kWalletsPerOrg);
  }
  // LiveWallet prefers a wallet that exists (a few tries), else any.
  uint64_t LiveWallet(uint64_t org) {
    const model::Org* o = ModelOrg(org);
    for (int i = 0; i < 4 && o != nullptr; ++i) {
      uint64_t id = 1 + Below(kWalletsPerOrg);
      auto it = o->wallets.find(id);
      if (it != o->wallets.end() && it->second.live) return id;
    }
    return AnyWallet();
  }

  Asset AnyAsset() {
    uint64_t r = Below(100);
    if (r < 70) return Asset::Credits();
    if (r < 95) return Usd();
    return ApiCalls();
  }

  int64_t Avail(uint64_t org, uint64_t wallet, Asset asset) {
    const model::Org* o = ModelOrg(org);
    if (o == nullptr) return 0;
    auto it = o->wallets.find(wallet);
    if (it == o->wallets.end()) return 0;
    return model::Available(it->second.lots, asset, now_);
  }

  int64_t Expiry() {
    uint64_t r = Below(100);
    if (r < 25) return 0;
    if (r < 55) return now_ + Between(kMinute, kDay);
    return now_ + Between(kDay, 45 * kDay);
  }
  int32_t Priority() { return Chance(600) ? 0 : static_cast<int32_t>(Between(-5, 5)); }

  std::string Text() {
    uint64_t r = Below(100);
    if (r < 60) return {};
    if (r < 99) return "ref-" + std::to_string(Below(100000));
    return std::string(text_bytes_max, 'x');  // the longest allowed
  }
  std::string Actor() { return Chance(300) ? "admin-" + std::to_string(Below(5)) : ""; }

  // ---- commands ----
  OwnedCmd Sweep() {
    OwnedCmd o;
    o.c.kind = CommandKind::expire_sweep;
    return o;
  }

  // Random makes one command.  Weights are per 10,000; deduct takes the rest
  // (about half), as on a metered system.
  OwnedCmd Random() {
    enum Kind { kRetry, kOldRetry, kCrossOrg, kTopup, kGrant, kAllocate, kReclaim, kVoid,
                kAdjust, kHold, kCapture, kRelease, kRequest, kApprove, kReject, kUpsert,
                kDelete, kSettings, kSweep, kDeduct };
    static constexpr std::pair<Kind, uint64_t> weights[] = {
        {kRetry, 300},   {kOldRetry, 20}, {kCrossOrg, 20}, {kTopup, 140},   {kGrant, 500},
        {kAllocate, 800}, {kReclaim, 250}, {kVoid, 100},   {kAdjust, 300},  {kHold, 700},
        {kCapture, 300}, {kRelease, 150}, {kRequest, 400}, {kApprove, 300}, {kReject, 150},
        {kUpsert, 100},  {kDelete, 60},   {kSettings, 30}, {kSweep, 100}};
    uint64_t r = Below(10000);
    Kind kind = kDeduct;
    for (auto [k, weight] : weights) {
      if (r < weight) {
        kind = k;
        break;
      }
      r -= weight;
    }
    OwnedCmd o;
    switch (kind) {
      case kRetry:
        if (auto retry = Retry()) return *retry;
        o = Deduct();
        break;
      case kOldRetry:
        if (auto retry = OldRetry()) return *retry;
        o = Deduct();
        break;
      case kCrossOrg: o = CrossOrg(); break;
      case kTopup: o = Topup(); break;
      case kGrant: o = GrantCmd(); break;
      case kAllocate: o = Allocate(); break;
      case kReclaim: o = Reclaim(); break;
      case kVoid: o = Void(); break;
      case kAdjust: o = Adjust(); break;
      case kHold: o = HoldCmd(); break;
      case kCapture: o = Capture(); break;
      case kRelease: o = Release(); break;
      case kRequest: o = RequestCmd(); break;
      case kApprove: o = Approve(); break;
      case kReject: o = Reject(); break;
      case kUpsert: o = Upsert(); break;
      case kDelete: o = Delete(); break;
      case kSettings: o = Settings(); break;
      case kSweep: return Sweep();
      case kDeduct: o = Deduct(); break;
    }
    if (Chance(50) && kind != kSettings) Spoil(&o);  // settings: check order vs text open
    return o;
  }

  // Retry repeats a recent op id, usually unchanged, sometimes with a
  // different body: either way the first result comes back.
  std::optional<OwnedCmd> Retry() {
    if (recent_next_ == 0) return std::nullopt;
    uint64_t span = std::min<uint64_t>(recent_next_, recent_.size());
    const Past& p = recent_[(recent_next_ - 1 - Below(span)) % recent_.size()];
    int64_t applied = m_->AppliedAt(p.cmd.c.org_id, p.cmd.c.op_id);
    if (applied < 0 || now_ - applied >= model::Ledger::kRememberedAtLeastUs - kMinute) {
      return std::nullopt;
    }
    OwnedCmd o = p.cmd;
    if (Chance(200) && o.c.amount < kInt64Max) o.c.amount += 1;
    return o;
  }

  // OldRetry repeats an op id the engine has certainly forgotten: it is a new
  // operation and applies again.
  std::optional<OwnedCmd> OldRetry() {
    if (archive_.empty()) return std::nullopt;
    const Past& p = archive_[Below(archive_.size())];
    int64_t applied = m_->AppliedAt(p.cmd.c.org_id, p.cmd.c.op_id);
    if (applied >= 0 && !m_->Forgotten(applied)) return std::nullopt;
    ++old_retries_;
    return p.cmd;
  }

  // CrossOrg uses a recent op id in another org: a different key.
  OwnedCmd CrossOrg() {
    OwnedCmd o = Deduct();
    if (recent_next_ == 0) return o;
    const Past& p = recent_[(recent_next_ - 1) % recent_.size()];
    if (!m_->Knows(o.c.org_id, p.cmd.c.op_id)) o.c.op_id = p.cmd.c.op_id;
    return o;
  }

  OwnedCmd Topup() {
    OwnedCmd o = Base(CommandKind::topup, AnyOrg());
    o.c.asset = AnyAsset();
    o.c.amount = Between(2'000, 40'000);
    o.c.expires_at_us = Expiry();
    o.c.priority = Priority();
    o.text = Text();
    o.actor = Actor();
    if (Chance(5)) Overflow(&o, 0);
    return o;
  }

  // Overflow makes the amount INT64_MAX where the balance is already > 0.
  void Overflow(OwnedCmd* o, uint64_t wallet) {
    if (Avail(o->c.org_id, wallet, o->c.asset) > 0) o->c.amount = kInt64Max;
  }

  OwnedCmd GrantCmd() {
    OwnedCmd o = Base(CommandKind::grant, AnyOrg());
    o.c.wallet_id = Chance(10) ? 0 : AnyWallet();
    o.c.asset = AnyAsset();
    o.c.amount = Between(1, 1500);
    o.c.expires_at_us = Expiry();
    o.c.priority = Priority();
    o.text = Text();
    o.actor = Actor();
    if (Chance(5)) Overflow(&o, o.c.wallet_id);
    return o;
  }

  OwnedCmd Allocate() {
    OwnedCmd o = Base(CommandKind::allocate, AnyOrg());
    o.c.asset = AnyAsset();
    o.text = Text();
    o.actor = Actor();
    if (Chance(30)) {
      o.c.flags = flag_all;
      o.c.amount = Between(1, 40);
      return o;
    }
    size_t n = Chance(50) ? 5 + Below(40) : 1 + Below(4);
    int64_t pool = Avail(o.c.org_id, 0, o.c.asset);
    for (size_t i = 0; i < n; ++i) {
      uint64_t wallet = Chance(100) && !o.targets.empty() ? o.targets.back().wallet_id
                                                          : 1 + Below(kWalletsPerOrg);
      o.targets.push_back({wallet, Between(1, 1200)});
    }
    if (Chance(40)) o.targets = {{1 + Below(kWalletsPerOrg), std::max<int64_t>(1, pool)}};
    if (Chance(40)) o.targets = {{1 + Below(kWalletsPerOrg), pool + 1}};
    if (Chance(5)) {
      o.targets = {{1 + Below(kWalletsPerOrg), kInt64Max / 2 + 1},
                   {1 + Below(kWalletsPerOrg), kInt64Max / 2 + 1}};
    }
    if (Chance(10)) o.targets[Below(o.targets.size())].wallet_id = 0;
    return o;
  }

  OwnedCmd Reclaim() {
    OwnedCmd o = Base(CommandKind::reclaim, AnyOrg());
    o.c.wallet_id = Chance(10) ? 0 : LiveWallet(o.c.org_id);
    o.c.asset = AnyAsset();
    o.text = Text();
    if (Chance(250)) {
      o.c.flags = flag_all;
    } else {
      int64_t avail = Avail(o.c.org_id, o.c.wallet_id, o.c.asset);
      o.c.amount = Chance(100) ? avail + 1 : Between(1, std::max<int64_t>(1, avail));
    }
    return o;
  }

  OwnedCmd Void() {
    OwnedCmd o = Base(CommandKind::void_grant, AnyOrg());
    const model::Org* org = ModelOrg(o.c.org_id);
    uint64_t next = org ? org->next_grant : 1;
    uint64_t r = Below(100);
    if (r < 80) {
      // Recent grants are the ones likely to have credits left.
      uint64_t lo = next > 300 ? next - 300 : 1;
      o.c.target_id = lo + Below(next - lo + 1);
    } else if (r < 95) {
      o.c.target_id = 1 + Below(next);
    } else {
      o.c.target_id = Chance(500) ? 0 : next + Below(10);
    }
    o.text = Text();
    return o;
  }

  OwnedCmd Adjust() {
    OwnedCmd o = Base(CommandKind::adjust, AnyOrg());
    o.c.wallet_id = Chance(50) ? 0 : LiveWallet(o.c.org_id);
    o.c.asset = AnyAsset();
    o.c.expires_at_us = Expiry();
    o.c.priority = Priority();
    o.text = Text();
    int64_t avail = Avail(o.c.org_id, o.c.wallet_id, o.c.asset);
    if (Chance(400)) {
      o.c.flags = flag_target;
      o.c.amount = Chance(100) ? avail : Between(0, 2 * avail + 10);
    } else {
      o.c.amount = Chance(500) ? Between(1, 500) : -Between(1, std::max<int64_t>(1, avail + 5));
    }
    if (Chance(5)) Overflow(&o, o.c.wallet_id);
    return o;
  }

  OwnedCmd Deduct() {
    OwnedCmd o = Base(CommandKind::deduct, AnyOrg());
    Spend(&o);
    return o;
  }

  // Spend fills a deduct or a hold.
  void Spend(OwnedCmd* o) {
    const model::Org* org = ModelOrg(o->c.org_id);
    o->c.wallet_id = Chance(20) ? 0 : LiveWallet(o->c.org_id);
    if (org != nullptr && !org->settings.credit_payments) {
      // The doc orders wallet checks before the payments switch only loosely
      // ("org → wallet → the operation's own conditions"); keep to wallets
      // that exist so only the switch can refuse.
      auto it = org->wallets.find(o->c.wallet_id);
      if (it == org->wallets.end() || !it->second.live) o->c.wallet_id = 0;
    }
    o->c.asset = AnyAsset();
    o->c.flags = Chance(200) ? flag_partial : 0;
    o->text = Text();
    o->actor = Actor();
    int64_t avail = Avail(o->c.org_id, o->c.wallet_id, o->c.asset);
    uint64_t r = Below(100);
    if (r < 70) {
      o->c.amount = Between(1, 100);
    } else if (r < 85) {
      o->c.amount = Between(1, 1000);
    } else if (r < 95) {
      o->c.amount = std::max<int64_t>(1, avail);
    } else {
      o->c.amount = avail + 1;
    }
  }

  OwnedCmd HoldCmd() {
    OwnedCmd o = Base(CommandKind::hold, AnyOrg());
    Spend(&o);
    uint64_t r = Below(100);
    if (r < 40) {
      o.c.expires_at_us = 0;
    } else if (r < 80) {
      o.c.expires_at_us = now_ + Between(kMinute, 6 * kHour);
    } else {
      o.c.expires_at_us = now_ + Between(6 * kHour, 10 * kDay);
    }
    return o;
  }

  // OpenHold picks an open hold of the org, or an unknown one.
  const model::Hold* PickHold(uint64_t org, uint64_t* id) {
    const model::Org* o = ModelOrg(org);
    if (o == nullptr) {
      *id = 1;
      return nullptr;
    }
    if (o->holds.empty() || Chance(40)) {
      *id = Chance(500) ? 1 + Below(o->next_hold) : o->next_hold + Below(3);
      auto it = o->holds.find(*id);
      return it == o->holds.end() ? nullptr : &it->second;
    }
    auto it = o->holds.begin();
    std::advance(it, Below(o->holds.size()));
    *id = it->first;
    return &it->second;
  }

  OwnedCmd Capture() {
    OwnedCmd o = Base(CommandKind::capture, AnyOrg());
    const model::Hold* h = PickHold(o.c.org_id, &o.c.target_id);
    int64_t held = h ? model::Book(h->lots, h->asset) : 100;
    uint64_t r = Below(100);
    if (r < 55) {
      o.c.amount = Between(1, std::max<int64_t>(1, held));
    } else if (r < 85) {
      o.c.amount = std::max<int64_t>(1, held);
    } else {
      o.c.amount = held + Between(1, 100);
    }
    o.text = Text();
    return o;
  }

  OwnedCmd Release() {
    OwnedCmd o = Base(CommandKind::release, AnyOrg());
    PickHold(o.c.org_id, &o.c.target_id);
    return o;
  }

  OwnedCmd RequestCmd() {
    OwnedCmd o = Base(CommandKind::request, AnyOrg());
    o.c.wallet_id = Chance(10) ? 0 : AnyWallet();
    o.c.asset = AnyAsset();
    o.c.amount = Between(1, 2500);
    o.text = Text();
    return o;
  }

  uint64_t PickRequest(uint64_t org) {
    const model::Org* o = ModelOrg(org);
    if (o == nullptr || o->next_request == 1) return 1 + Below(3);
    uint64_t r = Below(100);
    if (r < 5) return o->next_request + Below(3);  // unknown
    if (r < 25) return 1 + Below(o->next_request - 1);  // likely decided
    std::vector<uint64_t> pending;
    int steps = 0;
    for (auto it = o->requests.rbegin(); it != o->requests.rend() && ++steps < 300; ++it) {
      if (it->second.status == RequestStatus::pending) pending.push_back(it->first);
    }
    return pending.empty() ? 1 + Below(o->next_request - 1) : Pick(pending);
  }

  OwnedCmd Approve() {
    OwnedCmd o = Base(CommandKind::approve, AnyOrg());
    o.actor = Actor();
    if (Chance(60)) {
      o.c.flags = flag_all;
      o.c.asset = AnyAsset();
      return o;
    }
    o.c.target_id = PickRequest(o.c.org_id);
    o.c.amount = Chance(300) ? Between(1, 2500) : 0;
    return o;
  }

  OwnedCmd Reject() {
    OwnedCmd o = Base(CommandKind::reject, AnyOrg());
    o.text = Text();
    o.actor = Actor();
    if (Chance(60)) {
      o.c.flags = flag_all;
      o.c.asset = AnyAsset();
      return o;
    }
    o.c.target_id = PickRequest(o.c.org_id);
    return o;
  }

  OwnedCmd Upsert() {
    OwnedCmd o = Base(CommandKind::wallet_upsert, AnyOrg());
    o.c.wallet_id = Chance(20) ? 0 : 1 + Below(kWalletsPerOrg);
    o.text = Chance(500) ? "user " + std::to_string(o.c.wallet_id) : "";
    return o;
  }

  OwnedCmd Delete() {
    OwnedCmd o = Base(CommandKind::wallet_delete, AnyOrg());
    o.c.wallet_id = Chance(20) ? 0 : LiveWallet(o.c.org_id);
    return o;
  }

  OwnedCmd Settings() {
    OwnedCmd o = Base(CommandKind::org_settings, AnyOrg());
    const model::Org* org = ModelOrg(o.c.org_id);
    bool on = org == nullptr || org->settings.credit_payments;
    uint64_t r = Below(100);
    if (r < 70) {
      o.c.settings_mask = setting_credit_payments;
      // Off is short-lived: switched back on more readily than off.
      o.c.settings.credit_payments = !on || !Chance(30);
    } else if (r < 95) {
      o.c.settings_mask = setting_low_balance_threshold | setting_expiring_soon_window |
                          setting_deduct_rollup_interval;
      o.c.settings.low_balance_threshold = Between(0, 500);
      o.c.settings.expiring_soon_window_us = Between(0, 60) * kDay;
      o.c.settings.deduct_rollup_interval_us = Chance(500) ? 0 : Between(1, 120) * kSecond;
    } else {
      o.c.settings_mask = setting_expiring_soon_window;
      o.c.settings.expiring_soon_window_us = -kDay;  // invalid_settings
    }
    return o;
  }

  // Spoil makes a command invalid in one way (now and then in several, to
  // test the order of the field checks).
  void Spoil(OwnedCmd* o) {
    CommandKind k = o->c.kind;
    bool has_amount = k == CommandKind::topup || k == CommandKind::grant ||
                      k == CommandKind::deduct || k == CommandKind::hold ||
                      k == CommandKind::capture || k == CommandKind::request ||
                      (k == CommandKind::reclaim && !(o->c.flags & flag_all)) ||
                      (k == CommandKind::adjust && !(o->c.flags & flag_target)) ||
                      (k == CommandKind::allocate && (o->c.flags & flag_all));
    bool has_asset = model::UsesAsset(o->c);
    bool has_expiry = model::UsesExpiry(k);
    switch (Below(9)) {
      case 0:
        if (has_amount) o->c.amount = Chance(500) ? 0 : -Between(1, 1000);
        if (k == CommandKind::allocate && !o->targets.empty()) {
          o->targets[Below(o->targets.size())].amount = Chance(500) ? 0 : -5;
        }
        break;
      case 1:
        if (has_asset) {
          o->c.asset = Chance(500) ? Asset::FromPacked(0) : Asset::FromPacked(0x622d61);  // "a-b"
        }
        break;
      case 2:
        o->text = std::string(text_bytes_max + 1, 't');
        break;
      case 3:
        if (has_expiry) o->c.expires_at_us = Chance(500) ? now_ : now_ - Between(1, kDay);
        break;
      case 4:
        o->c.op_id = 0;
        break;
      case 5:
        o->c.org_id = kNoSuchOrg;
        break;
      case 6:
        o->c.kind = static_cast<CommandKind>(Chance(500) ? 0 : 99);
        break;
      case 7:
        // Several bad fields at once: the doc's order names the result.
        if (has_amount) o->c.amount = 0;
        if (has_asset) o->c.asset = Asset::FromPacked(0);
        o->actor = std::string(text_bytes_max + 1, 'a');
        if (has_expiry) o->c.expires_at_us = now_;
        o->c.org_id = kNoSuchOrg;
        break;
      case 8:
        // A refusal from the org stage and from the wallet stage at once.
        o->c.org_id = kNoSuchOrg;
        if (k == CommandKind::allocate && !o->targets.empty()) o->targets[0].wallet_id = 0;
        if (k == CommandKind::grant || k == CommandKind::reclaim) o->c.wallet_id = 0;
        break;
    }
  }

  std::mt19937_64 rng_;
  model::Ledger* m_;
  uint64_t next_op_ = 1;
  int64_t last_sent_ = kT0;
  int64_t now_ = kT0;
  uint64_t ops_made_ = 0;
  uint64_t old_retries_ = 0;
  uint64_t batches_ = 0;
  uint64_t sweep_per_mille_ = 500;
  std::vector<Past> recent_ = std::vector<Past>(512);
  uint64_t recent_next_ = 0;
  std::vector<Past> archive_;
};

// ---------------------------------------------------------------------------
// Comparisons.

uint64_t EnvU64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == 0) return fallback;
  return std::strtoull(v, nullptr, 10);
}

std::string DescribeLots(const std::vector<LotView>& lots) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < lots.size(); ++i) {
    const LotView& l = lots[i];
    os << (i ? " " : "") << "{g" << l.grant_id << " " << l.remaining << " exp=" << l.expires_at_us
       << " p=" << l.priority << "}";
  }
  os << "]";
  return os.str();
}

std::string DescribeBalance(const Balance& b) {
  std::ostringstream os;
  os << "available=" << b.available << " held=" << b.held << " expiring_soon=" << b.expiring_soon
     << " lots=" << DescribeLots(b.lots);
  return os.str();
}

bool SameBalance(const Balance& a, const Balance& b) {
  if (a.available != b.available || a.held != b.held || a.expiring_soon != b.expiring_soon ||
      a.lots.size() != b.lots.size()) {
    return false;
  }
  for (size_t i = 0; i < a.lots.size(); ++i) {
    const LotView& x = a.lots[i];
    const LotView& y = b.lots[i];
    if (x.grant_id != y.grant_id || !(x.asset == y.asset) || x.remaining != y.remaining ||
        x.expires_at_us != y.expires_at_us || x.priority != y.priority) {
      return false;
    }
  }
  return true;
}

std::string DescribeTotals(const TotalsView& t) {
  std::ostringstream os;
  os << "in=" << t.in << " available=" << t.available << " held=" << t.held
     << " spent=" << t.spent << " expired=" << t.expired << " voided=" << t.voided
     << " adjusted_out=" << t.adjusted_out;
  return os.str();
}

// Context for a mismatch: the wallet a command names, as both sides see it.
std::string WalletContext(const Ledger& engine, const model::Ledger& m, const Command& c,
                          int64_t now) {
  const model::Org* o = m.FindOrg(c.org_id);
  if (o == nullptr) return "";
  std::ostringstream os;
  auto one = [&](uint64_t wallet, Asset asset) {
    auto it = o->wallets.find(wallet);
    os << "\n  wallet " << wallet << " " << asset.name() << ": model ";
    if (it == o->wallets.end()) {
      os << "absent";
    } else if (!it->second.live) {
      os << "deleted";
    } else {
      os << DescribeBalance(m.GetBalance(*o, wallet, asset, now));
    }
    auto e = engine.GetBalance(c.org_id, wallet, asset, now);
    os << "\n  " << std::string(std::to_string(wallet).size() + asset.name().size() + 9, ' ')
       << "engine " << (e.ok() ? DescribeBalance(*e) : std::string(e.status().message()));
  };
  Asset asset = c.asset.Valid() ? c.asset : Asset::Credits();
  one(c.wallet_id, asset);
  if (c.wallet_id != 0) one(0, asset);
  if (c.kind == CommandKind::capture || c.kind == CommandKind::release) {
    if (auto it = o->holds.find(c.target_id); it != o->holds.end()) {
      os << "\n  hold " << c.target_id << " of wallet " << it->second.wallet
         << " timeout=" << it->second.timeout << " (model, after the batch)";
    }
  }
  return os.str();
}

// Checker compares an engine Ledger with the model.
class Checker {
 public:
  Checker(const Ledger& engine, const model::Ledger& m) : engine_(engine), m_(m) {}

  // Invariant: SPEC §1 per org and asset, and the totals against the model.
  ::testing::AssertionResult Totals(uint64_t batch) {
    for (const auto& [org_id, o] : m_.orgs()) {
      std::map<Asset, TotalsView> model_totals = m_.GetTotals(o);
      for (Asset asset : AllAssets()) {
        auto got = engine_.GetTotals(org_id, asset);
        if (!got.ok()) {
          return ::testing::AssertionFailure() << "batch " << batch << ": GetTotals(" << org_id
                                               << ", " << asset.name() << ") " << got.status();
        }
        const TotalsView& t = *got;
        int64_t out = t.available + t.held + t.spent + t.expired + t.voided + t.adjusted_out;
        bool negative = t.in < 0 || t.available < 0 || t.held < 0 || t.spent < 0 ||
                        t.expired < 0 || t.voided < 0 || t.adjusted_out < 0;
        TotalsView want = model_totals[asset];
        if (want.in != want.available + want.held + want.spent + want.expired + want.voided +
                           want.adjusted_out) {
          return ::testing::AssertionFailure() << "batch " << batch << ": the model itself "
                                               << "breaks the invariant: "
                                               << DescribeTotals(want);
        }
        bool same = t.in == want.in && t.available == want.available && t.held == want.held &&
                    t.spent == want.spent && t.expired == want.expired &&
                    t.voided == want.voided && t.adjusted_out == want.adjusted_out;
        if (t.in != out || negative || !same) {
          return ::testing::AssertionFailure()
                 << "batch " << batch << ": org " << org_id << " " << asset.name()
                 << (t.in != out ? " breaks in == available + held + spent + expired + voided "
                                   "+ adjusted_out"
                                 : "")
                 << (negative ? " has a negative total" : "") << (!same ? " differs" : "")
                 << "\n  engine " << DescribeTotals(t) << "\n  model  " << DescribeTotals(want);
        }
      }
    }
    return ::testing::AssertionSuccess();
  }

  // Everything: every wallet's balance of every asset, and org summaries.
  ::testing::AssertionResult Balances(uint64_t batch, int64_t now) {
    for (const auto& [org_id, o] : m_.orgs()) {
      for (Asset asset : AllAssets()) {
        auto got = engine_.GetOrgSummary(org_id, asset, now);
        OrgSummary want = m_.GetOrgSummary(o, asset);
        if (!got.ok() || got->pool != want.pool || got->allocated != want.allocated ||
            got->total != want.total || got->wallets != want.wallets ||
            got->pending_requests != want.pending_requests ||
            got->pending_requested != want.pending_requested ||
            got->pool_if_all_approved != want.pool_if_all_approved) {
          auto show = [](const OrgSummary& s) {
            std::ostringstream os;
            os << "pool=" << s.pool << " allocated=" << s.allocated << " total=" << s.total
               << " wallets=" << s.wallets << " pending=" << s.pending_requests << "/"
               << s.pending_requested << " pool_if_all_approved=" << s.pool_if_all_approved;
            return os.str();
          };
          return ::testing::AssertionFailure()
                 << "batch " << batch << ": GetOrgSummary(" << org_id << ", " << asset.name()
                 << ")\n  engine "
                 << (got.ok() ? show(*got) : std::string(got.status().message()))
                 << "\n  model  " << show(want);
        }
        for (uint64_t wallet = 0; wallet <= kWalletsPerOrg; ++wallet) {
          auto e = engine_.GetBalance(org_id, wallet, asset, now);
          auto it = o.wallets.find(wallet);
          if (it == o.wallets.end() || !it->second.live) {
            // Unknown: NotFound.  Deleted: the doc does not say; NotFound or
            // an empty balance are both accepted.
            bool fine = !e.ok() || (it != o.wallets.end() && e->available == 0 && e->held == 0 &&
                                    e->lots.empty());
            if (!fine) {
              return ::testing::AssertionFailure()
                     << "batch " << batch << ": wallet " << org_id << "/" << wallet
                     << " is " << (it == o.wallets.end() ? "unknown" : "deleted")
                     << " but the engine answers " << DescribeBalance(*e);
            }
            continue;
          }
          Balance want_b = m_.GetBalance(o, wallet, asset, now);
          if (!e.ok() || !SameBalance(*e, want_b)) {
            return ::testing::AssertionFailure()
                   << "batch " << batch << ": GetBalance(" << org_id << ", " << wallet << ", "
                   << asset.name() << ")\n  engine "
                   << (e.ok() ? DescribeBalance(*e) : std::string(e.status().message()))
                   << "\n  model  " << DescribeBalance(want_b);
          }
        }
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  const Ledger& engine_;
  const model::Ledger& m_;
};

// ---------------------------------------------------------------------------
// Tests.

TEST(ModelTest, EngineAgreesWithNaiveModel) {
  uint64_t seed = EnvU64("TALLY_MODEL_SEED", 20231114);
  uint64_t ops = EnvU64("TALLY_MODEL_OPS", 1'000'000);
  std::printf("model test: seed %" PRIu64 ", %" PRIu64
              " operations (TALLY_MODEL_SEED, TALLY_MODEL_OPS)\n",
              seed, ops);
  auto started = std::chrono::steady_clock::now();

  model::Ledger m;
  Ledger engine;
  Workload w(seed, &m);
  Checker check(engine, m);
  BatchOutput out;
  Workload::Batch b;
  std::map<ResultCode, uint64_t> codes;
  uint64_t replays = 0;
  model::Ledger::Shape shape;
  std::vector<const Command*> pointers;

  w.Setup(&b);
  for (uint64_t batch = 0;; ++batch) {
    if (batch > 0) {
      if (w.ops_made() >= ops) break;
      w.Next(&b);
    }
    ASSERT_TRUE(m.fault().empty()) << "batch " << batch << ": " << m.fault();
    // Every other batch goes through the overload tallyd uses: pointers to
    // commands that are not side by side.
    if (batch % 2 == 0) {
      engine.Apply(b.time_us, b.commands, &out);
    } else {
      pointers.clear();
      for (const Command& c : b.commands) pointers.push_back(&c);
      engine.Apply(b.time_us, pointers, &out);
    }
    ASSERT_EQ(out.time_us, b.effective_us) << "batch " << batch << " stamped " << b.time_us;
    ASSERT_EQ(out.results.size(), b.commands.size()) << "batch " << batch;
    for (size_t i = 0; i < b.commands.size(); ++i) {
      const Result& got = out.results[i];
      const Result& want = b.expected[i];
      if (!Same(got, want)) {
        FAIL() << "batch " << batch << " (time " << b.effective_us << "), command " << i << " of "
               << b.commands.size() << ":\n  " << Describe(b.commands[i]) << "\n  engine "
               << Describe(got) << "\n  model  " << Describe(want)
               << "\n  state after the batch:"
               << WalletContext(engine, m, b.commands[i], b.effective_us);
      }
      ++codes[want.code];
      replays += want.replayed;
    }
    ASSERT_TRUE(check.Totals(batch));
    if (batch % 100 == 0) {
      model::Ledger::Shape s = m.GetShape();
      shape.wallet_lots_max = std::max(shape.wallet_lots_max, s.wallet_lots_max);
      shape.pool_lots_max = std::max(shape.pool_lots_max, s.pool_lots_max);
      shape.holds = std::max(shape.holds, s.holds);
      shape.pending_requests = std::max(shape.pending_requests, s.pending_requests);
      shape.lots = std::max(shape.lots, s.lots);
    }
    if (batch % 1000 == 0) {
      ASSERT_TRUE(check.Balances(batch, b.effective_us));
      m.ForgetOld();
    }
  }
  ASSERT_TRUE(check.Balances(~uint64_t{0}, m.now()));

  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("model test: %" PRIu64 " operations, %" PRIu64 " replays, %.1f s, simulated %.1f days\n",
              w.ops_made(), replays, seconds, static_cast<double>(m.now() - kT0) / kDay);
  std::printf("  %" PRIu64 " retries of op ids past the window (applied again)\n",
              w.old_retries());
  std::printf("  largest: wallet %zu lots, pool %zu lots, %zu lots in all, %zu open holds, "
              "%zu pending requests\n",
              shape.wallet_lots_max, shape.pool_lots_max, shape.lots, shape.holds,
              shape.pending_requests);
  for (auto [code, count] : codes) {
    std::printf("  %-26s %" PRIu64 "\n", std::string(ResultCodeName(code)).c_str(), count);
  }
}

// Runs the same workload into two fresh ledgers, comparing digests: one
// takes each batch as a span, the other as pointers (tallyd's overload).
TEST(ModelTest, SameBatchesGiveSameDigest) {
  uint64_t seed = EnvU64("TALLY_MODEL_SEED", 20231114) + 1;
  // Digest() hashes the whole state (history and op ids included), so
  // digesting after every batch makes this test quadratic: keep it short.
  uint64_t ops = EnvU64("TALLY_MODEL_OPS", 1'000'000) / 40;
  model::Ledger m;
  Workload w(seed, &m);
  Ledger a;
  Ledger b;
  BatchOutput out_a;
  BatchOutput out_b;
  std::vector<const Command*> pointers;
  Workload::Batch batch;
  w.Setup(&batch);
  for (uint64_t i = 0;; ++i) {
    if (i > 0) {
      if (w.ops_made() >= ops) break;
      w.Next(&batch);
    }
    a.Apply(batch.time_us, batch.commands, &out_a);
    pointers.clear();
    for (const Command& c : batch.commands) pointers.push_back(&c);
    b.Apply(batch.time_us, pointers, &out_b);
    ASSERT_EQ(a.Digest(), b.Digest()) << "batch " << i;
    for (size_t k = 0; k < out_a.results.size(); ++k) {
      ASSERT_TRUE(Same(out_a.results[k], out_b.results[k])) << "batch " << i << " command " << k;
    }
  }
}

// The digest sees a one-credit deduct.
TEST(ModelTest, DigestChangesWithOneDeduct) {
  uint64_t seed = EnvU64("TALLY_MODEL_SEED", 20231114) + 2;
  model::Ledger m;
  Workload w(seed, &m);
  Ledger a;
  Ledger b;
  BatchOutput out;
  Workload::Batch batch;
  w.Setup(&batch);
  a.Apply(batch.time_us, batch.commands, &out);
  b.Apply(batch.time_us, batch.commands, &out);
  for (int i = 0; i < 200; ++i) {
    w.Next(&batch);
    a.Apply(batch.time_us, batch.commands, &out);
    b.Apply(batch.time_us, batch.commands, &out);
  }
  ASSERT_EQ(a.Digest(), b.Digest());
  uint64_t before = a.Digest();

  int64_t now = a.last_time_us();
  Command on{.kind = CommandKind::org_settings, .settings_mask = setting_credit_payments,
             .op_id = (uint64_t{1} << 62) - 1, .org_id = kOrgIds[0]};
  a.Apply(now, std::span(&on, 1), &out);
  b.Apply(now, std::span(&on, 1), &out);
  Command grant{.kind = CommandKind::grant, .op_id = uint64_t{1} << 62, .org_id = kOrgIds[0],
                .wallet_id = 7, .amount = 10};
  a.Apply(now, std::span(&grant, 1), &out);
  ASSERT_EQ(out.results[0].code, ResultCode::ok);
  b.Apply(now, std::span(&grant, 1), &out);
  ASSERT_EQ(out.results[0].code, ResultCode::ok);
  ASSERT_EQ(a.Digest(), b.Digest());
  EXPECT_NE(a.Digest(), before);

  Command deduct{.kind = CommandKind::deduct, .op_id = (uint64_t{1} << 62) + 1,
                 .org_id = kOrgIds[0], .wallet_id = 7, .amount = 1};
  a.Apply(now, std::span(&deduct, 1), &out);
  ASSERT_EQ(out.results[0].code, ResultCode::ok);
  EXPECT_NE(a.Digest(), b.Digest());
}

}  // namespace
}  // namespace tally
