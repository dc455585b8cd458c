// op_memory.h: which operation ids a ledger has seen, and their first result.
//
// Every changing command looks its (org, op id) up here and stores its result,
// so this sits on the deduct hot path: a table far bigger than cache, one
// random access per command and generation.  Done inline between commands
// those misses queue one after another (measured: ~190 ns a deduct); done for
// the whole batch first, in a loop with nothing else in it, they overlap.  Two generations (docs/ENGINE.md, "Operation
// ids"): the current one takes new ids; when it is full or old it becomes the
// previous one and the previous one is forgotten.  Each generation is an
// append-only array of entries (written in order: cheap) and an open-addressing
// table of 8-byte slots, a 32-bit fingerprint and the entry's position, so a
// lookup costs one cache miss per generation.
// Forgetting a generation is a memset of its table; after the first
// generation fills, nothing is allocated.  Memory: 8 bytes x 2 x ids_max of
// tables plus 56 bytes an id remembered.
#ifndef TALLY_ENGINE_OP_MEMORY_H_
#define TALLY_ENGINE_OP_MEMORY_H_

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "engine/huge_pages.h"
#include "tally/assert.h"
#include "tally/command.h"

namespace tally::engine {

struct OpKey {
  uint64_t org_id;
  uint64_t op_id;
  friend bool operator==(const OpKey& a, const OpKey& b) {
    return a.org_id == b.org_id && a.op_id == b.op_id;
  }
};

class OpMemory {
 public:
  struct Entry {
    OpKey key;
    Result result;
  };

  OpMemory(uint64_t ids_max, int64_t retention_us)
      : generation_max_(std::max<uint64_t>(1, ids_max / 2)),
        table_capacity_max_(std::bit_ceil(generation_max_ * 2)),
        retention_us_(retention_us) {}

  // Claim is what a batch learns of one command's op id before applying it.
  struct Claim {
    enum Kind : uint8_t { fresh, seen, seen_in_batch } kind = fresh;
    uint8_t generation = 0;
    uint32_t epoch = 0;   // the generation's epoch when claimed
    uint32_t index = 0;   // entry position in that generation
  };

  // ClaimAll claims keys[i] into claims[i] for every key with a nonzero op
  // id: a key already remembered is `seen`; a new one is remembered at once
  // with a pending result (code 0) that Settle fills in, so a repeat later in
  // the same batch finds it (seen_in_batch).  A batch claims every key first,
  // in this tight loop with the table slots of later keys prefetched, so the
  // cache misses overlap (docs/ENGINE.md).  `hashes` is scratch of keys.size().
  void ClaimAll(std::span<const OpKey> keys, Claim* claims, uint64_t* hashes, int64_t now_us) {
    constexpr size_t ahead = 16;
    const size_t n = keys.size();
    for (size_t i = 0; i < n; ++i) hashes[i] = Hash(keys[i]);
    for (size_t i = 0; i < n; ++i) {
      if (i + ahead < n) {
        generations_[0].Prefetch(hashes[i + ahead]);
        generations_[1].Prefetch(hashes[i + ahead]);
      }
      if (keys[i].op_id != 0) claims[i] = ClaimHashed(keys[i], hashes[i], now_us);
    }
  }


  // First is the result remembered for a seen claim; nullptr when it is
  // gone (only possible when one batch holds more ids than a generation).
  const Result* First(const Claim& claim) const {
    const Generation& g = generations_[claim.generation];
    if (g.epoch != claim.epoch) return nullptr;
    const Result& r = g.entries[claim.index].result;
    return r.code == ResultCode{} ? nullptr : &r;
  }

  // Settle stores the result of a fresh claim.
  void Settle(const Claim& claim, const Result& result) {
    Generation& g = generations_[claim.generation];
    if (g.epoch != claim.epoch) return;  // forgotten within its own batch
    g.entries[claim.index].result = result;
  }

  // For snapshots: which generation is current, and each generation's start
  // time, epoch and entries, loaded back in arrival order.
  int current_index() const { return current_; }
  const std::vector<Entry>& entries_of(int g) const { return generations_[g].entries; }
  int64_t began_us_of(int g) const { return generations_[g].began_us; }
  void Load(int current, int g, int64_t began_us, const std::vector<Entry>& entries) {
    current_ = current;
    Generation& gen = generations_[g];
    gen.Clear();
    gen.began_us = began_us;
    for (const Entry& e : entries) gen.Add(e.key, e.result, Hash(e.key), table_capacity_max_);
  }
  uint64_t generation_max() const { return generation_max_; }

