// state.h: the ledger's in-memory layout (private to engine/).
//
// The sizes here are the product: 1,000,000 wallets must fit in ~96 MB and
// every history entry in 40 bytes, so the hot structs are packed by hand and
// their sizes asserted.  Everything a deduct touches is in the Wallet (one
// cache line) and the history ring; the rest (grants, holds, requests, texts)
// lives in side tables that only admin commands reach.
#ifndef TALLY_ENGINE_STATE_H_
#define TALLY_ENGINE_STATE_H_

#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "engine/history.h"
#include "engine/ledger.h"
#include "engine/op_memory.h"
#include "engine/wallet_index.h"
#include "tally/assert.h"

namespace tally::engine {

inline constexpr int64_t never_us = std::numeric_limits<int64_t>::max();
inline constexpr uint32_t no_slot = std::numeric_limits<uint32_t>::max();
inline constexpr uint16_t no_asset = std::numeric_limits<uint16_t>::max();

// Lot is one block of credits in a wallet or a hold.  Lots of one grant that
// moved to several wallets share the grant id, expiry and priority.
struct Lot {
  uint64_t grant_id;
  int64_t remaining;
  int64_t expires_at_us;  // never_us when it never expires
  int32_t priority;
  uint16_t asset;         // index into the ledger's asset table
  uint16_t reserved;
};
static_assert(sizeof(Lot) == 32);

// SpentBefore is the consumption order of SPEC §1.
inline bool SpentBefore(const Lot& a, const Lot& b) {
  return std::tie(a.priority, a.expires_at_us, a.grant_id) <
         std::tie(b.priority, b.expires_at_us, b.grant_id);
}

inline constexpr uint8_t wallet_deleted = 1 << 0;

// Wallet is one user's balance in an org (the pool is wallet 0), one cache
// line.  Its lots, sorted in consumption order, sit inline while there is one
// and on the heap (capacity a power of two) once there were more.
struct Wallet {
  uint64_t id = 0;
  uint64_t history_head = 0;  // ledger history index + 1 of the newest entry
  uint32_t org_slot = 0;
  uint16_t lot_count = 0;
  uint8_t flags = 0;
  uint8_t heap_capacity_log2 = 0;
  Lot* heap_lots = nullptr;
  Lot inline_lot{};

  Wallet() = default;
  Wallet(const Wallet&) = delete;
  Wallet& operator=(const Wallet&) = delete;
  ~Wallet() { delete[] heap_lots; }

  Lot* lots() { return heap_lots != nullptr ? heap_lots : &inline_lot; }
  const Lot* lots() const { return heap_lots != nullptr ? heap_lots : &inline_lot; }
  uint32_t capacity() const {
    return heap_lots != nullptr ? (1u << heap_capacity_log2) : 1u;
  }
  bool deleted() const { return (flags & wallet_deleted) != 0; }
};
static_assert(sizeof(Wallet) == 64);

// WalletStore holds every wallet of the ledger in fixed chunks, so a slot's
// address never changes and growth never copies.
class WalletStore {
 public:
  static constexpr uint32_t chunk_wallets = 4096;

  uint32_t size() const { return size_; }
  Wallet& at(uint32_t slot) {
    TALLY_ASSERT(slot < size_);
    return chunks_[slot / chunk_wallets][slot % chunk_wallets];
  }
  const Wallet& at(uint32_t slot) const {
    TALLY_ASSERT(slot < size_);
    return chunks_[slot / chunk_wallets][slot % chunk_wallets];
  }
  uint32_t Add() {
    TALLY_ASSERT(size_ < ledger_wallets_max);
    if (size_ % chunk_wallets == 0) {
      chunks_.push_back(std::make_unique<Wallet[]>(chunk_wallets));
    }
    return size_++;
  }

 private:
  std::vector<std::unique_ptr<Wallet[]>> chunks_;
  uint32_t size_ = 0;
};


// Where a grant's credits came from (on-disk in snapshots; numbered).
enum class LotSource : uint8_t { topup = 1, grant = 2, adjust = 3 };

// Grant is what the org remembers of a lot's origin.
struct Grant {
  uint16_t asset = 0;
  LotSource source = LotSource::grant;
  bool voided = false;
  bool spread = false;  // pieces may sit in wallets or holds other than its origin
  int32_t priority = 0;
  int64_t amount = 0;
  int64_t expires_at_us = never_us;
  int64_t created_at_us = 0;
  uint64_t origin_wallet_id = 0;
  std::string reference;
};

// Hold is credits reserved in a wallet, lot by lot.
struct Hold {
  uint32_t wallet_slot = 0;
  uint16_t asset = 0;
  int64_t timeout_us = never_us;
  int64_t deadline_us = never_us;  // min(timeout, soonest lot expiry): its index key
  std::vector<Lot> lots;           // in consumption order
};

struct Request {
  uint64_t wallet_id = 0;
  uint16_t asset = 0;
  RequestStatus status = RequestStatus::pending;
  int64_t amount = 0;
  int64_t approved_amount = 0;
  int64_t created_at_us = 0;
  int64_t decided_at_us = 0;
  std::string reason;
  std::string decided_by;
  std::string decision_note;
};

// AssetTotals are an org's running counters for one asset; the SPEC §1
// invariant is checked against them.
struct AssetTotals {
  int64_t in = 0;
  int64_t available = 0;  // includes expired lots the sweep has not removed yet
  int64_t held = 0;
  int64_t spent = 0;
  int64_t expired = 0;
  int64_t voided = 0;
  int64_t adjusted_out = 0;
};

struct Org {
  Org(uint64_t org_id, uint32_t slot) : id(org_id), org_slot(slot) {}

