// ledger.cc: Apply, and every changing command (docs/ENGINE.md).
//
// Each command first checks everything that could refuse it, then changes
// state; nothing between the first change and the result can fail, which is
// how every command is all or nothing without an undo log.
#include "engine/ledger.h"

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "engine/state.h"

namespace tally {
namespace engine {
namespace {

bool AddOverflows(int64_t a, int64_t b, int64_t* sum) { return __builtin_add_overflow(a, b, sum); }

Result Refused(ResultCode code) { return Result{.code = code}; }

Result Short(ResultCode code, int64_t available, int64_t requested) {
  return Result{.code = code, .n = {available, requested, requested - available}};
}

Result Numbers(int64_t a, int64_t b, int64_t c, uint64_t id = 0) {
  return Result{.code = ResultCode::ok, .id = id, .n = {a, b, c}};
}

using Sums = LotSums;

// LotsTouched is how many lots TakeLots would take from for `amount`.
uint32_t LotsTouched(const Lot* lots, uint32_t count, uint16_t asset, int64_t amount,
                     int64_t now_us) {
  uint32_t touched = 0;
  for (uint32_t i = 0; i < count && amount > 0; ++i) {
    if (lots[i].asset != asset || lots[i].expires_at_us <= now_us) continue;
    amount -= std::min(amount, lots[i].remaining);
    ++touched;
  }
  return touched;
}

// What CheckFields checks of each kind, one byte a kind: a table lookup
// instead of a switch per rule on every command.
constexpr uint8_t check_amount_positive = 1 << 0;  // amount > 0
constexpr uint8_t check_special = 1 << 1;   // a rule of its own (CheckSpecial)
constexpr uint8_t check_asset = 1 << 2;            // a valid asset code
constexpr uint8_t check_expiry = 1 << 3;           // expires_at_us 0 or after now

constexpr std::array<uint8_t, command_kind_max + 1> FieldChecks() {
  std::array<uint8_t, command_kind_max + 1> checks{};
  auto set = [&](CommandKind kind, uint8_t bits) { checks[static_cast<uint8_t>(kind)] = bits; };
  set(CommandKind::org_create, check_special);
  set(CommandKind::org_settings, check_special);
  set(CommandKind::topup, check_amount_positive | check_asset | check_expiry);
  set(CommandKind::allocate, check_special | check_asset);
  set(CommandKind::reclaim, check_special | check_asset);
  set(CommandKind::grant, check_amount_positive | check_asset | check_expiry);
  set(CommandKind::adjust, check_special | check_asset | check_expiry);
  set(CommandKind::deduct, check_amount_positive | check_asset);
  set(CommandKind::hold, check_amount_positive | check_asset | check_expiry);
  set(CommandKind::capture, check_amount_positive);
  set(CommandKind::request, check_amount_positive | check_asset);
  set(CommandKind::approve, check_special | check_asset);
  set(CommandKind::reject, check_asset);
  return checks;
}
constexpr std::array<uint8_t, command_kind_max + 1> field_checks = FieldChecks();

bool ValidSettings(const OrgSettings& s, uint8_t mask) {
  if ((mask & setting_low_balance_threshold) && s.low_balance_threshold < 0) return false;
  if ((mask & setting_expiring_soon_window) && s.expiring_soon_window_us < 0) return false;
  if ((mask & setting_deduct_rollup_interval) && s.deduct_rollup_interval_us < 0) return false;
  return true;
}

void ApplySettings(const OrgSettings& from, uint8_t mask, OrgSettings* to) {
  if (mask & setting_credit_payments) to->credit_payments = from.credit_payments;
  if (mask & setting_low_balance_threshold) to->low_balance_threshold = from.low_balance_threshold;
  if (mask & setting_expiring_soon_window) to->expiring_soon_window_us = from.expiring_soon_window_us;
  if (mask & setting_deduct_rollup_interval)
    to->deduct_rollup_interval_us = from.deduct_rollup_interval_us;
}

}  // namespace

// A batch's commands come side by side (Contiguous: a span, which the
// hardware streams in) or where tallyd's I/O threads decoded them
// (Indirect: pointers, out of cache, so the engine fetches them ahead).
// Machine::ApplyBatch takes either; Contiguous's fetches are no-ops.
struct Contiguous {
  std::span<const Command> at;
  size_t size() const { return at.size(); }
  const Command& operator[](size_t i) const { return at[i]; }
  void Prefetch(size_t) const {}
  void PrefetchKey(size_t) const {}
};
struct Indirect {
  std::span<const Command* const> at;
  size_t size() const { return at.size(); }
  const Command& operator[](size_t i) const { return *at[i]; }
  // Prefetch asks for the whole command: 152 bytes, three lines or four.
  void Prefetch(size_t i) const {
    const char* c = reinterpret_cast<const char*>(at[i]);
    for (size_t line = 0; line < sizeof(Command) + 63; line += 64) __builtin_prefetch(c + line);
  }
  // PrefetchKey asks for what the op-id claim reads: kind to org_id.
  void PrefetchKey(size_t i) const {
    const char* c = reinterpret_cast<const char*>(at[i]);
    __builtin_prefetch(c);
    __builtin_prefetch(c + offsetof(Command, org_id) + sizeof(uint64_t) - 1);
  }
};
constexpr size_t command_key_prefetch_ahead = 16;

// Machine applies one batch to a State.
class Machine {
 public:
  Machine(State& state, BatchOutput* out) : s_(state), out_(out), now_(state.now_us) {}

  // ApplyBatch applies commands in order.  A random walk over a million
  // wallets is a chain of cache misses per command (index bucket, wallet,
  // its lots, op-id slots); starting them for the commands a few places
  // ahead lets them overlap instead of queueing.  Prefetching only reads.
  //
  // Commands is a Contiguous or an Indirect (above): tallyd applies each
  // frame's commands where its I/O thread decoded them, out of cache, and
  // the claim walk starts loading them a few ahead.
  template <typename Commands>
  void ApplyBatch(Commands commands) {
    const size_t n = commands.size();
    claims_.resize(n);
    keys_.resize(n);
    hashes_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (i + command_key_prefetch_ahead < n) commands.PrefetchKey(i + command_key_prefetch_ahead);
      const Command& c = commands[i];
      // op id 0: nothing to claim (a sweep, or a command refused for it).
      uint64_t op_id = c.kind == CommandKind::expire_sweep ? 0 : c.op_id;
      keys_[i] = OpKey{c.org_id, op_id};
    }
    // Results are copied into the op-id memory after each window, not after
    // each command: copied at once, the result just stored in pieces was
    // reloaded whole (a failed store-to-load forward, as below).  A batch
    // that repeats one of its own ids needs the first result settled before
    // the repeat reads it, so it settles each command at once.
    settle_each_ = s_.ops.ClaimAll(keys_, claims_.data(), hashes_.data(), now_);
    // Wallets: each window of commands is walked three times before it is
    // applied, each walk a tight loop doing one stage for every command:
    // start loading the index buckets, then find the slots and start loading
    // the wallets, then start loading their lots.  Each walk's misses
    // overlap as the op-id claims' do, and a window's lines (~256 bytes a
    // command) stay in L2 until it is applied.  Interleaving the stages
    // with the applies, a few commands ahead, overlapped far less
    // (bench/RESULTS.md).  The walks only read: a wallet created or
    // changed inside the window is just not prefetched.
    slots_.assign(n, no_slot);
    // Each result is built in its place: returned into a temporary and
    // pushed, it was stored in pieces and reloaded whole, a store-to-load
    // forward that fails and waits for every older store (bench/RESULTS.md,
    // "third round").
    const size_t first_result = out_->results.size();
    out_->results.resize(first_result + n);
    Result* results = out_->results.data() + first_result;
    // Commands out of line were fetched by the claim walk, but a batch is
    // larger than the caches: each window's commands are fetched again
    // while the window before it applies (and the first one's now).
    for (size_t i = 0; i < std::min(n, window); ++i) commands.Prefetch(i);
    for (size_t begin = 0; begin < n; begin += window) {
      const size_t end = std::min(n, begin + window);
      for (size_t i = begin; i < end; ++i) PrefetchBucket(commands[i], i - begin);
      for (size_t i = begin; i < end; ++i) PrefetchWallet(commands[i], i);
      for (size_t i = begin; i < end; ++i) PrefetchLots(i - begin);
      for (size_t i = begin; i < end; ++i) {
        // The lots once more, 8 commands ahead: the lot walk's prefetches
        // alone left the lots' loads the biggest stall of the apply (27 %
        // of ApplyBatch's samples); asked again just before use they cost
        // ~25 % less CPU a deduct (bench/RESULTS.md, "Deduct, fourth
        // round").  Only reads; a wallet changed since is just not helped.
        if (i + 8 < end) PrefetchLots(i + 8 - begin);
        if (i + window < n) commands.Prefetch(i + window);
        const bool fresh = ApplyInto(commands[i], claims_[i], slots_[i], results + i);
        if (settle_each_ && fresh) s_.ops.Settle(claims_[i], results[i]);
        fresh_[i - begin] = fresh;
      }
      if (!settle_each_) {
        for (size_t i = begin; i < end; ++i) {
          if (fresh_[i - begin]) s_.ops.Settle(claims_[i], results[i]);
        }
      }
    }
  }

