#include "tools/bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

#include "tally/assert.h"

namespace tally::bench {

uint32_t HistogramBucket(uint64_t value) {
  if (value < histogram_sub_buckets) return static_cast<uint32_t>(value);
  uint32_t exponent = 63 - static_cast<uint32_t>(std::countl_zero(value));
  if (exponent > histogram_exponent_max) return histogram_buckets - 1;
  uint32_t shift = exponent - histogram_precision_bits;
  uint64_t sub = (value >> shift) - histogram_sub_buckets;  // 0 .. sub_buckets-1
  return static_cast<uint32_t>(histogram_sub_buckets + uint64_t{shift} * histogram_sub_buckets +
                               sub);
}

uint64_t HistogramBucketTop(uint32_t bucket) {
  TALLY_ASSERT(bucket < histogram_buckets);
  if (bucket < histogram_sub_buckets) return bucket;
  uint64_t shift = (bucket - histogram_sub_buckets) / histogram_sub_buckets;
  uint64_t sub = (bucket - histogram_sub_buckets) % histogram_sub_buckets;
  return ((histogram_sub_buckets + sub + 1) << shift) - 1;
}

void HistogramSnapshot::Add(const HistogramSnapshot& other) {
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += other.counts[i];
  if (other.count > 0) {
    min = count == 0 ? other.min : std::min(min, other.min);
    max = std::max(max, other.max);
  }
  count += other.count;
  sum += other.sum;
}

uint64_t HistogramSnapshot::Percentile(double p) const {
  if (count == 0) return 0;
  if (p >= 100.0) return max;
  p = std::max(p, 0.0);
  // The rank (1-based) of the value asked for.
  uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(count)));
  rank = std::clamp<uint64_t>(rank, 1, count);
  uint64_t seen = 0;
  for (uint32_t b = 0; b < histogram_buckets; ++b) {
    seen += counts[b];
    // The last bucket has no top: what lands there is reported as the maximum.
    if (seen >= rank)
      return b + 1 == histogram_buckets ? max : std::min(HistogramBucketTop(b), max);
  }
  return max;  // counts and count disagree only while a recorder is writing
}

void LatencyHistogram::Record(uint64_t value) {
  Bump(counts_[HistogramBucket(value)], 1);
  uint64_t n = count_.load(std::memory_order_relaxed);
  if (n == 0 || value < min_.load(std::memory_order_relaxed)) {
    min_.store(value, std::memory_order_relaxed);
  }
  if (value > max_.load(std::memory_order_relaxed)) max_.store(value, std::memory_order_relaxed);
  Bump(sum_, value);
  count_.store(n + 1, std::memory_order_release);
}

HistogramSnapshot LatencyHistogram::Snapshot() const {
  HistogramSnapshot s;
  uint64_t total = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    s.counts[i] = counts_[i].load(std::memory_order_relaxed);
    total += s.counts[i];
  }
  // Buckets read while the recorder writes may be a few values apart from
  // count_: the buckets are what percentiles walk, so their sum is the count.
  s.count = total;
  s.max = max_.load(std::memory_order_relaxed);
  s.min = min_.load(std::memory_order_relaxed);
  s.sum = static_cast<long double>(sum_.load(std::memory_order_relaxed));
  return s;
}

}  // namespace tally::bench