  uint64_t id;
  uint32_t org_slot;
  uint32_t pool_slot = no_slot;
  OrgSettings settings;
  WalletIndex wallet_index;             // every wallet of the org, pool included
  std::vector<uint32_t> wallet_order;   // user wallets in creation order
  uint64_t live_wallets = 0;            // user wallets not deleted
  absl::flat_hash_map<uint64_t, std::string> labels;
  absl::btree_map<uint64_t, Grant> grants;
  absl::btree_map<uint64_t, Hold> holds;  // open holds only
  absl::btree_set<std::pair<uint32_t, uint64_t>> holds_by_wallet;  // (wallet slot, hold id)
  absl::btree_map<uint64_t, Request> requests;
  std::vector<AssetTotals> totals;        // by asset index
  uint64_t next_grant_id = 1;
  uint64_t next_hold_id = 1;
  uint64_t next_request_id = 1;

  AssetTotals& totals_for(uint16_t asset) {
    if (asset >= totals.size()) totals.resize(asset + 1u);
    return totals[asset];
  }
};

// State is the whole ledger.
struct State {
  explicit State(const LedgerOptions& opts)
      : options(opts),
        history(opts.history_entries_max),
        ops(opts.op_ids_max, opts.op_ids_retention_us) {}

  LedgerOptions options;
  int64_t now_us = 0;
  std::vector<Asset> assets;                            // by index
  absl::flat_hash_map<Asset, uint16_t> asset_index;  // code -> index
  WalletStore wallets;
  std::vector<std::unique_ptr<Org>> orgs;               // by slot
  absl::flat_hash_map<uint64_t, uint32_t> org_index;    // id -> slot
  absl::btree_set<std::pair<int64_t, uint32_t>> lot_expiry;  // (expires_at, wallet slot)
  absl::btree_set<std::tuple<int64_t, uint32_t, uint64_t>> hold_deadlines;  // (deadline, org, hold)
  HistoryRing history;
  OpMemory ops;
  // Scratch of Apply, kept so that a batch allocates nothing.
  std::vector<OpMemory::Claim> claims;
  std::vector<OpKey> claim_keys;
  std::vector<uint64_t> claim_hashes;
  std::vector<uint32_t> prefetch_slots;

  uint16_t FindAsset(Asset asset) const {
    auto it = asset_index.find(asset);
    return it == asset_index.end() ? no_asset : it->second;
  }
  Org* FindOrg(uint64_t org_id) {
    auto it = org_index.find(org_id);
    return it == org_index.end() ? nullptr : orgs[it->second].get();
  }
  const Org* FindOrg(uint64_t org_id) const {
    auto it = org_index.find(org_id);
    return it == org_index.end() ? nullptr : orgs[it->second].get();
  }
  // FindWallet returns the slot of an org's wallet, deleted ones included.
  uint32_t FindWallet(const Org& org, uint64_t wallet_id) const {
    return org.wallet_index.Find(wallet_id);
  }
  // FindLiveWallet is FindWallet without deleted wallets.
  uint32_t FindLiveWallet(const Org& org, uint64_t wallet_id) const {
    uint32_t slot = FindWallet(org, wallet_id);
    return slot == no_slot || wallets.at(slot).deleted() ? no_slot : slot;
  }
};

// Lot arithmetic shared by wallets and holds.

// AvailableOf sums the unexpired lots of one asset.
inline int64_t AvailableOf(const Lot* lots, uint32_t count, uint16_t asset, int64_t now_us) {
  int64_t sum = 0;
  for (uint32_t i = 0; i < count; ++i) {
    if (lots[i].asset == asset && lots[i].expires_at_us > now_us) sum += lots[i].remaining;
  }
  return sum;
}

// TakeLots takes up to `amount` of `asset` from unexpired lots in consumption
// order, calls sink(lot, taken) for each piece, drops emptied lots and
// returns what it took.  `count` is updated.
template <typename Sink>
int64_t TakeLots(Lot* lots, uint32_t& count, uint16_t asset, int64_t amount, int64_t now_us,
                 Sink&& sink) {
  int64_t need = amount;
  uint32_t write = 0;
  uint32_t read = 0;
  for (; read < count; ++read) {
    Lot& lot = lots[read];
    if (need == 0 && write == read) break;  // nothing taken or dropped from here on
    if (need > 0 && lot.asset == asset && lot.expires_at_us > now_us) {
      int64_t take = lot.remaining < need ? lot.remaining : need;
      sink(static_cast<const Lot&>(lot), take);
      lot.remaining -= take;
      need -= take;
    }
    if (lot.remaining > 0) {
      if (write != read) lots[write] = lot;
      ++write;
    }
  }
  // An early break leaves write == read: nothing behind it moved.
  if (read == count) count = write;
  return amount - need;
}

}  // namespace tally::engine

#endif  // TALLY_ENGINE_STATE_H_