  // ApplyInto applies one command and constructs its result at `out`:
  // Dispatch's result is built there directly (placement new of a prvalue:
  // its return slot is `out`), never in a temporary that a copy reads back.
  // `slot` is the wallet slot the prefetch found for c.wallet_id (no_slot:
  // none then; it may have been created since).  Returns whether the result
  // is the first of a fresh op id, to be settled into the op-id memory: the
  // one place that rule is written.
  [[gnu::always_inline]] bool ApplyInto(const Command& c, const OpMemory::Claim& claim,
                                        uint32_t slot, Result* out) {
    if (c.kind == CommandKind::expire_sweep) {
      new (out) Result(Sweep());
      return false;
    }
    if (c.op_id == 0) {
      new (out) Result(Refused(ResultCode::invalid_operation_id));
      return false;
    }
    if (claim.kind != OpMemory::Claim::fresh) {
      const Result* first = s_.ops.First(claim);
      TALLY_ASSERT(first != nullptr || s_.options.op_ids_max / 2 < batch_commands_max);
      if (first != nullptr) {
        new (out) Result(*first);
        out->replayed = true;
        return false;
      }
    }
    new (out) Result(Dispatch(c, slot));
    return claim.kind == OpMemory::Claim::fresh;
  }

  // CheckFields: c.kind is known (1..command_kind_max).  The order of the
  // checks is docs/ENGINE.md's: amount (or settings), asset, texts, time.
  ResultCode CheckFields(const Command& c) {
    const uint8_t checks = field_checks[static_cast<uint8_t>(c.kind)];
    if (checks & check_special) {
      if (ResultCode code = CheckSpecial(c); code != ResultCode::ok) return code;
    } else if ((checks & check_amount_positive) && c.amount <= 0) {
      return ResultCode::invalid_amount;
    }
    if ((checks & check_asset) && !ValidAsset(c.asset)) return ResultCode::invalid_asset;
    if (c.text.size() > text_bytes_max || c.actor.size() > text_bytes_max) {
      return ResultCode::limit_exceeded;
    }
    if ((checks & check_expiry) &&
        (c.expires_at_us < 0 || (c.expires_at_us != 0 && c.expires_at_us <= now_))) {
      return ResultCode::invalid_time;
    }
    return ResultCode::ok;
  }

  // CheckSpecial: the amount and settings rules of the kinds marked
  // check_special.
  ResultCode CheckSpecial(const Command& c) {
    switch (c.kind) {
      case CommandKind::allocate:
        if ((c.flags & flag_all) && c.amount <= 0) return ResultCode::invalid_amount;
        if (!(c.flags & flag_all)) {
          if (c.targets.empty()) return ResultCode::invalid_command;
          if (c.targets.size() > allocate_targets_max) return ResultCode::limit_exceeded;
          for (const WalletAmount& t : c.targets) {
            if (t.amount <= 0) return ResultCode::invalid_amount;
          }
        }
        break;
      case CommandKind::reclaim:
        if (!(c.flags & flag_all) && c.amount <= 0) return ResultCode::invalid_amount;
        break;
      case CommandKind::adjust:
        if ((c.flags & flag_target) ? c.amount < 0
                                    : (c.amount == 0 || c.amount == INT64_MIN)) {
          return ResultCode::invalid_amount;
        }
        break;
      case CommandKind::approve:
        if (c.amount < 0) return ResultCode::invalid_amount;
        break;
      case CommandKind::org_create:
      case CommandKind::org_settings:
        if (!ValidSettings(c.settings, c.settings_mask)) return ResultCode::invalid_settings;
        break;
      default:
        break;
    }
    return ResultCode::ok;
  }

  // Dispatch checks a command in the order of docs/ENGINE.md (kind, fields,
  // org) and runs it.  The deduct, the metered hot path, takes the same
  // steps inlined into the batch loop; every other kind goes through
  // DispatchOther, out of line (a big function: its calls, register saves
  // and switch were ~40 instructions a deduct).
  [[gnu::always_inline]] Result Dispatch(const Command& c, uint32_t slot) {
    if (c.kind != CommandKind::deduct) [[unlikely]] return DispatchOther(c);
    if (ResultCode code = CheckFields(c); code != ResultCode::ok) return Refused(code);
    Org* org = FindOrgCached(c.org_id);
    if (org == nullptr) return Refused(ResultCode::unknown_org);
    return Deduct(*org, c, slot);
  }

  [[gnu::noinline]] Result DispatchOther(const Command& c) {
    if (static_cast<uint8_t>(c.kind) == 0 ||
        static_cast<uint8_t>(c.kind) > command_kind_max) {
      return Refused(ResultCode::invalid_command);
    }
    if (ResultCode code = CheckFields(c); code != ResultCode::ok) return Refused(code);
    if (c.kind == CommandKind::org_create) return OrgCreate(c);
    Org* org = FindOrgCached(c.org_id);
    if (org == nullptr) return Refused(ResultCode::unknown_org);
    switch (c.kind) {
      case CommandKind::org_settings:
        ApplySettings(c.settings, c.settings_mask, &org->settings);
        return Numbers(0, 0, 0);
      case CommandKind::topup: return AddLot(*org, c, org->pool_slot, LotSource::topup);
      case CommandKind::grant:
        if (c.wallet_id == 0) return Refused(ResultCode::invalid_wallet);
        return AddLot(*org, c, no_slot, LotSource::grant);
      case CommandKind::allocate: return Allocate(*org, c);
      case CommandKind::reclaim: return Reclaim(*org, c);
      case CommandKind::void_grant: return VoidGrant(*org, c);
      case CommandKind::adjust: return Adjust(*org, c);
      case CommandKind::hold: return HoldCmd(*org, c);
      case CommandKind::capture: return Capture(*org, c);
      case CommandKind::release: return ReleaseCmd(*org, c);
      case CommandKind::request: return RequestCmd(*org, c);
      case CommandKind::approve: return Approve(*org, c);
      case CommandKind::reject: return Reject(*org, c);
      case CommandKind::wallet_upsert: return WalletUpsert(*org, c);
      case CommandKind::wallet_delete: return WalletDelete(*org, c);
      default: return Refused(ResultCode::invalid_command);
    }
  }

