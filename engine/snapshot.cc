// snapshot.cc: the whole ledger as bytes and back (engine/SNAPSHOT.md).
//
// A snapshot is a faithful dump of the layout: wallet slots, org slots, the
// expiry and hold-deadline indexes (stale entries included, since they decide
// the order a sweep visits wallets in), the history window and the op-id
// generations.  Only the hash indexes are rebuilt.  So a restored ledger does
// not just have the same Digest(): it applies every later batch identically.
#include <algorithm>
#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include "engine/ledger.h"
#include "engine/state.h"
#include "tally/bytes.h"
#include "xxhash.h"

namespace tally {
namespace {

using engine::HistoryEntry;
using engine::Lot;
using engine::Org;
using engine::State;
using engine::Wallet;

constexpr char kMagic[8] = {'T', 'A', 'L', 'L', 'Y', 'S', 'N', 'P'};
constexpr uint32_t kVersion = 1;

void PutLots(ByteWriter& o, const Lot* lots, size_t count) {
  o.Put<uint64_t>(count);
  for (size_t i = 0; i < count; ++i) o.Put(lots[i]);
}

}  // namespace

void Ledger::EncodeSnapshot(std::string* out) const {
  const State& s = *state_;
  size_t start = out->size();
  ByteWriter o(out);
  out->append(kMagic, sizeof kMagic);
  o.Put<uint32_t>(kVersion);
  o.Put<uint32_t>(0);
  o.Put<int64_t>(s.now_us);

  o.Put<uint64_t>(s.assets.size());
  for (Asset a : s.assets) {
    o.Put<uint64_t>(a.lo());
    o.Put<uint64_t>(a.hi());
  }

  o.Put<uint64_t>(s.wallets.size());
  for (uint32_t slot = 0; slot < s.wallets.size(); ++slot) {
    const Wallet& w = s.wallets.at(slot);
    o.Put<uint64_t>(w.id);
    o.Put<uint64_t>(w.history_head);
    o.Put<uint32_t>(w.org_slot);
    o.Put<uint8_t>(w.flags);
    PutLots(o, w.lots(), w.lot_count);
  }

  o.Put<uint64_t>(s.orgs.size());
  for (const auto& org_ptr : s.orgs) {
    const Org& org = *org_ptr;
    o.Put<uint64_t>(org.id);
    o.Put<uint32_t>(org.pool_slot);
    o.Put<uint8_t>(org.settings.credit_payments ? 1 : 0);
    o.Put<int64_t>(org.settings.low_balance_threshold);
    o.Put<int64_t>(org.settings.expiring_soon_window_us);
    o.Put<int64_t>(org.settings.deduct_rollup_interval_us);
    o.Put<uint64_t>(org.next_grant_id);
    o.Put<uint64_t>(org.next_hold_id);
    o.Put<uint64_t>(org.next_request_id);
    o.Put<uint64_t>(org.live_wallets);
    o.Put<uint64_t>(org.wallet_order.size());
    for (uint32_t slot : org.wallet_order) o.Put<uint32_t>(slot);
    absl::btree_map<uint64_t, const std::string*> labels;  // ordered: one encoding per state
    for (const auto& [id, label] : org.labels) labels[id] = &label;
    o.Put<uint64_t>(labels.size());
    for (const auto& [id, label] : labels) {
      o.Put<uint64_t>(id);
      o.Text<uint32_t>(*label);
    }
    o.Put<uint64_t>(org.grants.size());
    for (const auto& [id, g] : org.grants) {
      o.Put<uint64_t>(id);
      o.Put<uint16_t>(g.asset);
      o.Put<uint8_t>(static_cast<uint8_t>(g.source));
      o.Put<uint8_t>(static_cast<uint8_t>(g.voided | (g.spread << 1)));
      o.Put<int32_t>(g.priority);
      o.Put<int64_t>(g.amount);
      o.Put<int64_t>(g.expires_at_us);
      o.Put<int64_t>(g.created_at_us);
      o.Put<uint64_t>(g.origin_wallet_id);
      o.Text<uint32_t>(g.reference);
    }
    o.Put<uint64_t>(org.holds.size());
    for (const auto& [id, h] : org.holds) {
      o.Put<uint64_t>(id);
      o.Put<uint32_t>(h.wallet_slot);
      o.Put<uint16_t>(h.asset);
      o.Put<int64_t>(h.timeout_us);
      o.Put<int64_t>(h.deadline_us);
      PutLots(o, h.lots.data(), h.lots.size());
    }
    o.Put<uint64_t>(org.requests.size());
    for (const auto& [id, r] : org.requests) {
      o.Put<uint64_t>(id);
      o.Put<uint64_t>(r.wallet_id);
      o.Put<uint16_t>(r.asset);
      o.Put<uint8_t>(static_cast<uint8_t>(r.status));
      o.Put<int64_t>(r.amount);
      o.Put<int64_t>(r.approved_amount);
      o.Put<int64_t>(r.created_at_us);
      o.Put<int64_t>(r.decided_at_us);
      o.Text<uint32_t>(r.reason);
      o.Text<uint32_t>(r.decided_by);
      o.Text<uint32_t>(r.decision_note);
    }
    o.Put<uint64_t>(org.totals.size());
    for (const engine::AssetTotals& t : org.totals) o.Put(t);
  }

  o.Put<uint64_t>(s.lot_expiry.size());
  for (const auto& [at, slot] : s.lot_expiry) {
    o.Put<int64_t>(at);
    o.Put<uint32_t>(slot);
  }
  o.Put<uint64_t>(s.hold_deadlines.size());
  for (const auto& [at, org_slot, hold_id] : s.hold_deadlines) {
    o.Put<int64_t>(at);
    o.Put<uint32_t>(org_slot);
    o.Put<uint64_t>(hold_id);
  }

  o.Put<uint64_t>(s.history.total());
  o.Put<uint64_t>(s.history.begin());
  for (uint64_t i = s.history.begin(); i < s.history.total(); ++i) {
    o.Put(s.history.at(i));
    if (s.history.at(i).has_text()) {
      const engine::HistoryTexts* t = s.history.texts(i);
      o.Text<uint32_t>(t != nullptr ? std::string_view(t->reference) : std::string_view());
      o.Text<uint32_t>(t != nullptr ? std::string_view(t->actor) : std::string_view());
    }
  }

  o.Put<uint32_t>(static_cast<uint32_t>(s.ops.current_index()));
  for (int g = 0; g < 2; ++g) {
    o.Put<int64_t>(s.ops.began_us_of(g));
    const auto& entries = s.ops.entries_of(g);
    o.Put<uint64_t>(entries.size());
    for (const engine::OpMemory::Entry& e : entries) {
      // Field by field: Result has padding, and a snapshot's bytes are a
      // function of the state alone.
      o.Put<uint64_t>(e.key.org_id);
      o.Put<uint64_t>(e.key.op_id);
      o.Put<uint16_t>(static_cast<uint16_t>(e.result.code));
      o.Put<uint64_t>(e.result.id);
      for (int64_t v : e.result.n) o.Put<int64_t>(v);
    }
  }

  uint64_t checksum = XXH3_64bits(out->data() + start, out->size() - start);
  o.Put<uint64_t>(checksum);
}

absl::StatusOr<std::unique_ptr<Ledger>> Ledger::DecodeSnapshot(std::string_view bytes,
                                                               const LedgerOptions& options) {
  auto ledger = std::make_unique<Ledger>(options);
  if (absl::Status s = ledger->LoadSnapshot(bytes); !s.ok()) return s;
  return ledger;
}

absl::Status Ledger::LoadSnapshot(std::string_view bytes) {
  TALLY_ASSERT(state_->wallets.size() == 0 && state_->orgs.empty() &&
               state_->history.total() == 0 && state_->ops.size() == 0);
  if (bytes.size() < sizeof kMagic + 8 + 8) return absl::DataLossError("snapshot: truncated");
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  std::string_view body = bytes.substr(0, bytes.size() - 8);
  if (XXH3_64bits(body.data(), body.size()) != stored) {
    return absl::DataLossError("snapshot: checksum mismatch");
  }
  if (std::memcmp(body.data(), kMagic, sizeof kMagic) != 0) {
    return absl::DataLossError("snapshot: not a tally snapshot (magic)");
  }
  const std::string_view payload = body.substr(sizeof kMagic);
  ByteReader in(payload, "snapshot");
  uint32_t version = in.Get<uint32_t>();
  in.Check(version == kVersion, "unknown version");
  in.Check(in.Get<uint32_t>() == 0, "reserved field not zero");
  State& s = *state_;
  s.now_us = in.Get<int64_t>();

  uint64_t assets = in.Count(16);
  in.Check(assets <= assets_max, "too many assets");
  for (uint64_t i = 0; i < assets && in.ok(); ++i) {
    uint64_t lo = in.Get<uint64_t>();
    uint64_t hi = in.Get<uint64_t>();
    Asset a = Asset::FromPacked(lo, hi);
    in.Check(a.Valid() && s.FindAsset(a) == engine::no_asset, "bad or repeated asset");
    s.assets.push_back(a);
    s.asset_index.emplace(a, static_cast<uint16_t>(i));
  }
  auto valid_lot = [&](const Lot& lot) {
    return lot.remaining > 0 && lot.asset < s.assets.size() && lot.expires_at_us > 0;
  };

  uint64_t wallets = in.Count(8 + 8 + 4 + 1 + 8);
  in.Check(wallets <= ledger_wallets_max, "too many wallets");
  if (in.ok()) {
    // One bounds check per wallet record, not per field.
    for (uint64_t i = 0; i < wallets; ++i) {
      if (!in.Has(8 + 8 + 4 + 1 + 8)) break;
      Wallet& w = s.wallets.at(s.wallets.Add());
      w.id = in.Take<uint64_t>();
      w.history_head = in.Take<uint64_t>();
      w.org_slot = in.Take<uint32_t>();
      w.flags = in.Take<uint8_t>();
      const uint64_t lots = in.Take<uint64_t>();
      if (lots >= UINT16_MAX) {
        in.Check(false, "too many lots in a wallet");
        break;
      }
      if (!in.Has(lots * sizeof(Lot))) break;
      Lot* to = &w.inline_lot;
      if (lots > 1) {
        const uint8_t log2 = static_cast<uint8_t>(std::bit_width(lots - 1));
        s.wallets.AllocateLots(w, log2);  // lot_count is 0 here: nothing to copy
        to = w.heap_lots;
      }
      const char* raw = in.TakeBytes(lots * sizeof(Lot));
      if (lots > 0) std::memcpy(static_cast<void*>(to), raw, lots * sizeof(Lot));
      w.lot_count = static_cast<uint16_t>(lots);
      w.RefreshSummary();
      bool lots_ok = true;
      for (uint64_t l = 0; l < lots; ++l) lots_ok &= valid_lot(to[l]);
      if (!lots_ok) {
        in.Check(false, "bad lot");
        break;
      }
    }
  }

  uint64_t orgs = in.Count(8);
  in.Check(orgs <= ledger_orgs_max, "too many orgs");
  auto slot_ok = [&](uint32_t slot) { return slot < s.wallets.size(); };
  for (uint64_t i = 0; i < orgs && in.ok(); ++i) {
    uint32_t org_slot = static_cast<uint32_t>(i);
    s.orgs.push_back(std::make_unique<Org>(in.Get<uint64_t>(), org_slot));
    Org& org = *s.orgs.back();
    in.Check(s.org_index.emplace(org.id, org_slot).second, "repeated org id");
    org.pool_slot = in.Get<uint32_t>();
    in.Check(slot_ok(org.pool_slot), "pool slot out of range");
    org.settings.credit_payments = in.Get<uint8_t>() == 1;
    org.settings.low_balance_threshold = in.Get<int64_t>();
    org.settings.expiring_soon_window_us = in.Get<int64_t>();
    org.settings.deduct_rollup_interval_us = in.Get<int64_t>();
    org.next_grant_id = in.Get<uint64_t>();
    org.next_hold_id = in.Get<uint64_t>();
    org.next_request_id = in.Get<uint64_t>();
    org.live_wallets = in.Get<uint64_t>();
    uint64_t order = in.Count(4);
    org.wallet_order.reserve(order);
    for (uint64_t k = 0; k < order && in.ok(); ++k) {
      uint32_t slot = in.Get<uint32_t>();
      in.Check(slot_ok(slot), "wallet slot out of range");
      org.wallet_order.push_back(slot);
    }
    uint64_t labels = in.Count(12);
    for (uint64_t k = 0; k < labels && in.ok(); ++k) {
      uint64_t id = in.Get<uint64_t>();
      org.labels[id] = std::string(in.Text<uint32_t>(text_bytes_max));
    }
    uint64_t grants = in.Count(8 + 2 + 1 + 1 + 4 + 32 + 4);
    if (in.ok()) {
      uint64_t last_grant_id = 0;
      for (uint64_t k = 0; k < grants; ++k) {
        if (!in.Has(8 + 2 + 1 + 1 + 4 + 32)) break;
        const uint64_t id = in.Take<uint64_t>();
        // Written in id order (one encoding per state), so each goes at the
        // end: a hinted insert, O(1) instead of a search of the tree.
        if (k > 0 && id <= last_grant_id) {
          in.Check(false, "grant ids not ascending");
          break;
        }
        last_grant_id = id;
        engine::Grant& g = org.grants.emplace_hint(org.grants.end(), id, engine::Grant{})->second;
        g.asset = in.Take<uint16_t>();
        g.source = static_cast<engine::LotSource>(in.Take<uint8_t>());
        const uint8_t bits = in.Take<uint8_t>();
        g.voided = (bits & 1) != 0;
        g.spread = (bits & 2) != 0;
        g.priority = in.Take<int32_t>();
        g.amount = in.Take<int64_t>();
        g.expires_at_us = in.Take<int64_t>();
        g.created_at_us = in.Take<int64_t>();
        g.origin_wallet_id = in.Take<uint64_t>();
        const std::string_view reference = in.Text<uint32_t>(text_bytes_max);
        if (!in.ok()) break;
        g.reference.assign(reference);
        if (g.asset >= s.assets.size()) {
          in.Check(false, "grant asset out of range");
          break;
        }
      }
    }
    uint64_t holds = in.Count(8 + 4 + 2 + 16 + 8);
    for (uint64_t k = 0; k < holds && in.ok(); ++k) {
      uint64_t id = in.Get<uint64_t>();
      engine::Hold& h = org.holds[id];
      h.wallet_slot = in.Get<uint32_t>();
      in.Check(slot_ok(h.wallet_slot), "hold wallet out of range");
      h.asset = in.Get<uint16_t>();
      in.Check(h.asset < s.assets.size(), "hold asset out of range");
      h.timeout_us = in.Get<int64_t>();
      h.deadline_us = in.Get<int64_t>();
      uint64_t lots = in.Count(sizeof(Lot));
      in.Check(lots <= hold_lots_max, "too many lots in a hold");
      for (uint64_t l = 0; l < lots && in.ok(); ++l) {
        h.lots.push_back(in.Get<Lot>());
        in.Check(valid_lot(h.lots.back()), "bad held lot");
      }
      org.holds_by_wallet.emplace(h.wallet_slot, id);
    }
    uint64_t requests = in.Count(8 + 8 + 2 + 1 + 32 + 12);
    for (uint64_t k = 0; k < requests && in.ok(); ++k) {
      uint64_t id = in.Get<uint64_t>();
      engine::Request& r = org.requests[id];
      r.wallet_id = in.Get<uint64_t>();
      r.asset = in.Get<uint16_t>();
      in.Check(r.asset < s.assets.size(), "request asset out of range");
      uint8_t status = in.Get<uint8_t>();
      in.Check(status >= 1 && status <= 3, "bad request status");
      r.status = static_cast<RequestStatus>(status);
      r.amount = in.Get<int64_t>();
      r.approved_amount = in.Get<int64_t>();
      r.created_at_us = in.Get<int64_t>();
      r.decided_at_us = in.Get<int64_t>();
      r.reason = std::string(in.Text<uint32_t>(text_bytes_max));
      r.decided_by = std::string(in.Text<uint32_t>(text_bytes_max));
      r.decision_note = std::string(in.Text<uint32_t>(text_bytes_max));
    }
    uint64_t totals = in.Count(sizeof(engine::AssetTotals));
    in.Check(totals <= s.assets.size(), "totals for unknown assets");
    for (uint64_t k = 0; k < totals && in.ok(); ++k) {
      org.totals.push_back(in.Get<engine::AssetTotals>());
    }
  }
  // The wallet index is the one thing rebuilt: from the wallets themselves,
  // each org's index sized once.
  if (in.ok()) {
    std::vector<uint64_t> per_org(s.orgs.size());
    for (uint32_t slot = 0; slot < s.wallets.size(); ++slot) {
      const uint32_t org_slot = s.wallets.at(slot).org_slot;
      if (org_slot < per_org.size()) ++per_org[org_slot];
    }
    for (size_t o = 0; o < per_org.size(); ++o) s.orgs[o]->wallet_index.Reserve(per_org[o]);
  }
  for (uint32_t slot = 0; slot < s.wallets.size() && in.ok(); ++slot) {
    const Wallet& w = s.wallets.at(slot);
    in.Check(w.org_slot < s.orgs.size(), "wallet org out of range");
    if (!in.ok()) break;
    Org& org = *s.orgs[w.org_slot];
    in.Check(org.wallet_index.Find(w.id) == engine::WalletIndex::absent, "repeated wallet id");
    org.wallet_index.Insert(w.id, slot);
  }

  uint64_t expiry = in.Count(12);
  for (uint64_t k = 0; k < expiry && in.ok(); ++k) {
    int64_t at = in.Get<int64_t>();
    uint32_t slot = in.Get<uint32_t>();
    in.Check(slot_ok(slot), "expiry slot out of range");
    s.lot_expiry.emplace_hint(s.lot_expiry.end(), at, slot);  // written in order: append
  }
  uint64_t deadlines = in.Count(20);
  for (uint64_t k = 0; k < deadlines && in.ok(); ++k) {
    int64_t at = in.Get<int64_t>();
    uint32_t org_slot = in.Get<uint32_t>();
    uint64_t hold_id = in.Get<uint64_t>();
    in.Check(org_slot < s.orgs.size() && s.orgs[org_slot]->holds.contains(hold_id),
             "deadline of an unknown hold");
    s.hold_deadlines.emplace_hint(s.hold_deadlines.end(), at, org_slot, hold_id);
  }

  uint64_t total = in.Get<uint64_t>();
  uint64_t begin = in.Get<uint64_t>();
  in.Check(begin <= total, "history window inverted");
  if (in.ok()) s.history.Restart(total);
  uint64_t keep_from = std::max(begin, s.history.begin());
  if (in.ok()) {
    const size_t asset_bound = std::max<size_t>(1, s.assets.size());
    for (uint64_t i = begin; i < total; ++i) {
      if (!in.Has(sizeof(HistoryEntry))) break;
      HistoryEntry e = in.Take<HistoryEntry>();
      if (!slot_ok(e.wallet_slot) || e.asset() >= asset_bound) {
        in.Check(false, "history entry out of range");
        break;
      }
      if (!e.has_text()) {
        if (i >= keep_from) s.history.LoadAt(i, e);
        continue;
      }
      const std::string_view reference = in.Text<uint32_t>(text_bytes_max);
      const std::string_view actor = in.Text<uint32_t>(text_bytes_max);
      if (!in.ok()) break;
      if (i >= keep_from) s.history.LoadAt(i, e, reference, actor);
    }
  }

  uint32_t current = in.Get<uint32_t>();
  in.Check(current <= 1, "bad op-id generation");
  constexpr size_t kOpEntryBytes = 8 + 8 + 2 + 8 + 24;
  for (int g = 0; g < 2 && in.ok(); ++g) {
    int64_t began_us = in.Get<int64_t>();
    uint64_t n = in.Count(kOpEntryBytes);
    in.Check(n <= s.ops.generation_max(), "op-id generation larger than this ledger keeps");
    if (!in.ok()) break;
    // Fixed-size records: checked at once, decoded straight into the generation.
    if (!in.Has(n * kOpEntryBytes)) break;
    const bool loaded = s.ops.LoadBulk(
        static_cast<int>(current), g, began_us, n,
        [&](std::vector<engine::OpMemory::Entry>& out, uint64_t count) {
          for (uint64_t k = 0; k < count; ++k) {
            engine::OpMemory::Entry& e = out.emplace_back();
            e.key.org_id = in.Take<uint64_t>();
            e.key.op_id = in.Take<uint64_t>();
            const uint16_t code = in.Take<uint16_t>();
            e.result.id = in.Take<uint64_t>();
            for (int64_t& v : e.result.n) v = in.Take<int64_t>();
            if (code == 0) return false;
            e.result.code = static_cast<ResultCode>(code);
          }
          return true;
        });
    in.Check(loaded, "op-id entry without a result");
  }
  in.Check(in.done(), "trailing bytes");
  return in.status();
}

}  // namespace tally
