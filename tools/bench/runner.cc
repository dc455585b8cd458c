#include "tools/bench/runner.h"

#include <poll.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <mutex>
#include <ostream>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tally/client.h"
#include "tally/commands.h"
#include "tally/limits.h"
#include "tally/shard.h"
#include "tools/bench/model.h"
#include "tools/bench/random.h"
#include "tools/bench/strings.h"

namespace tally::bench {

namespace {

using Clock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}
int64_t WallUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
constexpr int64_t kDayUs = int64_t{24} * 3600 * 1000000;
// Op ids: 23 bits of run tag, 11 bits of connection (setup and resends use
// their own), 30 bits counting.  The orgs are new each run as well.
constexpr uint64_t kSetupConnection = 2047;
constexpr uint32_t kDrainTimeoutMs = 30000;

ClientOptions BenchClientOptions() {
  ClientOptions o;
  o.client_name = "tally-bench";
  return o;
}

// PendingOp is one command (or query) of a frame in flight: enough to fold
// its result into the Model, and to build the command again for a resend.
struct PendingOp {
  OpKind kind{};
  uint64_t index = 0;      // wallet index (allocate: any wallet of the org)
  int64_t amount = 0;      // asked for (hold, capture: the hold's amount)
  uint64_t ref = 0;        // hold or request id
  int64_t ref_amount = 0;  // capture: what the hold reserved
  uint64_t op_id = 0;
  int64_t expires_at_us = 0;
};

struct Pending {
  int64_t intended_ns = 0;
  bool query = false;
  std::vector<PendingOp> ops;
  std::vector<uint64_t> target_indexes;  // allocate: every target's wallet index
};

struct OpenItem {  // a hold to capture or release, a request to approve
  uint64_t index = 0;
  uint64_t id = 0;
  int64_t amount = 0;
};

struct Connection {
  uint32_t number = 0;
  std::unique_ptr<Client> client;
  absl::flat_hash_map<uint64_t, Pending> in_flight;
  std::vector<OpenItem> holds;     // acknowledged, not yet captured or released
  std::vector<OpenItem> requests;  // acknowledged, still pending
  uint32_t holds_outstanding = 0;  // holds open or in flight
  uint32_t requests_outstanding = 0;
  uint64_t next_seq = 1;
  bool broken = false;
  std::vector<Pending> orphans;  // in flight when the connection broke
  std::vector<Result> results;   // the last apply reply's, reused (no allocation per reply)
};

// Shared counters a worker publishes for the live line and the report.
struct WorkerStats {
  LatencyHistogram latency;
  std::atomic<uint64_t> ops_total{0};
  std::atomic<uint64_t> errors{0};
  // Written by the worker alone, read once it has ended: no lock per reply.
  uint64_t window_ops = 0, window_frames = 0, window_targets = 0;
  uint64_t invoices_full = 0, invoices_partial = 0, invoices_unpaid = 0;
};

// ResultCodeText is the snake_case name (result_code.h).
std::string CodeText(ResultCode code) { return std::string(ResultCodeName(code)); }

bool ExpectedRefusal(OpKind kind, ResultCode code) {
  switch (kind) {
    case OpKind::deduct:
    case OpKind::hold:
      return code == ResultCode::insufficient_funds;
    case OpKind::grant:
      return code == ResultCode::limit_exceeded;  // the wallet holds wallet_lots_max lots
    case OpKind::allocate:
    case OpKind::approve:
      return code == ResultCode::insufficient_pool;
    default:
      return false;
  }
}

// ModelChanges holds a worker thread's folded results until there are
// enough of them to add to the Model together, so that the adds' misses
// overlap. The Model's counters are shared: every worker adds to the same
// wallets' and orgs' lines, so one add on a random wallet was a miss on a
// line the other thread had last written, and a frame of one deduct (50
// connections x 32 in flight) paid it alone, with nothing to overlap it:
// Fold, 84 % of it on that one locked add, was 6.6 % of the machine
// (bench/RESULTS.md, 2026-12-04). Now a thread adds its changes in runs of
// kFlushAt wallets, fetching each wallet's line kAhead adds ahead; an org's
// counters get one add a flush instead of one an op.
//
// The Model is read only to verify, after every worker has flushed (the end
// of Worker) and the resends have (each Fold of a resend flushes), so
// holding changes back changes no answer.
class ModelChanges {
 public:
  enum Counter { pool = 0, spent = 1, in = 2 };
  static constexpr size_t kFlushAt = 512;
  static constexpr size_t kAhead = 16;

  void AddAvailable(uint64_t index, int64_t delta) { wallets_.push_back({index, delta, 0}); }
  void AddHeld(uint64_t index, int64_t delta) { wallets_.push_back({index, 0, delta}); }
  void AddOrg(uint32_t org, Counter counter, int64_t delta) {
    if (org >= org_sums_.size()) {
      org_sums_.resize(org + 1, Sums{});
      org_touched_flag_.resize(org + 1, false);
    }
    if (!org_touched_flag_[org]) {
      org_touched_flag_[org] = true;
      org_touched_.push_back(org);
    }
    org_sums_[org][counter] += delta;
  }
  bool Full() const { return wallets_.size() >= kFlushAt; }

  // Flush adds everything held to the model and starts again from zero.
  void Flush(Model& model) {
    const size_t n = wallets_.size();
    for (size_t i = 0; i < std::min(kAhead, n); ++i) model.PrefetchWallet(wallets_[i].index);
    for (size_t i = 0; i < n; ++i) {
      if (i + kAhead < n) model.PrefetchWallet(wallets_[i + kAhead].index);
      const WalletChange& w = wallets_[i];
      if (w.available != 0) model.AddAvailable(w.index, w.available);
      if (w.held != 0) model.AddHeld(w.index, w.held);
    }
    wallets_.clear();
    for (uint32_t org : org_touched_) {
      Sums& s = org_sums_[org];
      if (s[pool] != 0) model.AddPool(org, s[pool]);
      if (s[spent] != 0) model.AddSpent(org, s[spent]);
      if (s[in] != 0) model.AddIn(org, s[in]);
      s = Sums{};
      org_touched_flag_[org] = false;
    }
    org_touched_.clear();
  }