  // ---- prefetching ----

  // Batches mostly repeat a few orgs and one asset: remember them.
  Org* FindOrgCached(uint64_t org_id) {
    Org*& cached = cached_orgs_[org_id % cached_orgs_max];
    if (cached == nullptr || cached->id != org_id) cached = s_.FindOrg(org_id);
    return cached;
  }
  bool ValidAsset(Asset asset) {
    if (asset == valid_asset_) return true;
    if (!asset.Valid()) return false;
    valid_asset_ = asset;
    return true;
  }
  [[gnu::always_inline]] uint16_t AssetIndex(Asset asset) {
    if (asset == cached_asset_ && cached_asset_index_ != no_asset) [[likely]] {
      return cached_asset_index_;
    }
    return FindAssetIndex(asset);
  }
  [[gnu::noinline]] uint16_t FindAssetIndex(Asset asset) {
    uint16_t index = s_.FindAsset(asset);
    if (index != no_asset) {
      cached_asset_ = asset;
      cached_asset_index_ = index;
    }
    return index;
  }

  // The walks pass what they found on (the org and the index position, then
  // the wallet) in arrays of one window, so no stage finds it again.
  void PrefetchBucket(const Command& c, size_t in_window) {
    const Org* org = FindOrgCached(c.org_id);
    window_orgs_[in_window] = org;
    if (org != nullptr) {
      window_homes_[in_window] = org->wallet_index.Home(c.wallet_id);
      org->wallet_index.PrefetchHome(window_homes_[in_window]);
    }
  }

  void PrefetchWallet(const Command& c, size_t position) {
    const size_t in_window = position % window;
    const Org* org = window_orgs_[in_window];
    const uint32_t slot =
        org == nullptr ? no_slot : org->wallet_index.FindFrom(c.wallet_id, window_homes_[in_window]);
    slots_[position] = slot;
    window_wallets_[in_window] = nullptr;
    if (slot != no_slot) {
      const Wallet* w = &W(slot);
      window_wallets_[in_window] = w;
      __builtin_prefetch(w);
    }
  }

  void PrefetchLots(size_t in_window) {
    const Wallet* found = window_wallets_[in_window];
    if (found == nullptr) return;
    const Wallet& w = *found;
    if (w.heap_lots != nullptr) {
      // The first lot is all a deduct reads when the summary covers it
      // (one asset, none expired); else every lot: three are 96 bytes, two
      // or three cache lines.
      __builtin_prefetch(w.heap_lots);
      if (w.lot_count > 1 && !w.SummaryLive(now_)) {
        __builtin_prefetch(w.heap_lots + (w.lot_count - 1) / 2);
        __builtin_prefetch(w.heap_lots + w.lot_count - 1);
      }
    }
    // A rolled-up deduct adds to the wallet's newest history entry.  The
    // wallet is the org's that found it.
    if (window_orgs_[in_window]->settings.deduct_rollup_interval_us > 0 &&
        w.history_head != 0 && s_.history.InMemory(w.history_head - 1)) {
      __builtin_prefetch(&s_.history.at(w.history_head - 1), 1);
    }
  }

  // ---- building blocks ----

  [[gnu::always_inline]] Wallet& W(uint32_t slot) { return s_.wallets.at(slot); }

  uint16_t InternAsset(Asset asset) {
    uint16_t index = s_.FindAsset(asset);
    if (index != no_asset) return index;
    if (s_.assets.size() >= assets_max) return no_asset;
    index = static_cast<uint16_t>(s_.assets.size());
    s_.assets.push_back(asset);
    s_.asset_index.emplace(asset, index);
    return index;
  }

  uint32_t CreateWallet(Org& org, uint64_t wallet_id) {
    uint32_t slot = s_.wallets.Add();
    Wallet& w = W(slot);
    w.id = wallet_id;
    w.org_slot = org.org_slot;
    org.wallet_index.Insert(wallet_id, slot);
    if (wallet_id != 0) {
      org.wallet_order.push_back(slot);
      ++org.live_wallets;
    }
    return slot;
  }

  // WalletFor finds a user wallet, creating or reviving it.
  uint32_t WalletFor(Org& org, uint64_t wallet_id) {
    uint32_t slot = s_.FindWallet(org, wallet_id);
    if (slot == no_slot) return CreateWallet(org, wallet_id);
    Wallet& w = W(slot);
    if (w.deleted()) {
      w.flags &= static_cast<uint8_t>(~wallet_deleted);
      ++org.live_wallets;
    }
    return slot;
  }

  // Room is how many more lots a wallet may take before the limit.
  uint32_t Room(uint32_t slot) {
    uint32_t count = slot == no_slot ? 0 : W(slot).lot_count;
    return count >= wallet_lots_max ? 0 : wallet_lots_max - count;
  }

  // PutLot adds `lot` to a wallet, merging with a lot of the same grant.
  void PutLot(uint32_t slot, const Lot& lot) {
    Wallet& w = W(slot);
    Lot* lots = w.lots();
    uint32_t pos = 0;
    for (uint32_t i = 0; i < w.lot_count; ++i) {
      if (lots[i].grant_id == lot.grant_id && lots[i].asset == lot.asset) {
        lots[i].remaining += lot.remaining;  // within the org's `in`: cannot overflow
        w.RefreshSummary();
        return;
      }
      if (SpentBefore(lots[i], lot)) pos = i + 1;
    }
    TALLY_ASSERT(w.lot_count < UINT16_MAX);
    if (w.lot_count + 1u > w.capacity()) {
      Grow(w);
      lots = w.lots();
    }
    std::memmove(lots + pos + 1, lots + pos, (w.lot_count - pos) * sizeof(Lot));
    lots[pos] = lot;
    ++w.lot_count;
    w.RefreshSummary();
    if (lot.expires_at_us != never_us) s_.lot_expiry.emplace(lot.expires_at_us, slot);
  }

  void Grow(Wallet& w) {
    uint8_t log2 = w.heap_lots == nullptr ? 1 : static_cast<uint8_t>(w.heap_capacity_log2 + 1);
    s_.wallets.AllocateLots(w, log2);
  }

  Sums WalletSums(uint32_t slot, uint16_t asset) { return SumsIn(W(slot), asset); }
  // SumsIn reads the lot summary when it covers the asset (a deduct over
  // a wallet of several lots then reads none of them here), else the lots.
  Sums SumsIn(const Wallet& w, uint16_t asset) {
    if (asset == no_asset) return {};
    if (w.SummaryCovers(asset, now_)) [[likely]] return {w.summary.book, w.summary.book};
    return SumLots(w.lots(), w.lot_count, asset, now_);
  }

  // Take removes `amount` from a wallet's lots (checked to be there) and
  // hands every piece to sink.
  template <typename Sink>
  void Take(uint32_t slot, uint16_t asset, int64_t amount, Sink&& sink) {
    TakeFrom(W(slot), asset, amount, sink);
  }
  // The usual deduct takes from the first lot alone, which keeps more than
  // it gives: only that lot and the summary's book change, so the summary
  // is kept without a walk over every lot.  Anything else takes TakeLots'
  // general walk and recomputes the summary.
  template <typename Sink>
  void TakeFrom(Wallet& w, uint16_t asset, int64_t amount, Sink&& sink) {
    Lot* lots = w.lots();
    if (FirstLotCovers(lots, w.lot_count, asset, amount, now_)) [[likely]] {
      sink(static_cast<const Lot&>(lots[0]), amount);
      lots[0].remaining -= amount;
      if (w.heap_lots != nullptr && w.summary.asset == asset) w.summary.book -= amount;
      return;
    }
    uint32_t count = w.lot_count;
    int64_t taken = TakeLots(lots, count, asset, amount, now_, sink);
    TALLY_ASSERT(taken == amount);
    w.lot_count = static_cast<uint16_t>(count);
    w.RefreshSummary();
  }

