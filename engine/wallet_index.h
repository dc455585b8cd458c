// wallet_index.h: an org's wallet id -> wallet slot map, 12 bytes an entry.
//
// Why not absl::flat_hash_map: its 16-byte slots (padding) would take a
// wallet past the 96-byte budget, and storing only slots (hashing through the
// wallet store) makes every probe read the wallet record, so a lookup cannot
// be split into "prefetch the bucket" and "prefetch the wallet" stages.  Here
// the id sits in the entry: a probe touches only the index, and PrefetchHome()
// lets a batch start the cache misses of later commands early.
//
// Linear probing over a power-of-two table, load at most 7/8, no erase
// (deleted wallets keep their slot).  An entry stores slot + 1, so an empty
// entry is all zero: a new table is zeroed memory as it comes (a big one is
// a fresh mapping, HugeBlock: zero pages touched only where an id lands), with no
// pass that fills it with a marker.  The hash is a fixed mix: iteration
// order is never used for semantics, so determinism does not depend on it.
#ifndef TALLY_ENGINE_WALLET_INDEX_H_
#define TALLY_ENGINE_WALLET_INDEX_H_

#include <cstdint>
#include <cstring>
#include <limits>

#include "engine/huge_pages.h"
#include "engine/mix.h"
#include "tally/assert.h"

namespace tally::engine {

class WalletIndex {
 public:
  static constexpr uint32_t absent = std::numeric_limits<uint32_t>::max();

  uint64_t size() const { return size_; }

  // Find returns the slot of `wallet_id`, or absent.
  uint32_t Find(uint64_t wallet_id) const { return FindFrom(wallet_id, Home(wallet_id)); }

  // Home is where `wallet_id`'s probe starts in the table as it is now (a
  // table that grows moves it).  A batch computes it once for Prefetch and
  // Find; FindFrom and PrefetchHome take it.
  uint64_t Home(uint64_t id) const {
    return Mix64(id) & (capacity_ - 1);  // every bit of the id moves the bucket
  }
  uint32_t FindFrom(uint64_t wallet_id, uint64_t home) const {
    if (capacity_ == 0) return absent;
    for (uint64_t i = home;; i = (i + 1) & (capacity_ - 1)) {
      uint32_t stored = StoredAt(i);
      if (stored == 0) return absent;
      if (IdAt(i) == wallet_id) return stored - 1;
    }
  }

  // Insert adds an id that is not there yet.
  void Insert(uint64_t wallet_id, uint32_t slot) {
    TALLY_ASSERT(slot != absent);
    if ((size_ + 1) * 8 > capacity_ * 7) Grow();
    Place(wallet_id, slot);
    ++size_;
  }

  // Reserve sizes an empty index for `wallets` ids with one allocation, so a
  // snapshot's million wallets are not rehashed log2(n) times.
  void Reserve(uint64_t wallets) {
    TALLY_ASSERT(size_ == 0);
    uint64_t capacity = 8;
    while (wallets * 8 > capacity * 7) capacity *= 2;
    if (capacity > capacity_) Allocate(capacity);
  }

  // PrefetchHome starts loading the bucket at `home` (Home(wallet_id)).
  void PrefetchHome(uint64_t home) const {
    if (capacity_ != 0) __builtin_prefetch(table_.data() + home * entry_bytes);
  }

  // ForEach calls f(id, slot) for every entry, in table order.
  template <typename F>
  void ForEach(F&& f) const {
    for (uint64_t i = 0; i < capacity_; ++i) {
      if (StoredAt(i) != 0) f(IdAt(i), StoredAt(i) - 1);
    }
  }

 private:
  static constexpr uint64_t entry_bytes = 12;  // id (8) then slot + 1 (4), unaligned

  uint64_t IdAt(uint64_t i) const {
    uint64_t id;
    std::memcpy(&id, table_.data() + i * entry_bytes, sizeof id);
    return id;
  }
  // StoredAt is entry i's slot + 1; 0: empty.
  uint32_t StoredAt(uint64_t i) const {
    uint32_t stored;
    std::memcpy(&stored, table_.data() + i * entry_bytes + 8, sizeof stored);
    return stored;
  }
  void Place(uint64_t id, uint32_t slot) {
    uint64_t i = Home(id);
    while (StoredAt(i) != 0) i = (i + 1) & (capacity_ - 1);
    const uint32_t stored = slot + 1;
    std::memcpy(table_.data() + i * entry_bytes, &id, sizeof id);
    std::memcpy(table_.data() + i * entry_bytes + 8, &stored, sizeof stored);
  }
  // Allocate replaces the table with an empty one of `capacity` entries
  // (all zero); Grow takes the old one out first to re-place it.
  void Allocate(uint64_t capacity) {
    capacity_ = capacity;
    table_ = HugeBlock(capacity_ * entry_bytes + 8);
  }
  void Grow() {
    uint64_t old_capacity = capacity_;
    HugeBlock old = std::move(table_);
    Allocate(old_capacity == 0 ? 8 : old_capacity * 2);
    for (uint64_t i = 0; i < old_capacity; ++i) {
      uint32_t stored;
      uint64_t id;
      std::memcpy(&id, old.data() + i * entry_bytes, sizeof id);
      std::memcpy(&stored, old.data() + i * entry_bytes + 8, sizeof stored);
      if (stored != 0) Place(id, stored - 1);
    }
  }

  // On whole 2 MiB pages once it is that big (HugeBlock): a calloc'd
  // block starts 16 bytes into a page, so a 6 MiB index had at most two of
  // its three 2 MiB pages huge (and once glibc's mmap threshold has risen
  // with earlier frees, a block that size can come from the brk heap).
  HugeBlock table_;  // capacity_ entries, zeroed
  uint64_t capacity_ = 0;
  uint64_t size_ = 0;
};

}  // namespace tally::engine

#endif  // TALLY_ENGINE_WALLET_INDEX_H_
