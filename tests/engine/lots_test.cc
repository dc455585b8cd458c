// lots_test.cc: the lot arithmetic of engine/state.h against a naive model.
//
// TakeLots does the usual deduct (the first lot can be spent and covers
// the amount) in a shortcut before its walk over the lots.  Both must do
// what SPEC §1 says, piece for piece: these tests throw random lot arrays
// (several assets, expired lots, 0..8 lots, amounts that empty lots and
// amounts that do not) at TakeLots and at a model written the obvious way,
// and compare the pieces taken, the lots left and the amount taken.
#include <algorithm>
#include <cstdint>
#include <random>
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

// ModelTake: walk the lots in order, take from each unexpired lot of the
// asset until `amount` is taken, then keep every lot that is not empty.
int64_t ModelTake(std::vector<Lot>& lots, uint16_t asset, int64_t amount,
                  std::vector<Piece>* pieces) {
  int64_t taken = 0;
  for (Lot& lot : lots) {
    if (taken == amount) break;
    if (lot.asset != asset || lot.expires_at_us <= kNow) continue;
    int64_t piece = std::min(lot.remaining, amount - taken);
    pieces->push_back({lot.grant_id, piece});
    lot.remaining -= piece;
    taken += piece;
  }
  std::erase_if(lots, [](const Lot& lot) { return lot.remaining == 0; });
  return taken;
}

TEST(Lots, SumLotsCountsWhatCanBeSpentAndWhatIsBooked) {
  std::vector<Lot> lots = {
      Lot{1, 5, kNow - 1, 0, 0, 0},   // expired: booked, not available
      Lot{2, 7, kNow + 1, 0, 1, 0},   // another asset
      Lot{3, 11, kNow + 1, 0, 0, 0},
      Lot{4, 13, never_us, 1, 0, 0},
  };
  LotSums sums = SumLots(lots.data(), 4, 0, kNow);
  EXPECT_EQ(sums.available, 24);
  EXPECT_EQ(sums.book, 29);
  EXPECT_EQ(SumLots(lots.data(), 4, 2, kNow).book, 0);
}

TEST(Lots, TakeLotsTakesInOrderAndDropsEmptiedLots) {
  std::mt19937_64 rng(20261202);
  int shortcuts = 0;
  int walks = 0;
  for (int trial = 0; trial < 20'000; ++trial) {
    std::vector<Lot> lots = RandomLots(rng);
    std::vector<Lot> model = lots;
    const uint16_t asset = static_cast<uint16_t>(rng() % 3);
    const int64_t available =
        SumLots(lots.data(), static_cast<uint32_t>(lots.size()), asset, kNow).available;
    // Up to a bit more than there is: TakeLots takes what is there.
    const int64_t amount = 1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(available + 3));
    const bool shortcut = !lots.empty() && lots[0].asset == asset &&
                          lots[0].expires_at_us > kNow && lots[0].remaining > amount;
    (shortcut ? shortcuts : walks)++;

    std::vector<Piece> pieces;
    uint32_t count = static_cast<uint32_t>(lots.size());
    const int64_t taken = TakeLots(lots.data(), count, asset, amount, kNow,
                                   [&](const Lot& lot, int64_t piece) {
                                     pieces.push_back({lot.grant_id, piece});
                                   });
    lots.resize(count);
    std::vector<Piece> model_pieces;
    const int64_t model_taken = ModelTake(model, asset, amount, &model_pieces);

    ASSERT_EQ(taken, model_taken) << "trial " << trial;
    ASSERT_EQ(taken, std::min(amount, available)) << "trial " << trial;
    ASSERT_EQ(pieces, model_pieces) << "trial " << trial;
    ASSERT_EQ(lots.size(), model.size()) << "trial " << trial;
    for (size_t i = 0; i < lots.size(); ++i) {
      ASSERT_EQ(lots[i].grant_id, model[i].grant_id) << "trial " << trial << " lot " << i;
      ASSERT_EQ(lots[i].remaining, model[i].remaining) << "trial " << trial << " lot " << i;
    }
  }
  // Both ways were exercised: the shortcut and the walk.
  EXPECT_GT(shortcuts, 500);
  EXPECT_GT(walks, 1000);
}

}  // namespace
}  // namespace tally::engine