  void MarkSpread(Org& org, uint64_t grant_id) {
    auto it = org.grants.find(grant_id);
    if (it != org.grants.end()) it->second.spread = true;
  }

  void Record(uint32_t slot, HistoryKind kind, bool out, bool held, uint16_t asset,
              int64_t amount, int64_t balance_after, uint64_t related_id,
              std::string_view reference, std::string_view actor) {
    RecordIn(W(slot), slot, kind, out, held, asset, amount, balance_after, related_id,
             reference, actor);
  }
  // RecordIn is Record for a wallet already at hand (`w` is W(slot)).
  [[gnu::always_inline]] void RecordIn(Wallet& w, uint32_t slot, HistoryKind kind, bool out,
                                       bool held, uint16_t asset, int64_t amount,
                                       int64_t balance_after, uint64_t related_id,
                                       std::string_view reference, std::string_view actor) {
    uint64_t index = s_.history.total();
    uint32_t distance = 0;
    if (w.history_head != 0) {
      uint64_t gap = index - (w.history_head - 1);
      distance = gap >= UINT32_MAX ? UINT32_MAX : static_cast<uint32_t>(gap);
    }
    s_.history.Append(time_meta_ | HistoryEntry::PackFields(kind, out, held, false, asset),
                      amount, balance_after, related_id, slot, distance, reference, actor);
    w.history_head = index + 1;
  }

  void Emit(EventKind kind, const Org& org, uint64_t wallet_id, uint64_t id, uint16_t asset,
            int64_t amount, int64_t balance_after) {
    out_->events.push_back(Event{kind, org.id, wallet_id, id, s_.assets[asset], amount,
                                 balance_after, now_});
  }

  // NoteDecrease raises balance.low / balance.depleted for a balance that
  // went down.  Every deduct asks; few raise one, so the test is inline and
  // the raising is not.
  [[gnu::always_inline]] void NoteDecrease(const Org& org, uint32_t slot, uint16_t asset,
                                           int64_t before, int64_t after) {
    const int64_t threshold = org.settings.low_balance_threshold;
    const bool low = threshold > 0 && before >= threshold && after < threshold;
    const bool depleted = before > 0 && after == 0;
    if (low || depleted) [[unlikely]] EmitDecrease(org, slot, asset, before, after, low, depleted);
  }
  [[gnu::noinline]] void EmitDecrease(const Org& org, uint32_t slot, uint16_t asset,
                                      int64_t before, int64_t after, bool low, bool depleted) {
    uint64_t wallet_id = W(slot).id;
    if (low) Emit(EventKind::balance_low, org, wallet_id, 0, asset, before - after, after);
    if (depleted) {
      Emit(EventKind::balance_depleted, org, wallet_id, 0, asset, before - after, after);
    }
  }

  // ExpireHeldLots removes expired lots from a hold, recording each.
  void ExpireHeldLots(Org& org, Hold& hold, uint64_t hold_id) {
    uint32_t write = 0;
    for (uint32_t read = 0; read < hold.lots.size(); ++read) {
      Lot& lot = hold.lots[read];
      if (lot.expires_at_us <= now_) {
        AssetTotals& t = org.totals_for(lot.asset);
        t.held -= lot.remaining;
        t.expired += lot.remaining;
        Sums sums = WalletSums(hold.wallet_slot, lot.asset);
        Record(hold.wallet_slot, HistoryKind::expire, true, true, lot.asset, lot.remaining,
               sums.book, hold_id, {}, {});
        Emit(EventKind::credits_expired, org, W(hold.wallet_slot).id, lot.grant_id, lot.asset,
             lot.remaining, sums.available);
        continue;
      }
      hold.lots[write++] = lot;
    }
    hold.lots.resize(write);
  }

  void IndexHold(Org& org, uint64_t hold_id, Hold& hold) {
    int64_t deadline = hold.timeout_us;
    for (const Lot& lot : hold.lots) deadline = std::min(deadline, lot.expires_at_us);
    hold.deadline_us = deadline;
    if (deadline != never_us) s_.hold_deadlines.emplace(deadline, org.org_slot, hold_id);
  }

  void UnindexHold(const Org& org, uint64_t hold_id, const Hold& hold) {
    if (hold.deadline_us != never_us) {
      s_.hold_deadlines.erase(std::make_tuple(hold.deadline_us, org.org_slot, hold_id));
    }
  }

  // CloseHold returns a hold's unexpired lots to its wallet (the expired ones
  // expire) and forgets the hold.  Returns what went back, in the hold's asset.
  int64_t CloseHold(Org& org, uint64_t hold_id, uint32_t* lots_expired = nullptr) {
    auto it = org.holds.find(hold_id);
    TALLY_ASSERT(it != org.holds.end());
    Hold& hold = it->second;
    UnindexHold(org, hold_id, hold);
    size_t lots_before = hold.lots.size();
    ExpireHeldLots(org, hold, hold_id);
    if (lots_expired != nullptr) {
      *lots_expired += static_cast<uint32_t>(lots_before - hold.lots.size());
    }
    int64_t returned = 0;
    for (const Lot& lot : hold.lots) {
      PutLot(hold.wallet_slot, lot);
      returned += lot.remaining;
    }
    AssetTotals& t = org.totals_for(hold.asset);
    t.held -= returned;
    t.available += returned;
    if (returned > 0) {
      Sums sums = WalletSums(hold.wallet_slot, hold.asset);
      Record(hold.wallet_slot, HistoryKind::release, false, false, hold.asset, returned,
             sums.book, hold_id, {}, {});
    }
    org.holds_by_wallet.erase({hold.wallet_slot, hold_id});
    org.holds.erase(it);
    return returned;
  }

  // ---- commands ----

  Result OrgCreate(const Command& c) {
    if (s_.FindOrg(c.org_id) != nullptr) return Refused(ResultCode::org_exists);
    if (s_.orgs.size() >= ledger_orgs_max) return Refused(ResultCode::limit_exceeded);
    uint32_t slot = static_cast<uint32_t>(s_.orgs.size());
    s_.orgs.push_back(std::make_unique<Org>(c.org_id, slot));
    s_.org_index.emplace(c.org_id, slot);
    Org& org = *s_.orgs.back();
    ApplySettings(c.settings, c.settings_mask, &org.settings);
    org.pool_slot = CreateWallet(org, 0);
    return Numbers(0, 0, 0);
  }

  // AddLot: topup (into the pool) and grant (into a user wallet).
  Result AddLot(Org& org, const Command& c, uint32_t slot, LotSource source) {
    if (slot == no_slot) {
      uint32_t existing = s_.FindWallet(org, c.wallet_id);
      if (existing != no_slot && W(existing).deleted()) existing = no_slot;  // revived empty
      if (Room(existing) == 0) return Refused(ResultCode::limit_exceeded);
    } else if (Room(slot) == 0) {
      return Refused(ResultCode::limit_exceeded);
    }
    uint16_t asset = InternAsset(c.asset);
    if (asset == no_asset) return Refused(ResultCode::limit_exceeded);
    AssetTotals& t = org.totals_for(asset);
    int64_t in_after;
    if (AddOverflows(t.in, c.amount, &in_after)) return Refused(ResultCode::amount_overflow);

    if (slot == no_slot) slot = WalletFor(org, c.wallet_id);
    uint64_t grant_id = NewGrant(org, c, asset, source, W(slot).id);
    Sums before = WalletSums(slot, asset);
    PutLot(slot, Lot{grant_id, c.amount, ExpiryOf(c), c.priority, asset, 0});
    t.in = in_after;
    t.available += c.amount;
    HistoryKind kind = source == LotSource::topup ? HistoryKind::topup : HistoryKind::grant;
    Record(slot, kind, false, false, asset, c.amount, before.book + c.amount, grant_id, c.text,
           c.actor);
    Emit(EventKind::credits_granted, org, W(slot).id, grant_id, asset, c.amount,
         before.available + c.amount);
    return Numbers(c.amount, 0, before.available + c.amount, grant_id);
  }

