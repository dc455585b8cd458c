// mix.h: Mix64, the murmur3 finalizer.  A bijection of 64-bit words in
// which every input bit moves every output bit: the engine's tables place
// ids with it (the wallet index, the op-id memory).  Iteration order never
// carries meaning, so determinism does not depend on the choice.
#ifndef TALLY_ENGINE_MIX_H_
#define TALLY_ENGINE_MIX_H_

#include <cstdint>

namespace tally::engine {

constexpr uint64_t Mix64(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

}  // namespace tally::engine

#endif  // TALLY_ENGINE_MIX_H_