 private:
  struct WalletChange {
    uint64_t index;
    int64_t available;
    int64_t held;
  };
  using Sums = std::array<int64_t, 3>;
  std::vector<WalletChange> wallets_;
  std::vector<Sums> org_sums_;  // by org index
  std::vector<bool> org_touched_flag_;
  std::vector<uint32_t> org_touched_;
};

// Per thread: the workers' and, after them, the resending thread's.
thread_local ModelChanges model_changes;

class Run_ {
 public:
  Run_(const Options& o, const std::string& address, const std::string& token)
      : o_(o), address_(address), token_(token), model_(o) {
    uint64_t seed = o.seed != 0 ? o.seed : static_cast<uint64_t>(NowNs());
    seed_ = SplitMix64(seed);
    run_tag_ = (SplitMix64(seed_ + 1) & ((uint64_t{1} << 23) - 1)) | 1;
    if (o.dist == Distribution::zipf) zipf_ = std::make_unique<ZipfGenerator>(o.wallets, o.zipf_s);
    for (size_t k = 0; k < op_kinds; ++k) mix_total_ += o.mix[k];
    threads_ =
        o.threads != 0
            ? o.threads
            : std::min<uint32_t>(o.connections, std::max(1u, std::thread::hardware_concurrency()));
    threads_ = std::min(threads_, o.connections);
  }

  absl::StatusOr<RunReport> Go(std::ostream* live, const std::atomic<bool>* stop);

 private:
  uint64_t OpId(uint32_t connection, uint64_t seq) const {
    TALLY_ASSERT(seq < (uint64_t{1} << 30));
    return (run_tag_ << 41) | (uint64_t{connection} << 30) | seq;
  }
  // ---- setup
  absl::Status Setup();
  absl::Status SetupOrgs(Client& client, uint32_t first, uint32_t step, uint64_t* seq);
  absl::Status ApplySetup(Client& client, std::vector<Command>& commands,
                          std::vector<PendingOp>& ops,
                          std::vector<std::vector<WalletAmount>>& targets);
  // ---- the run
  void Worker(uint32_t t, WorkerStats* stats);
  bool SendFrame(Connection& c, Rng& rng, int64_t intended_ns);
  PendingOp NextOp(Connection& c, Rng& rng, bool query_allowed);
  uint64_t PickWallet(Rng& rng) const {
    return zipf_ ? zipf_->Scatter(zipf_->Next(rng)) : rng.Below(o_.wallets);
  }
  void BuildCommands(const Pending& p, std::vector<Command>* commands,
                     std::vector<WalletAmount>* targets) const;
  void ReceiveReady(Connection& c, WorkerStats* stats);
  void Fold(Connection* c, const Pending& p, const std::vector<Result>& results, WorkerStats* stats,
            bool resend);
  void Break(Connection& c, const absl::Status& why, WorkerStats* stats);
  void CountError(const std::string& what, WorkerStats* stats) {
    std::lock_guard lock(mu_);
    ++report_.errors[what];
    if (stats != nullptr) stats->errors.fetch_add(1, std::memory_order_relaxed);
  }
  void CountRefusal(ResultCode code) {
    std::lock_guard lock(mu_);
    ++report_.refusals[CodeText(code)];
  }
  void Resend(std::vector<Connection>& conns);
  // ---- the end
  void Verify(const std::atomic<bool>* stop);
  void VerifyWallets(uint32_t t, const std::vector<uint64_t>& sample);
  void Mismatch(std::string what, bool org);

  const Options& o_;
  std::string address_, token_;
  Model model_;
  uint64_t seed_ = 0;
  uint64_t run_tag_ = 0;
  std::unique_ptr<ZipfGenerator> zipf_;
  uint64_t mix_total_ = 0;
  uint32_t threads_ = 1;
  int64_t start_wall_us_ = 0;

  int64_t warmup_end_ns_ = 0, end_ns_ = 0;
  const std::atomic<bool>* stop_ = nullptr;
  std::vector<std::vector<Connection>> conns_;  // per thread

  std::mutex mu_;  // guards report_ while workers run
  RunReport report_;
};

// ---------------------------------------------------------------- setup

absl::Status Run_::ApplySetup(Client& client, std::vector<Command>& commands,
                              std::vector<PendingOp>& ops,
                              std::vector<std::vector<WalletAmount>>& targets) {
  if (commands.empty()) return absl::OkStatus();
  absl::StatusOr<std::vector<Result>> results = client.Apply(commands);
  if (!results.ok()) return results.status();
  for (size_t i = 0; i < results->size(); ++i) {
    const Result& r = (*results)[i];
    const Command& c = commands[i];
    const PendingOp& op = ops[i];
    uint32_t org = model_.OrgIndex(op.index);
    if (!r.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("setup: command kind ", static_cast<int>(c.kind), " for org ", c.org_id,
                       " refused: ", Sv(ResultCodeName(r.code))));
    }
    if (c.kind == CommandKind::topup) {
      model_.AddPool(org, c.amount);
      model_.AddIn(org, c.amount);
    } else if (c.kind == CommandKind::allocate) {
      for (const WalletAmount& t : c.targets) {
        model_.AddPool(org, -t.amount);
        model_.AddAvailable(model_.IndexOf(org, t.wallet_id - 1), t.amount);
      }
    }
  }
  commands.clear();
  ops.clear();
  targets.clear();
  return absl::OkStatus();
}