  static int64_t ExpiryOf(const Command& c) {
    return c.expires_at_us == 0 ? never_us : c.expires_at_us;
  }

  uint64_t NewGrant(Org& org, const Command& c, uint16_t asset, LotSource source,
                    uint64_t wallet_id) {
    uint64_t grant_id = org.next_grant_id++;
    Grant& g = org.grants[grant_id];
    g.asset = asset;
    g.source = source;
    g.priority = c.priority;
    g.amount = c.amount > 0 ? c.amount : 0;
    g.expires_at_us = ExpiryOf(c);
    g.created_at_us = now_;
    g.origin_wallet_id = wallet_id;
    g.reference = std::string(c.text);
    return grant_id;
  }

  // Transfer is the core of allocate and approve: pool -> targets, all or
  // nothing.  `related` gives each target's history related id.
  template <typename Related>
  Result Transfer(Org& org, const Command& c, std::span<const WalletAmount> targets,
                  Related&& related) {
    uint16_t asset = AssetIndex(c.asset);
    int64_t total = 0;
    for (const WalletAmount& t : targets) {
      if (AddOverflows(total, t.amount, &total)) return Refused(ResultCode::amount_overflow);
    }
    Sums pool_before = WalletSums(org.pool_slot, asset);
    if (total > pool_before.available) {
      return Short(ResultCode::insufficient_pool, pool_before.available, total);
    }
    if (ResultCode code = CheckTransferRoom(org, asset, targets); code != ResultCode::ok) {
      return Refused(code);
    }
    for (const WalletAmount& t : targets) {
      uint32_t slot = WalletFor(org, t.wallet_id);
      Sums before = WalletSums(slot, asset);
      Take(org.pool_slot, asset, t.amount, [&](const Lot& lot, int64_t taken) {
        Lot piece = lot;
        piece.remaining = taken;
        PutLot(slot, piece);
        MarkSpread(org, lot.grant_id);
      });
      uint64_t related_id = related(t);
      Record(slot, HistoryKind::allocate, false, false, asset, t.amount,
             before.book + t.amount, related_id, c.text, c.actor);
      Emit(EventKind::credits_allocated, org, t.wallet_id, related_id, asset, t.amount,
           before.available + t.amount);
    }
    int64_t pool_after = pool_before.available - total;
    if (total > 0) {
      Record(org.pool_slot, HistoryKind::allocate, true, false, asset, total,
             pool_before.book - total, c.op_id, c.text, c.actor);
      NoteDecrease(org, org.pool_slot, asset, pool_before.available, pool_after);
    }
    return Numbers(pool_before.available, total, pool_after);
  }

  // CheckTransferRoom walks the pool's lots as the transfer will, counting
  // the lots each target receives against its room.
  ResultCode CheckTransferRoom(Org& org, uint16_t asset, std::span<const WalletAmount> targets) {
    if (targets.empty()) return ResultCode::ok;
    Wallet& pool = W(org.pool_slot);
    const Lot* lots = pool.lots();
    uint32_t index = 0;
    int64_t left_in_lot = 0;
    received_.clear();
    for (const WalletAmount& t : targets) {
      int64_t need = t.amount;
      uint32_t pieces = 0;
      while (need > 0) {
        if (left_in_lot == 0) {
          while (lots[index].asset != asset || lots[index].expires_at_us <= now_) ++index;
          left_in_lot = lots[index].remaining;
        }
        int64_t take = std::min(need, left_in_lot);
        need -= take;
        left_in_lot -= take;
        ++pieces;
        if (left_in_lot == 0) ++index;
      }
      uint32_t& got = received_[t.wallet_id];
      got += pieces;
      uint32_t slot = s_.FindWallet(org, t.wallet_id);
      if (slot != no_slot && W(slot).deleted()) slot = no_slot;
      if (got > Room(slot)) return ResultCode::limit_exceeded;
    }
    return ResultCode::ok;
  }

  Result Allocate(Org& org, const Command& c) {
    if (!(c.flags & flag_all)) {
      for (const WalletAmount& t : c.targets) {
        if (t.wallet_id == 0) return Refused(ResultCode::invalid_wallet);
      }
      return Transfer(org, c, c.targets, [&](const WalletAmount&) { return c.op_id; });
    }
    targets_.clear();
    for (uint32_t slot : org.wallet_order) {
      if (!W(slot).deleted()) targets_.push_back({W(slot).id, c.amount});
    }
    return Transfer(org, c, targets_, [&](const WalletAmount&) { return c.op_id; });
  }

  Result Reclaim(Org& org, const Command& c) {
    if (c.wallet_id == 0) return Refused(ResultCode::invalid_wallet);
    uint32_t slot = s_.FindLiveWallet(org, c.wallet_id);
    if (slot == no_slot) return Refused(ResultCode::unknown_wallet);
    uint16_t asset = AssetIndex(c.asset);
    Sums before = WalletSums(slot, asset);
    int64_t amount = (c.flags & flag_all) ? before.available : c.amount;
    if (amount > before.available) {
      return Short(ResultCode::insufficient_funds, before.available, amount);
    }
    if (amount == 0) return Numbers(0, 0, before.available);
    Wallet& w = W(slot);
    if (LotsTouched(w.lots(), w.lot_count, asset, amount, now_) > Room(org.pool_slot)) {
      return Refused(ResultCode::limit_exceeded);
    }
    Sums pool_before = WalletSums(org.pool_slot, asset);
    Take(slot, asset, amount, [&](const Lot& lot, int64_t taken) {
      Lot piece = lot;
      piece.remaining = taken;
      PutLot(org.pool_slot, piece);
      MarkSpread(org, lot.grant_id);
    });
    Record(slot, HistoryKind::reclaim, true, false, asset, amount, before.book - amount, c.op_id,
           c.text, c.actor);
    Record(org.pool_slot, HistoryKind::reclaim, false, false, asset, amount,
           pool_before.book + amount, c.op_id, c.text, c.actor);
    NoteDecrease(org, slot, asset, before.available, before.available - amount);
    return Numbers(amount, 0, before.available - amount);
  }

  // RemoveGrantFrom voids the unexpired pieces of one grant in a wallet.
  int64_t RemoveGrantFrom(Org& org, uint32_t slot, uint64_t grant_id, const Command& c) {
    Wallet& w = W(slot);
    Lot* lots = w.lots();
    for (uint32_t i = 0; i < w.lot_count; ++i) {
      if (lots[i].grant_id != grant_id || lots[i].expires_at_us <= now_) continue;
      Lot lot = lots[i];
      Sums before = WalletSums(slot, lot.asset);
      std::memmove(lots + i, lots + i + 1, (w.lot_count - i - 1) * sizeof(Lot));
      --w.lot_count;
      w.RefreshSummary();
      AssetTotals& t = org.totals_for(lot.asset);
      t.available -= lot.remaining;
      t.voided += lot.remaining;
      Record(slot, HistoryKind::void_grant, true, false, lot.asset, lot.remaining,
             before.book - lot.remaining, grant_id, c.text, c.actor);
      Emit(EventKind::credits_voided, org, w.id, grant_id, lot.asset, lot.remaining,
           before.available - lot.remaining);
      NoteDecrease(org, slot, lot.asset, before.available, before.available - lot.remaining);
      return lot.remaining;  // a wallet holds one lot per grant
    }
    return 0;
  }

