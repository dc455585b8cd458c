// The CLI's argument parsers: what they accept, and that everything else is
// refused with a message naming the value.
#include "tools/cli/parse.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

namespace tally::cli {
namespace {

constexpr int64_t s_us = 1000000;

TEST(ParseAmount, AcceptsPlainPositiveIntegers) {
  EXPECT_EQ(ParseAmount("1", "AMOUNT").value(), 1);
  EXPECT_EQ(ParseAmount("250", "AMOUNT").value(), 250);
  EXPECT_EQ(ParseAmount("9223372036854775807", "AMOUNT").value(), INT64_MAX);
}

TEST(ParseAmount, RefusesEverythingElseNamingTheArgument) {
  for (const char* bad : {"", "0", "-5", "+5", "1.5", "1,000", " 5", "5 ", "5x", "0x10", "1e3",
                          "9223372036854775808", "99999999999999999999"}) {
    absl::StatusOr<int64_t> v = ParseAmount(bad, "AMOUNT");
    EXPECT_FALSE(v.ok()) << bad;
    EXPECT_NE(v.status().message().find("AMOUNT"), std::string_view::npos) << v.status();
  }
  EXPECT_NE(ParseAmount("1.5", "AMOUNT").status().message().find("whole number"),
            std::string_view::npos);
}

TEST(ParseAmount, SignedAndNonNegativeVariants) {
  EXPECT_EQ(ParseSignedAmount("-40", "--by").value(), -40);
  EXPECT_EQ(ParseSignedAmount("+40", "--by").value(), 40);
  EXPECT_EQ(ParseSignedAmount("-9223372036854775807", "--by").value(), -INT64_MAX);
  EXPECT_FALSE(ParseSignedAmount("0", "--by").ok());
  EXPECT_FALSE(ParseSignedAmount("-", "--by").ok());
  EXPECT_FALSE(ParseSignedAmount("--4", "--by").ok());
  EXPECT_EQ(ParseNonNegative("0", "--to").value(), 0);
  EXPECT_FALSE(ParseNonNegative("-1", "--to").ok());
}

TEST(ParseId, UnsignedSixtyFourBitDecimal) {
  EXPECT_EQ(ParseId("0", "WALLET").value(), 0u);
  EXPECT_EQ(ParseId("18446744073709551615", "ORG").value(), UINT64_MAX);
  EXPECT_FALSE(ParseId("18446744073709551616", "ORG").ok());
  EXPECT_FALSE(ParseId("-1", "ORG").ok());
  EXPECT_FALSE(ParseId("abc", "ORG").ok());
  EXPECT_FALSE(ParseNonzeroId("0", "ORG").ok());
  EXPECT_EQ(ParseWallet("pool", "WALLET").value(), 0u);
  EXPECT_FALSE(ParseUserWallet("pool", "WALLET").ok());
  EXPECT_FALSE(ParseUserWallet("0", "WALLET").ok());
  EXPECT_EQ(ParseUserWallet("42", "WALLET").value(), 42u);
}

TEST(ParseTime, Rfc3339InUtcAndWithOffsets) {
  EXPECT_EQ(ParseTime("1970-01-01T00:00:00Z", "--at").value(), 0);
  EXPECT_EQ(ParseTime("2026-12-02T11:34:09Z", "--at").value(), 1796211249 * s_us);
  EXPECT_EQ(ParseTime("2026-12-02t11:34:09z", "--at").value(), 1796211249 * s_us);
  EXPECT_EQ(ParseTime("2026-12-02 11:34:09Z", "--at").value(), 1796211249 * s_us);
  EXPECT_EQ(ParseTime("2026-12-02T12:34:09+01:00", "--at").value(), 1796211249 * s_us);
  EXPECT_EQ(ParseTime("2026-12-02T06:04:09-05:30", "--at").value(), 1796211249 * s_us);
  EXPECT_EQ(ParseTime("2026-12-02T11:34:09.25Z", "--at").value(), 1796211249 * s_us + 250000);
  EXPECT_EQ(ParseTime("2026-12-02T11:34:09.123456789Z", "--at").value(),
            1796211249 * s_us + 123456);
  EXPECT_EQ(ParseTime("2024-02-29T00:00:00Z", "--at").value(), 1709164800 * s_us);
}

TEST(ParseTime, BareDateIsMidnightUtc) {
  EXPECT_EQ(ParseTime("2026-12-02", "--from").value(), 1796169600 * s_us);
}

TEST(ParseTime, RefusesWhatIsNotACalendarTime) {
  for (const char* bad :
       {"", "2026", "2026-13-01", "2026-02-29", "2023-02-29T00:00:00Z", "2026-12-32",
        "2026-12-02T24:00:00Z", "2026-12-02T11:60:00Z", "2026-12-02T11:34:09", "2026-12-02T11:34Z",
        "2026-12-02T11:34:09.Z", "2026-12-02T11:34:09+0100", "2026-12-02T11:34:09Zjunk", "tomorrow",
        "1969-12-31T23:59:59Z", "12/02/2026"}) {
    EXPECT_FALSE(ParseTime(bad, "--at").ok()) << bad;
  }
}

TEST(FormatTime, RoundTripsAtMillisecondResolution) {
  EXPECT_EQ(FormatTime(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatTime(1796211249 * s_us + 250999), "2026-12-02T11:34:09.250Z");
  for (int64_t t : {int64_t{0}, 1709164800 * s_us + 1000, 4102444799 * s_us + 999000}) {
    EXPECT_EQ(ParseTime(FormatTime(t), "t").value(), t);
  }
}

TEST(ParseDuration, UnitsAndSums) {
  EXPECT_EQ(ParseDuration("90d", "--expires-in").value(), 90 * 86400 * s_us);
  EXPECT_EQ(ParseDuration("12h", "x").value(), 12 * 3600 * s_us);
  EXPECT_EQ(ParseDuration("30m", "x").value(), 30 * 60 * s_us);
  EXPECT_EQ(ParseDuration("45s", "x").value(), 45 * s_us);
  EXPECT_EQ(ParseDuration("2w", "x").value(), 14 * 86400 * s_us);
  EXPECT_EQ(ParseDuration("1h30m", "x").value(), 5400 * s_us);
  for (const char* bad : {"", "0d", "90", "d", "90x", "1.5h", "-1d", "1h30", "99999999999999d",
                          "1000000000000000000000s"}) {
    EXPECT_FALSE(ParseDuration(bad, "x").ok()) << bad;
  }
  EXPECT_EQ(FormatDuration(30 * 86400 * s_us), "30d");
  EXPECT_EQ(FormatDuration(90 * 60 * s_us), "90m");
  EXPECT_EQ(FormatDuration(0), "0");
}

TEST(ParseTargets, WalletAmountPairs) {
  std::vector<WalletAmount> t = ParseTargets("42=50,43=20,42=1").value();
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].wallet_id, 42u);
  EXPECT_EQ(t[0].amount, 50);
  EXPECT_EQ(t[1].wallet_id, 43u);
  EXPECT_EQ(t[2].amount, 1);
  for (const char* bad :
       {"", "42", "42=", "=5", "0=5", "pool=5", "42=0", "42=-1", "42=5,", "42=5,,43=1", "a=1"}) {
    EXPECT_FALSE(ParseTargets(bad).ok()) << bad;
  }
}

TEST(ParseTargets, RefusesMoreThanOneAllocationMayCarry) {
  std::string many;
  for (uint32_t i = 1; i <= allocate_targets_max + 1; ++i) {
    if (i > 1) many.push_back(',');
    many.append(std::to_string(i));
    many.append("=1");
  }
  EXPECT_FALSE(ParseTargets(many).ok());
}

TEST(ParseKinds, NamesToMask) {
  EXPECT_EQ(ParseKinds("deduct").value(), 1u << 7);
  EXPECT_EQ(ParseKinds("deduct,topup,void").value(), (1u << 7) | (1u << 1) | (1u << 5));
  absl::StatusOr<uint32_t> bad = ParseKinds("deduct,spend");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("spend"), std::string_view::npos);
  EXPECT_NE(bad.status().message().find("wallet_delete"), std::string_view::npos);
  EXPECT_FALSE(ParseKinds("").ok());
}

