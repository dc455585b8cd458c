// The load generator's histogram against the exact answer: a sorted array.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "tools/bench/histogram.h"

namespace tally::bench {
namespace {

// Exact is the p-th percentile of a sorted array the way the histogram
// defines it: the value at rank ceil(p/100 · n).
uint64_t Exact(const std::vector<uint64_t>& sorted, double p) {
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void ExpectWithinPrecision(const std::vector<uint64_t>& values, const HistogramSnapshot& h) {
  std::vector<uint64_t> sorted = values;
  std::sort(sorted.begin(), sorted.end());
  for (double p : {0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    uint64_t exact = Exact(sorted, p);
    uint64_t got = h.Percentile(p);
    // Never below the true value, at most one bucket (1/128) above it.
    EXPECT_GE(got, exact) << "p" << p;
    EXPECT_LE(got, exact + exact / histogram_sub_buckets) << "p" << p;
  }
  EXPECT_EQ(h.count, values.size());
  EXPECT_EQ(h.max, sorted.back());
  EXPECT_EQ(h.min, sorted.front());
}

TEST(BenchHistogram, PercentilesOfLogNormalLatenciesMatchASortedArray) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> latency_ns(std::log(300'000.0), 1.2);
  std::vector<uint64_t> values;
  LatencyHistogram h;
  for (int i = 0; i < 200'000; ++i) {
    auto v = static_cast<uint64_t>(latency_ns(rng));
    values.push_back(v);
    h.Record(v);
  }
  ExpectWithinPrecision(values, h.Snapshot());
}

TEST(BenchHistogram, PercentilesOfUniformValuesOverManyDecadesMatch) {
  std::mt19937_64 rng(7);
  std::vector<uint64_t> values;
  LatencyHistogram h;
  for (int i = 0; i < 50'000; ++i) {
    // 0 .. 2^40: exact buckets at the bottom, log buckets above.
    uint64_t v = rng() >> (24 + rng() % 40);
    values.push_back(v);
    h.Record(v);
  }
  ExpectWithinPrecision(values, h.Snapshot());
}

TEST(BenchHistogram, SmallValuesAreExact) {
  LatencyHistogram h;
  for (uint64_t v = 0; v < histogram_sub_buckets; ++v) h.Record(v);
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.Percentile(50), 63u);
  EXPECT_EQ(s.Percentile(100), 127u);
}

TEST(BenchHistogram, BucketsAreContiguousAndTopsIncrease) {
  uint64_t previous_top = 0;
  for (uint32_t b = 1; b < histogram_buckets; ++b) {
    uint64_t top = HistogramBucketTop(b);
    ASSERT_GT(top, previous_top) << b;
    ASSERT_EQ(HistogramBucket(top), b);
    ASSERT_EQ(HistogramBucket(previous_top + 1), b);
    previous_top = top;
  }
}

TEST(BenchHistogram, ValuesPastTheTopLandInTheLastBucket) {
  LatencyHistogram h;
  h.Record(UINT64_MAX);
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.counts[histogram_buckets - 1], 1u);
  EXPECT_EQ(s.Percentile(50), UINT64_MAX);  // clamped to the exact maximum
}

TEST(BenchHistogram, SnapshotsMergeAsOneHistogramOfEverything) {
  std::mt19937_64 rng(3);
  LatencyHistogram a, b;
  std::vector<uint64_t> values;
  for (int i = 0; i < 30'000; ++i) {
    uint64_t v = 1000 + rng() % 5'000'000;
    values.push_back(v);
    (i % 3 == 0 ? a : b).Record(v);
  }
  HistogramSnapshot merged = a.Snapshot();
  merged.Add(b.Snapshot());
  ExpectWithinPrecision(values, merged);
}

TEST(BenchHistogram, EmptyHistogramReportsZero) {
  LatencyHistogram h;
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.Percentile(99), 0u);
  EXPECT_EQ(s.Mean(), 0.0);
}

}  // namespace
}  // namespace tally::bench