  Result VoidGrant(Org& org, const Command& c) {
    auto it = org.grants.find(c.target_id);
    if (it == org.grants.end()) return Refused(ResultCode::unknown_grant);
    Grant& grant = it->second;
    if (grant.voided) return Refused(ResultCode::grant_voided);
    grant.voided = true;
    int64_t voided = 0;
    if (!grant.spread) {
      uint32_t slot = s_.FindLiveWallet(org, grant.origin_wallet_id);
      if (slot != no_slot) voided += RemoveGrantFrom(org, slot, c.target_id, c);
      return Numbers(voided, 0, 0);
    }
    voided += RemoveGrantFrom(org, org.pool_slot, c.target_id, c);
    for (uint32_t slot : org.wallet_order) {
      if (!W(slot).deleted()) voided += RemoveGrantFrom(org, slot, c.target_id, c);
    }
    for (auto& [hold_id, hold] : org.holds) {
      for (size_t i = 0; i < hold.lots.size(); ++i) {
        Lot lot = hold.lots[i];
        if (lot.grant_id != c.target_id || lot.expires_at_us <= now_) continue;
        hold.lots.erase(hold.lots.begin() + static_cast<ptrdiff_t>(i));
        AssetTotals& t = org.totals_for(lot.asset);
        t.held -= lot.remaining;
        t.voided += lot.remaining;
        Sums sums = WalletSums(hold.wallet_slot, lot.asset);
        Record(hold.wallet_slot, HistoryKind::void_grant, true, true, lot.asset, lot.remaining,
               sums.book, c.target_id, c.text, c.actor);
        Emit(EventKind::credits_voided, org, W(hold.wallet_slot).id, c.target_id, lot.asset,
             lot.remaining, sums.available);
        voided += lot.remaining;
        break;
      }
    }
    return Numbers(voided, 0, 0);
  }

  Result Adjust(Org& org, const Command& c) {
    uint32_t slot = s_.FindLiveWallet(org, c.wallet_id);
    if (slot == no_slot) return Refused(ResultCode::unknown_wallet);
    uint16_t asset = AssetIndex(c.asset);
    Sums before = WalletSums(slot, asset);
    int64_t delta = (c.flags & flag_target) ? c.amount - before.available : c.amount;
    if (delta == 0) return Numbers(0, 0, before.available);
    if (delta > 0) {
      if (Room(slot) == 0) return Refused(ResultCode::limit_exceeded);
      asset = InternAsset(c.asset);
      if (asset == no_asset) return Refused(ResultCode::limit_exceeded);
      AssetTotals& t = org.totals_for(asset);
      int64_t in_after;
      if (AddOverflows(t.in, delta, &in_after)) return Refused(ResultCode::amount_overflow);
      Command up = c;
      up.amount = delta;
      uint64_t grant_id = NewGrant(org, up, asset, LotSource::adjust, c.wallet_id);
      PutLot(slot, Lot{grant_id, delta, ExpiryOf(c), c.priority, asset, 0});
      t.in = in_after;
      t.available += delta;
      Record(slot, HistoryKind::adjust, false, false, asset, delta, before.book + delta,
             grant_id, c.text, c.actor);
      Emit(EventKind::credits_granted, org, c.wallet_id, grant_id, asset, delta,
           before.available + delta);
      return Numbers(delta, 0, before.available + delta, grant_id);
    }
    int64_t down = -delta;
    if (down > before.available) {
      return Short(ResultCode::insufficient_funds, before.available, down);
    }
    Take(slot, asset, down, [](const Lot&, int64_t) {});
    AssetTotals& t = org.totals_for(asset);
    t.available -= down;
    t.adjusted_out += down;
    Record(slot, HistoryKind::adjust, true, false, asset, down, before.book - down, c.op_id,
           c.text, c.actor);
    NoteDecrease(org, slot, asset, before.available, before.available - down);
    return Numbers(delta, 0, before.available - down);
  }

  // The metered hot path: one wallet lookup, one pass to sum, one to take,
  // one history entry.
  // `slot` is where the prefetch found the wallet (no_slot: look it up;
  // slots never move and index entries are never removed, so a slot found
  // earlier in the batch is still the wallet's).
  // The wallet is looked up once (W() is an assertion and two loads) and
  // handed to each step.
  [[gnu::always_inline]] Result Deduct(Org& org, const Command& c, uint32_t slot) {
    if (slot == no_slot) slot = s_.FindWallet(org, c.wallet_id);
    if (slot == no_slot) return Refused(ResultCode::unknown_wallet);
    Wallet& w = W(slot);
    if (w.deleted()) return Refused(ResultCode::unknown_wallet);
    if (!org.settings.credit_payments) return Refused(ResultCode::credit_payments_disabled);
    uint16_t asset = AssetIndex(c.asset);
    Sums before = SumsIn(w, asset);
    bool partial = (c.flags & flag_partial) != 0;
    if (!partial && before.available < c.amount) {
      return Short(ResultCode::insufficient_funds, before.available, c.amount);
    }
    int64_t applied = std::min(before.available, c.amount);
    if (applied == 0) return Numbers(0, c.amount, before.available);
    TakeFrom(w, asset, applied, [](const Lot&, int64_t) {});
    AssetTotals& t = org.totals_for(asset);
    t.available -= applied;
    t.spent += applied;
    RecordDeduct(org, w, slot, asset, applied, before.book - applied, c);
    NoteDecrease(org, slot, asset, before.available, before.available - applied);
    return Numbers(applied, c.amount - applied, before.available - applied);
  }

  [[gnu::always_inline]] void RecordDeduct(const Org& org, Wallet& w, uint32_t slot,
                                           uint16_t asset, int64_t applied, int64_t book_after,
                                           const Command& c) {
    int64_t interval = org.settings.deduct_rollup_interval_us;
    if (interval <= 0) {
      RecordIn(w, slot, HistoryKind::deduct, true, false, asset, applied, book_after, c.op_id,
               c.text, c.actor);
      return;
    }
    int64_t now_ms_us = now_ / 1000 * 1000;  // the resolution history keeps
    if (w.history_head != 0 && s_.history.InMemory(w.history_head - 1)) {
      HistoryEntry& last = s_.history.at(w.history_head - 1);
      if (last.kind() == HistoryKind::deduct_rollup && last.asset() == asset &&
          last.time_us() / interval == now_ms_us / interval) {
        last.amount += applied;
        last.balance_after = book_after;
        return;
      }
    }
    RecordIn(w, slot, HistoryKind::deduct_rollup, true, false, asset, applied, book_after,
             c.op_id, {}, {});
  }

