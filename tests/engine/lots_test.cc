// lots_test.cc: the lot arithmetic of engine/state.h, against itself.
//
// A deduct sums a wallet's lots (SumLots) and then takes with
// TakeSummedLots, which does the usual case (the first lot that can be
// spent covers the amount) without TakeLots' walk.  That shortcut must do
// exactly what TakeLots does, piece for piece: these tests throw random
// lot arrays (several assets, expired lots, sizes 0..8) and amounts at both
// and compare the lots, the count, the amount taken and every piece.
#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "engine/state.h"
#include "gtest/gtest.h"

namespace tally::engine {
namespace {

constexpr int64_t kNow = 1'000'000;

struct Piece {
  uint64_t grant_id;
  int64_t taken;
  friend bool operator==(const Piece&, const Piece&) = default;
};

// RandomLots: sorted as a wallet keeps them; every remaining > 0.
std::vector<Lot> RandomLots(std::mt19937_64& rng) {
  std::uniform_int_distribution<int> count(0, 8);
  std::uniform_int_distribution<int> asset(0, 2);
  std::uniform_int_distribution<int64_t> remaining(1, 10);
  std::bernoulli_distribution expired(0.25);
  std::vector<Lot> lots(static_cast<size_t>(count(rng)));
  uint64_t grant = 1;
  for (Lot& lot : lots) {
    lot = Lot{grant++, remaining(rng), expired(rng) ? kNow - 5 : kNow + 5, 0,
              static_cast<uint16_t>(asset(rng)), 0};
  }
  std::sort(lots.begin(), lots.end(), SpentBefore);
  return lots;
}

TEST(Lots, SumLotsCountsWhatCanBeSpentAndWhatIsBooked) {
  std::vector<Lot> lots = {
      Lot{1, 5, kNow - 1, 0, 0, 0},   // expired: booked, not available
      Lot{2, 7, kNow + 1, 0, 1, 0},   // another asset
      Lot{3, 11, kNow + 1, 0, 0, 0},  // the first that can be spent
      Lot{4, 13, never_us, 1, 0, 0},
  };
  LotSums sums = SumLots(lots.data(), 4, 0, kNow);
  EXPECT_EQ(sums.available, 24);
  EXPECT_EQ(sums.book, 29);
  EXPECT_EQ(sums.first_spendable, 2u);
  EXPECT_EQ(SumLots(lots.data(), 4, 2, kNow).first_spendable, LotSums::none);
}

TEST(Lots, TakeSummedLotsDoesWhatTakeLotsDoes) {
  std::mt19937_64 rng(20261202);
  int shortcuts = 0;
  for (int trial = 0; trial < 20'000; ++trial) {
    std::vector<Lot> general = RandomLots(rng);
    std::vector<Lot> summed = general;
    const uint16_t asset = static_cast<uint16_t>(rng() % 3);
    const LotSums sums = SumLots(summed.data(), static_cast<uint32_t>(summed.size()), asset, kNow);
    if (sums.available == 0) continue;
    const int64_t amount = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(sums.available));
    if (sums.first_spendable != LotSums::none && summed[sums.first_spendable].remaining > amount) {
      ++shortcuts;
    }

    std::vector<Piece> general_pieces;
    uint32_t general_count = static_cast<uint32_t>(general.size());
    const int64_t general_taken =
        TakeLots(general.data(), general_count, asset, amount, kNow,
                 [&](const Lot& lot, int64_t taken) { general_pieces.push_back({lot.grant_id, taken}); });
    std::vector<Piece> summed_pieces;
    uint32_t summed_count = static_cast<uint32_t>(summed.size());
    const int64_t summed_taken = TakeSummedLots(
        summed.data(), summed_count, sums, asset, amount, kNow,
        [&](const Lot& lot, int64_t taken) { summed_pieces.push_back({lot.grant_id, taken}); });

    ASSERT_EQ(summed_taken, general_taken) << "trial " << trial;
    ASSERT_EQ(summed_taken, amount) << "trial " << trial;
    ASSERT_EQ(summed_pieces, general_pieces) << "trial " << trial;
    ASSERT_EQ(summed_count, general_count) << "trial " << trial;
    for (uint32_t i = 0; i < general_count; ++i) {
      ASSERT_EQ(summed[i].grant_id, general[i].grant_id) << "trial " << trial << " lot " << i;
      ASSERT_EQ(summed[i].remaining, general[i].remaining) << "trial " << trial << " lot " << i;
    }
  }
  // Both ways were exercised: the shortcut and the walk.
  EXPECT_GT(shortcuts, 1000);
}

}  // namespace
}  // namespace tally::engine
