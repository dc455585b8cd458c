// op_memory.h: which operation ids a ledger has seen, and their first result.
//
// Every changing command looks its (org, op id) up here and stores its result,
// so this sits on the deduct hot path: a table far bigger than cache, one
// random access per command.  Done inline between commands those misses
// queue one after another (measured: ~190 ns a deduct); done for the whole
// batch first, in a loop with nothing else in it, they overlap.  Two
// generations (docs/ENGINE.md, "Operation ids"): the current one takes new
// ids; when it is full or old it becomes the previous one and the previous
// one is forgotten.  Each generation is an append-only array of entries
// (written in order: cheap).
//
// One table serves both generations, so a lookup costs one cache miss, not
// one per generation: buckets of one cache line, a header word and 7 slots
// of 8 bytes, each slot a 16-bit fingerprint, the 16-bit tag of its
// generation and the entry's position.  A slot whose tag is neither
// generation's is free: forgetting a generation is changing two tags, no
// memset.  A bucket that was full when an id had to go further says so in
// its header (the tag of the generation that overflowed it last), so a
// lookup goes on to the next bucket only while that tag is alive; a new id
// lands in the first free slot from its home bucket on (usually the home
// bucket itself, whose free slot the lookup's one read already found).  Tags
// come back after 65,535 generations; each retirement clears the dead slots
// and headers of 1/16384 of the table, so nothing dead survives that long.
// Memory: 64 bytes a bucket, one bucket per id of a generation (load at
// most 2/7), plus 56 bytes an id remembered.  At 4/7 (a bucket per two ids)
// about one home bucket in twenty was full and sent its lookups to the next
// line, which no prefetch had asked for (bench/RESULTS.md, "The lot summary
// and a sparser op-id table").
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

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "engine/huge_pages.h"
#include "engine/mix.h"
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

  // map_all (LedgerOptions::prefault) maps the table and room for both
  // generations now; else the table is mapped with the first id and the
  // generations grow as ids come.
  OpMemory(uint64_t ids_max, int64_t retention_us, bool map_all)
      : generation_max_(std::max<uint64_t>(1, ids_max / 2)),
        buckets_(std::bit_ceil(std::max<uint64_t>(2, generation_max_))),
        sweep_buckets_(std::max<uint64_t>(1, buckets_ / sweeps_per_table_max)),
        retire_after_us_(retention_us / 2) {
    TALLY_ASSERT(generation_max_ < (uint64_t{1} << 32) - 1);
    generations_[0].tag = 2;  // current
    generations_[1].tag = 1;
    if (map_all) {
      MapTable();
      for (Generation& g : generations_) g.entries.reserve(generation_max_);
    }
  }

  // For pre-faulting: the table (empty until mapped), and generation g's
  // room not yet written (empty when it has none reserved).
  std::span<unsigned char> table_memory() const {
    return std::span<unsigned char>(table_.data(), table_.size_bytes());
  }
  std::span<unsigned char> unwritten_entries(int g) const {
    const std::vector<Entry>& e = generations_[g].entries;
    if (e.capacity() == e.size()) return {};
    // Writable memory of this object's own vector: only ever faulted in.
    unsigned char* begin = reinterpret_cast<unsigned char*>(const_cast<Entry*>(e.data() + e.size()));
    return std::span<unsigned char>(begin, (e.capacity() - e.size()) * sizeof(Entry));
  }

  // Hash places a key in the table: its low bits pick the home bucket, its
  // top 16 bits are the slot's fingerprint.  Public for tests that choose
  // keys sharing a bucket.
  static uint64_t Hash(const OpKey& key) {
    return Mix64(key.op_id ^ (key.org_id * 0x9e3779b97f4a7c15ULL));
  }

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
  // in this tight loop with the buckets of later keys prefetched, so the
  // cache misses overlap (docs/ENGINE.md).  `hashes` is scratch of keys.size().
  // Returns whether a key repeats one claimed earlier in the same batch.
  bool ClaimAll(std::span<const OpKey> keys, Claim* claims, uint64_t* hashes, int64_t now_us) {
    constexpr size_t ahead = 16;
    const size_t n = keys.size();
    for (size_t i = 0; i < n; ++i) hashes[i] = Hash(keys[i]);
    bool repeats = false;
    for (size_t i = 0; i < n; ++i) {
      if (i + ahead < n) Prefetch(hashes[i + ahead]);
      if (keys[i].op_id != 0) {
        ClaimHashed(keys[i], hashes[i], now_us, claims[i]);
        repeats |= claims[i].kind == Claim::seen_in_batch;
      }
    }
    return repeats;
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
  // time, epoch and entries, loaded back in arrival order into a memory
  // that has not taken ids yet.
  int current_index() const { return current_; }
  const std::vector<Entry>& entries_of(int g) const { return generations_[g].entries; }
  int64_t began_us_of(int g) const { return generations_[g].began_us; }
  uint64_t generation_max() const { return generation_max_; }
  uint64_t buckets() const { return buckets_; }  // a power of two

  // LoadBulk loads generation g of a memory that has not taken ids yet,
  // with `current` the current one: the n entries are appended by
  // `fill(entries, n)` straight into the generation (no copy of 56 bytes x
  // n), in arrival order, and the table is built in one pass with the
  // slots of later entries prefetched: a table far bigger than cache,
  // placed at random, otherwise costs a cache miss per entry one after
  // another.  `fill` returns false when the bytes are bad; the generation
  // is then left empty.
  template <typename Fill>
  bool LoadBulk(int current, int g, int64_t began_us, uint64_t n, Fill&& fill) {
    TALLY_ASSERT(n <= generation_max_);
    TALLY_ASSERT(generations_[g].entries.empty());
    if (current != current_) {
      TALLY_ASSERT(generations_[1 - g].entries.empty());
      std::swap(generations_[0].tag, generations_[1].tag);
      current_ = current;
    }
    Generation& gen = generations_[g];
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
    constexpr uint64_t ahead = 32;  // a power of two: ring[i % ahead]
    uint64_t ring[ahead];
    for (uint64_t i = 0; i < std::min(ahead, n); ++i) {
      ring[i] = Hash(gen.entries[i].key);
      Prefetch(ring[i]);
    }
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t h = ring[i % ahead];
      if (i + ahead < n) {
        const uint64_t later = Hash(gen.entries[i + ahead].key);
        ring[i % ahead] = later;
        Prefetch(later);
      }
      Place(h, gen.tag, i + 1);
    }
    return true;
  }

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
  // A bucket is one cache line: word 0 the header, words 1..7 slots.
  static constexpr uint64_t bucket_words = 8;
  static constexpr uint64_t sweeps_per_table_max = 16384;  // retirements per full sweep
  // A slot: fingerprint << 48 | tag << 32 | (entry position + 1); 0 never used.
  static uint16_t TagOf(uint64_t word) { return static_cast<uint16_t>(word >> 32); }
  static uint16_t FingerprintOf(uint64_t h) { return static_cast<uint16_t>(h >> 48); }

  struct Generation {
    uint32_t epoch = 0;  // counts Clear()s, so stale claims are recognised
    uint16_t tag = 0;    // in the table's slots; never 0
    std::vector<Entry> entries;
    int64_t began_us = 0;
  };

  // A generation's tag is never 0, so the empty word (tag 0) is not alive.
  bool Alive(uint16_t tag) const {
    return tag == generations_[0].tag || tag == generations_[1].tag;
  }
  uint64_t* Bucket(uint64_t b) { return words_ + b * bucket_words; }
  void Prefetch(uint64_t h) const {
    if (words_ != nullptr) __builtin_prefetch(words_ + (h & (buckets_ - 1)) * bucket_words, 1);
  }

  // BucketMasks reads one bucket in one pass: bit 4k+2 of `alive` says word
  // k holds a live generation's tag (k = 0 is the header: an overflow mark
  // still alive), bit 4k+2 of `matches` says slot k (1..7) is alive and
  // carries h's fingerprint; their other bits mean nothing.  With SSE2
  // (every x86-64, so no -march needed) the eight words are compared at
  // once: four 16-byte loads, each compared 16 bits a lane with
  // (fingerprint, tag) in the fields where a slot has them, once per live
  // tag, then packed to bytes and gathered by movemask (bench/RESULTS.md,
  // "Deduct, sixth round").
  struct Masks {
    uint32_t alive;
    uint32_t matches;
  };
  static constexpr uint32_t slot_bits = 0x44444440u;  // bit 4k+2, k = 1..7
  [[gnu::always_inline]] Masks BucketMasks(const uint64_t* bucket, uint64_t h) const {
#if defined(__SSE2__)
    const __m128i* q = reinterpret_cast<const __m128i*>(bucket);
    // A word's 16-bit fields, low first: position (two), tag, fingerprint;
    // the position's fields are compared with anything and not looked at.
    const uint64_t fp = h & ~uint64_t{0} << 48;
    const __m128i k0 = _mm_set1_epi64x(static_cast<long long>(fp | uint64_t{generations_[0].tag} << 32));
    const __m128i k1 = _mm_set1_epi64x(static_cast<long long>(fp | uint64_t{generations_[1].tag} << 32));
    auto compare = [&](const __m128i* at) {
      const __m128i w = _mm_load_si128(at);
      return _mm_or_si128(_mm_cmpeq_epi16(w, k0), _mm_cmpeq_epi16(w, k1));
    };
    // Packed, byte 4k + j of the 32 is field j of word k: bit 4k+2 a live
    // tag, bit 4k+3 the fingerprint.
    const uint32_t bits =
        static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(compare(q), compare(q + 1)))) |
        static_cast<uint32_t>(_mm_movemask_epi8(_mm_packs_epi16(compare(q + 2), compare(q + 3))))
            << 16;
    return Masks{bits, bits & (bits >> 1) & slot_bits};
