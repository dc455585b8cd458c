// The load generator's random numbers: zipf ranks follow 1/(k+1)^s, and the
// scatter of ranks onto wallets is a bijection.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "tally/shard.h"
#include "tools/bench/random.h"
#include "tools/bench/runner.h"

namespace tally::bench {
namespace {

TEST(BenchZipf, HottestRanksComeAsOftenAsTheLawSays) {
  const uint64_t n = 100'000;
  ZipfGenerator zipf(n, 0.99);
  Rng rng(1);
  const int draws = 2'000'000;
  std::vector<uint64_t> count(n);
  for (int i = 0; i < draws; ++i) {
    uint64_t r = zipf.Next(rng);
    ASSERT_LT(r, n);
    ++count[r];
  }
  // Ranks 0 and 1 are drawn exactly by the method; the rest by a continuous
  // approximation that gives ranks 2-9 a little too much (YCSB's generator
  // alike): the top ranks' mass is within 6 % of the law.
  for (uint64_t k : {0, 1}) {
    double want = zipf.Probability(k) * draws;
    EXPECT_NEAR(static_cast<double>(count[k]), want, 5 * std::sqrt(want)) << "rank " << k;
  }
  for (uint64_t top : {10, 100, 1000, 10000}) {
    double want = 0, got = 0;
    for (uint64_t k = 0; k < top; ++k) {
      want += zipf.Probability(k);
      got += static_cast<double>(count[k]) / draws;
    }
    EXPECT_NEAR(got, want, 0.06 * want) << "top " << top << " got " << got << " want " << want;
  }
  // Skewed indeed: the top 1 % of ranks take far more than 1 % of draws.
  double top1 = 0;
  for (uint64_t k = 0; k < n / 100; ++k) top1 += static_cast<double>(count[k]) / draws;
  EXPECT_GT(top1, 0.5);
}

TEST(BenchZipf, RanksAreNonIncreasingInFrequencyOnAverage) {
  ZipfGenerator zipf(1000, 0.8);
  Rng rng(9);
  std::vector<uint64_t> count(1000);
  for (int i = 0; i < 1'000'000; ++i) ++count[zipf.Next(rng)];
  // Compare blocks of 100 ranks: each block is drawn less than the one before.
  uint64_t previous = UINT64_MAX;
  for (int block = 0; block < 10; ++block) {
    uint64_t sum = 0;
    for (int k = 0; k < 100; ++k) sum += count[block * 100 + k];
    EXPECT_LT(sum, previous) << "block " << block;
    previous = sum;
  }
}

TEST(BenchZipf, ScatterIsABijection) {
  for (uint64_t n : {1ull, 2ull, 3ull, 10ull, 1000ull, 65536ull, 100003ull}) {
    ZipfGenerator zipf(n, 0.99);
    std::vector<bool> seen(n);
    for (uint64_t r = 0; r < n; ++r) {
      uint64_t i = zipf.Scatter(r);
      ASSERT_LT(i, n);
      ASSERT_FALSE(seen[i]) << "n " << n << " rank " << r;
      seen[i] = true;
    }
  }
}

TEST(BenchZipf, ScatterSpreadsTheHotRanksOverOrgs) {
  // Wallet index i is in org i % orgs: the 16 hottest ranks must not all
  // fall in one org.
  ZipfGenerator zipf(1'000'000, 0.99);
  std::vector<int> per_org(16);
  for (uint64_t r = 0; r < 16; ++r) ++per_org[zipf.Scatter(r) % 16];
  for (int c : per_org) EXPECT_LE(c, 4);
}

TEST(BenchRng, BelowIsUniform) {
  Rng rng(5);
  std::vector<int> count(10);
  for (int i = 0; i < 1'000'000; ++i) ++count[rng.Below(10)];
  for (int c : count) EXPECT_NEAR(c, 100'000, 1'500);
  for (int i = 0; i < 1000; ++i) {
    double u = rng.Unit();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
}

TEST(BenchRng, SameSeedSameSequence) {
  Rng a(77), b(77), c(78);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.Next();
    ASSERT_EQ(x, b.Next());
    differs = differs || x != c.Next();
  }
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace tally::bench

namespace tally::bench {
namespace {

// The default org base spreads the orgs evenly over the server's shards,
// and different seeds give different orgs (runs against one server never
// meet).
TEST(EvenOrgBase, SpreadsTheOrgsEvenlyOverTheShardsAndDiffersBySeed) {
  struct Case {
    uint32_t orgs;
    uint32_t shards;
  };
  for (Case c : {Case{16, 2}, Case{16, 3}, Case{5, 4}, Case{24, 4}, Case{1, 2}, Case{3, 1}}) {
    std::set<uint64_t> bases;
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      const uint64_t base = EvenOrgBase(seed * 0x1234567, c.orgs, c.shards);
      ASSERT_GE(base, 1u);
      ASSERT_LT(base, uint64_t{1} << 41);
      bases.insert(base);
      std::vector<uint32_t> counts(c.shards);
      for (uint32_t i = 0; i < c.orgs; ++i) ++counts[ShardOf(base + i, c.shards)];
      const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
      EXPECT_LE(*hi - *lo, 1u) << c.orgs << " orgs over " << c.shards << " shards, seed " << seed;
    }
    EXPECT_EQ(bases.size(), 20u) << c.orgs << " orgs over " << c.shards << " shards";
  }
}

}  // namespace
}  // namespace tally::bench