  // ---- Bulk load for snapshots (wal engineer's block; engine/SNAPSHOT.md) ----
  // LoadBulk is Load with the n entries appended by `fill(entries, n)`
  // straight into the generation (no copy of 56 bytes x n), and the table
  // built in one pass with the slots of later entries prefetched: a table
  // far bigger than cache, placed at random, otherwise costs a cache miss
  // per entry one after another.  `fill` returns false when the bytes are
  // bad; the generation is then left empty.
  template <typename Fill>
  bool LoadBulk(int current, int g, int64_t began_us, uint64_t n, Fill&& fill) {
    TALLY_ASSERT(n <= generation_max_);
    current_ = current;
    Generation& gen = generations_[g];
    gen.Clear();
    gen.began_us = began_us;
    if (n == 0) return true;
    // Room for a full generation, as it will need: reserving just n would
    // make the first id after a start copy every entry (~120 MB) on the
    // writer's thread.  Filled by appending: each entry written once.
    gen.entries.reserve(generation_max_);
    if (!fill(gen.entries, n) || gen.entries.size() != n) {
      gen.entries.clear();
      return false;
    }
    if (gen.table == nullptr) {
      gen.table.reset(
          static_cast<uint64_t*>(HugeCalloc(table_capacity_max_ * sizeof(uint64_t))));
      gen.mask = table_capacity_max_ - 1;
    }
    constexpr uint64_t ahead = 32;  // a power of two: ring[i % ahead]
    uint64_t ring[ahead];
    for (uint64_t i = 0; i < std::min(ahead, n); ++i) {
      ring[i] = Hash(gen.entries[i].key);
      gen.Prefetch(ring[i]);
    }
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t h = ring[i % ahead];
      if (i + ahead < n) {
        const uint64_t later = Hash(gen.entries[i + ahead].key);
        ring[i % ahead] = later;
        gen.Prefetch(later);
      }
      gen.Place(h, i + 1);
    }
    return true;
  }
  // ---- end of bulk load ----

  // Generation order for the digest and snapshots: previous, then current,
  // each in the order its ids arrived.
  template <typename F>
  void ForEach(F&& f) const {
    for (const Entry& e : generations_[1 - current_].entries) f(e);
    for (const Entry& e : generations_[current_].entries) f(e);
  }
  int64_t current_began_us() const { return generations_[current_].began_us; }
  uint64_t current_size() const { return generations_[current_].entries.size(); }
  uint64_t size() const {
    return generations_[0].entries.size() + generations_[1].entries.size();
  }

 private:
  Claim ClaimHashed(const OpKey& key, uint64_t h, int64_t now_us) {
    for (int g : {current_, 1 - current_}) {
      if (const Entry* e = generations_[g].Find(key, h)) {
        Claim claim;
        claim.kind = e->result.code == ResultCode{} ? Claim::seen_in_batch : Claim::seen;
        claim.generation = static_cast<uint8_t>(g);
        claim.epoch = generations_[g].epoch;
        claim.index = static_cast<uint32_t>(e - generations_[g].entries.data());
        return claim;
      }
    }
    Generation* current = &generations_[current_];
    bool full = current->entries.size() >= generation_max_;
    bool old = now_us - current->began_us > retention_us_ / 2;
    if (full || (old && !current->entries.empty())) {
      current_ = 1 - current_;
      current = &generations_[current_];
      current->Clear();
    }
    if (current->entries.empty()) current->began_us = now_us;
    Claim claim;
    claim.generation = static_cast<uint8_t>(current_);
    claim.epoch = current->epoch;
    claim.index = static_cast<uint32_t>(current->entries.size());
    current->Add(key, Result{.code = ResultCode{}}, h, table_capacity_max_);
    return claim;
  }

  struct Generation {
    uint32_t epoch = 0;  // counts Clear()s, so stale claims are recognised
    // fingerprint << 32 | (entry index + 1); 0 empty.  Sized once for a full
    // generation at load 1/2, so it never grows or rehashes.
    std::unique_ptr<uint64_t[], HugeFree> table;
    uint64_t mask = 0;
    std::vector<Entry> entries;
    int64_t began_us = 0;

    const Entry* Find(const OpKey& key, uint64_t h) const {
      if (table == nullptr) return nullptr;
      uint64_t fingerprint = h >> 32;
      for (uint64_t i = h & mask;; i = (i + 1) & mask) {
        uint64_t v = table[i];
        if (v == 0) return nullptr;
        if ((v >> 32) == fingerprint) {
          const Entry& e = entries[(v & 0xffffffffu) - 1];
          if (e.key == key) return &e;
        }
      }
    }
    void Prefetch(uint64_t h) const {
      if (table != nullptr) __builtin_prefetch(&table[h & mask], 1);
    }
    void Add(const OpKey& key, const Result& result, uint64_t h, uint64_t capacity) {
      if (table == nullptr) {
        // Huge pages (huge_pages.h): a lookup is then one cache miss, not a
        // cache miss and a page walk.
        table.reset(static_cast<uint64_t*>(HugeCalloc(capacity * sizeof(uint64_t))));
        mask = capacity - 1;
      }
      entries.push_back(Entry{key, result});
      Place(h, entries.size());
    }
    void Place(uint64_t h, uint64_t position) {
      TALLY_ASSERT(position < (uint64_t{1} << 32));
      uint64_t i = h & mask;
      while (table[i] != 0) i = (i + 1) & mask;
      table[i] = (h >> 32 << 32) | position;
    }
    void Clear() {
      ++epoch;
      if (table != nullptr) std::memset(table.get(), 0, (mask + 1) * sizeof(uint64_t));
      entries.clear();
    }
  };

  static uint64_t Hash(const OpKey& key) {
    uint64_t h = key.op_id ^ (key.org_id * 0x9e3779b97f4a7c15ULL);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
  }

  uint64_t generation_max_;
  uint64_t table_capacity_max_;
  int64_t retention_us_;
  Generation generations_[2];
  int current_ = 0;
};

}  // namespace tally::engine

#endif  // TALLY_ENGINE_OP_MEMORY_H_
