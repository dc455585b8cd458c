// commands.h: a function per command kind, to build a Command by name.
//
// Fields not named keep their defaults; op_id stays 0, so the caller sets it
// (a client picks a fresh one, a test harness counts).  Like every Command,
// the result does not own its texts or targets: keep them alive until the
// command is applied or encoded.
//
// Example:
//   tally::Command c = tally::cmd::Deduct(/*org=*/7, /*wallet=*/42, /*amount=*/3);
//   c.op_id = 1001;
#ifndef TALLY_COMMANDS_H_
#define TALLY_COMMANDS_H_

#include <cstdint>
#include <span>
#include <string_view>

#include "tally/asset.h"
#include "tally/command.h"

namespace tally::cmd {

inline Command OrgCreate(uint64_t org, const OrgSettings& settings = {},
                         uint8_t mask = settings_all) {
  Command c;
  c.kind = CommandKind::org_create;
  c.org_id = org;
  c.settings = settings;
  c.settings_mask = mask;
  return c;
}

inline Command OrgSettingsCmd(uint64_t org, const OrgSettings& settings, uint8_t mask) {
  Command c;
  c.kind = CommandKind::org_settings;
  c.org_id = org;
  c.settings = settings;
  c.settings_mask = mask;
  return c;
}

inline Command Topup(uint64_t org, int64_t amount, int64_t expires_at_us = 0, int32_t priority = 0,
                     Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::topup;
  c.org_id = org;
  c.amount = amount;
  c.expires_at_us = expires_at_us;
  c.priority = priority;
  c.asset = asset;
  return c;
}

inline Command Grant(uint64_t org, uint64_t wallet, int64_t amount, int64_t expires_at_us = 0,
                     int32_t priority = 0, Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::grant;
  c.org_id = org;
  c.wallet_id = wallet;
  c.amount = amount;
  c.expires_at_us = expires_at_us;
  c.priority = priority;
  c.asset = asset;
  return c;
}

inline Command Allocate(uint64_t org, std::span<const WalletAmount> targets,
                        Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::allocate;
  c.org_id = org;
  c.targets = targets;
  c.asset = asset;
  return c;
}

inline Command AllocateAll(uint64_t org, int64_t amount_each, Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::allocate;
  c.flags = flag_all;
  c.org_id = org;
  c.amount = amount_each;
  c.asset = asset;
  return c;
}

inline Command Reclaim(uint64_t org, uint64_t wallet, int64_t amount,
                       Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::reclaim;
  c.org_id = org;
  c.wallet_id = wallet;
  c.amount = amount;
  c.asset = asset;
  return c;
}

inline Command ReclaimAll(uint64_t org, uint64_t wallet, Asset asset = Asset::Credits()) {
  Command c = Reclaim(org, wallet, 0, asset);
  c.flags = flag_all;
  return c;
}

inline Command VoidGrant(uint64_t org, uint64_t grant_id, std::string_view reason = {}) {
  Command c;
  c.kind = CommandKind::void_grant;
  c.org_id = org;
  c.target_id = grant_id;
  c.text = reason;
  return c;
}

inline Command Adjust(uint64_t org, uint64_t wallet, int64_t delta,
                      Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::adjust;
  c.org_id = org;
  c.wallet_id = wallet;
  c.amount = delta;
  c.asset = asset;
  return c;
}

inline Command AdjustTo(uint64_t org, uint64_t wallet, int64_t target,
                        Asset asset = Asset::Credits()) {
  Command c = Adjust(org, wallet, target, asset);
  c.flags = flag_target;
  return c;
}

inline Command Deduct(uint64_t org, uint64_t wallet, int64_t amount, bool partial = false,
                      Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::deduct;
  c.flags = partial ? flag_partial : 0;
  c.org_id = org;
  c.wallet_id = wallet;
  c.amount = amount;
  c.asset = asset;
  return c;
}

inline Command Hold(uint64_t org, uint64_t wallet, int64_t amount, int64_t timeout_at_us = 0,
                    bool partial = false, Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::hold;
  c.flags = partial ? flag_partial : 0;
  c.org_id = org;
  c.wallet_id = wallet;
  c.amount = amount;
  c.expires_at_us = timeout_at_us;
  c.asset = asset;
  return c;
}

inline Command Capture(uint64_t org, uint64_t hold_id, int64_t amount) {
  Command c;
  c.kind = CommandKind::capture;
  c.org_id = org;
  c.target_id = hold_id;
  c.amount = amount;
  return c;
}

inline Command Release(uint64_t org, uint64_t hold_id) {
  Command c;
  c.kind = CommandKind::release;
  c.org_id = org;
  c.target_id = hold_id;
  return c;
}

inline Command Request(uint64_t org, uint64_t wallet, int64_t amount, std::string_view reason = {},
                       Asset asset = Asset::Credits()) {
  Command c;
  c.kind = CommandKind::request;
  c.org_id = org;
  c.wallet_id = wallet;
  c.amount = amount;
  c.text = reason;
  c.asset = asset;
  return c;
}

inline Command Approve(uint64_t org, uint64_t request_id, int64_t amount = 0,
                       std::string_view actor = {}) {
  Command c;
  c.kind = CommandKind::approve;
  c.org_id = org;
  c.target_id = request_id;
  c.amount = amount;
  c.actor = actor;
  return c;
}

inline Command ApproveAll(uint64_t org, Asset asset = Asset::Credits(),
                          std::string_view actor = {}) {
  Command c;
  c.kind = CommandKind::approve;
  c.flags = flag_all;
  c.org_id = org;
  c.asset = asset;
  c.actor = actor;
  return c;
}

inline Command Reject(uint64_t org, uint64_t request_id, std::string_view why = {},
                      std::string_view actor = {}) {
  Command c;
  c.kind = CommandKind::reject;
  c.org_id = org;
  c.target_id = request_id;
  c.text = why;
  c.actor = actor;
  return c;
}

inline Command RejectAll(uint64_t org, Asset asset = Asset::Credits(), std::string_view why = {}) {
  Command c;
  c.kind = CommandKind::reject;
  c.flags = flag_all;
  c.org_id = org;
  c.asset = asset;
  c.text = why;
  return c;
}

inline Command WalletUpsert(uint64_t org, uint64_t wallet, std::string_view label = {}) {
  Command c;
  c.kind = CommandKind::wallet_upsert;
  c.org_id = org;
  c.wallet_id = wallet;
  c.text = label;
  return c;
}

inline Command WalletDelete(uint64_t org, uint64_t wallet) {
  Command c;
  c.kind = CommandKind::wallet_delete;
  c.org_id = org;
  c.wallet_id = wallet;
  return c;
}

inline Command Sweep() {
  Command c;
  c.kind = CommandKind::expire_sweep;
  return c;
}

}  // namespace tally::cmd

#endif  // TALLY_COMMANDS_H_
