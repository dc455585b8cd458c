// result_code_test.cc: result code names are a contract (SPEC §5).
#include "tally/result_code.h"

#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "gtest/gtest.h"
#include "tally/command.h"
#include "tally/query.h"

namespace tally {
namespace {

constexpr std::string_view kUnknown = "unknown_result_code";

bool IsSnakeCase(std::string_view name) {
  if (name.empty() || !(name.front() >= 'a' && name.front() <= 'z')) return false;
  if (name.back() == '_') return false;
  char previous = 0;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok || (c == '_' && previous == '_')) return false;
    previous = c;
  }
  return true;
}

// Every code that has a name, found by walking the whole value range.
std::set<uint16_t> NamedCodes() {
  std::set<uint16_t> codes;
  for (uint32_t v = 0; v <= 0xffff; ++v) {
    if (ResultCodeName(static_cast<ResultCode>(v)) != kUnknown) codes.insert(uint16_t(v));
  }
  return codes;
}

TEST(ResultCode, EveryNameRoundTripsThroughParse) {
  std::set<uint16_t> codes = NamedCodes();
  ASSERT_FALSE(codes.empty());
  for (uint16_t v : codes) {
    ResultCode code = static_cast<ResultCode>(v);
    std::string_view name = ResultCodeName(code);
    std::optional<ResultCode> parsed = ParseResultCode(name);
    ASSERT_TRUE(parsed.has_value()) << name;
    EXPECT_EQ(*parsed, code) << name;
  }
}

TEST(ResultCode, NamesAreUniqueSnakeCase) {
  std::set<std::string_view> names;
  for (uint16_t v : NamedCodes()) {
    std::string_view name = ResultCodeName(static_cast<ResultCode>(v));
    EXPECT_TRUE(IsSnakeCase(name)) << name;
    EXPECT_TRUE(names.insert(name).second) << name << " twice";
  }
}

TEST(ResultCode, ValuesAreContiguousFromOneAndZeroIsReserved) {
  std::set<uint16_t> codes = NamedCodes();
  EXPECT_EQ(codes.count(0), 0u) << "0 is reserved: a zeroed result is not success";
  ASSERT_FALSE(codes.empty());
  EXPECT_EQ(*codes.begin(), 1);
  EXPECT_EQ(*codes.rbegin(), codes.size()) << "no gaps: every value has a name";
  EXPECT_EQ(static_cast<uint16_t>(ResultCode::ok), 1);
  EXPECT_EQ(static_cast<uint16_t>(ResultCode::shutting_down), codes.size());
}

TEST(ResultCode, TheSpecsNamesAreThere) {
  // SPEC §5: scripts rely on these exact names.
  const std::pair<ResultCode, std::string_view> spec[] = {
      {ResultCode::ok, "ok"},
      {ResultCode::insufficient_funds, "insufficient_funds"},
      {ResultCode::insufficient_pool, "insufficient_pool"},
      {ResultCode::credit_payments_disabled, "credit_payments_disabled"},
      {ResultCode::invalid_amount, "invalid_amount"},
      {ResultCode::unknown_org, "unknown_org"},
      {ResultCode::unknown_wallet, "unknown_wallet"},
      {ResultCode::unknown_grant, "unknown_grant"},
      {ResultCode::unknown_hold, "unknown_hold"},
      {ResultCode::unknown_request, "unknown_request"},
      {ResultCode::already_decided, "already_decided"},
      {ResultCode::hold_expired, "hold_expired"},
      {ResultCode::unauthenticated, "unauthenticated"},
      {ResultCode::forbidden, "forbidden"},
      {ResultCode::malformed_frame, "malformed_frame"},
  };
  for (const auto& [code, name] : spec) {
    EXPECT_EQ(ResultCodeName(code), name);
    EXPECT_EQ(ParseResultCode(name), code);
  }
}

TEST(ResultCode, ParseRefusesWhatIsNotAName) {
  for (std::string_view name : {"", "OK", "Ok", " ok", "ok ", "insufficient-funds",
                                "unknown_result_code", "insufficient_fund", "ok\n"}) {
    EXPECT_FALSE(ParseResultCode(name).has_value()) << "'" << name << "'";
  }
  EXPECT_FALSE(ParseResultCode(std::string_view("ok\0", 3)).has_value());
}

TEST(ResultCode, UnknownValuesHaveAPlaceholderName) {
  EXPECT_EQ(ResultCodeName(static_cast<ResultCode>(0)), kUnknown);
  EXPECT_EQ(ResultCodeName(static_cast<ResultCode>(0xffff)), kUnknown);
}

// The other on-wire names scripts and webhooks read.
TEST(Names, EventNamesAreTheSpecsDottedNames) {
  const std::pair<EventKind, std::string_view> spec[] = {
      {EventKind::credits_granted, "credits.granted"},
      {EventKind::credits_allocated, "credits.allocated"},
      {EventKind::credits_expired, "credits.expired"},
      {EventKind::credits_voided, "credits.voided"},
      {EventKind::balance_low, "balance.low"},
      {EventKind::balance_depleted, "balance.depleted"},
      {EventKind::request_created, "request.created"},
      {EventKind::request_approved, "request.approved"},
      {EventKind::request_rejected, "request.rejected"},
  };
  for (const auto& [kind, name] : spec) EXPECT_EQ(EventKindName(kind), name);
}

TEST(Names, HistoryKindNamesAreUniqueSnakeCase) {
  std::set<std::string_view> names;
  for (uint8_t k = 1; k <= history_kind_max; ++k) {
    std::string_view name = HistoryKindName(static_cast<HistoryKind>(k));
    EXPECT_TRUE(IsSnakeCase(name)) << int(k) << ": " << name;
    EXPECT_NE(name, "unknown_kind") << int(k);
    EXPECT_TRUE(names.insert(name).second) << name << " twice";
  }
  EXPECT_EQ(HistoryKindName(HistoryKind::deduct), "deduct");
  EXPECT_EQ(RequestStatusName(RequestStatus::pending), "pending");
  EXPECT_EQ(RequestStatusName(RequestStatus::approved), "approved");
  EXPECT_EQ(RequestStatusName(RequestStatus::rejected), "rejected");
}

}  // namespace
}  // namespace tally
