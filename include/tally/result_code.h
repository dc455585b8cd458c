// result_code.h: every refusal tally can give, named once.
//
// A ResultCode is what a caller can cause: it travels as a value (on the wire,
// in the log's results, in the CLI's `{"error": ...}`), never as an exception.
// The snake_case names are part of the contract (SPEC §5): scripts parse them.
// Values are on-wire and on-disk: numbered explicitly, 0 reserved, never
// reused.  Which codes a client may retry is written down in docs/ENGINE.md.
//
// Example:
//   tally::ResultCode code = ...;
//   if (code != tally::ResultCode::ok) std::puts(tally::ResultCodeName(code));
#ifndef TALLY_RESULT_CODE_H_
#define TALLY_RESULT_CODE_H_

#include <cstdint>
#include <optional>
#include <string_view>

namespace tally {

// ResultCode is the outcome of one command.
enum class ResultCode : uint16_t {
  // 0 is reserved: a zeroed result is never mistaken for success.
  ok = 1,
  insufficient_funds = 2,
  insufficient_pool = 3,
  credit_payments_disabled = 4,
  invalid_amount = 5,
  unknown_org = 6,
  unknown_wallet = 7,
  unknown_grant = 8,
  unknown_hold = 9,
  unknown_request = 10,
  already_decided = 11,
  hold_expired = 12,
  unauthenticated = 13,
  forbidden = 14,
  malformed_frame = 15,
  // Engine-level refusals beyond the SPEC's list.
  org_exists = 16,           // org create for an id already taken
  invalid_operation_id = 17, // operation id 0
  invalid_command = 18,      // unknown kind or fields that do not fit it
  invalid_wallet = 19,       // the pool (wallet 0) where a user wallet is needed
  invalid_asset = 20,        // asset code empty or not [a-z A-Z 0-9 _]
  invalid_time = 21,         // expiry or timeout not after the batch time
  invalid_settings = 22,     // negative threshold or window
  grant_voided = 23,         // void of a grant already voided
  limit_exceeded = 24,       // a documented limit (lots, assets, list length)
  amount_overflow = 25,      // a sum would leave int64
  // Server-level refusals: the command was not applied.
  unavailable = 26,          // the shard cannot make changes durable (disk failure)
  shutting_down = 27,        // the server is stopping; retry on another start
};

// ResultCodeName returns the snake_case name, or "unknown_result_code".
std::string_view ResultCodeName(ResultCode code);

// ParseResultCode maps a name back to its code.
std::optional<ResultCode> ParseResultCode(std::string_view name);

}  // namespace tally

#endif  // TALLY_RESULT_CODE_H_
