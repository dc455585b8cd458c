// PendingRing (tools/bench/pending_ring.h): frames in flight by request id.
#include "tools/bench/pending_ring.h"

#include <cstdint>
#include <iterator>
#include <map>
#include <vector>

#include "gtest/gtest.h"
#include "tools/bench/random.h"

namespace tally::bench {
namespace {

struct Frame {
  uint64_t tag = 0;
  std::vector<int> ops;
};

TEST(PendingRing, InOrderRepliesStayInTheRingAndReuseStorage) {
  PendingRing<Frame> ring(4);
  Frame scratch;
  for (uint64_t id = 1; id <= 4; ++id) {
    scratch.tag = id;
    scratch.ops.assign(3, static_cast<int>(id));
    ring.Insert(id, scratch);
    scratch.ops.clear();
  }
  EXPECT_EQ(ring.size(), 4u);
  for (uint64_t id = 5; id <= 1000; ++id) {
    ASSERT_TRUE(ring.Take(id - 4, scratch));
    EXPECT_EQ(scratch.tag, id - 4);
    EXPECT_EQ(scratch.ops, std::vector<int>(3, static_cast<int>(id - 4)));
    scratch.tag = id;
    scratch.ops.assign(3, static_cast<int>(id));
    ring.Insert(id, scratch);
  }
  EXPECT_EQ(ring.size(), 4u);
  EXPECT_EQ(ring.overflow_size(), 0u);
}

TEST(PendingRing, UnknownAndRepeatedIdsAreNotFound) {
  PendingRing<Frame> ring(2);
  Frame f{.tag = 7};
  ring.Insert(7, f);
  Frame out;
  EXPECT_FALSE(ring.Take(3, out));   // same slot (3 & 3 == 7 & 3), other id
  EXPECT_FALSE(ring.Take(8, out));
  ASSERT_TRUE(ring.Take(7, out));
  EXPECT_EQ(out.tag, 7u);
  EXPECT_FALSE(ring.Take(7, out));
  EXPECT_TRUE(ring.empty());
}

// Replies in any order, including one held back while thousands pass it:
// the ring must answer exactly like a map.
TEST(PendingRing, AnyOrderMatchesAMap) {
  PendingRing<Frame> ring(8);
  std::map<uint64_t, uint64_t> model;  // id -> tag
  Rng rng(42);
  uint64_t next_id = 1;
  Frame scratch;
  bool overflowed = false;
  for (int step = 0; step < 20000; ++step) {
    if (model.size() < 12 && (model.empty() || rng.Below(2) == 0)) {
      scratch.tag = next_id * 31;
      ring.Insert(next_id, scratch);
      model[next_id] = next_id * 31;
      ++next_id;
      overflowed = overflowed || ring.overflow_size() > 0;
    } else {
      // Mostly the oldest, sometimes a random one, never the very first
      // id after step 0 (it stays in flight the whole time).
      auto it = model.begin();
      if (it->first == 1 && model.size() > 1) ++it;
      if (rng.Below(4) == 0) {
        it = model.begin();
        std::advance(it, rng.Below(model.size()));
        if (it->first == 1) continue;
      }
      ASSERT_TRUE(ring.Take(it->first, scratch));
      EXPECT_EQ(scratch.tag, it->second);
      model.erase(it);
    }
    ASSERT_EQ(ring.size(), model.size());
  }
  EXPECT_GT(next_id, 1000u);
  EXPECT_TRUE(overflowed);  // id 1's slot was wanted again while it was held
  std::map<uint64_t, uint64_t> seen;
  ring.ForEach([&](uint64_t id, Frame& f) { seen[id] = f.tag; });
  EXPECT_EQ(seen, model);
  ring.Clear();
  EXPECT_TRUE(ring.empty());
  EXPECT_FALSE(ring.Take(1, scratch));
}

}  // namespace
}  // namespace tally::bench
