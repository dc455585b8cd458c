// command.h: what changes a ledger (Command), what comes back (Result), and
// what it announces (Event).
//
// A batch of Commands with one timestamp is the unit the engine applies, the
// log records and the protocol carries.  Every field's meaning per command
// kind is in docs/ENGINE.md; the kinds and codes are on-wire and on-disk, so
// they are numbered explicitly, 0 reserved, never reused.
//
// Example: a metered deduct of 3 credits.
//   tally::Command c;
//   c.kind = tally::CommandKind::deduct;
//   c.op_id = 77; c.org_id = 1; c.wallet_id = 42; c.amount = 3;
//   ledger.Apply(now_us, std::span(&c, 1), &out);
//   // out.results[0].code == ResultCode::ok, out.results[0].applied() == 3
#ifndef TALLY_COMMAND_H_
#define TALLY_COMMAND_H_

#include <cstdint>
#include <span>
#include <string_view>

#include "tally/asset.h"
#include "tally/limits.h"
#include "tally/result_code.h"

namespace tally {

// CommandKind names an operation of SPEC §2.
enum class CommandKind : uint8_t {
  org_create = 1,    // org_id, settings (fields marked in settings_mask)
  org_settings = 2,  // org_id, settings (only fields marked in settings_mask)
  topup = 3,         // org_id, asset, amount, expires_at_us, priority, text
  allocate = 4,      // org_id, asset, targets or (all_wallets, amount), text
  reclaim = 5,       // org_id, wallet_id, asset, amount or (all), text
  grant = 6,         // org_id, wallet_id, asset, amount, expires_at_us, priority, text
  void_grant = 7,    // org_id, target_id = grant id, text = reason
  adjust = 8,        // org_id, wallet_id, asset, amount (delta, or target with
                     // flag_target), expires_at_us, priority, text
  deduct = 9,        // org_id, wallet_id, asset, amount, flag_partial, text
  hold = 10,         // org_id, wallet_id, asset, amount, flag_partial,
                     // expires_at_us = timeout (0 none), text
  capture = 11,      // org_id, target_id = hold id, amount
  release = 12,      // org_id, target_id = hold id
  request = 13,      // org_id, wallet_id, asset, amount, text
  approve = 14,      // org_id, target_id = request id, amount (0: as asked);
                     // with flag_all: every pending request, all or nothing
  reject = 15,       // org_id, target_id = request id, text = why;
                     // with flag_all: every pending request
  wallet_upsert = 16,  // org_id, wallet_id, text = label
  wallet_delete = 17,  // org_id, wallet_id
  expire_sweep = 18,   // nothing: expire lots and time out holds, bounded
};

inline constexpr uint8_t command_kind_max = 18;

// Command flags.
inline constexpr uint8_t flag_partial = 1 << 0;  // deduct, hold: take what is there
inline constexpr uint8_t flag_all = 1 << 1;      // allocate to every wallet; reclaim
                                                 // everything; approve/reject all
inline constexpr uint8_t flag_target = 1 << 2;   // adjust: amount is the new balance

// OrgSettings are an org's settings (SPEC §1).
struct OrgSettings {
  bool credit_payments = true;
  int64_t low_balance_threshold = 0;  // 0 = no balance.low events
  int64_t expiring_soon_window_us = expiring_soon_window_us_default;
  // When > 0, deducts are recorded rolled up per wallet per interval: one
  // history entry per wallet, asset and interval instead of one each.
  int64_t deduct_rollup_interval_us = 0;
};

// Which OrgSettings fields an org_create / org_settings command sets.
inline constexpr uint8_t setting_credit_payments = 1 << 0;
inline constexpr uint8_t setting_low_balance_threshold = 1 << 1;
inline constexpr uint8_t setting_expiring_soon_window = 1 << 2;
inline constexpr uint8_t setting_deduct_rollup_interval = 1 << 3;
inline constexpr uint8_t settings_all = 0x0f;

// WalletAmount is one target of an allocate.
struct WalletAmount {
  uint64_t wallet_id = 0;
  int64_t amount = 0;
};

// Command is one changing operation.  It does not own its text or targets:
// they live as long as the batch (the caller's buffer or the log record).
struct Command {
  CommandKind kind{};
  uint8_t flags = 0;
  uint8_t settings_mask = 0;
  int32_t priority = 0;            // lower is spent first
  uint64_t op_id = 0;              // caller-chosen, nonzero; retries repeat it
  uint64_t org_id = 0;
  uint64_t wallet_id = 0;          // 0 is the org's pool
  uint64_t target_id = 0;          // grant, hold or request id
  Asset asset = Asset::Credits();
  int64_t amount = 0;
  int64_t expires_at_us = 0;       // lot expiry or hold timeout; 0 = never
  OrgSettings settings;
  std::string_view text;           // reason / reference / label
  std::string_view actor;          // who asked (token name, admin)
  std::span<const WalletAmount> targets;  // allocate's list
};

// Result is the outcome of one command.  Its three numbers mean, by kind:
//   refused for a short balance: available, requested, shortfall
//   deduct, capture, hold, reclaim, adjust: applied, remainder, balance_after
//   allocate, approve: pool_before, allocated, pool_after
//   expire_sweep: lots expired, holds released, more_remaining (0/1)
struct Result {
  ResultCode code = ResultCode::ok;
  bool replayed = false;  // a retry: this is the first result, nothing changed
  uint64_t id = 0;        // the grant, hold or request the command created
  int64_t n[3] = {0, 0, 0};

  int64_t available() const { return n[0]; }
  int64_t requested() const { return n[1]; }
  int64_t shortfall() const { return n[2]; }
  int64_t applied() const { return n[0]; }
  int64_t remainder() const { return n[1]; }
  int64_t balance_after() const { return n[2]; }
  int64_t pool_before() const { return n[0]; }
  int64_t allocated() const { return n[1]; }
  int64_t pool_after() const { return n[2]; }
  bool ok() const { return code == ResultCode::ok; }
};

// EventKind names the SPEC's events.
enum class EventKind : uint8_t {
  credits_granted = 1,    // a lot entered a wallet from outside (topup, grant, adjust up)
  credits_allocated = 2,  // pool -> wallet
  credits_expired = 3,
  credits_voided = 4,
  balance_low = 5,        // available crossed the org's threshold downward
  balance_depleted = 6,   // available reached zero
  request_created = 7,
  request_approved = 8,
  request_rejected = 9,
};

std::string_view EventKindName(EventKind kind);  // "credits.granted", ...

// Event is one announcement raised by a command.
struct Event {
  EventKind kind{};
  uint64_t org_id = 0;
  uint64_t wallet_id = 0;
  uint64_t id = 0;  // grant or request id, where there is one
  Asset asset;
  int64_t amount = 0;
  int64_t balance_after = 0;  // the wallet's available balance afterwards
  int64_t time_us = 0;
};

}  // namespace tally

#endif  // TALLY_COMMAND_H_
