// asset_test.cc: asset codes pack into two words and come back unchanged.
#include "tally/asset.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

namespace tally {
namespace {

TEST(Asset, ParseNameRoundTrips) {
  for (std::string_view name :
       {"credits", "USD", "EUR", "api_calls", "gb", "a", "Z", "0", "_", "A1_b2_C3", "12345678",
        "123456789", "api_calls_total", "abcdefghijklmnop"}) {
    std::optional<Asset> asset = Asset::Parse(name);
    ASSERT_TRUE(asset.has_value()) << name;
    EXPECT_EQ(asset->name(), name);
    EXPECT_TRUE(asset->Valid()) << name;
    EXPECT_FALSE(asset->empty());
    Asset again = Asset::FromPacked(asset->lo(), asset->hi());
    EXPECT_EQ(again, *asset);
    EXPECT_EQ(again.name(), name);
    EXPECT_TRUE(again.Valid());
  }
}

TEST(Asset, PacksLittleEndianWithZeroPadding) {
  EXPECT_EQ(Asset::Parse("A")->lo(), uint64_t{'A'});
  EXPECT_EQ(Asset::Parse("A")->hi(), 0u);
  EXPECT_EQ(Asset::Parse("USD")->lo(), uint64_t{'U'} | uint64_t{'S'} << 8 | uint64_t{'D'} << 16);
  EXPECT_EQ(Asset::Parse("abcdefgh")->lo(), 0x6867666564636261u);
  EXPECT_EQ(Asset::Parse("abcdefgh")->hi(), 0u);
  // Characters 8-15 go to the second word.
  std::optional<Asset> calls = Asset::Parse("api_calls");
  ASSERT_TRUE(calls.has_value());
  EXPECT_EQ(calls->lo(), Asset::Parse("api_call")->lo());
  EXPECT_EQ(calls->hi(), uint64_t{'s'});
  EXPECT_EQ(Asset::Parse("abcdefghijklmnop")->hi(), 0x706f6e6d6c6b6a69u);
}

TEST(Asset, CreditsIsTheDefaultCode) {
  // A compile-time constant: "credits" packed little-endian into lo.
  static_assert(Asset::Credits() == Asset::FromPacked(0x0073746964657263));
  EXPECT_EQ(Asset::Credits().name(), "credits");
  EXPECT_EQ(Asset::Credits(), Asset::Parse("credits").value());
  EXPECT_TRUE(Asset::Credits().Valid());
}

TEST(Asset, ParseRefusesEmptyOverLongAndIllCharacteredCodes) {
  const std::vector<std::string> refused = {"",
                                            std::string(Asset::name_bytes_max + 1, 'a'),
                                            "abcdefghijklmnopq",
                                            "US-D",
                                            "U D",
                                            "usd.",
                                            "\xe2\x82\xac",  // the euro sign
                                            "tab\there",
                                            std::string("a\0b", 3),
                                            std::string("abc\0", 4),
                                            "USD\n",
                                            "/",
                                            "\xc3\xa9"};
  for (const std::string& name : refused) {
    EXPECT_FALSE(Asset::Parse(name).has_value()) << "'" << name << "'";
  }
  EXPECT_TRUE(Asset::Parse(std::string(Asset::name_bytes_max, 'a')).has_value());
}

TEST(Asset, CodesAreCaseSensitive) {
  EXPECT_NE(Asset::Parse("usd").value(), Asset::Parse("USD").value());
}

TEST(Asset, ValidRefusesWhatParseCouldNotProduce) {
  EXPECT_FALSE(Asset().Valid()) << "no code at all";
  EXPECT_TRUE(Asset().empty());
  EXPECT_FALSE(Asset::FromPacked(0).Valid());
  EXPECT_FALSE(Asset::FromPacked(0, 0).Valid());
  // A hole in the middle: "a\0b".
  EXPECT_FALSE(Asset::FromPacked(uint64_t{'a'} | uint64_t{'b'} << 16).Valid());
  // A leading zero byte.
  EXPECT_FALSE(Asset::FromPacked(uint64_t{'a'} << 8).Valid());
  // A short first word followed by a second: a hole across the words.
  EXPECT_FALSE(Asset::FromPacked(uint64_t{'a'}, uint64_t{'b'}).Valid());
  // Nothing in the first word, something in the second.
  EXPECT_FALSE(Asset::FromPacked(0, uint64_t{'b'}).Valid());
  // Characters Parse refuses.
  EXPECT_FALSE(Asset::FromPacked(uint64_t{'-'}).Valid());
  EXPECT_FALSE(Asset::FromPacked(uint64_t{' '}).Valid());
  EXPECT_FALSE(Asset::FromPacked(uint64_t{0xff}).Valid());
  EXPECT_FALSE(Asset::FromPacked(~uint64_t{0}, ~uint64_t{0}).Valid());
  EXPECT_FALSE(Asset::FromPacked(0x6867666564636261u, uint64_t{'-'}).Valid());
  // Eight or sixteen full characters are fine.
  EXPECT_TRUE(Asset::FromPacked(0x6867666564636261u).Valid());
  EXPECT_TRUE(Asset::FromPacked(0x6867666564636261u, 0x6867666564636261u).Valid());
}

TEST(Asset, EveryValidSingleByteCodeRoundTrips) {
  int valid = 0;
  for (int c = 1; c < 256; ++c) {
    Asset packed = Asset::FromPacked(static_cast<uint64_t>(c));
    std::string name(1, static_cast<char>(c));
    std::optional<Asset> parsed = Asset::Parse(name);
    EXPECT_EQ(packed.Valid(), parsed.has_value()) << "byte " << c;
    if (parsed.has_value()) {
      ++valid;
      EXPECT_EQ(*parsed, packed);
      EXPECT_EQ(parsed->name(), name);
    }
  }
  EXPECT_EQ(valid, 26 + 26 + 10 + 1) << "[A-Za-z0-9_]";
}

TEST(Asset, OrdersByItsWords) {
  Asset a = Asset::FromPacked(1);
  Asset b = Asset::FromPacked(2);
  EXPECT_TRUE(a < b);
  EXPECT_FALSE(b < a);
  EXPECT_FALSE(a < a);
  EXPECT_TRUE(Asset::FromPacked(1, 1) < Asset::FromPacked(1, 2));
  EXPECT_TRUE(Asset::FromPacked(1, 9) < Asset::FromPacked(2, 0));
  EXPECT_NE(Asset::FromPacked(1, 1), Asset::FromPacked(1, 2));
}

}  // namespace
}  // namespace tally
