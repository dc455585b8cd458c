// op_memory_test.cc: the op-id memory (engine/op_memory.h) against a naive
// model of docs/ENGINE.md's two generations.
//
// A claim of a new id puts it into the first free slot of its home bucket,
// found by the lookup that just read the bucket; a full home bucket, or a
// retirement between the lookup and the placing, leaves it to Place.  These
// tests drive both ways: ids chosen to share one home bucket (so it fills
// and ids overflow into the next buckets), ids sharing bucket and
// fingerprint, slots freed by a forgotten generation and taken again, ids
// retried in the batch that claimed them, and a random walk crowding three
// buckets of a small table, checked claim by claim against the model.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <vector>

#include "engine/op_memory.h"
#include "gtest/gtest.h"

namespace tally::engine {
namespace {

constexpr int64_t kNow = 1'000'000;
constexpr int64_t kRetentionUs = int64_t{1} << 50;  // retire by count only, unless a test moves time

// Claims keys in one batch and settles every fresh claim with a result
// naming the key (n[0] = op id), as a batch does after applying it.
struct Batch {
  std::vector<OpMemory::Claim> claims;
  bool repeats = false;
};

Batch ClaimAndSettle(OpMemory& m, const std::vector<OpKey>& keys, int64_t now_us) {
  Batch b;
  b.claims.resize(keys.size());
  std::vector<uint64_t> hashes(keys.size());
  b.repeats = m.ClaimAll(keys, b.claims.data(), hashes.data(), now_us);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (b.claims[i].kind != OpMemory::Claim::fresh) continue;
    Result r;
    r.n[0] = static_cast<int64_t>(keys[i].op_id);
    r.n[1] = static_cast<int64_t>(keys[i].org_id);
    m.Settle(b.claims[i], r);
  }
  return b;
}

// Keys whose home bucket (hash modulo the table's buckets) is `bucket`,
// op ids counted up from `from`.
std::vector<OpKey> KeysHomedAt(uint64_t buckets, uint64_t bucket, uint64_t from, size_t count) {
  std::vector<OpKey> keys;
  for (uint64_t op = from; keys.size() < count; ++op) {
    OpKey k{7, op};
    if ((OpMemory::Hash(k) & (buckets - 1)) == bucket) keys.push_back(k);
  }
  return keys;
}

void ExpectSeen(OpMemory& m, const std::vector<OpKey>& keys, const char* what) {
  Batch b = ClaimAndSettle(m, keys, kNow);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_EQ(b.claims[i].kind, OpMemory::Claim::seen) << what << ", key " << i;
    const Result* first = m.First(b.claims[i]);
    ASSERT_NE(first, nullptr) << what << ", key " << i;
    EXPECT_EQ(first->n[0], static_cast<int64_t>(keys[i].op_id)) << what << ", key " << i;
  }
}

TEST(OpMemory, IdsSharingAHomeBucketOverflowIntoTheNextBucketsAndAreAllFound) {
  // op_ids_max 32: generations of 16 ids, a table of 16 buckets of 7 slots.
  OpMemory m(32, kRetentionUs, /*map_all=*/false);
  const uint64_t buckets = m.buckets();
  ASSERT_EQ(buckets, 16u);
  const uint64_t home = buckets - 3;
  // 16 ids homed three buckets before the end: it holds 7, the next two
  // buckets the rest.
  std::vector<OpKey> first = KeysHomedAt(buckets, home, 1, 16);
  Batch b = ClaimAndSettle(m, first, kNow);
  for (const OpMemory::Claim& c : b.claims) EXPECT_EQ(c.kind, OpMemory::Claim::fresh);
  ExpectSeen(m, first, "first generation");
  // 16 more at the same home: the first of them retires the full
  // generation, which stays remembered, so they go past three full buckets
  // (the probe wraps from the last bucket to bucket 0).
  std::vector<OpKey> second = KeysHomedAt(buckets, home, first.back().op_id + 1, 16);
  ClaimAndSettle(m, second, kNow);
  ExpectSeen(m, first, "previous generation");
  ExpectSeen(m, second, "current generation");
  // 16 more: the first generation is forgotten, its slots in the home
  // bucket are free again and new ids take them from the lookup's own read.
  std::vector<OpKey> third = KeysHomedAt(buckets, home, second.back().op_id + 1, 16);
  ClaimAndSettle(m, third, kNow);
  ExpectSeen(m, second, "previous generation, second time");
  ExpectSeen(m, third, "current generation, second time");
  // The forgotten ids are new operations again.
  Batch again = ClaimAndSettle(m, {first[0], first[15]}, kNow);
  EXPECT_EQ(again.claims[0].kind, OpMemory::Claim::fresh);
  EXPECT_EQ(again.claims[1].kind, OpMemory::Claim::fresh);
}

TEST(OpMemory, IdsSharingBucketAndFingerprintAreToldApart) {
  // The lookup compares the 16-bit fingerprint first, then the key itself.
  OpMemory m(32, kRetentionUs, /*map_all=*/false);
  const OpKey a{7, 1};
  const uint64_t ha = OpMemory::Hash(a);
  const uint64_t mask = m.buckets() - 1;
  OpKey b{7, 2};
  while ((OpMemory::Hash(b) & mask) != (ha & mask) || OpMemory::Hash(b) >> 48 != ha >> 48) {
    ++b.op_id;
  }
  ClaimAndSettle(m, {a}, kNow);
  Batch fresh_b = ClaimAndSettle(m, {b}, kNow);
  EXPECT_EQ(fresh_b.claims[0].kind, OpMemory::Claim::fresh) << "b is not a retry of a";
  ExpectSeen(m, {b, a}, "both");
}