#else
    Masks m{0, 0};
    for (uint64_t k = 0; k < bucket_words; ++k) {
      const uint64_t v = bucket[k];
      if (!Alive(TagOf(v))) continue;
      m.alive |= uint32_t{1} << (4 * k + 2);
      if (k != 0 && (v >> 48) == FingerprintOf(h)) m.matches |= uint32_t{1} << (4 * k + 2);
    }
    return m;
#endif
  }

  // Find looks key up from its home bucket on, through every bucket an id
  // went past; a key found is claimed as seen (or seen in this batch).
  [[gnu::noinline]] bool Find(const OpKey& key, uint64_t h, Claim& claim) const {
    uint64_t b = h & (buckets_ - 1);
    for (uint64_t probes = 0; probes < buckets_; ++probes, b = (b + 1) & (buckets_ - 1)) {
      const uint64_t* bucket = words_ + b * bucket_words;
      const Masks m = BucketMasks(bucket, h);
      for (uint32_t matches = m.matches; matches != 0; matches &= matches - 1) {
        const uint64_t v = bucket[std::countr_zero(matches) >> 2];
        const int g = TagOf(v) == generations_[current_].tag ? current_ : 1 - current_;
        const uint32_t index = static_cast<uint32_t>(v & 0xffffffffu) - 1;
        const Entry& e = generations_[g].entries[index];
        if (!(e.key == key)) continue;
        claim.kind = e.result.code == ResultCode{} ? Claim::seen_in_batch : Claim::seen;
        claim.generation = static_cast<uint8_t>(g);
        claim.epoch = generations_[g].epoch;
        claim.index = index;
        return true;
      }
      if ((m.alive & 4u) == 0) return false;  // no id went past this bucket
    }
    return false;
  }

  // ClaimHashed writes the claim straight into `claim`: returned by value
  // it was built on the stack and reloaded whole, a store-to-load forward
  // that fails and waits for every older store (measured: a third of the
  // claim's time).  A new id goes into the first free slot of its home
  // bucket, which the lookup has just read (Place would read the bucket
  // again); when the lookup went further, the home bucket is full, or a
  // retirement changed which tags are alive, Place finds the slot.
  [[gnu::always_inline]] void ClaimHashed(const OpKey& key, uint64_t h, int64_t now_us,
                                          Claim& claim) {
    uint64_t* free_slot = nullptr;
    if (words_ != nullptr) {
      // The usual case decided by the home bucket alone: no slot with the
      // fingerprint, no id went past it.  Else the whole lookup, out of line.
      uint64_t* home = Bucket(h & (buckets_ - 1));
      const Masks m = BucketMasks(home, h);
      if ((m.matches | (m.alive & 4u)) == 0) [[likely]] {
        const uint32_t free = ~m.alive & slot_bits;
        if (free != 0) free_slot = home + (std::countr_zero(free) >> 2);
      } else if (Find(key, h, claim)) {
        return;
      }
    }
    Generation* current = &generations_[current_];
    uint64_t index = current->entries.size();
    if (index >= generation_max_ || (index != 0 && now_us - current->began_us > retire_after_us_))
        [[unlikely]] {
      Retire();
      current = &generations_[current_];
      index = 0;
      free_slot = nullptr;  // the live tags changed: Place looks again
    }
    if (index == 0) current->began_us = now_us;
    claim.kind = Claim::fresh;
    claim.generation = static_cast<uint8_t>(current_);
    claim.epoch = current->epoch;
    claim.index = static_cast<uint32_t>(index);
    current->entries.push_back(Entry{key, Result{.code = ResultCode{}}});
    if (free_slot != nullptr) {
      *free_slot = SlotWord(h, current->tag, index + 1);
    } else {
      Place(h, current->tag, index + 1);
    }
  }

  static uint64_t SlotWord(uint64_t h, uint16_t tag, uint64_t position) {
    TALLY_ASSERT(position < (uint64_t{1} << 32));
    return uint64_t{FingerprintOf(h)} << 48 | uint64_t{tag} << 32 | position;
  }

  // Place puts (h, tag, position) in the first free slot from h's bucket
  // on, marking every full bucket it passes as overflowed by `tag`.
  void Place(uint64_t h, uint16_t tag, uint64_t position) {
    if (words_ == nullptr) MapTable();
    const uint64_t word = SlotWord(h, tag, position);
    uint64_t b = h & (buckets_ - 1);
    for (uint64_t probes = 0; probes < buckets_; ++probes, b = (b + 1) & (buckets_ - 1)) {
      uint64_t* bucket = Bucket(b);
      for (uint64_t k = 1; k < bucket_words; ++k) {
        if (!Alive(TagOf(bucket[k]))) {
          bucket[k] = word;
          return;
        }
      }
      // Full of live ids: lookups of this id must go on past it.  A newer
      // tag replaces an older one (it lives longer; the older id is covered
      // as long as it lives, as tags only move forward).
      if (TagOf(bucket[0]) != generations_[current_].tag) bucket[0] = uint64_t{tag} << 32;
    }
    TALLY_ASSERT(false && "op-id table full");  // load is at most 2/7
  }

  // MapTable maps the table, zero.  Huge pages (huge_pages.h): a lookup is
  // then one cache miss, not a cache miss and a page walk.
  void MapTable() {
    table_ = HugeBlock(buckets_ * bucket_words * sizeof(uint64_t));
    words_ = reinterpret_cast<uint64_t*>(table_.data());
  }

  // Retire makes the current generation the previous one and starts a new
  // current generation in the place of the previous one, which is forgotten.
  void Retire() {
    const uint16_t current_tag = generations_[current_].tag;
    current_ = 1 - current_;
    Generation& g = generations_[current_];
    ++g.epoch;
    g.entries.clear();
    g.tag = static_cast<uint16_t>(current_tag == UINT16_MAX ? 1 : current_tag + 1);
    Sweep();
  }

  // Sweep zeroes dead slots and headers of the next sweep_buckets_ buckets,
  // so no dead word is still there when its tag comes back (tags cycle
  // through 65,535 values; the whole table is swept every 16,384
  // retirements at most).
  void Sweep() {
    if (words_ == nullptr) return;
    for (uint64_t i = 0; i < sweep_buckets_; ++i) {
      uint64_t* bucket = Bucket(sweep_next_);
      for (uint64_t k = 0; k < bucket_words; ++k) {
        if (bucket[k] != 0 && !Alive(TagOf(bucket[k]))) bucket[k] = 0;
      }
      sweep_next_ = (sweep_next_ + 1) & (buckets_ - 1);
    }
  }

  uint64_t generation_max_;
  uint64_t buckets_;        // a power of two
  uint64_t sweep_buckets_;  // buckets swept at each retirement
  int64_t retire_after_us_;  // half the retention (docs/ENGINE.md)
  HugeBlock table_;         // buckets_ * 8 words, zeroed
  uint64_t* words_ = nullptr;  // table_'s, once allocated
  uint64_t sweep_next_ = 0;
  Generation generations_[2];
  int current_ = 0;
};

}  // namespace tally::engine

#endif  // TALLY_ENGINE_OP_MEMORY_H_
