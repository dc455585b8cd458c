// history.h: the ledger's recent history, a ring of 40-byte entries.
//
// Every change to a wallet appends one entry.  Entries of one wallet are
// chained backwards (prev_distance), so a wallet's page walks only its own
// entries.  Texts (reference, actor) are rare on the metered path, so they
// live beside the ring, in index order, only for entries that have them.
// When the ring is full the oldest entry is overwritten (its text dropped):
// RAM holds a window, the log holds everything (docs/ENGINE.md).
#ifndef TALLY_ENGINE_HISTORY_H_
#define TALLY_ENGINE_HISTORY_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "engine/huge_pages.h"
#include "tally/assert.h"
#include "tally/limits.h"
#include "tally/query.h"

namespace tally::engine {

// HistoryEntry is one change to one wallet.  `meta` packs, low bits first:
// time in ms since the epoch (44 bits, to the year 2527), kind (5), out (1),
// held (1), has_text (1), asset index (12).
struct HistoryEntry {
  uint64_t meta;
  int64_t amount;
  int64_t balance_after;
  uint64_t related_id;
  uint32_t wallet_slot;
  uint32_t prev_distance;  // to the wallet's previous entry; 0 none, max: out of reach

  static constexpr uint64_t time_bits = 44;
  static uint64_t Pack(int64_t time_us, HistoryKind kind, bool out, bool held, bool has_text,
                       uint16_t asset) {
    return PackTime(time_us) | PackFields(kind, out, held, has_text, asset);
  }
  // The two halves of Pack: a batch packs its time once for all its entries.
  static uint64_t PackTime(int64_t time_us) {
    return static_cast<uint64_t>(time_us / 1000) & ((uint64_t{1} << time_bits) - 1);
  }
  static uint64_t PackFields(HistoryKind kind, bool out, bool held, bool has_text,
                             uint16_t asset) {
    return (uint64_t{static_cast<uint8_t>(kind)} << 44) | (uint64_t{out} << 49) |
           (uint64_t{held} << 50) | (uint64_t{has_text} << 51) | (uint64_t{asset} << 52);
  }
  int64_t time_us() const {
    return static_cast<int64_t>(meta & ((uint64_t{1} << time_bits) - 1)) * 1000;
  }
  HistoryKind kind() const { return static_cast<HistoryKind>((meta >> 44) & 0x1f); }
  bool out() const { return ((meta >> 49) & 1) != 0; }
  bool held() const { return ((meta >> 50) & 1) != 0; }
  bool has_text() const { return ((meta >> 51) & 1) != 0; }
  uint16_t asset() const { return static_cast<uint16_t>(meta >> 52); }
};
static_assert(sizeof(HistoryEntry) == 40, "the issue's budget is 40 bytes per entry");
static_assert(history_kind_max < 32, "kind has 5 bits");

struct HistoryTexts {
  std::string reference;
  std::string actor;
};

// HistoryRing keeps the newest `capacity` entries, indexes counted from 0
// since the ledger began.
class HistoryRing {
 public:
  // map_all maps every chunk now (LedgerOptions::prefault), else each
  // chunk is mapped when the first append reaches it.
  HistoryRing(uint64_t entries_max, bool map_all) {
    capacity_ = history_chunk_entries;
    while (capacity_ < entries_max) capacity_ <<= 1;
    TALLY_ASSERT(capacity_ < (uint64_t{1} << 32));
    if (map_all) {
      chunks_.reserve(capacity_ / history_chunk_entries);
      while (chunks_.size() < capacity_ / history_chunk_entries) AddChunk();
    }
  }

  uint64_t total() const { return total_; }
  uint64_t capacity() const { return capacity_; }
  // begin is the oldest index still in memory.
  uint64_t begin() const { return total_ > capacity_ ? total_ - capacity_ : 0; }
  bool InMemory(uint64_t index) const { return index >= begin() && index < total_; }

  HistoryEntry& at(uint64_t index) {
    TALLY_ASSERT(InMemory(index));
    uint64_t pos = index & (capacity_ - 1);
    return Chunk(pos / history_chunk_entries)[pos % history_chunk_entries];
  }
  const HistoryEntry& at(uint64_t index) const {
    return const_cast<HistoryRing*>(this)->at(index);
  }