  Result HoldCmd(Org& org, const Command& c) {
    uint32_t slot = s_.FindLiveWallet(org, c.wallet_id);
    if (slot == no_slot) return Refused(ResultCode::unknown_wallet);
    if (!org.settings.credit_payments) return Refused(ResultCode::credit_payments_disabled);
    uint16_t asset = AssetIndex(c.asset);
    Sums before = WalletSums(slot, asset);
    bool partial = (c.flags & flag_partial) != 0;
    if (!partial && before.available < c.amount) {
      return Short(ResultCode::insufficient_funds, before.available, c.amount);
    }
    int64_t applied = std::min(before.available, c.amount);
    if (applied == 0) return Numbers(0, c.amount, before.available);
    Wallet& w = W(slot);
    if (LotsTouched(w.lots(), w.lot_count, asset, applied, now_) > hold_lots_max) {
      return Refused(ResultCode::limit_exceeded);
    }
    uint64_t hold_id = org.next_hold_id++;
    Hold& hold = org.holds[hold_id];
    hold.wallet_slot = slot;
    hold.asset = asset;
    hold.timeout_us = ExpiryOf(c);
    Take(slot, asset, applied, [&](const Lot& lot, int64_t taken) {
      Lot piece = lot;
      piece.remaining = taken;
      hold.lots.push_back(piece);
      MarkSpread(org, lot.grant_id);
    });
    IndexHold(org, hold_id, hold);
    org.holds_by_wallet.emplace(slot, hold_id);
    AssetTotals& t = org.totals_for(asset);
    t.available -= applied;
    t.held += applied;
    Record(slot, HistoryKind::hold, true, false, asset, applied, before.book - applied, hold_id,
           c.text, c.actor);
    NoteDecrease(org, slot, asset, before.available, before.available - applied);
    return Numbers(applied, c.amount - applied, before.available - applied, hold_id);
  }

  Result Capture(Org& org, const Command& c) {
    auto it = org.holds.find(c.target_id);
    if (it == org.holds.end()) return Refused(ResultCode::unknown_hold);
    Hold& hold = it->second;
    uint32_t slot = hold.wallet_slot;
    uint16_t asset = hold.asset;
    if (hold.timeout_us <= now_) {
      CloseHold(org, c.target_id);
      Result r = Refused(ResultCode::hold_expired);
      r.n[1] = c.amount;  // nothing applied: the whole amount remains
      r.n[2] = WalletSums(slot, asset).available;
      return r;
    }
    UnindexHold(org, c.target_id, hold);
    ExpireHeldLots(org, hold, c.target_id);
    uint32_t count = static_cast<uint32_t>(hold.lots.size());
    int64_t applied = TakeLots(hold.lots.data(), count, asset, c.amount, now_,
                               [](const Lot&, int64_t) {});
    hold.lots.resize(count);
    AssetTotals& t = org.totals_for(asset);
    t.held -= applied;
    t.spent += applied;
    if (applied > 0) {
      Record(slot, HistoryKind::capture, true, true, asset, applied,
             WalletSums(slot, asset).book, c.target_id, c.text, c.actor);
    }
    hold.deadline_us = never_us;  // unindexed above
    CloseHold(org, c.target_id);
    return Numbers(applied, c.amount - applied, WalletSums(slot, asset).available);
  }

  Result ReleaseCmd(Org& org, const Command& c) {
    auto it = org.holds.find(c.target_id);
    if (it == org.holds.end()) return Refused(ResultCode::unknown_hold);
    uint32_t slot = it->second.wallet_slot;
    uint16_t asset = it->second.asset;
    int64_t returned = CloseHold(org, c.target_id);
    return Numbers(returned, 0, WalletSums(slot, asset).available);
  }

  Result RequestCmd(Org& org, const Command& c) {
    if (c.wallet_id == 0) return Refused(ResultCode::invalid_wallet);
    uint16_t asset = InternAsset(c.asset);
    if (asset == no_asset) return Refused(ResultCode::limit_exceeded);
    uint64_t request_id = org.next_request_id++;
    Request& r = org.requests[request_id];
    r.wallet_id = c.wallet_id;
    r.asset = asset;
    r.amount = c.amount;
    r.created_at_us = now_;
    r.reason = std::string(c.text);
    Emit(EventKind::request_created, org, c.wallet_id, request_id, asset, c.amount, 0);
    Result result = Numbers(0, 0, 0, request_id);
    return result;
  }

  void Decide(Org& org, uint64_t request_id, Request& r, RequestStatus status, int64_t approved,
              const Command& c, std::string_view note) {
    r.status = status;
    r.approved_amount = approved;
    r.decided_at_us = now_;
    r.decided_by = std::string(c.actor);
    r.decision_note = std::string(note);
    EventKind kind = status == RequestStatus::approved ? EventKind::request_approved
                                                       : EventKind::request_rejected;
    int64_t amount = status == RequestStatus::approved ? approved : r.amount;
    uint32_t slot = s_.FindLiveWallet(org, r.wallet_id);
    int64_t balance = slot == no_slot ? 0 : WalletSums(slot, r.asset).available;
    Emit(kind, org, r.wallet_id, request_id, r.asset, amount, balance);
  }

  Result Approve(Org& org, const Command& c) {
    if (c.flags & flag_all) return ApproveAll(org, c);
    auto it = org.requests.find(c.target_id);
    if (it == org.requests.end()) return Refused(ResultCode::unknown_request);
    Request& r = it->second;
    if (r.status != RequestStatus::pending) return Refused(ResultCode::already_decided);
    int64_t amount = c.amount == 0 ? r.amount : c.amount;
    WalletAmount target{r.wallet_id, amount};
    Command as_asked = c;
    as_asked.asset = s_.assets[r.asset];
    Result result = Transfer(org, as_asked, std::span(&target, 1),
                             [&](const WalletAmount&) { return c.target_id; });
    if (!result.ok()) return result;
    Decide(org, c.target_id, r, RequestStatus::approved, amount, c, {});
    result.id = c.target_id;
    return result;
  }

  Result ApproveAll(Org& org, const Command& c) {
    uint16_t asset = AssetIndex(c.asset);
    targets_.clear();
    request_ids_.clear();
    for (auto& [id, r] : org.requests) {
      if (r.status == RequestStatus::pending && r.asset == asset) {
        targets_.push_back({r.wallet_id, r.amount});
        request_ids_.push_back(id);
      }
    }
    size_t next = 0;
    Result result = Transfer(org, c, targets_, [&](const WalletAmount&) {
      return request_ids_[next++];
    });
    if (!result.ok()) return result;
    for (uint64_t id : request_ids_) {
      Request& r = org.requests[id];
      Decide(org, id, r, RequestStatus::approved, r.amount, c, {});
    }
    return result;
  }

  Result Reject(Org& org, const Command& c) {
    if (c.flags & flag_all) {
      uint16_t asset = AssetIndex(c.asset);
      int64_t rejected = 0;
      for (auto& [id, r] : org.requests) {
        if (r.status == RequestStatus::pending && r.asset == asset) {
          Decide(org, id, r, RequestStatus::rejected, 0, c, c.text);
          ++rejected;
        }
      }
      return Numbers(rejected, 0, 0);
    }
    auto it = org.requests.find(c.target_id);
    if (it == org.requests.end()) return Refused(ResultCode::unknown_request);
    if (it->second.status != RequestStatus::pending) return Refused(ResultCode::already_decided);
    Decide(org, c.target_id, it->second, RequestStatus::rejected, 0, c, c.text);
    return Numbers(1, 0, 0);
  }

  Result WalletUpsert(Org& org, const Command& c) {
    if (c.wallet_id == 0) return Refused(ResultCode::invalid_wallet);
    WalletFor(org, c.wallet_id);
    if (c.text.empty()) {
      org.labels.erase(c.wallet_id);
    } else {
      org.labels[c.wallet_id] = std::string(c.text);
    }
    return Numbers(0, 0, 0);
  }

