// random.h: the load generator's random numbers: a fast per-thread generator,
// and zipfian ranks over up to bench_wallets_max items.
//
// ZipfGenerator draws ranks 0..n-1 with P(rank k) ∝ 1/(k+1)^s, 0 < s < 1, by
// the method of Gray et al., "Quickly Generating Billion-Record Synthetic
// Databases" (SIGMOD 1994), as YCSB does: O(n) once to sum the zeta
// constant, O(1) a draw.  Rank 0 is the hottest; Scatter() maps ranks onto
// item indexes by a fixed bijection so the hot items are spread over orgs and
// shards instead of being the first few ids.
//
// Example:
//   tally::bench::Rng rng(seed);
//   tally::bench::ZipfGenerator zipf(1'000'000, 0.99);
//   uint64_t wallet_index = zipf.Scatter(zipf.Next(rng));
#ifndef TALLY_TOOLS_BENCH_RANDOM_H_
#define TALLY_TOOLS_BENCH_RANDOM_H_

#include <cstdint>

namespace tally::bench {

// SplitMix64 is the splitmix64 finalizer (also what seeds Rng).
inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Rng is xoshiro256** (Blackman and Vigna): fast, one per thread.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t Next();
  // Below is uniform in [0, n), n > 0 (Lemire's multiply-shift; the bias,
  // n / 2^64, is far below what a benchmark can see).
  uint64_t Below(uint64_t n) {
    __extension__ using Uint128 = unsigned __int128;
    return static_cast<uint64_t>((static_cast<Uint128>(Next()) * n) >> 64);
  }
  // Unit is uniform in [0, 1).
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_[4];
};

class ZipfGenerator {
 public:
  // n ≥ 1 items, 0 < s < 1 (the caller checks: options.cc).
  ZipfGenerator(uint64_t n, double s);
  uint64_t Next(Rng& rng) const;
  // Scatter maps a rank onto an item index, a bijection of [0, n).
  uint64_t Scatter(uint64_t rank) const { return (rank * multiplier_ + offset_) % n_; }
  // Probability is P(rank k), for tests.
  double Probability(uint64_t rank) const;
  uint64_t n() const { return n_; }

 private:
  uint64_t n_;
  double s_;
  double zeta_n_;
  double alpha_;
  double eta_;
  double half_pow_s_;
  uint64_t multiplier_;  // coprime with n_, below n_ (so rank * multiplier fits 64 bits)
  uint64_t offset_;
};

}  // namespace tally::bench

#endif  // TALLY_TOOLS_BENCH_RANDOM_H_
