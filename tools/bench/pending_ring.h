// pending_ring.h: PendingRing, a connection's frames in flight, keyed by request id.
//
// The client numbers a connection's requests 1, 2, 3, ... and the server
// answers them in about that order, so the frames in flight are a window of
// consecutive ids a little wider than the depth. The ring keeps them in a
// flat array indexed by id modulo a power of two at least twice the depth:
// no hashing, no node per frame, and a slot's storage (its vectors'
// capacity) is reused by the frame that takes the slot next. An id whose
// slot is still held by an older frame (a reply far out of order) goes to a
// small overflow map, so any order of replies stays correct.
//
// Not thread-safe: one connection belongs to one worker thread.
#ifndef TALLY_TOOLS_BENCH_PENDING_RING_H_
#define TALLY_TOOLS_BENCH_PENDING_RING_H_

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "tally/assert.h"

namespace tally::bench {

template <typename T>
class PendingRing {
 public:
  // depth: frames in flight at most (a hint; more still work, slower).
  explicit PendingRing(size_t depth) {
    size_t n = 2;
    while (n < 2 * depth) n *= 2;
    slots_.resize(n);
    mask_ = n - 1;
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Insert stores `value` under `id` (not in the ring already) by swapping
  // it with the slot's old contents: `value` comes back holding a
  // moved-from or reused T for the caller to clear.
  void Insert(uint64_t id, T& value) {
    Slot& s = slots_[id & mask_];
    if (s.used) {
      TALLY_ASSERT(s.id != id);
      auto [it, inserted] = overflow_.try_emplace(id);
      TALLY_ASSERT(inserted);
      std::swap(it->second, value);
    } else {
      s.used = true;
      s.id = id;
      std::swap(s.value, value);
    }
    ++size_;
  }

  // Take moves the frame under `id` out into `out` by swapping (so `out`'s
  // old storage is reused by the slot) and forgets the id. False: no such id.
  bool Take(uint64_t id, T& out) {
    Slot& s = slots_[id & mask_];
    if (s.used && s.id == id) {
      std::swap(s.value, out);
      s.used = false;
      --size_;
      return true;
    }
    if (overflow_.empty()) return false;
    auto it = overflow_.find(id);
    if (it == overflow_.end()) return false;
    std::swap(it->second, out);
    overflow_.erase(it);
    --size_;
    return true;
  }

  // ForEach calls f(id, T&) for every frame in flight, in no set order.
  template <typename F>
  void ForEach(F&& f) {
    for (Slot& s : slots_) {
      if (s.used) f(s.id, s.value);
    }
    for (auto& [id, v] : overflow_) f(id, v);
  }

  // Clear forgets every frame (their storage stays for reuse).
  void Clear() {
    for (Slot& s : slots_) s.used = false;
    overflow_.clear();
    size_ = 0;
  }

  size_t overflow_size() const { return overflow_.size(); }

 private:
  struct Slot {
    uint64_t id = 0;
    bool used = false;
    T value{};
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
  absl::flat_hash_map<uint64_t, T> overflow_;
};

}  // namespace tally::bench

#endif  // TALLY_TOOLS_BENCH_PENDING_RING_H_
