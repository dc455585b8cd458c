// snapshot_test.cc: a restored ledger is the same ledger, and damage is named.
#include <random>
#include <string>
#include <vector>

#include "engine/ledger.h"
#include "gtest/gtest.h"
#include "tally/commands.h"
#include "tests/engine/workload.h"

namespace tally {
namespace {

using testing::Workload;

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

// The texts are held in index order beside the ring (engine/history.h) and
// loaded by appending: every kept entry's texts come back, none of a
// dropped one's, into the same and into a smaller window.
TEST(Snapshot, EveryKeptEntrysTextsComeBack) {
  LedgerOptions big = SmallOptions();
  big.history_entries_max = 1 << 17;
  Ledger live(big);
  BatchOutput out;
  int64_t now_us = 1'700'000'000'000'000;
  std::vector<Command> setup = {cmd::OrgCreate(1), cmd::Topup(1, int64_t{1} << 40)};
  for (uint64_t w = 1; w <= 64; ++w) {
    setup.push_back(cmd::Grant(1, w, int64_t{1} << 30));
  }
  uint64_t op = 0;
  for (Command& c : setup) c.op_id = ++op;
  live.Apply(now_us, setup, &out);
  std::vector<std::string> texts;
  while (live.history_entries_total() < (1u << 17) + 5000) {
    texts.clear();
    texts.reserve(256);
    std::vector<Command> batch;
    for (int i = 0; i < 256; ++i) {
      Command c = cmd::Deduct(1, 1 + op % 64, 1);
      c.op_id = ++op;
      if (op % 3 != 0) {  // two entries in three carry texts, longer than a short string's
        texts.push_back("reference number " + std::to_string(op));
        c.text = texts.back();
        if (op % 2 == 0) c.actor = "the actor of every second one";
      }
      batch.push_back(c);
    }
    now_us += 1000;
    live.Apply(now_us, batch, &out);
  }
  std::string bytes;
  live.EncodeSnapshot(&bytes);
  for (uint64_t window : {uint64_t{1} << 17, uint64_t{1} << 16}) {
    LedgerOptions options = big;
    options.history_entries_max = window;
    auto restored = Ledger::DecodeSnapshot(bytes, options);
    ASSERT_TRUE(restored.ok()) << restored.status();
    if (window == big.history_entries_max) {
      EXPECT_EQ((*restored)->Digest(), live.Digest());
      std::string again;
      (*restored)->EncodeSnapshot(&again);
      EXPECT_EQ(again, bytes);
    }
    HistoryQuery q;
    q.org_id = 1;
    q.all_wallets = true;
    q.limit = 1000;
    uint64_t with_text = 0;
    uint64_t seen = 0;
    for (int page = 0; page < 200; ++page) {
      auto a = live.GetHistory(q);
      auto b = (*restored)->GetHistory(q);
      ASSERT_TRUE(a.ok() && b.ok());
      // The smaller window runs out first; up to there, the same entries.
      ASSERT_GE(a->entries.size(), b->entries.size()) << "window " << window;
      for (size_t i = 0; i < b->entries.size(); ++i) {
        ASSERT_EQ(a->entries[i].seq, b->entries[i].seq);
        ASSERT_EQ(a->entries[i].reference, b->entries[i].reference);
        ASSERT_EQ(a->entries[i].actor, b->entries[i].actor);
        with_text += b->entries[i].reference.empty() ? 0 : 1;
      }
      seen += b->entries.size();
      if (b->next_cursor == 0) break;
      q.cursor = b->next_cursor;
    }
    // Two deducts in three carry texts: none of them lost (live or loaded).
    EXPECT_GE(with_text * 100, seen * 66) << "the test's entries carry texts";
    EXPECT_GT(seen, window / 2);
  }
}

}  // namespace
}  // namespace tally
