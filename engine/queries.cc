// queries.cc: the read-only queries and the state digest (docs/ENGINE.md).
#include <algorithm>
#include <span>
#include <string>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "engine/ledger.h"
#include "engine/state.h"
#include "xxhash.h"

namespace tally {
namespace {

using engine::HistoryEntry;
using engine::Lot;
using engine::never_us;
using engine::no_asset;
using engine::no_slot;
using engine::Org;
using engine::State;
using engine::Wallet;

absl::Status NotFound(ResultCode code) {
  return absl::NotFoundError(std::string(ResultCodeName(code)));
}

int64_t ExpiryOut(int64_t expires_at_us) { return expires_at_us == never_us ? 0 : expires_at_us; }

// LiveSlot finds a wallet that is not deleted.
absl::StatusOr<uint32_t> LiveSlot(const State& s, const Org& org, uint64_t wallet_id) {
  uint32_t slot = s.FindLiveWallet(org, wallet_id);
  if (slot == no_slot) return NotFound(ResultCode::unknown_wallet);
  return slot;
}

int64_t HeldOf(const Org& org, uint32_t slot, uint16_t asset, int64_t now_us) {
  int64_t held = 0;
  for (auto it = org.holds_by_wallet.lower_bound({slot, 0});
       it != org.holds_by_wallet.end() && it->first == slot; ++it) {
    const engine::Hold& hold = org.holds.at(it->second);
    held += engine::AvailableOf(hold.lots.data(), static_cast<uint32_t>(hold.lots.size()), asset,
                                now_us);
  }
  return held;
}

// FillRef writes entry `index` (e, of wallet w) into *ref: the one place
// an entry's packed fields become values (queries, the export and the
// history file all start here).
void FillRef(const State& s, uint64_t index, const HistoryEntry& e, const Wallet& w,
             HistoryEntryRef* ref) {
  ref->seq = index + 1;
  ref->org_id = s.orgs[w.org_slot]->id;
  ref->wallet_id = w.id;
  ref->time_us = e.time_us();
  ref->kind = e.kind();
  ref->out = e.out();
  ref->held = e.held();
  ref->has_text = false;
  ref->reference = {};
  ref->actor = {};
  if (e.has_text()) [[unlikely]] {
    if (const engine::HistoryTexts* t = s.history.texts(index)) {
      ref->has_text = !t->reference.empty() || !t->actor.empty();
      ref->reference = t->reference;
      ref->actor = t->actor;
    }
  }
  ref->asset = s.assets[e.asset()];
  ref->amount = e.amount;
  ref->balance_after = e.balance_after;
  ref->related_id = e.related_id;
  ref->prev_seq = 0;
  if (e.prev_distance != 0 && e.prev_distance != UINT32_MAX && e.prev_distance <= index) {
    ref->prev_seq = index - e.prev_distance + 1;
  }
}

// CopyRef writes a ref into *v, whose texts are empty: in place, so an
// export of thousands of entries builds each record once rather than
// building a view and moving it twice.
void CopyRef(const HistoryEntryRef& ref, HistoryEntryView* v) {
  v->seq = ref.seq;
  v->time_us = ref.time_us;
  v->wallet_id = ref.wallet_id;
  v->kind = ref.kind;
  v->out = ref.out;
  v->held = ref.held;
  v->asset = ref.asset;
  v->amount = ref.amount;
  v->balance_after = ref.balance_after;
  v->related_id = ref.related_id;
  if (ref.has_text) [[unlikely]] {
    v->reference = ref.reference;
    v->actor = ref.actor;
  }
}

// ViewOf is entry `index` as a page shows it.  It goes through FillRef, the
// one place packed fields become values, though a view has no org id or
// prev_seq: two loads of lines already in cache, per entry of a page.
HistoryEntryView ViewOf(const State& s, uint64_t index) {
  const HistoryEntry& e = s.history.at(index);
  HistoryEntryRef ref;
  FillRef(s, index, e, s.wallets.at(e.wallet_slot), &ref);
  HistoryEntryView v;
  CopyRef(ref, &v);
  return v;
}

bool Matches(const State& s, const HistoryEntry& e, const HistoryQuery& q) {
  if (!q.asset.empty() && s.assets[e.asset()] != q.asset) return false;
  if (q.kind_mask != 0 && (q.kind_mask & (1u << static_cast<uint8_t>(e.kind()))) == 0) {
    return false;
  }
  if (q.from_us != 0 && e.time_us() < q.from_us / 1000 * 1000) return false;
  if (q.to_us != 0 && e.time_us() >= q.to_us) return false;
  return true;
}

// PreviousOf is the index of the wallet's entry before `index`, or nullopt
// when there is none; *truncated says it exists but left memory.
std::optional<uint64_t> PreviousOf(const State& s, uint64_t index, bool* truncated) {
  const HistoryEntry& e = s.history.at(index);
  if (e.prev_distance == 0) return std::nullopt;
  if (e.prev_distance == UINT32_MAX || e.prev_distance > index ||
      !s.history.InMemory(index - e.prev_distance)) {
    *truncated = true;
    return std::nullopt;
  }
  return index - e.prev_distance;
}

}  // namespace

absl::StatusOr<Balance> Ledger::GetBalance(uint64_t org_id, uint64_t wallet_id, Asset asset,
                                           int64_t now_us) const {
  const State& s = *state_;
  const Org* org = s.FindOrg(org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  absl::StatusOr<uint32_t> slot = LiveSlot(s, *org, wallet_id);
  if (!slot.ok()) return slot.status();
  Balance b;
  uint16_t a = s.FindAsset(asset);
  if (a == no_asset) return b;
  const Wallet& w = s.wallets.at(*slot);
  int64_t soon_us = now_us + org->settings.expiring_soon_window_us;
  for (uint32_t i = 0; i < w.lot_count; ++i) {
    const Lot& lot = w.lots()[i];
    if (lot.asset != a || lot.expires_at_us <= now_us) continue;
    b.available += lot.remaining;
    if (lot.expires_at_us != never_us && lot.expires_at_us <= soon_us) {
      b.expiring_soon += lot.remaining;
    }
    b.lots.push_back(LotView{lot.grant_id, asset, lot.remaining, ExpiryOut(lot.expires_at_us),
                             lot.priority});
  }
  b.held = HeldOf(*org, *slot, a, now_us);
  return b;
}

absl::StatusOr<int64_t> Ledger::BalanceAt(uint64_t org_id, uint64_t wallet_id, Asset asset,
                                          int64_t at_us) const {
  const State& s = *state_;
  const Org* org = s.FindOrg(org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  uint32_t slot = s.FindWallet(*org, wallet_id);
  if (slot == no_slot) return NotFound(ResultCode::unknown_wallet);
  const Wallet& w = s.wallets.at(slot);
  if (w.history_head == 0) return 0;
  uint64_t index = w.history_head - 1;
  if (!s.history.InMemory(index)) return absl::OutOfRangeError("history no longer in memory");
  uint16_t a = s.FindAsset(asset);
  while (true) {
    const HistoryEntry& e = s.history.at(index);
    if (e.time_us() <= at_us && e.asset() == a) return e.balance_after;
    bool truncated = false;
    std::optional<uint64_t> prev = PreviousOf(s, index, &truncated);
    if (truncated) return absl::OutOfRangeError("history no longer in memory");
    if (!prev) return 0;
    index = *prev;
  }
}

absl::StatusOr<OrgSummary> Ledger::GetOrgSummary(uint64_t org_id, Asset asset,
                                                 int64_t now_us) const {
  const State& s = *state_;
  const Org* org = s.FindOrg(org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  OrgSummary sum;
  sum.wallets = org->live_wallets;
  uint16_t a = s.FindAsset(asset);
  if (a != no_asset) {
    const Wallet& pool = s.wallets.at(org->pool_slot);
    sum.pool = engine::AvailableOf(pool.lots(), pool.lot_count, a, now_us);
    for (uint32_t slot : org->wallet_order) {
      const Wallet& w = s.wallets.at(slot);
      if (!w.deleted()) sum.allocated += engine::AvailableOf(w.lots(), w.lot_count, a, now_us);
    }
    for (const auto& [id, hold] : org->holds) {
      if (hold.wallet_slot == org->pool_slot) continue;
      sum.allocated += engine::AvailableOf(hold.lots.data(),
                                           static_cast<uint32_t>(hold.lots.size()), a, now_us);
    }
    for (const auto& [id, r] : org->requests) {
      if (r.status == RequestStatus::pending && r.asset == a) {
        ++sum.pending_requests;
        sum.pending_requested += r.amount;
      }
    }
  }
  sum.total = sum.pool + sum.allocated;
  sum.pool_if_all_approved = sum.pool - sum.pending_requested;
  return sum;
}

absl::StatusOr<HistoryPage> Ledger::GetHistory(const HistoryQuery& q) const {
  const State& s = *state_;
  const Org* org = s.FindOrg(q.org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  uint32_t limit = std::clamp<uint32_t>(q.limit, 1, history_page_entries_max);
  HistoryPage page;
  if (s.history.total() == 0) return page;
  // The first index to look at: below the cursor (a seq), or the newest.
  uint64_t start = q.cursor != 0 ? q.cursor - 1 : s.history.total();
  if (start == 0) return page;

  if (q.all_wallets) {
    uint64_t begin = s.history.begin();
    uint64_t index = std::min(start, s.history.total());
    while (index > begin) {
      --index;
      const HistoryEntry& e = s.history.at(index);
      if (q.from_us != 0 && e.time_us() < q.from_us / 1000 * 1000) return page;
      if (s.wallets.at(e.wallet_slot).org_slot != org->org_slot || !Matches(s, e, q)) continue;
      if (page.entries.size() == limit) {
        page.next_cursor = page.entries.back().seq;
        return page;
      }
      page.entries.push_back(ViewOf(s, index));
    }
    page.truncated = begin > 0;
    return page;
  }

  uint32_t slot = s.FindWallet(*org, q.wallet_id);
  if (slot == no_slot) return NotFound(ResultCode::unknown_wallet);
  const Wallet& w = s.wallets.at(slot);
  if (w.history_head == 0) return page;
  uint64_t index = w.history_head - 1;
  if (q.cursor != 0) {
    // The cursor is the seq of the last entry returned, one of this wallet's.
    uint64_t last_returned = q.cursor - 1;
    if (!s.history.InMemory(last_returned) ||
        s.history.at(last_returned).wallet_slot != slot) {
      return absl::InvalidArgumentError("cursor does not belong to this wallet's history");
    }
    bool truncated = false;
    std::optional<uint64_t> prev = PreviousOf(s, last_returned, &truncated);
    page.truncated = truncated;
    if (!prev) return page;
    index = *prev;
  } else if (!s.history.InMemory(index)) {
    page.truncated = true;
    return page;
  }
  while (true) {
    const HistoryEntry& e = s.history.at(index);
    if (q.from_us != 0 && e.time_us() < q.from_us / 1000 * 1000) return page;
    if (Matches(s, e, q)) {
      if (page.entries.size() == limit) {
        page.next_cursor = page.entries.back().seq;
        return page;
      }
      page.entries.push_back(ViewOf(s, index));
    }
    bool truncated = false;
    std::optional<uint64_t> prev = PreviousOf(s, index, &truncated);
    if (!prev) {
      page.truncated = truncated;
      return page;
    }
    index = *prev;
  }
}

uint64_t Ledger::history_begin_seq() const { return state_->history.begin() + 1; }

std::vector<Ledger::PrefaultRegion> Ledger::PrefaultRegions() const {
  const State& s = *state_;
  std::vector<PrefaultRegion> out;
  if (!s.options.prefault) return out;
  if (!s.ops.table_memory().empty()) out.push_back({s.ops.table_memory(), 0});
  // One ring chunk, then the op-id entries of as many ids, and so on.
  const int current = s.ops.current_index();
  std::span<unsigned char> entries[2] = {s.ops.unwritten_entries(current),
                                         s.ops.unwritten_entries(1 - current)};
  const size_t entries_step_bytes = history_chunk_entries * sizeof(engine::OpMemory::Entry);
  uint64_t after_entries = 0;
  for (const std::span<unsigned char>& chunk : s.history.MappedAhead()) {
    out.push_back({chunk, after_entries});
    size_t left = entries_step_bytes;
    for (std::span<unsigned char>& e : entries) {
      const size_t n = std::min(e.size(), left);
      if (n > 0) out.push_back({e.first(n), after_entries});
      e = e.subspan(n);
      left -= n;
    }
    after_entries += history_chunk_entries;
  }
  for (const std::span<unsigned char>& e : entries) {
    if (!e.empty()) out.push_back({e, after_entries});
  }
  return out;
}

void Ledger::ExportHistory(uint64_t from_seq, uint64_t to_seq,
                           std::vector<HistoryRecord>* out) const {
  out->reserve(out->size() + (to_seq - from_seq));
  VisitHistory(from_seq, to_seq, [out](const HistoryEntryRef& e) {
    HistoryRecord& r = out->emplace_back();
    CopyRef(e, &r.view);
    r.org_id = e.org_id;
    r.prev_seq = e.prev_seq;
  });
}

void Ledger::VisitHistory(uint64_t from_seq, uint64_t to_seq,
                          absl::FunctionRef<void(const HistoryEntryRef&)> visit) const {
  const State& s = *state_;
  TALLY_ASSERT(from_seq >= 1 && from_seq <= to_seq);
  TALLY_ASSERT(from_seq - 1 >= s.history.begin() && to_seq - 1 <= s.history.total());
  // Each entry reads its wallet, at random among a
  // million: prefetched a few entries ahead, the misses overlap instead of
  // queueing (the history file exports every applied batch, and a whole
  // replay's worth at a start).
  constexpr uint64_t ahead = 16;
  HistoryEntryRef ref;
  for (uint64_t index = from_seq - 1; index + 1 < to_seq; ++index) {
    if (index + ahead + 1 < to_seq) {
      __builtin_prefetch(&s.wallets.at(s.history.at(index + ahead).wallet_slot));
    }
    const HistoryEntry& e = s.history.at(index);
    FillRef(s, index, e, s.wallets.at(e.wallet_slot), &ref);
    visit(ref);
  }
}

absl::StatusOr<uint64_t> Ledger::HistoryHead(uint64_t org_id, uint64_t wallet_id) const {
  const State& s = *state_;
  const Org* org = s.FindOrg(org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  uint32_t slot = s.FindWallet(*org, wallet_id);
  if (slot == no_slot) return NotFound(ResultCode::unknown_wallet);
  return s.wallets.at(slot).history_head;
}

absl::StatusOr<std::vector<RequestView>> Ledger::GetRequests(uint64_t org_id,
                                                             RequestStatus status) const {
  const State& s = *state_;
  const Org* org = s.FindOrg(org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  std::vector<RequestView> out;
  for (const auto& [id, r] : org->requests) {
    if (r.status != status) continue;
    out.push_back(RequestView{id, r.wallet_id, s.assets[r.asset], r.amount, r.approved_amount,
                              r.status, r.created_at_us, r.decided_at_us, r.reason, r.decided_by,
                              r.decision_note});
  }
  return out;
}

absl::StatusOr<std::vector<UsageRow>> Ledger::GetUsage(uint64_t org_id, int64_t from_us,
                                                       int64_t to_us) const {
  const State& s = *state_;
  const Org* org = s.FindOrg(org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  absl::btree_map<std::pair<uint64_t, Asset>, UsageRow> rows;  // (wallet, asset)
  uint64_t begin = s.history.begin();
  for (uint64_t index = s.history.total(); index > begin;) {
    --index;
    const HistoryEntry& e = s.history.at(index);
    if (from_us != 0 && e.time_us() < from_us / 1000 * 1000) break;
    if (to_us != 0 && e.time_us() >= to_us) continue;
    const Wallet& w = s.wallets.at(e.wallet_slot);
    if (w.org_slot != org->org_slot) continue;
    Asset asset = s.assets[e.asset()];
    UsageRow& row = rows[{w.id, asset}];
    row.wallet_id = w.id;
    row.asset = asset;
    switch (e.kind()) {
      case HistoryKind::deduct:
      case HistoryKind::deduct_rollup:
      case HistoryKind::capture:
        row.spent += e.amount;
        break;
      case HistoryKind::adjust:
        (e.out() ? row.spent : row.granted) += e.amount;
        break;
      case HistoryKind::topup:
      case HistoryKind::grant:
        row.granted += e.amount;
        break;
      case HistoryKind::allocate:
        if (!e.out()) row.granted += e.amount;
        break;
      case HistoryKind::expire:
        row.expired += e.amount;
        break;
      default:
        break;
    }
  }
  std::vector<UsageRow> out;
  out.reserve(rows.size());
  for (auto& [key, row] : rows) out.push_back(row);
  return out;
}

absl::StatusOr<OrgSettings> Ledger::GetSettings(uint64_t org_id) const {
  const Org* org = state_->FindOrg(org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  return org->settings;
}

absl::StatusOr<TotalsView> Ledger::GetTotals(uint64_t org_id, Asset asset) const {
  const State& s = *state_;
  const Org* org = s.FindOrg(org_id);
  if (org == nullptr) return NotFound(ResultCode::unknown_org);
  uint16_t a = s.FindAsset(asset);
  if (a == no_asset || a >= org->totals.size()) return TotalsView{};
  const engine::AssetTotals& t = org->totals[a];
  return TotalsView{t.in, t.available, t.held, t.spent, t.expired, t.voided, t.adjusted_out};
}

// ---- Digest: a canonical encoding, ordered by id, hashed as it is written.

namespace {

class Hasher {
 public:
  Hasher() : st_(XXH3_createState()) { XXH3_64bits_reset(st_); }
  ~Hasher() { XXH3_freeState(st_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  void U64(uint64_t v) { XXH3_64bits_update(st_, &v, sizeof v); }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void Asset(tally::Asset a) {
    U64(a.lo());
    U64(a.hi());
  }
  void Str(std::string_view v) {
    U64(v.size());
    XXH3_64bits_update(st_, v.data(), v.size());
  }
  uint64_t Done() { return XXH3_64bits_digest(st_); }

 private:
  XXH3_state_t* st_;
};

void HashLot(const State& s, const Lot& lot, Hasher& h) {
  h.U64(lot.grant_id);
  h.I64(lot.remaining);
  h.I64(lot.expires_at_us);
  h.I64(lot.priority);
  h.Asset(s.assets[lot.asset]);
}

void HashOrg(const State& s, const Org& org, Hasher& h) {
  h.U64(org.id);
  h.U64(org.settings.credit_payments);
  h.I64(org.settings.low_balance_threshold);
  h.I64(org.settings.expiring_soon_window_us);
  h.I64(org.settings.deduct_rollup_interval_us);
  h.U64(org.next_grant_id);
  h.U64(org.next_hold_id);
  h.U64(org.next_request_id);
  h.U64(org.live_wallets);
  // Totals by asset code.
  absl::btree_map<Asset, const engine::AssetTotals*> totals;
  for (size_t a = 0; a < org.totals.size(); ++a) totals[s.assets[a]] = &org.totals[a];
  for (const auto& [code, t] : totals) {
    h.Asset(code);
    for (int64_t v : {t->in, t->available, t->held, t->spent, t->expired, t->voided,
                      t->adjusted_out}) {
      h.I64(v);
    }
  }
  // Wallets by id (the pool is id 0).
  absl::btree_map<uint64_t, uint32_t> wallets;
  org.wallet_index.ForEach([&](uint64_t id, uint32_t slot) { wallets[id] = slot; });
  for (const auto& [id, slot] : wallets) {
    const Wallet& w = s.wallets.at(slot);
    h.U64(id);
    h.U64(w.flags);
    h.U64(w.history_head);
    auto label = org.labels.find(id);
    h.Str(label == org.labels.end() ? std::string_view() : std::string_view(label->second));
    h.U64(w.lot_count);
    for (uint32_t i = 0; i < w.lot_count; ++i) HashLot(s, w.lots()[i], h);
  }
  for (const auto& [id, g] : org.grants) {
    h.U64(id);
    h.Asset(s.assets[g.asset]);
    h.U64(static_cast<uint64_t>(g.source) | (uint64_t{g.voided} << 8) | (uint64_t{g.spread} << 9));
    h.I64(g.priority);
    h.I64(g.amount);
    h.I64(g.expires_at_us);
    h.I64(g.created_at_us);
    h.U64(g.origin_wallet_id);
    h.Str(g.reference);
  }
  for (const auto& [id, hold] : org.holds) {
    h.U64(id);
    h.U64(s.wallets.at(hold.wallet_slot).id);
    h.Asset(s.assets[hold.asset]);
    h.I64(hold.timeout_us);
    h.U64(hold.lots.size());
    for (const Lot& lot : hold.lots) HashLot(s, lot, h);
  }
  for (const auto& [id, r] : org.requests) {
    h.U64(id);
    h.U64(r.wallet_id);
    h.Asset(s.assets[r.asset]);
    h.U64(static_cast<uint64_t>(r.status));
    h.I64(r.amount);
    h.I64(r.approved_amount);
    h.I64(r.created_at_us);
    h.I64(r.decided_at_us);
    h.Str(r.reason);
    h.Str(r.decided_by);
    h.Str(r.decision_note);
  }
}

void HashOps(const engine::OpMemory& ops, Hasher& h) {
  h.U64(ops.size());
  h.U64(ops.current_size());  // where previous ends and current begins
  h.I64(ops.current_began_us());
  ops.ForEach([&](const engine::OpMemory::Entry& e) {
    h.U64(e.key.org_id);
    h.U64(e.key.op_id);
    h.U64(static_cast<uint64_t>(e.result.code));
    h.U64(e.result.id);
    for (int64_t v : e.result.n) h.I64(v);
  });
}

}  // namespace

uint64_t Ledger::Digest() const {
  const State& s = *state_;
  Hasher h;
  h.I64(s.now_us);
  absl::btree_map<uint64_t, const Org*> orgs;
  for (const auto& org : s.orgs) orgs[org->id] = org.get();
  h.U64(orgs.size());
  for (const auto& [id, org] : orgs) HashOrg(s, *org, h);
  h.U64(s.history.total());
  for (uint64_t i = s.history.begin(); i < s.history.total(); ++i) {
    const HistoryEntry& e = s.history.at(i);
    const Wallet& w = s.wallets.at(e.wallet_slot);
    h.U64(s.orgs[w.org_slot]->id);
    h.U64(w.id);
    h.U64(e.meta & ~(uint64_t{0xfff} << 52));  // the asset goes by code below
    h.Asset(s.assets[e.asset()]);
    h.I64(e.amount);
    h.I64(e.balance_after);
    h.U64(e.related_id);
    h.U64(e.prev_distance);
    // Only an entry flagged has_text has texts (a lookup is a search).
    if (const engine::HistoryTexts* t = e.has_text() ? s.history.texts(i) : nullptr) {
      h.Str(t->reference);
      h.Str(t->actor);
    }
  }
  HashOps(s.ops, h);
  return h.Done();
}

}  // namespace tally
