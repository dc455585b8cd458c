// state.h: the ledger's in-memory layout (private to engine/).
//
// The sizes here are the product: 1,000,000 wallets must fit in ~96 MB and
// every history entry in 40 bytes, so the hot structs are packed by hand and
// their sizes asserted.  Everything a deduct touches is in the Wallet (one
// cache line) and the history ring; the rest (grants, holds, requests, texts)
// lives in side tables that only admin commands reach.
#ifndef TALLY_ENGINE_STATE_H_
#define TALLY_ENGINE_STATE_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "engine/history.h"
#include "engine/huge_pages.h"
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

// LotSummary is what a deduct needs of a wallet's lots without reading
// them all: their sum and soonest expiry, when every lot is of one asset.
// It lives in the inline lot's room while the lots are on the heap (that
// room is free then), so a deduct over a wallet of three lots reads the
// wallet's line and its first lot's, not every lot (docs/ENGINE.md, "The
// lot summary, eight remembered orgs, a sparser op-id table").  Kept by
// RefreshSummary after any change to the lots but the first lot's spend,
// which adjusts `book` itself.
struct LotSummary {
  int64_t book;                // sum of every lot's remaining
  int64_t soonest_expiry_us;   // the soonest expiry of any lot
  uint16_t asset;              // every lot's asset; no_asset when mixed or none
  uint16_t reserved16;
  uint32_t reserved32;
  int64_t reserved64;
};
static_assert(sizeof(LotSummary) == sizeof(Lot));

// Wallet is one user's balance in an org (the pool is wallet 0), one cache
// line.  Its lots, sorted in consumption order, sit inline while there is one
// and in the store's lot arena (capacity a power of two) once there were
// more; the inline lot's room then holds their summary.  The store owns that
// memory: a Wallet is plain data.
struct Wallet {
  uint64_t id = 0;
  uint64_t history_head = 0;  // ledger history index + 1 of the newest entry
  uint32_t org_slot = 0;
  uint16_t lot_count = 0;
  uint8_t flags = 0;
  uint8_t heap_capacity_log2 = 0;
  Lot* heap_lots = nullptr;
  union {
    Lot inline_lot{};         // while heap_lots is null
    LotSummary summary;       // while heap_lots is set
  };

  Wallet() = default;
  Wallet(const Wallet&) = delete;
  Wallet& operator=(const Wallet&) = delete;

  Lot* lots() { return heap_lots != nullptr ? heap_lots : &inline_lot; }
  const Lot* lots() const { return heap_lots != nullptr ? heap_lots : &inline_lot; }
  uint32_t capacity() const {
    return heap_lots != nullptr ? (1u << heap_capacity_log2) : 1u;
  }
  bool deleted() const { return (flags & wallet_deleted) != 0; }

  // RefreshSummary recomputes the summary from the heap lots; call it after
  // changing them (nothing to do while the lot is inline).
  void RefreshSummary();
  // SummaryLive says the summary holds at `now_us`: the lots are on the
  // heap, all of one asset, and none has expired.
  bool SummaryLive(int64_t now_us) const {
    return heap_lots != nullptr && summary.asset != no_asset && summary.soonest_expiry_us > now_us;
  }
  // SummaryCovers says the summary alone gives `asset`'s sums at `now_us`.
  bool SummaryCovers(uint16_t asset, int64_t now_us) const {
    return SummaryLive(now_us) && summary.asset == asset;
  }
};
static_assert(sizeof(Wallet) == 64);

inline void Wallet::RefreshSummary() {
  if (heap_lots == nullptr) return;
  LotSummary s{.book = 0, .soonest_expiry_us = never_us, .asset = no_asset,
               .reserved16 = 0, .reserved32 = 0, .reserved64 = 0};
  if (lot_count > 0) s.asset = heap_lots[0].asset;
  for (uint32_t i = 0; i < lot_count; ++i) {
    const Lot& lot = heap_lots[i];
    s.soonest_expiry_us = std::min(s.soonest_expiry_us, lot.expires_at_us);
    if (lot.asset != s.asset) s.asset = no_asset;
    // One asset's lots sum to at most the org's `in` of it: no overflow.
    if (s.asset != no_asset) s.book += lot.remaining;
  }
  summary = s;
}
static_assert(std::is_trivially_destructible_v<Wallet>);

