// model.h: where each benchmark wallet lives, and what its balance must be.
//
// Wallet index i (0 .. wallets-1) is wallet id i / orgs + 1 of org index
// i % orgs (org id org_base + org index): consecutive indexes fall in
// different orgs and so, through ShardOf, on different shards.
//
// The Model holds the expected state: each wallet's starting balance is
// known from the setup, and every acknowledged result adds its effect
// (atomically: several threads fold results into the same wallets).  At the
// end, a wallet's available balance must equal its start plus its delta.
#ifndef TALLY_TOOLS_BENCH_MODEL_H_
#define TALLY_TOOLS_BENCH_MODEL_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "tally/assert.h"
#include "tools/bench/options.h"

namespace tally::bench {

class Model {
 public:
  explicit Model(const Options& o)
      : wallets_(o.wallets),
        orgs_(o.orgs),
        org_base_(o.org_base),
        available_(new std::atomic<int64_t>[o.wallets]),
        held_(new std::atomic<int64_t>[o.wallets]),
        org_pool_(new std::atomic<int64_t>[o.orgs]),
        org_spent_(new std::atomic<int64_t>[o.orgs]),
        org_in_(new std::atomic<int64_t>[o.orgs]) {
    for (uint64_t i = 0; i < wallets_; ++i) {
      available_[i].store(0, std::memory_order_relaxed);
      held_[i].store(0, std::memory_order_relaxed);
    }
    for (uint32_t k = 0; k < orgs_; ++k) {
      org_pool_[k].store(0, std::memory_order_relaxed);
      org_spent_[k].store(0, std::memory_order_relaxed);
      org_in_[k].store(0, std::memory_order_relaxed);
    }
  }

  uint64_t wallets() const { return wallets_; }
  uint32_t orgs() const { return orgs_; }
  uint32_t OrgIndex(uint64_t index) const { return static_cast<uint32_t>(index % orgs_); }
  uint64_t OrgId(uint32_t org_index) const { return org_base_ + org_index; }
  uint64_t WalletId(uint64_t index) const { return index / orgs_ + 1; }
  // WalletsIn is how many wallets org `org_index` has.
  uint64_t WalletsIn(uint32_t org_index) const {
    return wallets_ / orgs_ + (org_index < wallets_ % orgs_ ? 1 : 0);
  }
  // IndexOf is the wallet index of the j-th wallet of an org.
  uint64_t IndexOf(uint32_t org_index, uint64_t j) const { return j * orgs_ + org_index; }

  // The expected state: available and held per wallet; per org the pool,
  // what was spent (deducts and captures) and what came in (topups, grants).
  void AddAvailable(uint64_t index, int64_t delta) { Add(available_[Check(index)], delta); }
  void AddHeld(uint64_t index, int64_t delta) { Add(held_[Check(index)], delta); }
  void AddPool(uint32_t org, int64_t delta) { Add(org_pool_[CheckOrg(org)], delta); }
  void AddSpent(uint32_t org, int64_t delta) { Add(org_spent_[CheckOrg(org)], delta); }
  void AddIn(uint32_t org, int64_t delta) { Add(org_in_[CheckOrg(org)], delta); }
  // PrefetchWallet asks for a wallet's counters ahead of its Add (Fold
  // fetches a few ops ahead, so the misses on random wallets overlap).
  void PrefetchWallet(uint64_t index) const {
    if (index < wallets_) __builtin_prefetch(&available_[index], 1);
  }
  int64_t Available(uint64_t index) const { return available_[Check(index)].load(); }
  int64_t Held(uint64_t index) const { return held_[Check(index)].load(); }
  int64_t Pool(uint32_t org) const { return org_pool_[CheckOrg(org)].load(); }
  int64_t Spent(uint32_t org) const { return org_spent_[CheckOrg(org)].load(); }
  int64_t In(uint32_t org) const { return org_in_[CheckOrg(org)].load(); }

 private:
  static void Add(std::atomic<int64_t>& a, int64_t delta) {
    a.fetch_add(delta, std::memory_order_relaxed);
  }
  uint64_t Check(uint64_t index) const {
    TALLY_ASSERT(index < wallets_);
    return index;
  }
  uint32_t CheckOrg(uint32_t org) const {
    TALLY_ASSERT(org < orgs_);
    return org;
  }

  uint64_t wallets_;
  uint32_t orgs_;
  uint64_t org_base_;
  std::unique_ptr<std::atomic<int64_t>[]> available_;
  std::unique_ptr<std::atomic<int64_t>[]> held_;
  std::unique_ptr<std::atomic<int64_t>[]> org_pool_;
  std::unique_ptr<std::atomic<int64_t>[]> org_spent_;
  std::unique_ptr<std::atomic<int64_t>[]> org_in_;
};

}  // namespace tally::bench

#endif  // TALLY_TOOLS_BENCH_MODEL_H_
