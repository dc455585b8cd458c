#include "tally/result_code.h"

#include <array>
#include <utility>

namespace tally {
namespace {

constexpr std::array<std::pair<ResultCode, std::string_view>, 27> kNames = {{
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
    {ResultCode::org_exists, "org_exists"},
    {ResultCode::invalid_operation_id, "invalid_operation_id"},
    {ResultCode::invalid_command, "invalid_command"},
    {ResultCode::invalid_wallet, "invalid_wallet"},
    {ResultCode::invalid_asset, "invalid_asset"},
    {ResultCode::invalid_time, "invalid_time"},
    {ResultCode::invalid_settings, "invalid_settings"},
    {ResultCode::grant_voided, "grant_voided"},
    {ResultCode::limit_exceeded, "limit_exceeded"},
    {ResultCode::amount_overflow, "amount_overflow"},
    {ResultCode::unavailable, "unavailable"},
    {ResultCode::shutting_down, "shutting_down"},
}};

}  // namespace

std::string_view ResultCodeName(ResultCode code) {
  for (const auto& [c, name] : kNames) {
    if (c == code) return name;
  }
  return "unknown_result_code";
}

std::optional<ResultCode> ParseResultCode(std::string_view name) {
  for (const auto& [c, n] : kNames) {
    if (n == name) return c;
  }
  return std::nullopt;
}

}  // namespace tally