// SetupOrgs creates orgs first, first+step, ... and funds their wallets.
absl::Status Run_::SetupOrgs(Client& client, uint32_t first, uint32_t step, uint64_t* seq) {
  std::vector<Command> commands;
  std::vector<PendingOp> ops;
  std::vector<std::vector<WalletAmount>> targets;
  targets.reserve(64);
  auto add = [&](Command c, uint32_t org) {
    c.op_id = OpId(kSetupConnection, (*seq)++);
    commands.push_back(c);
    ops.push_back({.index = org});
  };
  for (uint32_t org = first; org < o_.orgs; org += step) {
    add(cmd::OrgCreate(model_.OrgId(org)), org);
  }
  if (absl::Status s = ApplySetup(client, commands, ops, targets); !s.ok()) return s;

  const bool invoice = o_.workload == WorkloadKind::invoice_run;
  const uint32_t rounds = invoice ? o_.invoice_lots : 1;
  for (uint32_t round = 0; round < rounds; ++round) {
    // Invoice runs: each round a pool lot expiring a day later than the
    // last, allocated to every wallet: each wallet ends with `rounds` lots
    // expiring at different times.
    int64_t expires_at_us = invoice ? start_wall_us_ + (round + 1) * kDayUs : 0;
    for (uint32_t org = first; org < o_.orgs; org += step) {
      uint64_t n = model_.WalletsIn(org);
      // The allocate workload keeps as much again in the pool to allocate.
      int64_t topup =
          static_cast<int64_t>(n) * o_.balance * (o_.workload == WorkloadKind::allocate ? 2 : 1);
      add(cmd::Topup(model_.OrgId(org), topup, expires_at_us), org);
      if (absl::Status s = ApplySetup(client, commands, ops, targets); !s.ok()) return s;
      size_t body_bytes = 0;
      for (uint64_t j = 0; j < n; j += bench_allocate_targets_max) {
        uint64_t end = std::min<uint64_t>(n, j + bench_allocate_targets_max);
        std::vector<WalletAmount>& list = targets.emplace_back();
        for (uint64_t w = j; w < end; ++w) list.push_back({w + 1, o_.balance});
        add(cmd::Allocate(model_.OrgId(org), list), org);
        body_bytes += list.size() * 16 + 64;
        // A frame's body stays under frame_body_bytes_max; the targets' vector
        // of vectors never reallocates past 64, so the spans stay valid.
        if (body_bytes > frame_body_bytes_max / 2 || targets.size() == 64) {
          if (absl::Status s = ApplySetup(client, commands, ops, targets); !s.ok()) return s;
          body_bytes = 0;
        }
      }
      if (absl::Status s = ApplySetup(client, commands, ops, targets); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Run_::Setup() {
  uint32_t n = std::min(threads_, o_.orgs);
  std::vector<absl::Status> status(n);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < n; ++t) {
    threads.emplace_back([this, t, n, &status] {
      absl::StatusOr<std::unique_ptr<Client>> client =
          Client::Connect(address_, token_, BenchClientOptions());
      if (!client.ok()) {
        status[t] = client.status();
        return;
      }
      // Each setup thread counts its own op ids: seq ranges apart.
      uint64_t seq = uint64_t{t} * (uint64_t{1} << 24) + 1;
      status[t] = SetupOrgs(**client, t, n, &seq);
    });
  }
  for (std::thread& th : threads) th.join();
  for (const absl::Status& s : status) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- the run

PendingOp Run_::NextOp(Connection& c, Rng& rng, bool query_allowed) {
  // Draw a kind by the mix; kinds that cannot go now fall back to one that can.
  uint64_t draw = rng.Below(mix_total_);
  size_t k = 0;
  while (draw >= o_.mix[k]) draw -= o_.mix[k++];
  auto kind = static_cast<OpKind>(k);
  if (kind == OpKind::balance && !query_allowed) {
    kind = o_.workload == WorkloadKind::allocate      ? OpKind::allocate
           : o_.workload == WorkloadKind::invoice_run ? OpKind::invoice
                                                      : OpKind::deduct;
  }
  PendingOp op;
  op.op_id = OpId(c.number, c.next_seq++);
  op.amount = o_.amount;
  if ((kind == OpKind::capture || kind == OpKind::release) && c.holds.empty()) kind = OpKind::hold;
  if (kind == OpKind::hold && c.holds_outstanding >= bench_open_items_max) kind = OpKind::deduct;
  if (kind == OpKind::approve && c.requests.empty()) kind = OpKind::request;
  if (kind == OpKind::request && c.requests_outstanding >= bench_open_items_max) {
    kind = OpKind::allocate;
  }
  op.kind = kind;
  switch (kind) {
    case OpKind::capture:
    case OpKind::release: {
      size_t i = rng.Below(c.holds.size());
      OpenItem h = c.holds[i];
      c.holds[i] = c.holds.back();
      c.holds.pop_back();
      op.index = h.index;
      op.ref = h.id;
      op.ref_amount = h.amount;
      op.amount = std::max<int64_t>(1, h.amount / 2);  // capture half, release the rest
      break;
    }
    case OpKind::approve: {
      size_t i = rng.Below(c.requests.size());
      OpenItem r = c.requests[i];
      c.requests[i] = c.requests.back();
      c.requests.pop_back();
      op.index = r.index;
      op.ref = r.id;
      op.ref_amount = r.amount;
      break;
    }
    case OpKind::hold:
      ++c.holds_outstanding;
      op.index = PickWallet(rng);
      op.amount = o_.amount * 10;
      break;
    case OpKind::request:
      ++c.requests_outstanding;
      op.index = PickWallet(rng);
      break;
    case OpKind::grant:
      // Grants expire (in a day) so deducts spend them first and a hot
      // wallet's lots do not pile up.
      op.index = PickWallet(rng);
      op.amount = o_.amount * 10;
      op.expires_at_us = start_wall_us_ + kDayUs;
      break;
    case OpKind::invoice:
      op.index = PickWallet(rng);
      op.amount = 1 + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(2 * o_.amount)));
      break;
    default:
      op.index = PickWallet(rng);
      break;
  }
  return op;
}

void Run_::BuildCommands(const Pending& p, std::vector<Command>* commands,
                         std::vector<WalletAmount>* targets) const {
  commands->clear();
  targets->clear();
  targets->reserve(p.target_indexes.size());
  for (uint64_t index : p.target_indexes) targets->push_back({model_.WalletId(index), o_.amount});
  size_t next_target = 0;
  // Deducts, nearly every command of the default workload, are copied from
  // a made command with four fields set: building each one through
  // cmd::Deduct constructed three 152-byte Commands (each asking
  // Asset::Credits()) to push one (perf: BuildCommands was a quarter of
  // tally-bench's samples at frames of 8,000).
  static const Command deducts[2] = {cmd::Deduct(0, 0, 0, /*partial=*/false),
                                     cmd::Deduct(0, 0, 0, /*partial=*/true)};
  commands->reserve(p.ops.size());
  for (const PendingOp& op : p.ops) {
    uint64_t org = model_.OrgId(model_.OrgIndex(op.index));
    uint64_t wallet = model_.WalletId(op.index);
    if (op.kind == OpKind::deduct || op.kind == OpKind::invoice) {
      Command& c = commands->emplace_back(deducts[op.kind == OpKind::invoice ? 1 : 0]);
      c.org_id = org;
      c.wallet_id = wallet;
      c.amount = op.amount;
      c.op_id = op.op_id;
      continue;
    }
    Command c;
    switch (op.kind) {
      case OpKind::hold:
        c = cmd::Hold(org, wallet, op.amount);
        break;
      case OpKind::capture:
        c = cmd::Capture(org, op.ref, op.amount);
        break;
      case OpKind::release:
        c = cmd::Release(org, op.ref);
        break;
      case OpKind::grant:
        c = cmd::Grant(org, wallet, op.amount, op.expires_at_us);
        break;
      case OpKind::request:
        c = cmd::Request(org, wallet, op.amount);
        break;
      case OpKind::approve:
        c = cmd::Approve(org, op.ref);
        break;
      case OpKind::allocate:
        c = cmd::Allocate(
            org, std::span<const WalletAmount>(targets->data() + next_target, o_.allocate_targets));
        next_target += o_.allocate_targets;
        break;
      case OpKind::deduct:   // above
      case OpKind::invoice:  // above
      case OpKind::balance:
      case OpKind::count_:
        TALLY_ASSERT(false);
    }
    c.op_id = op.op_id;
    commands->push_back(c);
  }
}

bool Run_::SendFrame(Connection& c, Rng& rng, int64_t intended_ns) {
  Pending p;
  p.intended_ns = intended_ns;
  PendingOp first = NextOp(c, rng, /*query_allowed=*/true);
  uint64_t request_id = 0;
  if (first.kind == OpKind::balance) {
    p.query = true;
    std::string body;
    proto::EncodeBalanceRequest({.org_id = model_.OrgId(model_.OrgIndex(first.index)),
                                 .wallet_id = model_.WalletId(first.index)},
                                &body);
    request_id = c.client->SendQuery(proto::Opcode::balance, body);
    p.ops.push_back(first);
  } else {
    p.ops.reserve(o_.ops_per_frame);
    p.ops.push_back(first);
    while (p.ops.size() < o_.ops_per_frame) p.ops.push_back(NextOp(c, rng, false));
    for (const PendingOp& op : p.ops) {
      if (op.kind != OpKind::allocate) continue;
      uint32_t org = model_.OrgIndex(op.index);
      uint64_t n = model_.WalletsIn(org);
      for (uint32_t i = 0; i < o_.allocate_targets; ++i) {
        // Distinct targets are not required: the same wallet twice is credited twice.
        p.target_indexes.push_back(model_.IndexOf(org, rng.Below(n)));
      }
    }
    thread_local std::vector<Command> commands;
    thread_local std::vector<WalletAmount> targets;
    BuildCommands(p, &commands, &targets);
    absl::StatusOr<uint64_t> id = c.client->SendApply(commands);
    if (!id.ok()) {
      // Only a frame over the limits fails here: a bug in the flags' checks.
      CountError(absl::StrCat("encode: ", id.status().message()), nullptr);
      return false;
    }
    request_id = *id;
  }
  c.in_flight.emplace(request_id, std::move(p));
  return true;
}

void Run_::Break(Connection& c, const absl::Status& why, WorkerStats* stats) {
  if (c.broken) return;
  c.broken = true;
  CountError(absl::StrCat("connection: ", why.ToString()), stats);
  for (auto& [id, p] : c.in_flight) {
    if (!p.query) c.orphans.push_back(std::move(p));
  }
  c.in_flight.clear();
}

void Run_::Fold(Connection* c, const Pending& p, const std::vector<Result>& results,
                WorkerStats* stats, bool resend) {
  size_t next_target = 0;
  ModelChanges& changes = model_changes;
  for (size_t i = 0; i < p.ops.size(); ++i) {
    const PendingOp& op = p.ops[i];
    const Result& r = results[i];
    uint32_t org = model_.OrgIndex(op.index);
    if (r.replayed && !resend) CountError("replayed: an op id was already used", stats);
    if (!r.ok()) {
      if (ExpectedRefusal(op.kind, r.code)) {
        CountRefusal(r.code);
      } else {
        CountError(absl::StrCat(Sv(OpKindName(op.kind)), ": ", Sv(ResultCodeName(r.code))), stats);
      }
      if (c != nullptr) {
        // The hold or request is still open: keep it for later.
        if (op.kind == OpKind::capture || op.kind == OpKind::release) {
          c->holds.push_back({op.index, op.ref, op.ref_amount});
        } else if (op.kind == OpKind::approve) {
          c->requests.push_back({op.index, op.ref, op.ref_amount});
        } else if (op.kind == OpKind::hold) {
          --c->holds_outstanding;
        } else if (op.kind == OpKind::request) {
          --c->requests_outstanding;
        }
      }
      if (op.kind == OpKind::allocate) next_target += o_.allocate_targets;
      continue;
    }
    switch (op.kind) {
      case OpKind::deduct:
      case OpKind::invoice:
        changes.AddAvailable(op.index, -r.applied());
        changes.AddOrg(org, ModelChanges::spent, r.applied());
        if (op.kind == OpKind::invoice && stats != nullptr) {
          if (r.remainder() == 0)
            ++stats->invoices_full;
          else if (r.applied() > 0)
            ++stats->invoices_partial;
          else
            ++stats->invoices_unpaid;
        }
        break;
      case OpKind::hold:
        changes.AddAvailable(op.index, -r.applied());
        changes.AddHeld(op.index, r.applied());
        if (c != nullptr) c->holds.push_back({op.index, r.id, r.applied()});
        break;
      case OpKind::capture:
        changes.AddHeld(op.index, -op.ref_amount);
        changes.AddAvailable(op.index, op.ref_amount - r.applied());
        changes.AddOrg(org, ModelChanges::spent, r.applied());
        if (c != nullptr) --c->holds_outstanding;
        break;
      case OpKind::release:
        changes.AddHeld(op.index, -op.ref_amount);
        changes.AddAvailable(op.index, op.ref_amount);
        if (c != nullptr) --c->holds_outstanding;
        break;
      case OpKind::grant:
        changes.AddAvailable(op.index, op.amount);
        changes.AddOrg(org, ModelChanges::in, op.amount);
        break;
      case OpKind::allocate:
        if (r.allocated() != o_.amount * o_.allocate_targets) {
          CountError("allocate: allocated differs from the targets' sum", stats);
        }
        for (uint32_t k = 0; k < o_.allocate_targets; ++k) {
          changes.AddAvailable(p.target_indexes[next_target + k], o_.amount);
        }
        changes.AddOrg(org, ModelChanges::pool, -o_.amount * o_.allocate_targets);
        next_target += o_.allocate_targets;
        break;
      case OpKind::request:
        if (c != nullptr) c->requests.push_back({op.index, r.id, op.amount});
        break;
      case OpKind::approve:
        changes.AddAvailable(op.index, r.allocated());
        changes.AddOrg(org, ModelChanges::pool, -r.allocated());
        if (c != nullptr) --c->requests_outstanding;
        break;
      case OpKind::balance:
      case OpKind::count_:
        break;
    }
  }
  if (resend || changes.Full()) changes.Flush(model_);
}

void Run_::ReceiveReady(Connection& c, WorkerStats* stats) {
  int64_t now = 0;
  while (!c.broken && !c.in_flight.empty()) {
    // A reply already buffered came with the recv that read the one before
    // it: it arrived at that time, no need to read the clock again (one
    // recv takes dozens of one-op replies).
    const bool buffered = c.client->reply_buffered();
    absl::StatusOr<Reply> reply = c.client->Receive();
    if (!buffered || now == 0) now = NowNs();
    if (!reply.ok()) {
      Break(c, reply.status(), stats);
      return;
    }
    auto it = c.in_flight.find(reply->request_id);
    if (it == c.in_flight.end()) {
      Break(c, absl::DataLossError("a reply to no request in flight"), stats);
      return;
    }
    Pending p = std::move(it->second);
    c.in_flight.erase(it);
    uint64_t n_ops = p.ops.size();
    if (!reply->ok()) {
      // Refused as a whole: nothing in it was applied.
      CountError(absl::StrCat("frame: ", Sv(ResultCodeName(reply->status))), stats);
      if (!p.query) {
        std::vector<Result> refused(p.ops.size());
        for (Result& r : refused) r.code = reply->status;
        Fold(&c, p, refused, nullptr, false);
      }
    } else if (p.query) {
      Balance b;
      int64_t as_of = 0;
      if (!proto::DecodeBalanceReply(reply->body, &b, &as_of).ok() || b.available < 0 ||
          b.held < 0) {
        CountError("balance: a reply that does not decode or is negative", stats);
      }
    } else {
      int64_t time_us = 0;
      std::vector<Result>& results = c.results;
      if (!proto::DecodeApplyReply(reply->body, &time_us, &results).ok() ||
          results.size() != p.ops.size()) {
        // Cannot tell what happened: resend with the same op ids later.
        c.orphans.push_back(std::move(p));
        Break(c, absl::DataLossError("an apply reply that does not decode"), stats);
        return;
      }
      Fold(&c, p, results, stats, false);
    }
    stats->ops_total.fetch_add(n_ops, std::memory_order_relaxed);
    if (p.intended_ns >= warmup_end_ns_ && now <= end_ns_) {
      stats->latency.Record(static_cast<uint64_t>(std::max<int64_t>(0, now - p.intended_ns)));
      stats->window_ops += n_ops;
      ++stats->window_frames;
      if (o_.workload == WorkloadKind::allocate) {
        for (const PendingOp& op : p.ops) {
          if (op.kind == OpKind::allocate) stats->window_targets += o_.allocate_targets;
        }
      }
    }
    // More replies already read (one recv takes many)? Take them without
    // another poll; poll cannot see them.
    if (!c.client->reply_buffered()) return;
  }
}

void Run_::Worker(uint32_t t, WorkerStats* stats) {
  std::vector<Connection>& conns = conns_[t];
  Rng rng(seed_ + 1000 + t);
  const bool open_loop = o_.rate_per_s > 0;
  // Open loop: this thread's share of the rate, one frame every interval.
  const double frames_per_s = o_.rate_per_s / threads_ / o_.ops_per_frame;
  const double interval_ns = open_loop ? 1e9 / frames_per_s : 0;
  double next_intended = static_cast<double>(NowNs());
  size_t round_robin = 0;
  std::vector<pollfd> fds(conns.size());

  auto stopping = [&] { return NowNs() >= end_ns_ || stop_->load(std::memory_order_relaxed); };
  while (!stopping()) {
    int64_t now = NowNs();
    if (!open_loop) {
      for (Connection& c : conns) {
        while (!c.broken && c.in_flight.size() < o_.depth) {
          if (!SendFrame(c, rng, now)) break;
        }
      }
    } else {
      while (next_intended <= static_cast<double>(now)) {
        // The next connection with room; none: the frame waits, and its
        // latency still counts from when it should have gone.
        Connection* target = nullptr;
        for (size_t k = 0; k < conns.size() && target == nullptr; ++k) {
          Connection& c = conns[(round_robin + k) % conns.size()];
          if (!c.broken && c.in_flight.size() < o_.depth) target = &c;
        }
        if (target == nullptr) break;
        round_robin = (round_robin + 1) % conns.size();
        if (!SendFrame(*target, rng, static_cast<int64_t>(next_intended))) break;
        next_intended += interval_ns;
      }
    }
    for (Connection& c : conns) {
      if (!c.broken && c.client->queued_bytes() > 0) {
        if (absl::Status s = c.client->Flush(); !s.ok()) Break(c, s, stats);
      }
    }
    bool any_alive = false;
    for (size_t i = 0; i < conns.size(); ++i) {
      fds[i] = {conns[i].broken ? -1 : conns[i].client->fd(), POLLIN, 0};
      any_alive = any_alive || !conns[i].broken;
    }
    if (!any_alive) break;
    int64_t wait_ns = 10'000'000;
    if (open_loop) {
      wait_ns = std::clamp<int64_t>(static_cast<int64_t>(next_intended) - NowNs(), 0, wait_ns);
    }
    timespec ts{static_cast<time_t>(wait_ns / 1'000'000'000),
                static_cast<long>(wait_ns % 1'000'000'000)};
    int ready = ppoll(fds.data(), fds.size(), &ts, nullptr);
    if (ready <= 0) continue;
    for (size_t i = 0; i < conns.size(); ++i) {
      if (fds[i].revents != 0) ReceiveReady(conns[i], stats);
    }
  }
  // Drain: every frame sent gets its answer (or its connection is given up).
  int64_t drain_end = NowNs() + int64_t{kDrainTimeoutMs} * 1'000'000;
  while (NowNs() < drain_end) {
    bool waiting = false;
    for (size_t i = 0; i < conns.size(); ++i) {
      Connection& c = conns[i];
      bool w = !c.broken && !c.in_flight.empty();
      if (w && c.client->queued_bytes() > 0) {
        if (absl::Status s = c.client->Flush(); !s.ok()) Break(c, s, stats);
      }
      fds[i] = {w ? c.client->fd() : -1, POLLIN, 0};
      waiting = waiting || w;
    }
    if (!waiting) break;
    if (poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (size_t i = 0; i < conns.size(); ++i) {
      if (fds[i].revents != 0) ReceiveReady(conns[i], stats);
    }
  }
  for (Connection& c : conns) {
    if (!c.in_flight.empty())
      Break(c, absl::DeadlineExceededError("no reply while draining"), stats);
  }
  model_changes.Flush(model_);  // before anything reads the Model
}

// Resend sends every orphaned frame again, with the same op ids, on a new
// connection: the server applies what it had not, and answers the rest with
// the first result, so each outcome is known.
void Run_::Resend(std::vector<Connection>& conns) {
  for (Connection& c : conns) {
    if (c.orphans.empty()) continue;
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Connect(address_, token_, BenchClientOptions());
    for (Pending& p : c.orphans) {
      std::vector<Command> commands;
      std::vector<WalletAmount> targets;
      BuildCommands(p, &commands, &targets);
      absl::StatusOr<std::vector<Result>> results =
          client.ok() ? (*client)->Apply(commands)
                      : absl::StatusOr<std::vector<Result>>(client.status());
      if (!results.ok()) {
        CountError(absl::StrCat("resend: ", results.status().ToString()), nullptr);
        std::lock_guard lock(mu_);
        report_.verify.unresolved_ops += p.ops.size();
        continue;
      }
      {
        std::lock_guard lock(mu_);
        ++report_.retried_frames;
      }
      Fold(nullptr, p, *results, nullptr, /*resend=*/true);
    }
    c.orphans.clear();
  }
}

// ---------------------------------------------------------------- verify

void Run_::Mismatch(std::string what, bool org) {
  std::lock_guard lock(mu_);
  if (org)
    ++report_.verify.org_mismatches;
  else
    ++report_.verify.wallet_mismatches;
  if (report_.verify.first_mismatch.empty()) report_.verify.first_mismatch = std::move(what);
}

void Run_::VerifyWallets(uint32_t t, const std::vector<uint64_t>& sample) {
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect(address_, token_, BenchClientOptions());
  if (!client.ok()) {
    Mismatch(absl::StrCat("verify: cannot connect: ", client.status().ToString()), false);
    return;
  }
  const uint64_t window = 256;                    // queries in flight
  absl::flat_hash_map<uint64_t, uint64_t> asked;  // request id -> wallet index
  size_t next = t;
  uint64_t checked = 0;
  const bool invoice = o_.workload == WorkloadKind::invoice_run;
  while (next < sample.size() || !asked.empty()) {
    while (next < sample.size() && asked.size() < window) {
      uint64_t index = sample[next];
      next += threads_;
      std::string body;
      proto::EncodeBalanceRequest(
          {.org_id = model_.OrgId(model_.OrgIndex(index)), .wallet_id = model_.WalletId(index)},
          &body);
      asked[(*client)->SendQuery(proto::Opcode::balance, body)] = index;
    }
    if (absl::Status s = (*client)->Flush(); !s.ok()) {
      Mismatch(absl::StrCat("verify: ", s.ToString()), false);
      return;
    }
    absl::StatusOr<Reply> reply = (*client)->Receive();
    if (!reply.ok()) {
      Mismatch(absl::StrCat("verify: ", reply.status().ToString()), false);
      return;
    }
    auto it = asked.find(reply->request_id);
    if (it == asked.end()) continue;
    uint64_t index = it->second;
    asked.erase(it);
    ++checked;
    std::string where = absl::StrCat("org ", model_.OrgId(model_.OrgIndex(index)), " wallet ",
                                     model_.WalletId(index));
    Balance b;
    int64_t as_of = 0;
    if (!reply->ok()) {
      Mismatch(absl::StrCat(where, ": balance refused: ", Sv(ResultCodeName(reply->status))),
               false);
      continue;
    }
    if (!proto::DecodeBalanceReply(reply->body, &b, &as_of).ok()) {
      Mismatch(absl::StrCat(where, ": balance reply does not decode"), false);
      continue;
    }
    int64_t want_available = model_.Available(index), want_held = model_.Held(index);
    if (b.available != want_available || b.held != want_held) {
      Mismatch(absl::StrCat(where, ": available ", b.available, " held ", b.held,
                            ", the acknowledged operations imply available ", want_available,
                            " held ", want_held),
               false);
      continue;
    }
    if (invoice) {
      // Lots are spent soonest expiry first: the lots left are the last
      // ones, only the first of them partly spent.
      int64_t spent = static_cast<int64_t>(o_.invoice_lots) * o_.balance - b.available;
      size_t gone = static_cast<size_t>(spent / o_.balance);
      int64_t first_left = o_.balance - spent % o_.balance;
      size_t want_lots = o_.invoice_lots - gone;
      bool ok = b.lots.size() == want_lots;
      for (size_t i = 0; ok && i < b.lots.size(); ++i) {
        int64_t want_expiry = start_wall_us_ + static_cast<int64_t>(gone + i + 1) * kDayUs;
        ok = b.lots[i].remaining == (i == 0 ? first_left : o_.balance) &&
             b.lots[i].expires_at_us == want_expiry;
      }
      if (!ok) {
        Mismatch(absl::StrCat(where, ": ", b.lots.size(), " lots left, not the latest-expiring ",
                              want_lots, " (soonest expiry is spent first)"),
                 false);
      }
    }
  }
  std::lock_guard lock(mu_);
  report_.verify.wallets_checked += checked;
}

void Run_::Verify(const std::atomic<bool>* stop) {
  (void)stop;
  // Which wallets: all, or an evenly spread sample.
  std::vector<uint64_t> sample;
  uint64_t n = o_.wallets;
  uint64_t want = o_.verify_wallets_max == 0 ? n : std::min(n, o_.verify_wallets_max);
  sample.reserve(want);
  for (uint64_t i = 0; i < want; ++i) sample.push_back(i * n / want);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < threads_; ++t) {
    threads.emplace_back([this, t, &sample] { VerifyWallets(t, sample); });
  }
  for (std::thread& th : threads) th.join();

  // Every org: the SPEC invariant, and what came in, was spent, and is left
  // in the pool, against the acknowledged operations.
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Connect(address_, token_, BenchClientOptions());
  if (!client.ok()) {
    Mismatch(absl::StrCat("verify: cannot connect: ", client.status().ToString()), true);
    report_.verify.done = true;
    return;
  }
  for (uint32_t org = 0; org < o_.orgs; ++org) {
    uint64_t org_id = model_.OrgId(org);
    absl::StatusOr<TotalsView> totals = (*client)->GetTotals(org_id);
    absl::StatusOr<Balance> pool = (*client)->GetBalance({.org_id = org_id, .wallet_id = 0});
    ++report_.verify.orgs_checked;
    if (!totals.ok() || !pool.ok()) {
      Mismatch(absl::StrCat("org ", org_id, ": ",
                            (!totals.ok() ? totals.status() : pool.status()).ToString()),
               true);
      continue;
    }
    const TotalsView& v = *totals;
    int64_t sum = v.available + v.held + v.spent + v.expired + v.voided + v.adjusted_out;
    if (v.in != sum || v.in != model_.In(org) || v.spent != model_.Spent(org) ||
        pool->available != model_.Pool(org)) {
      Mismatch(absl::StrCat("org ", org_id, ": in ", v.in, " (implied ", model_.In(org),
                            "), available+held+spent+expired+voided+adjusted_out ", sum, ", spent ",
                            v.spent, " (implied ", model_.Spent(org), "), pool ", pool->available,
                            " (implied ", model_.Pool(org), ")"),
               true);
    }
  }
  report_.verify.done = true;
}

absl::StatusOr<RunReport> Run_::Go(std::ostream* live, const std::atomic<bool>* stop) {
  stop_ = stop;
  start_wall_us_ = WallUs() / 1000000 * 1000000;  // whole seconds: lot expiries compare exactly
  int64_t setup_start = NowNs();
  if (absl::Status s = Setup(); !s.ok()) return s;
  report_.setup_s = static_cast<double>(NowNs() - setup_start) / 1e9;

  // Connections, spread over the threads.
  conns_.resize(threads_);
  for (uint32_t i = 0; i < o_.connections; ++i) {
    absl::StatusOr<std::unique_ptr<Client>> client =
        Client::Connect(address_, token_, BenchClientOptions());
    if (!client.ok()) return client.status();
    Connection c;
    c.number = i;
    c.client = std::move(*client);
    conns_[i % threads_].push_back(std::move(c));
  }

  int64_t start = NowNs();
  warmup_end_ns_ = start + static_cast<int64_t>(o_.warmup_s * 1e9);
  end_ns_ = start + static_cast<int64_t>(o_.duration_s * 1e9);
  std::vector<std::unique_ptr<WorkerStats>> stats;
  std::vector<std::thread> workers;
  for (uint32_t t = 0; t < threads_; ++t) {
    stats.push_back(std::make_unique<WorkerStats>());
    workers.emplace_back([this, t, s = stats.back().get()] { Worker(t, s); });
  }
  // The live line, once a second, until the run ends.
  uint64_t last_ops = 0;
  int64_t last_ns = start;
  for (int second = 1;; ++second) {
    int64_t tick = start + int64_t{second} * 1'000'000'000;
    while (NowNs() < std::min(tick, end_ns_) && !stop->load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (NowNs() >= end_ns_ || stop->load()) break;
    if (live == nullptr) continue;
    HistogramSnapshot merged;
    uint64_t ops = 0, errors = 0;
    for (const auto& s : stats) {
      merged.Add(s->latency.Snapshot());
      ops += s->ops_total.load(std::memory_order_relaxed);
      errors += s->errors.load(std::memory_order_relaxed);
    }
    int64_t now = NowNs();
    double rate = static_cast<double>(ops - last_ops) / (static_cast<double>(now - last_ns) / 1e9);
    *live << absl::StrFormat("[%4ds] %12.0f ops/s  p50 %8.1f us  p99 %8.1f us  errors %d%s\n",
                             second, rate, merged.Percentile(50) / 1e3, merged.Percentile(99) / 1e3,
                             errors, now < warmup_end_ns_ ? "  (warm-up)" : "");
    live->flush();
    last_ops = ops;
    last_ns = now;
  }
  for (std::thread& w : workers) w.join();
  int64_t measured_end = std::min(NowNs(), end_ns_);
  for (const auto& s : stats) {
    report_.latency_ns.Add(s->latency.Snapshot());
    report_.ops_total += s->ops_total.load();
    report_.ops += s->window_ops;
    report_.frames += s->window_frames;
    report_.allocate_targets += s->window_targets;
    report_.invoices_full += s->invoices_full;
    report_.invoices_partial += s->invoices_partial;
    report_.invoices_unpaid += s->invoices_unpaid;
  }
  report_.measured_s = std::max(0.0, static_cast<double>(measured_end - warmup_end_ns_) / 1e9);
  for (auto& conns : conns_) Resend(conns);
  conns_.clear();  // closes the connections
  if (o_.verify) Verify(stop);
  return std::move(report_);
}

}  // namespace

uint64_t RunReport::error_count() const {
  uint64_t n = 0;
  for (const auto& [what, count] : errors) n += count;
  return n;
}

uint64_t EvenOrgBase(uint64_t seed, uint32_t orgs, uint32_t shards) {
  constexpr int tries_max = 4096;
  if (shards <= 1 || orgs == 0) return (SplitMix64(seed) >> 24) + 1;
  std::vector<uint32_t> counts(shards);
  uint64_t best_base = 0;
  uint32_t best_spread = UINT32_MAX;
  uint64_t x = seed;
  for (int t = 0; t < tries_max && best_spread > 1; ++t) {
    x = SplitMix64(x);
    // Below 2^40, far from the flag's 2^62 limit however many orgs follow.
    const uint64_t base = (x >> 24) + 1;
    std::fill(counts.begin(), counts.end(), 0);
    for (uint32_t i = 0; i < orgs; ++i) ++counts[ShardOf(base + i, shards)];
    const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
    if (*hi - *lo < best_spread) {
      best_spread = *hi - *lo;
      best_base = base;
    }
  }
  return best_base;
}

absl::StatusOr<RunReport> Run(const Options& options, const std::string& address,
                              const std::string& token, std::ostream* live,
                              const std::atomic<bool>* stop) {
  Options o = options;
  if (o.org_base == 0) {
    // New orgs every run, so runs against one server never meet, spread
    // evenly over the server's shards (its hello says how many).
    const uint64_t seed = SplitMix64(static_cast<uint64_t>(NowNs()));
    o.org_base = (seed >> 24) + 1;
    absl::StatusOr<std::unique_ptr<Client>> probe =
        Client::Connect(address, token, BenchClientOptions());
    if (probe.ok()) o.org_base = EvenOrgBase(seed, o.orgs, (*probe)->shards());
    // Otherwise the run's own connections report why they cannot connect.
  }
  Run_ run(o, address, token);
  return run.Go(live, stop);
}

namespace {
std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      out += absl::StrFormat("\\u%04x", static_cast<unsigned char>(ch));
    } else {
      out += ch;
    }
  }
  return out + "\"";
}
std::string JsonMap(const std::map<std::string, uint64_t>& m) {
  std::string out = "{";
  for (const auto& [k, v] : m)
    absl::StrAppend(&out, out.size() > 1 ? "," : "", JsonString(k), ":", v);
  return out + "}";
}
double Us(uint64_t ns) { return static_cast<double>(ns) / 1e3; }
}  // namespace

std::string ReportJson(const Options& o, const RunReport& r) {
  const HistogramSnapshot& h = r.latency_ns;
  std::string out = "{";
  absl::StrAppend(
      &out, "\"workload\":", JsonString(WorkloadName(o.workload)), ",\"wallets\":", o.wallets,
      ",\"orgs\":", o.orgs,
      ",\"dist\":", JsonString(o.dist == Distribution::zipf ? "zipf" : "uniform"),
      ",\"mix\":", JsonString(MixString(o.mix)), ",\"connections\":", o.connections,
      ",\"depth\":", o.depth, ",\"ops_per_frame\":", o.ops_per_frame,
      ",\"rate_per_s\":", o.rate_per_s, ",\"setup_s\":", absl::StrFormat("%.3f", r.setup_s),
      ",\"measured_s\":", absl::StrFormat("%.3f", r.measured_s), ",\"ops\":", r.ops,
      ",\"frames\":", r.frames, ",\"ops_per_s\":", absl::StrFormat("%.0f", r.ops_per_s()),
      ",\"ops_total\":", r.ops_total);
  absl::StrAppend(&out, ",\"latency_us\":{\"p50\":", absl::StrFormat("%.1f", Us(h.Percentile(50))),
                  ",\"p90\":", absl::StrFormat("%.1f", Us(h.Percentile(90))),
                  ",\"p99\":", absl::StrFormat("%.1f", Us(h.Percentile(99))),
                  ",\"p99_9\":", absl::StrFormat("%.1f", Us(h.Percentile(99.9))),
                  ",\"max\":", absl::StrFormat("%.1f", Us(h.max)),
                  ",\"mean\":", absl::StrFormat("%.1f", h.Mean() / 1e3), ",\"count\":", h.count,
                  "}");
  if (o.workload == WorkloadKind::allocate) {
    absl::StrAppend(&out, ",\"allocate_targets\":", r.allocate_targets);
  }
  if (o.workload == WorkloadKind::invoice_run || r.invoices_full + r.invoices_partial > 0) {
    absl::StrAppend(&out, ",\"invoices\":{\"full\":", r.invoices_full,
                    ",\"partial\":", r.invoices_partial, ",\"unpaid\":", r.invoices_unpaid, "}");
  }
  absl::StrAppend(&out, ",\"refusals\":", JsonMap(r.refusals), ",\"errors\":", JsonMap(r.errors),
                  ",\"error_count\":", r.error_count(), ",\"retried_frames\":", r.retried_frames);
  const VerifyReport& v = r.verify;
  absl::StrAppend(&out, ",\"verify\":{\"done\":", v.done ? "true" : "false",
                  ",\"ok\":", v.ok() ? "true" : "false", ",\"wallets_checked\":", v.wallets_checked,
                  ",\"wallet_mismatches\":", v.wallet_mismatches,
                  ",\"orgs_checked\":", v.orgs_checked, ",\"org_mismatches\":", v.org_mismatches,
                  ",\"unresolved_ops\":", v.unresolved_ops,
                  ",\"first_mismatch\":", JsonString(v.first_mismatch), "}}");
  return out;
}

std::string ReportText(const Options& o, const RunReport& r) {
  const HistogramSnapshot& h = r.latency_ns;
  std::string out;
  absl::StrAppend(
      &out,
      absl::StrFormat(
          "workload %s, %d wallets in %d orgs (%s), %d connections x depth %d x %d ops/frame%s\n",
          WorkloadName(o.workload), o.wallets, o.orgs,
          o.dist == Distribution::zipf ? "zipf" : "uniform", o.connections, o.depth,
          o.ops_per_frame,
          o.rate_per_s > 0 ? absl::StrFormat(", open loop at %.0f ops/s", o.rate_per_s) : ""));
  absl::StrAppend(&out, absl::StrFormat("setup        %.2f s\n", r.setup_s));
  absl::StrAppend(&out, absl::StrFormat("throughput   %.0f ops/s (%d ops in %.2f s, %d frames)\n",
                                        r.ops_per_s(), r.ops, r.measured_s, r.frames));
  absl::StrAppend(
      &out, absl::StrFormat(
                "latency/frame p50 %.1f us  p90 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n",
                Us(h.Percentile(50)), Us(h.Percentile(90)), Us(h.Percentile(99)),
                Us(h.Percentile(99.9)), Us(h.max)));
  if (o.workload == WorkloadKind::invoice_run) {
    absl::StrAppend(&out,
                    absl::StrFormat("invoices     %d paid in full, %d in part, %d not at all\n",
                                    r.invoices_full, r.invoices_partial, r.invoices_unpaid));
  }
  for (const auto& [k, v] : r.refusals) absl::StrAppend(&out, "refused      ", k, ": ", v, "\n");
  for (const auto& [k, v] : r.errors) absl::StrAppend(&out, "ERROR        ", k, ": ", v, "\n");
  const VerifyReport& v = r.verify;
  if (!v.done) {
    absl::StrAppend(&out, "verify       skipped\n");
  } else {
    absl::StrAppend(&out,
                    absl::StrFormat("verify       %s: %d wallets and %d orgs read back, %d + %d "
                                    "mismatches, %d ops unresolved\n",
                                    v.ok() ? "OK" : "FAILED", v.wallets_checked, v.orgs_checked,
                                    v.wallet_mismatches, v.org_mismatches, v.unresolved_ops));
    if (!v.first_mismatch.empty())
      absl::StrAppend(&out, "             first: ", v.first_mismatch, "\n");
  }
  return out;
}

}  // namespace tally::bench