TEST(ParseSmall, OnOffAssetStatus) {
  EXPECT_TRUE(ParseOnOff("on", "x").value());
  EXPECT_FALSE(ParseOnOff("off", "x").value());
  EXPECT_FALSE(ParseOnOff("maybe", "x").ok());
  EXPECT_EQ(ParseAsset("USD").value().name(), "USD");
  EXPECT_FALSE(ParseAsset("US D").ok());
  EXPECT_FALSE(ParseAsset("").ok());
  EXPECT_EQ(ParseRequestStatus("approved").value(), RequestStatus::approved);
  EXPECT_FALSE(ParseRequestStatus("done").ok());
}

TEST(ParseServer, HostColonPort) {
  EXPECT_TRUE(ParseServer("127.0.0.1:7411", "--server").ok());
  EXPECT_TRUE(ParseServer("ledger.internal:1", "--server").ok());
  EXPECT_TRUE(ParseServer("[::1]:7411", "--server").ok());
  for (const char* bad :
       {"", "localhost", ":7411", "host:", "host:0", "host:65536", "host:http", "::1:7411"}) {
    absl::Status s = ParseServer(bad, "TALLY_SERVER");
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("TALLY_SERVER"), absl::string_view::npos) << s;
  }
}

TEST(SplitArgs, PositionalsOptionsAndSwitches) {
  std::vector<OptionSpec> specs = {{"to"}, {"partial", false}, {"by"}};
  Args a = SplitArgs({"7", "--to", "42=5", "42", "--partial", "--by=-3"}, specs).value();
  EXPECT_EQ(a.positionals, (std::vector<std::string>{"7", "42"}));
  EXPECT_EQ(*a.Get("to"), "42=5");
  EXPECT_EQ(*a.Get("by"), "-3");
  EXPECT_TRUE(a.Has("partial"));
  // A value may start with a dash; a negative positional after -- too.
  Args b = SplitArgs({"--by", "-3", "--", "--not-an-option"}, specs).value();
  EXPECT_EQ(*b.Get("by"), "-3");
  EXPECT_EQ(b.positionals, (std::vector<std::string>{"--not-an-option"}));
}

