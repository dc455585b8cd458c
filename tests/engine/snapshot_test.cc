// snapshot_test.cc: a restored ledger is the same ledger, and damage is named.
#include <random>
#include <string>
#include <vector>

#include "engine/ledger.h"
#include "gtest/gtest.h"
#include "tally/commands.h"

namespace tally {
namespace {

constexpr int64_t kT0 = int64_t{1'700'000'040} * 1'000'000;
constexpr int64_t kHourUs = int64_t{3600} * 1'000'000;

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
  int64_t now_us_ = kT0;
  uint64_t op_id_ = 0;
  std::vector<std::string> texts_;
  std::vector<std::vector<WalletAmount>> targets_;
};

LedgerOptions SmallOptions() {
  LedgerOptions options;
  options.history_entries_max = 1 << 16;
  options.op_ids_max = 1 << 12;
  return options;
}

TEST(Snapshot, ARestoredLedgerHasTheSameDigestAndAppliesEveryLaterBatchAlike) {
  Ledger live(SmallOptions());
  Workload work(11);
  BatchOutput out;
  for (int round = 0; round < 6; ++round) {
    for (int b = 0; b < 150; ++b) {
      std::vector<Command> batch = work.Next(1 + b % 40);
      live.Apply(work.now_us(), batch, &out);
    }
    std::string bytes;
    live.EncodeSnapshot(&bytes);
    absl::StatusOr<std::unique_ptr<Ledger>> restored = Ledger::DecodeSnapshot(bytes, SmallOptions());
    ASSERT_TRUE(restored.ok()) << restored.status();
    ASSERT_EQ((*restored)->Digest(), live.Digest()) << "round " << round;
    std::string again;
    (*restored)->EncodeSnapshot(&again);
    EXPECT_EQ(again, bytes) << "one encoding per state";

    // The same batches into both: same results, same digest, every time.
    Workload after(100 + round);
    Ledger& copy = **restored;
    BatchOutput out_copy;
    for (int b = 0; b < 60; ++b) {
      std::vector<Command> batch = after.Next(1 + b % 30);
      int64_t at = std::max(after.now_us(), live.last_time_us());
      live.Apply(at, batch, &out);
      copy.Apply(at, batch, &out_copy);
      ASSERT_EQ(out.results.size(), out_copy.results.size());
      for (size_t i = 0; i < out.results.size(); ++i) {
        ASSERT_EQ(out.results[i].code, out_copy.results[i].code) << "batch " << b << " #" << i;
        ASSERT_EQ(out.results[i].n[0], out_copy.results[i].n[0]);
      }
      ASSERT_EQ(copy.Digest(), live.Digest()) << "round " << round << " batch " << b;
    }
  }
}

TEST(Snapshot, AnEmptyLedgerRoundTrips) {
  Ledger empty;
  std::string bytes;
  empty.EncodeSnapshot(&bytes);
  auto restored = Ledger::DecodeSnapshot(bytes, {});
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->Digest(), empty.Digest());
}

TEST(Snapshot, EveryFlippedBitAndEveryTruncationIsRefused) {
  Ledger live(SmallOptions());
  Workload work(12);
  BatchOutput out;
  for (int b = 0; b < 30; ++b) live.Apply(work.now_us(), work.Next(10), &out);
  std::string bytes;
  live.EncodeSnapshot(&bytes);
  std::mt19937_64 rng(13);
  for (int trial = 0; trial < 300; ++trial) {
    std::string bad = bytes;
    bad[rng() % bad.size()] ^= static_cast<char>(1u << (rng() % 8));
    auto restored = Ledger::DecodeSnapshot(bad, SmallOptions());
    ASSERT_FALSE(restored.ok()) << "a flipped bit was accepted";
    EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss);
  }
  for (size_t size = 0; size < bytes.size(); size += 1 + bytes.size() / 500) {
    EXPECT_FALSE(Ledger::DecodeSnapshot(std::string_view(bytes).substr(0, size), {}).ok());
  }
}

TEST(Snapshot, ASmallerHistoryWindowKeepsTheNewestEntries) {
  LedgerOptions big = SmallOptions();
  big.history_entries_max = 1 << 18;
  Ledger live(big);
  Workload work(14);
  BatchOutput out;
  while (live.history_entries_total() < (1u << 17)) live.Apply(work.now_us(), work.Next(64), &out);
  std::string bytes;
  live.EncodeSnapshot(&bytes);
  auto restored = Ledger::DecodeSnapshot(bytes, SmallOptions());  // 1 << 16 entries
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->history_entries_total(), live.history_entries_total());
  HistoryQuery q;
  q.org_id = 1;
  q.all_wallets = true;
  q.limit = 50;
  auto a = live.GetHistory(q);
  auto b = (*restored)->GetHistory(q);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->entries.size(), b->entries.size());
  for (size_t i = 0; i < a->entries.size(); ++i) {
    EXPECT_EQ(a->entries[i].seq, b->entries[i].seq);
    EXPECT_EQ(a->entries[i].balance_after, b->entries[i].balance_after);
  }
}

}  // namespace
}  // namespace tally