  Result WalletDelete(Org& org, const Command& c) {
    if (c.wallet_id == 0) return Refused(ResultCode::invalid_wallet);
    uint32_t slot = s_.FindLiveWallet(org, c.wallet_id);
    if (slot == no_slot) return Refused(ResultCode::unknown_wallet);
    // Open holds go back first, so their lots return to the pool below.
    hold_ids_.clear();
    for (auto it = org.holds_by_wallet.lower_bound({slot, 0});
         it != org.holds_by_wallet.end() && it->first == slot; ++it) {
      hold_ids_.push_back(it->second);
    }
    for (uint64_t hold_id : hold_ids_) CloseHold(org, hold_id);
    for (auto& [id, r] : org.requests) {
      if (r.wallet_id == c.wallet_id && r.status == RequestStatus::pending) {
        Decide(org, id, r, RequestStatus::rejected, 0, c, "wallet deleted");
      }
    }
    ExpireWalletLots(org, slot);
    Wallet& w = W(slot);
    moved_.clear();
    for (uint32_t i = 0; i < w.lot_count; ++i) {
      const Lot& lot = w.lots()[i];
      auto it = std::find_if(moved_.begin(), moved_.end(),
                             [&](const auto& m) { return m.first == lot.asset; });
      if (it == moved_.end()) {
        moved_.push_back({lot.asset, lot.remaining});
      } else {
        it->second += lot.remaining;
      }
    }
    for (auto [asset, amount] : moved_) {
      Sums pool_before = WalletSums(org.pool_slot, asset);
      Take(slot, asset, amount, [&](const Lot& lot, int64_t taken) {
        Lot piece = lot;
        piece.remaining = taken;
        PutLot(org.pool_slot, piece);
        MarkSpread(org, lot.grant_id);
      });
      Record(slot, HistoryKind::wallet_delete, true, false, asset, amount, 0, c.op_id, c.text,
             c.actor);
      Record(org.pool_slot, HistoryKind::wallet_delete, false, false, asset, amount,
             pool_before.book + amount, c.op_id, c.text, c.actor);
    }
    TALLY_ASSERT(w.lot_count == 0);
    w.flags |= wallet_deleted;
    --org.live_wallets;
    uint16_t asset = AssetIndex(c.asset);
    int64_t moved = 0;
    for (auto [a, amount] : moved_) {
      if (a == asset) moved = amount;
    }
    return Numbers(moved, 0, WalletSums(org.pool_slot, asset).available);
  }

  // ExpireWalletLots removes a wallet's expired lots, recording each; returns
  // how many.
  uint32_t ExpireWalletLots(Org& org, uint32_t slot) {
    Wallet& w = W(slot);
    uint32_t expired = 0;
    for (uint32_t i = 0; i < w.lot_count;) {
      Lot lot = w.lots()[i];
      if (lot.expires_at_us > now_) {
        ++i;
        continue;
      }
      Sums before = WalletSums(slot, lot.asset);
      Lot* lots = w.lots();
      std::memmove(lots + i, lots + i + 1, (w.lot_count - i - 1) * sizeof(Lot));
      --w.lot_count;
      w.RefreshSummary();
      AssetTotals& t = org.totals_for(lot.asset);
      t.available -= lot.remaining;
      t.expired += lot.remaining;
      Record(slot, HistoryKind::expire, true, false, lot.asset, lot.remaining,
             before.book - lot.remaining, lot.grant_id, {}, {});
      Emit(EventKind::credits_expired, org, w.id, lot.grant_id, lot.asset, lot.remaining,
           before.available);
      NoteDecrease(org, slot, lot.asset, before.book, before.book - lot.remaining);
      ++expired;
    }
    return expired;
  }

  Result Sweep() {
    uint32_t lots_expired = 0;
    uint32_t holds_released = 0;
    while (!s_.lot_expiry.empty() && s_.lot_expiry.begin()->first <= now_ &&
           lots_expired < sweep_lots_max) {
      uint32_t slot = s_.lot_expiry.begin()->second;
      s_.lot_expiry.erase(s_.lot_expiry.begin());
      Org& org = *s_.orgs[W(slot).org_slot];
      lots_expired += ExpireWalletLots(org, slot);
    }
    while (!s_.hold_deadlines.empty() && std::get<0>(*s_.hold_deadlines.begin()) <= now_ &&
           lots_expired + holds_released < sweep_lots_max) {
      auto [deadline, org_slot, hold_id] = *s_.hold_deadlines.begin();
      Org& org = *s_.orgs[org_slot];
      Hold& hold = org.holds.at(hold_id);
      if (hold.timeout_us <= now_) {
        CloseHold(org, hold_id, &lots_expired);
        ++holds_released;
        continue;
      }
      UnindexHold(org, hold_id, hold);
      size_t before = hold.lots.size();
      ExpireHeldLots(org, hold, hold_id);
      lots_expired += static_cast<uint32_t>(before - hold.lots.size());
      IndexHold(org, hold_id, hold);
    }
    bool more = (!s_.lot_expiry.empty() && s_.lot_expiry.begin()->first <= now_) ||
                (!s_.hold_deadlines.empty() && std::get<0>(*s_.hold_deadlines.begin()) <= now_);
    return Numbers(lots_expired, holds_released, more ? 1 : 0);
  }


  State& s_;
  BatchOutput* out_;
  static constexpr size_t window = 256;  // commands walked and applied together
  const int64_t now_;
  const uint64_t time_meta_ = HistoryEntry::PackTime(now_);  // history entries' time bits
  bool settle_each_ = true;
  // Orgs never move or go (unique_ptr each): a batch remembers the last it
  // found per org id modulo cached_orgs_max, so a batch that mixes a few
  // orgs finds each once (with one remembered org, a batch of four orgs at
  // random looked three commands in four up in the hash map, in the walk
  // and again in the apply).
  static constexpr size_t cached_orgs_max = 8;
  Org* cached_orgs_[cached_orgs_max] = {};
  Asset valid_asset_ = Asset::Credits();  // never the empty code: that one is invalid
  Asset cached_asset_;
  uint16_t cached_asset_index_ = no_asset;
  // Scratch, reused within a batch.
  std::vector<OpMemory::Claim>& claims_ = s_.claims;
  std::vector<OpKey>& keys_ = s_.claim_keys;
  std::vector<uint64_t>& hashes_ = s_.claim_hashes;
  std::vector<uint32_t>& slots_ = s_.prefetch_slots;
  // Per window (ApplyBatch): what the prefetch walks found, and which
  // results are to be settled.
  const Org* window_orgs_[window];
  uint64_t window_homes_[window];
  const Wallet* window_wallets_[window];
  bool fresh_[window];
  std::vector<WalletAmount> targets_;
  std::vector<uint64_t> request_ids_;
  std::vector<uint64_t> hold_ids_;
  std::vector<std::pair<uint16_t, int64_t>> moved_;
  absl::flat_hash_map<uint64_t, uint32_t> received_;
};

}  // namespace engine

Ledger::Ledger(const LedgerOptions& options)
    : state_(std::make_unique<engine::State>(options)) {}

Ledger::~Ledger() = default;

namespace {

template <typename Commands>
void ApplyTo(engine::State& state, int64_t time_us, Commands commands, BatchOutput* out) {
  TALLY_ASSERT(commands.size() <= batch_commands_max);
  out->results.clear();
  out->events.clear();
  state.now_us = std::max(state.now_us, time_us);
  out->time_us = state.now_us;
  out->results.reserve(commands.size());
  engine::Machine machine(state, out);
  machine.ApplyBatch(commands);
}

}  // namespace

void Ledger::Apply(int64_t time_us, std::span<const Command> commands, BatchOutput* out) {
  ApplyTo(*state_, time_us, engine::Contiguous{commands}, out);
}

void Ledger::Apply(int64_t time_us, std::span<const Command* const> commands, BatchOutput* out) {
  ApplyTo(*state_, time_us, engine::Indirect{commands}, out);
}

int64_t Ledger::last_time_us() const { return state_->now_us; }
uint64_t Ledger::org_count() const { return state_->orgs.size(); }
uint64_t Ledger::wallet_count() const { return state_->wallets.size(); }
uint64_t Ledger::history_entries_total() const { return state_->history.total(); }

}  // namespace tally