TEST(SplitArgs, RefusesUnknownRepeatedAndValueless) {
  std::vector<OptionSpec> specs = {{"to"}, {"partial", false}};
  EXPECT_FALSE(SplitArgs({"--from", "x"}, specs).ok());
  EXPECT_FALSE(SplitArgs({"--to", "1", "--to", "2"}, specs).ok());
  EXPECT_FALSE(SplitArgs({"--to"}, specs).ok());
  EXPECT_FALSE(SplitArgs({"--partial=yes"}, specs).ok());
  EXPECT_FALSE(SplitArgs({"-p"}, specs).ok());
}

TEST(TokenFromFile, FirstAdminTokenSkippingCommentsAndOtherRoles) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("tally-cli-tokens-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::path path = dir / "tokens";
  {
    std::ofstream f(path);
    f << "# tokens\n\nsvc1 service meter 7,8\nabc123 admin admin\nzzz admin second\n";
  }
  EXPECT_EQ(TokenFromFile(path.string()).value(), "abc123");
  {
    std::ofstream f(path);
    f << "ro read dashboards\n";
  }
  EXPECT_EQ(TokenFromFile(path.string()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(TokenFromFile((dir / "missing").string()).status().code(), absl::StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

TEST(NewOpId, NonzeroFiftyThreeBitsAndFresh) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    uint64_t id = NewOpId();
    EXPECT_NE(id, 0u);
    EXPECT_LT(id, uint64_t{1} << 53);
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
}  // namespace tally::cli
