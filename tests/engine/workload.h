// workload.h: random batches of every command kind, for tests that need a
// ledger with a realistic history (snapshots, recovery).
#ifndef TALLY_TESTS_ENGINE_WORKLOAD_H_
#define TALLY_TESTS_ENGINE_WORKLOAD_H_

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tally/command.h"
#include "tally/commands.h"

namespace tally::testing {

// Workload makes random batches of every command kind over a few orgs, with
// time moving on so that lots expire and holds time out.
class Workload {
 public:
  explicit Workload(uint64_t seed) : rng_(seed) {}

  int64_t now_us() const { return now_us_; }

  std::vector<Command> Next(size_t n) {
    now_us_ += static_cast<int64_t>(rng_() % (rng_() % 10 == 0 ? 30 * kHourUs : 60'000'000));
    texts_.clear();
    targets_.clear();
    texts_.reserve(n);
    targets_.reserve(n);
    std::vector<Command> batch;
    for (size_t i = 0; i < n; ++i) {
      Command c = One();
      c.op_id = ++op_id_;
      if (rng_() % 50 == 0 && op_id_ > 10) c.op_id = op_id_ - 1 - rng_() % 10;  // a retry
      batch.push_back(c);
    }
    return batch;
  }

 private:
  uint64_t Pick(uint64_t n) { return rng_() % n; }

  Command One() {
    uint64_t org = 1 + Pick(3);
    uint64_t wallet = 1 + Pick(40);
    int64_t amount = 1 + static_cast<int64_t>(Pick(500));
    int64_t expiry = Pick(3) == 0 ? now_us_ + static_cast<int64_t>(1 + Pick(48)) * kHourUs : 0;
    switch (Pick(17)) {
      case 0: return cmd::OrgCreate(org);
      case 1: return cmd::Topup(org, 50 * amount, expiry, static_cast<int32_t>(Pick(3)));
      case 2: {
        targets_.emplace_back();
        for (uint64_t k = 0; k < 1 + Pick(5); ++k) targets_.back().push_back({1 + Pick(40), amount});
        return cmd::Allocate(org, targets_.back());
      }
      case 3: return cmd::Grant(org, wallet, amount, expiry, static_cast<int32_t>(Pick(3)));
      case 4:
      case 5: return cmd::Deduct(org, wallet, amount, Pick(2) == 0);
      case 6: return cmd::Hold(org, wallet, amount, Pick(2) == 0 ? now_us_ + kHourUs : 0, true);
      case 7: return cmd::Capture(org, 1 + Pick(30), amount);
      case 8: return cmd::Release(org, 1 + Pick(30));
      case 9: {
        texts_.push_back("reason " + std::to_string(Pick(1000)));
        return cmd::Request(org, wallet, amount, texts_.back());
      }
      case 10: return cmd::Approve(org, 1 + Pick(20), Pick(2) == 0 ? 0 : amount);
      case 11: return cmd::Reject(org, 1 + Pick(20));
      case 12: return cmd::VoidGrant(org, 1 + Pick(40));
      case 13: return cmd::AdjustTo(org, wallet, amount);
      case 14: return Pick(4) == 0 ? cmd::WalletDelete(org, wallet) : cmd::ReclaimAll(org, wallet);
      case 15: {
        texts_.push_back("user " + std::to_string(wallet));
        return cmd::WalletUpsert(org, wallet, texts_.back());
      }
      default: return cmd::Sweep();
    }
  }

  std::mt19937_64 rng_;
  static constexpr int64_t kT0 = int64_t{1'700'000'040} * 1'000'000;
  static constexpr int64_t kHourUs = int64_t{3600} * 1'000'000;
  int64_t now_us_ = kT0;
  uint64_t op_id_ = 0;
  std::vector<std::string> texts_;
  std::vector<std::vector<WalletAmount>> targets_;
};

}  // namespace tally::testing

#endif  // TALLY_TESTS_ENGINE_WORKLOAD_H_
