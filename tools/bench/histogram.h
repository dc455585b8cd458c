// histogram.h: a high-dynamic-range latency histogram with log-linear buckets.
//
// Values (nanoseconds) below 2^precision_bits are counted exactly; above,
// every power of two is split into 2^precision_bits equal buckets, so a
// reported percentile is at most 1/128 (0.8 %) above the true value and never
// below it.  This is HdrHistogram's layout (Gil Tene), written here because
// Debian 12 packages no C or C++ implementation.  40 KiB, fixed: no value
// allocates, a value past the top lands in the last bucket.
//
// One thread records (Record is a relaxed load and store, no locked
// instruction); any thread may read a consistent-enough copy at any time
// (Snapshot) for the live line.  Merge snapshots of several recorders with
// Add.
//
// Example:
//   tally::bench::LatencyHistogram h;
//   h.Record(310'000);                    // 310 µs
//   tally::bench::HistogramSnapshot s = h.Snapshot();
//   uint64_t p99_ns = s.Percentile(99.0);
#ifndef TALLY_TOOLS_BENCH_HISTOGRAM_H_
#define TALLY_TOOLS_BENCH_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>

namespace tally::bench {

inline constexpr uint32_t histogram_precision_bits = 7;
inline constexpr uint64_t histogram_sub_buckets = uint64_t{1} << histogram_precision_bits;
// The largest exponent kept: 2^46 ns is about 19 hours.
inline constexpr uint32_t histogram_exponent_max = 46;
inline constexpr uint64_t histogram_buckets =
    histogram_sub_buckets +
    (histogram_exponent_max - histogram_precision_bits + 1) * histogram_sub_buckets;

// HistogramBucket is the bucket `value` falls in.
uint32_t HistogramBucket(uint64_t value);
// HistogramBucketTop is the largest value in `bucket` (what percentiles report).
uint64_t HistogramBucketTop(uint32_t bucket);

// HistogramSnapshot is a plain copy of counts, to merge and to query.
struct HistogramSnapshot {
  std::array<uint64_t, histogram_buckets> counts{};
  uint64_t count = 0;
  uint64_t max = 0;
  uint64_t min = 0;  // 0 when empty
  long double sum = 0;

  void Add(const HistogramSnapshot& other);
  // Percentile is the smallest recorded value v (to bucket precision, rounded
  // up) such that at least p % of the values are ≤ v; 0 when empty.  p in
  // [0, 100]; 100 is the exact maximum.
  uint64_t Percentile(double p) const;
  double Mean() const { return count == 0 ? 0.0 : static_cast<double>(sum / count); }
};

// LatencyHistogram is recorded by one thread and read by any.
class LatencyHistogram {
 public:
  void Record(uint64_t value);
  HistogramSnapshot Snapshot() const;

 private:
  static void Bump(std::atomic<uint64_t>& a, uint64_t by) {
    a.store(a.load(std::memory_order_relaxed) + by, std::memory_order_relaxed);
  }
  std::array<std::atomic<uint64_t>, histogram_buckets> counts_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> max_{0};
  std::atomic<uint64_t> min_{0};
  std::atomic<uint64_t> sum_{0};  // wraps after 584 years of latency: fine
};

}  // namespace tally::bench

#endif  // TALLY_TOOLS_BENCH_HISTOGRAM_H_