// LotArena hands out the lot arrays of wallets: blocks of 2^k lots (k >= 1),
// carved from chunks that grow from 16 KiB to 2 MiB and then stay at one
// huge page (huge_pages.h), with a free list per size.  A deduct reads a
// random wallet's lots; from malloc they were on 4 KiB pages, each a page
// walk on this VM (bench/RESULTS.md, "third round").  Blocks are 64-byte
// aligned, so 3 or 4 lots are exactly two cache lines.  Blocks above
// 2^arena_log2_max lots (only possible past wallet_lots_max) come from malloc.
class LotArena {
 public:
  static constexpr uint8_t arena_log2_max = 10;

  LotArena() = default;
  LotArena(const LotArena&) = delete;
  LotArena& operator=(const LotArena&) = delete;
  // Wallets are plain data: the arena frees what they hold, the malloc'd
  // big blocks included.
  ~LotArena() { FreeBig(); }

  // Allocate returns room for 2^log2 lots (contents unspecified).
  Lot* Allocate(uint8_t log2) {
    TALLY_ASSERT(log2 >= 1 && log2 < 16);
    if (log2 > arena_log2_max) {
      void* p = std::malloc(sizeof(Lot) << log2);
      TALLY_ASSERT(p != nullptr);
      big_.push_back(p);
      return static_cast<Lot*>(p);
    }
    if (FreeBlock* b = free_[log2]) {
      free_[log2] = b->next;
      return reinterpret_cast<Lot*>(b);
    }
    const size_t bytes = BlockBytes(log2);
    if (left_bytes_ < bytes) NewChunk(bytes);
    Lot* lots = reinterpret_cast<Lot*>(bump_);
    bump_ += bytes;
    left_bytes_ -= bytes;
    return lots;
  }

  // Release gives back a block Allocate(log2) returned.
  void Release(Lot* lots, uint8_t log2) {
    if (lots == nullptr) return;
    if (log2 > arena_log2_max) {
      auto it = std::find(big_.begin(), big_.end(), static_cast<void*>(lots));
      TALLY_ASSERT(it != big_.end());
      *it = big_.back();  // few: only wallets past arena_log2_max lots have one
      big_.pop_back();
      std::free(lots);
      return;
    }
    Push(reinterpret_cast<unsigned char*>(lots), log2);
  }

 private:
  struct FreeBlock {
    FreeBlock* next;
  };
  static constexpr size_t first_chunk_bytes = size_t{16} << 10;
  void FreeBig() {
    for (void* p : big_) std::free(p);
    big_.clear();
  }
  static size_t BlockBytes(uint8_t log2) { return sizeof(Lot) << log2; }

  void Push(unsigned char* block, uint8_t log2) {
    FreeBlock* b = reinterpret_cast<FreeBlock*>(block);
    b->next = free_[log2];
    free_[log2] = b;
  }
  void NewChunk(size_t block_bytes) {
    // The tail of the old chunk goes to the free lists, biggest blocks first.
    for (uint8_t log2 = arena_log2_max; log2 >= 1 && left_bytes_ >= BlockBytes(1); --log2) {
      while (left_bytes_ >= BlockBytes(log2)) {
        Push(bump_, log2);
        bump_ += BlockBytes(log2);
        left_bytes_ -= BlockBytes(log2);
      }
    }
    size_t chunk_bytes = std::max(next_chunk_bytes_, block_bytes);
    next_chunk_bytes_ = std::min(2 * next_chunk_bytes_, huge_page_bytes);
    chunks_.emplace_back(chunk_bytes);
    bump_ = chunks_.back().data();
    left_bytes_ = chunks_.back().size_bytes();
  }

  FreeBlock* free_[arena_log2_max + 1] = {};
  std::vector<HugeBlock> chunks_;
  std::vector<void*> big_;  // the malloc'd blocks above arena_log2_max
  unsigned char* bump_ = nullptr;
  size_t left_bytes_ = 0;
  size_t next_chunk_bytes_ = first_chunk_bytes;
};

// WalletStore holds every wallet of the ledger in chunks, so a slot's
// address never changes and growth never copies, and the wallets' lot
// arrays.  Chunks grow 4096, 4096, 8192, 16384 wallets, then stay at 32768
// (2 MiB, one huge page: a random wallet costs no page walk); a table of
// one pointer per 4096 slots finds any slot with one load, as fixed chunks
// did.  A wallet is constructed when added: a small ledger touches only the
// wallets it has.
class WalletStore {
 public:
  static constexpr uint32_t granule_log2 = 12;
  static constexpr uint32_t granule_wallets = 1u << granule_log2;
  static constexpr uint32_t huge_chunk_wallets = huge_page_bytes / sizeof(Wallet);
  static_assert(huge_chunk_wallets % granule_wallets == 0);