  // Append stores a new entry (with texts if either is non-empty) and
  // returns its index.  The fields are written straight into the ring: an
  // entry built on the stack and copied in was stored in pieces and
  // reloaded whole, a store-to-load forward that fails and waits for the
  // older stores (perf annotate: ~40 % of Record).
  [[gnu::always_inline]] uint64_t Append(uint64_t meta, int64_t amount, int64_t balance_after,
                                         uint64_t related_id, uint32_t wallet_slot,
                                         uint32_t prev_distance, std::string_view reference,
                                         std::string_view actor) {
    uint64_t index = total_;
    uint64_t pos = index & (capacity_ - 1);
    uint64_t chunk = pos / history_chunk_entries;
    if (chunk >= chunks_.size()) [[unlikely]] AddChunk();
    HistoryEntry& slot = Chunk(chunk)[pos % history_chunk_entries];
    // The entry overwritten is the oldest; if it had texts, they are the
    // oldest texts held (texts_ is in index order).
    if (index >= capacity_ && slot.has_text() && !texts_.empty() &&
        texts_.front().index == index - capacity_) {
      texts_.pop_front();
    }
    const bool has_text = !reference.empty() || !actor.empty();
    slot.meta = meta | (uint64_t{has_text} << 51);
    slot.amount = amount;
    slot.balance_after = balance_after;
    slot.related_id = related_id;
    slot.wallet_slot = wallet_slot;
    slot.prev_distance = prev_distance;
    if (has_text) [[unlikely]] {
      texts_.push_back({index, HistoryTexts{std::string(reference), std::string(actor)}});
    }
    ++total_;
    return index;
  }

  // Restart sets an empty ring to continue after `total` entries, as after a
  // snapshot; the entries kept are then Append()ed back by LoadAt.
  void Restart(uint64_t total) {
    TALLY_ASSERT(total_ == 0);
    total_ = total;
  }
  // LoadAt stores an entry of a snapshot at `index` (begin() <= index <
  // total(), loaded in increasing order), with its texts when it has them.
  void LoadAt(uint64_t index, const HistoryEntry& entry) {
    uint64_t pos = index & (capacity_ - 1);
    uint64_t chunk = pos / history_chunk_entries;
    while (chunk >= chunks_.size()) AddChunk();
    Chunk(chunk)[pos % history_chunk_entries] = entry;
  }
  void LoadAt(uint64_t index, const HistoryEntry& entry, std::string_view reference,
              std::string_view actor) {
    LoadAt(index, entry);
    TALLY_ASSERT(texts_.empty() || texts_.back().index < index);
    texts_.push_back({index, HistoryTexts{std::string(reference), std::string(actor)}});
  }

  // MappedAhead is the memory of the mapped chunks in the order appends
  // will reach it, from the next append's chunk on (wrapping round), one
  // span a chunk.
  std::vector<std::span<unsigned char>> MappedAhead() const {
    std::vector<std::span<unsigned char>> out;
    const uint64_t chunks = capacity_ / history_chunk_entries;
    const uint64_t next = (total_ & (capacity_ - 1)) / history_chunk_entries;
    for (uint64_t i = 0; i < chunks; ++i) {
      const uint64_t c = (next + i) % chunks;
      if (c < chunks_.size()) out.emplace_back(chunks_[c].data(), chunks_[c].size_bytes());
    }
    return out;
  }

  const HistoryTexts* texts(uint64_t index) const {
    // Galloping back from the newest, then a binary search: the history
    // file and most queries ask about recent entries, so a lookup costs
    // about log2 of its distance from the newest texts.
    const size_t n = texts_.size();
    if (n == 0 || index > texts_.back().index || index < texts_.front().index) return nullptr;
    size_t from = 0;
    for (size_t step = 16; step < n; step *= 2) {
      if (texts_[n - step].index < index) {
        from = n - step;
        break;
      }
    }
    auto it = std::lower_bound(texts_.begin() + static_cast<std::ptrdiff_t>(from), texts_.end(),
                               index, [](const IndexedTexts& t, uint64_t i) { return t.index < i; });
    return it != texts_.end() && it->index == index ? &it->texts : nullptr;
  }

 private:
  static_assert(std::is_trivially_copyable_v<HistoryEntry>);
  HistoryEntry* Chunk(uint64_t chunk) {
    return reinterpret_cast<HistoryEntry*>(chunks_[chunk].data());
  }
  // AddChunk maps the next chunk (2.6 MB: huge_pages.h maps it at a 2 MiB
  // boundary, its first 2 MiB a huge page).  Its memory is the kernel's zero
  // pages until written: no 2.6 MB of value-initialisation before the first
  // append, and every entry is written before it is read.
  void AddChunk() { chunks_.emplace_back(history_chunk_entries * sizeof(HistoryEntry)); }

  std::vector<HugeBlock> chunks_;
  // The texts of the entries that have them, in index order.  Entries
  // enter and leave the ring in index order, so a deque holds exactly the
  // ones in memory, 72 bytes each, written in order.  (A hash map by index
  // was a power of two of 72-byte slots, first-touched at random and, in a
  // snapshot's load, grown by doubling: 40 % of a loaded tallyd start's
  // recovering CPU on this VM, bench/RESULTS.md, 2026-12-03.)
  struct IndexedTexts {
    uint64_t index;
    HistoryTexts texts;
  };
  std::deque<IndexedTexts> texts_;
  uint64_t capacity_ = 0;
  uint64_t total_ = 0;
};

}  // namespace tally::engine

#endif  // TALLY_ENGINE_HISTORY_H_