TEST(OpMemory, AnIdRetriedInItsOwnBatchFindsTheSlotItWasJustGiven) {
  OpMemory m(32, kRetentionUs, /*map_all=*/false);
  std::vector<OpKey> keys = KeysHomedAt(m.buckets(), 3, 1, 3);
  // Fresh, fresh, the first again, fresh, the second again.
  std::vector<OpKey> batch = {keys[0], keys[1], keys[0], keys[2], keys[1]};
  std::vector<OpMemory::Claim> claims(batch.size());
  std::vector<uint64_t> hashes(batch.size());
  EXPECT_TRUE(m.ClaimAll(batch, claims.data(), hashes.data(), kNow));
  EXPECT_EQ(claims[0].kind, OpMemory::Claim::fresh);
  EXPECT_EQ(claims[1].kind, OpMemory::Claim::fresh);
  EXPECT_EQ(claims[2].kind, OpMemory::Claim::seen_in_batch);
  EXPECT_EQ(claims[2].index, claims[0].index);
  EXPECT_EQ(claims[3].kind, OpMemory::Claim::fresh);
  EXPECT_EQ(claims[4].kind, OpMemory::Claim::seen_in_batch);
  EXPECT_EQ(claims[4].index, claims[1].index);
  EXPECT_EQ(m.First(claims[2]), nullptr) << "not settled yet";
  Result r;
  r.n[0] = 41;
  m.Settle(claims[0], r);
  ASSERT_NE(m.First(claims[2]), nullptr);
  EXPECT_EQ(m.First(claims[2])->n[0], 41);
}

// The model: docs/ENGINE.md's two generations, written the obvious way,
// generations numbered from 1.
class Model {
 public:
  Model(uint64_t ids_max, int64_t retention_us)
      : generation_max_(std::max<uint64_t>(1, ids_max / 2)), retire_after_us_(retention_us / 2) {}

  // Claim returns the number of the generation that remembers the key, and
  // whether it was remembered before (a retry) or is new.
  std::pair<uint64_t, bool> Claim(const OpKey& k, int64_t now_us) {
    const auto key = std::make_pair(k.org_id, k.op_id);
    if (auto it = ids_.find(key); it != ids_.end() && Alive(it->second)) return {it->second, true};
    const bool full = count_ >= generation_max_;
    const bool old = now_us - began_us_ > retire_after_us_;
    if (full || (old && count_ != 0)) {
      ++current_;
      count_ = 0;
    }
    if (count_ == 0) began_us_ = now_us;
    ++count_;
    ids_[key] = current_;
    return {current_, false};
  }
  bool Alive(uint64_t generation) const { return generation + 1 >= current_; }

 private:
  uint64_t generation_max_;
  int64_t retire_after_us_;
  std::map<std::pair<uint64_t, uint64_t>, uint64_t> ids_;  // key -> generation
  uint64_t current_ = 1;
  uint64_t count_ = 0;
  int64_t began_us_ = 0;
};

TEST(OpMemory, RandomClaimsOverASmallTableMatchTheModel) {
  // Up to 32 live ids crowded into three buckets of a 16-bucket table (21
  // slots; every key is homed in the last two buckets or the first): full
  // buckets, overflow marks, probes that wrap, freed slots taken again;
  // keys drawn from a small set so that retries (within and across
  // batches, remembered and forgotten) are frequent; time moves so that age
  // retires too.
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    std::mt19937_64 rng(seed);
    constexpr uint64_t ids_max = 32;
    constexpr int64_t retention_us = 1000;
    OpMemory m(ids_max, retention_us, /*map_all=*/seed % 2 == 0);
    Model model(ids_max, retention_us);
    const uint64_t buckets = m.buckets();
    std::vector<OpKey> pool;  // 60 keys of each of two orgs
    for (uint64_t org = 1; org <= 2; ++org) {
      size_t of_org = 0;
      for (uint64_t op = 1; of_org < 60; ++op) {
        const uint64_t home = OpMemory::Hash(OpKey{org, op}) & (buckets - 1);
        if (home == 0 || home + 2 >= buckets) {
          pool.push_back(OpKey{org, op});
          ++of_org;
        }
      }
    }
    int64_t now = kNow;
    std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
    std::uniform_int_distribution<size_t> batch_size(1, 12);
    std::uniform_int_distribution<int64_t> step(0, 60);
    uint64_t seen = 0;
    for (int round = 0; round < 20000; ++round) {
      now += step(rng);
      std::vector<OpKey> keys(batch_size(rng));
      for (OpKey& k : keys) k = pool[pick(rng)];
      Batch b = ClaimAndSettle(m, keys, now);
      std::vector<uint64_t> generations(keys.size());
      for (size_t i = 0; i < keys.size(); ++i) {
        const auto [generation, model_seen] = model.Claim(keys[i], now);
        generations[i] = generation;
        const bool got_seen = b.claims[i].kind != OpMemory::Claim::fresh;
        ASSERT_EQ(got_seen, model_seen) << "seed " << seed << " round " << round << " key " << i;
        seen += got_seen;
      }
      // After the batch: a claim's first result is there while its
      // generation is remembered (a retirement later in the same batch may
      // have forgotten it: docs/ENGINE.md).
      for (size_t i = 0; i < keys.size(); ++i) {
        const Result* first = m.First(b.claims[i]);
        ASSERT_EQ(first != nullptr, model.Alive(generations[i]))
            << "seed " << seed << " round " << round << " key " << i;
        if (first == nullptr) continue;
        ASSERT_EQ(first->n[0], static_cast<int64_t>(keys[i].op_id));
        ASSERT_EQ(first->n[1], static_cast<int64_t>(keys[i].org_id));
      }
    }
    EXPECT_GT(seen, 10000u) << "retries were frequent";
  }
}

}  // namespace
}  // namespace tally::engine
