#include "tools/bench/random.h"

#include <cmath>
#include <numeric>

#include "tally/assert.h"
#include "tally/limits.h"

namespace tally::bench {

namespace {
uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (int i = 0; i < 4; ++i) {
    seed = SplitMix64(seed);
    s_[i] = seed;
  }
}

uint64_t Rng::Next() {
  uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

ZipfGenerator::ZipfGenerator(uint64_t n, double s) : n_(n), s_(s) {
  TALLY_ASSERT(n >= 1 && n <= bench_wallets_max);
  TALLY_ASSERT(s > 0.0 && s < 1.0);
  double zeta = 0;
  for (uint64_t i = 1; i <= n; ++i) zeta += 1.0 / std::pow(static_cast<double>(i), s);
  zeta_n_ = zeta;
  double zeta_2 = 1.0 + 1.0 / std::pow(2.0, s);
  alpha_ = 1.0 / (1.0 - s);
  eta_ = (1.0 - std::pow(2.0 / static_cast<double>(n), 1.0 - s)) / (1.0 - zeta_2 / zeta_n_);
  half_pow_s_ = std::pow(0.5, s);
  // A multiplier near n·φ that shares no factor with n spreads neighbours far
  // apart; with n ≤ 10 M, rank · multiplier < 2^48.
  multiplier_ = 1;
  if (n > 2) {
    multiplier_ = static_cast<uint64_t>(static_cast<double>(n) * 0.6180339887) | 1;
    while (std::gcd(multiplier_, n) != 1) multiplier_ += 2;
    multiplier_ %= n;
    if (multiplier_ == 0) multiplier_ = 1;
  }
  offset_ = n / 3;
}

uint64_t ZipfGenerator::Next(Rng& rng) const {
  double u = rng.Unit();
  double uz = u * zeta_n_;
  if (uz < 1.0) return 0;
  if (uz < 1.0 + half_pow_s_) return n_ > 1 ? 1 : 0;
  auto rank =
      static_cast<uint64_t>(static_cast<double>(n_) * std::pow(eta_ * u - eta_ + 1.0, alpha_));
  return rank < n_ ? rank : n_ - 1;
}

double ZipfGenerator::Probability(uint64_t rank) const {
  return 1.0 / std::pow(static_cast<double>(rank + 1), s_) / zeta_n_;
}

}  // namespace tally::bench
