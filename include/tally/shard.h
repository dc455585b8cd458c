// shard.h: which shard owns an org.
//
// tallyd splits its ledger into S shards, each owning a disjoint set of orgs
// (every org's wallets, lots and history live in one shard, so no command
// ever spans two).  The mapping is part of the data directory's format: the
// shard count is stored in <data>/shards on first start and never changes,
// and every program that routes by org (the server, the load generator, the
// offline tools) must agree on it, so it lives here, once.
//
// Example:
//   uint32_t shard = tally::ShardOf(org_id, shards);  // in [0, shards)
#ifndef TALLY_SHARD_H_
#define TALLY_SHARD_H_

#include <cstdint>

#include "tally/assert.h"

namespace tally {

// ShardMix is the splitmix64 finalizer: consecutive org ids (1, 2, 3 ...)
// spread evenly over the shards instead of falling into one stripe.
constexpr uint64_t ShardMix(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// ShardOf is the shard (0 .. shards-1) that owns `org_id`.
inline uint32_t ShardOf(uint64_t org_id, uint32_t shards) {
  TALLY_ASSERT(shards > 0);
  return static_cast<uint32_t>(ShardMix(org_id) % shards);
}

static_assert(ShardMix(0) == 0);
static_assert(ShardMix(1) != 1);

}  // namespace tally

#endif  // TALLY_SHARD_H_