  uint32_t size() const { return size_; }
  [[gnu::always_inline]] Wallet& at(uint32_t slot) {
    TALLY_ASSERT(slot < size_);
    return granules_[slot >> granule_log2][slot & (granule_wallets - 1)];
  }
  const Wallet& at(uint32_t slot) const {
    TALLY_ASSERT(slot < size_);
    return granules_[slot >> granule_log2][slot & (granule_wallets - 1)];
  }
  uint32_t Add() {
    TALLY_ASSERT(size_ < ledger_wallets_max);
    if (size_ == capacity_) Grow();
    new (&granules_[size_ >> granule_log2][size_ & (granule_wallets - 1)]) Wallet();
    return size_++;
  }

  // AllocateLots gives `w` room for 2^log2 lots, its old lots copied over.
  void AllocateLots(Wallet& w, uint8_t log2) {
    TALLY_ASSERT((1u << log2) >= w.lot_count);
    Lot* bigger = lots_.Allocate(log2);
    std::memcpy(bigger, w.lots(), w.lot_count * sizeof(Lot));
    if (w.heap_lots != nullptr) lots_.Release(w.heap_lots, w.heap_capacity_log2);
    w.heap_lots = bigger;
    w.heap_capacity_log2 = log2;
    w.RefreshSummary();
  }

 private:
  void Grow() {
    uint32_t wallets = static_cast<uint32_t>(
        std::max<uint64_t>(granule_wallets, std::min<uint64_t>(capacity_, huge_chunk_wallets)));
    chunks_.emplace_back(size_t{wallets} * sizeof(Wallet));
    Wallet* first = reinterpret_cast<Wallet*>(chunks_.back().data());
    for (uint32_t g = 0; g < wallets / granule_wallets; ++g) {
      granules_.push_back(first + size_t{g} * granule_wallets);
    }
    capacity_ += wallets;
  }

  std::vector<HugeBlock> chunks_;
  std::vector<Wallet*> granules_;  // granules_[slot >> granule_log2]: its 4096 wallets
  uint32_t size_ = 0;
  uint64_t capacity_ = 0;
  LotArena lots_;
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

  // totals_for is on every deduct: the growth is kept out of line, so the
  // usual case is an inlined compare and index.
  AssetTotals& totals_for(uint16_t asset) {
    if (asset < totals.size()) [[likely]] return totals[asset];
    return GrowTotals(asset);
  }
  [[gnu::noinline]] AssetTotals& GrowTotals(uint16_t asset) {
    totals.resize(asset + 1u);
    return totals[asset];
  }
};

// State is the whole ledger.
struct State {
  explicit State(const LedgerOptions& opts)
      : options(opts),
        history(opts.history_entries_max, opts.prefault),
        ops(opts.op_ids_max, opts.op_ids_retention_us, opts.prefault) {}

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

// Lot arithmetic shared by wallets and holds.  Every lot a wallet or hold
// keeps has remaining > 0: an emptied lot is dropped at once (and a
// snapshot with an empty lot is refused).

// LotSums are one asset's lots in one wallet: what can be spent, and what
// the ledger books (expired lots count until the sweep records their expiry).
struct LotSums {
  int64_t available = 0;
  int64_t book = 0;
};

inline LotSums SumLots(const Lot* lots, uint32_t count, uint16_t asset, int64_t now_us) {
  LotSums sums;
  for (const Lot* lot = lots; lot != lots + count; ++lot) {
    if (lot->asset != asset) continue;
    sums.book += lot->remaining;
    if (lot->expires_at_us > now_us) sums.available += lot->remaining;
  }
  return sums;
}

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
// FirstLotCovers says the usual deduct's case: the first lot can be spent
// and holds more than `amount`, so taking `amount` changes that lot alone
// and drops nothing (lots_test holds TakeLots' two ways to the same).
inline bool FirstLotCovers(const Lot* lots, uint32_t count, uint16_t asset, int64_t amount,
                           int64_t now_us) {
  return count > 0 && amount > 0 && lots[0].asset == asset && lots[0].expires_at_us > now_us &&
         lots[0].remaining > amount;
}

template <typename Sink>
int64_t TakeLots(Lot* lots, uint32_t& count, uint16_t asset, int64_t amount, int64_t now_us,
                 Sink&& sink) {
  // The usual deduct, in a few instructions; else the walk below.
  if (FirstLotCovers(lots, count, asset, amount, now_us)) [[likely]] {
    sink(static_cast<const Lot&>(lots[0]), amount);
    lots[0].remaining -= amount;
    return amount;
  }
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
