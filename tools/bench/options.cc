#include "tools/bench/options.h"

#include <algorithm>
#include <cmath>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tally/limits.h"
#include "tools/bench/strings.h"

namespace tally::bench {

namespace {

constexpr std::string_view kOpNames[op_kinds] = {"deduct",  "hold",   "capture",  "release",
                                                 "balance", "grant",  "allocate", "request",
                                                 "approve", "invoice"};

absl::Status Bad(std::string_view flag, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(flag), ": ", Sv(why)));
}

template <typename T>
absl::Status ParseInt(std::string_view flag, std::string_view text, T min, T max, T* out) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(Sv(text), &v))
    return Bad(flag, absl::StrCat("not a number: '", Sv(text), "'"));
  if (v < static_cast<int64_t>(min) ||
      (max > 0 && static_cast<uint64_t>(v) > static_cast<uint64_t>(max))) {
    return Bad(flag, absl::StrCat(v, " is outside ", min, "..", max));
  }
  *out = static_cast<T>(v);
  return absl::OkStatus();
}

absl::Status ParseDouble(std::string_view flag, std::string_view text, double min, double max,
                         double* out) {
  double v = 0;
  if (!absl::SimpleAtod(Sv(text), &v) || !std::isfinite(v)) {
    return Bad(flag, absl::StrCat("not a number: '", Sv(text), "'"));
  }
  if (v < min || v > max) return Bad(flag, absl::StrCat(v, " is outside ", min, "..", max));
  *out = v;
  return absl::OkStatus();
}

}  // namespace

std::string_view WorkloadName(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::deduct:
      return "deduct";
    case WorkloadKind::mixed:
      return "mixed";
    case WorkloadKind::invoice_run:
      return "invoice-run";
    case WorkloadKind::allocate:
      return "allocate";
  }
  return "?";
}

std::string_view OpKindName(OpKind kind) {
  size_t i = static_cast<size_t>(kind);
  return i < op_kinds ? kOpNames[i] : "?";
}

absl::StatusOr<Mix> ParseMix(std::string_view text) {
  Mix mix{};
  uint64_t total = 0;
  for (absl::string_view part : absl::StrSplit(Sv(text), ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(part, absl::MaxSplits('=', 1));
    size_t kind = op_kinds;
    for (size_t i = 0; i < op_kinds; ++i) {
      if (kOpNames[i] == Std(kv.first)) kind = i;
    }
    if (kind == op_kinds) return Bad("--mix", absl::StrCat("unknown operation '", kv.first, "'"));
    uint32_t parts = 0;
    if (absl::Status s = ParseInt<uint32_t>("--mix", Std(kv.second), 0, 1000000, &parts); !s.ok()) {
      return s;
    }
    mix[kind] = parts;
    total += parts;
  }
  if (total == 0) return Bad("--mix", "no operation has a share");
  return mix;
}

std::string MixString(const Mix& mix) {
  std::string out;
  for (size_t i = 0; i < op_kinds; ++i) {
    if (mix[i] == 0) continue;
    absl::StrAppend(&out, out.empty() ? "" : ",", Sv(kOpNames[i]), "=", mix[i]);
  }
  return out;
}

Mix DefaultMix(WorkloadKind kind) {
  Mix mix{};
  auto set = [&mix](OpKind k, uint32_t v) { mix[static_cast<size_t>(k)] = v; };
  switch (kind) {
    case WorkloadKind::deduct:
      set(OpKind::deduct, 100);
      break;
    case WorkloadKind::mixed:
      set(OpKind::deduct, 70);
      set(OpKind::hold, 10);
      set(OpKind::capture, 8);
      set(OpKind::balance, 7);
      set(OpKind::grant, 5);
      break;
    case WorkloadKind::invoice_run:
      set(OpKind::invoice, 100);
      break;
    case WorkloadKind::allocate:
      set(OpKind::allocate, 40);
      set(OpKind::request, 30);
      set(OpKind::approve, 30);
      break;
  }
  return mix;
}

absl::StatusOr<Options> ParseOptions(const std::vector<std::string_view>& args) {
  Options o;
  bool mix_given = false;
  bool ops_per_frame_given = false;
  bool balance_given = false;
  bool amount_given = false;
  std::string mix_text;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view flag = args[i];
    std::string_view value;
    if (size_t eq = flag.find('='); eq != std::string_view::npos && flag.starts_with("--")) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    }
    // Flags without a value.
    if (flag == "--help" || flag == "-h") return absl::NotFoundError("help");
    if (flag == "--spawn") {
      o.spawn = true;
      continue;
    }
    if (flag == "--keep-data") {
      o.keep_data = true;
      continue;
    }
    if (flag == "--json") {
      o.json = true;
      continue;
    }
    if (flag == "--quiet") {
      o.live = false;
      continue;
    }
    if (flag == "--no-verify") {
      o.verify = false;
      continue;
    }
    if (!flag.starts_with("--")) return Bad(flag, "not a flag (flags start with --)");
    static constexpr std::string_view kValueFlags[] = {
        "--server",      "--token",      "--tallyd",        "--shards",
        "--io-threads",  "--workload",   "--wallets",       "--orgs",
        "--org-base",    "--dist",       "--zipf-s",        "--mix",
        "--amount",      "--balance",    "--invoice-lots",  "--allocate-targets",
        "--connections", "--depth",      "--ops-per-frame", "--threads",
        "--rate",        "--duration-s", "--warmup-s",      "--verify-wallets",
        "--seed"};
    if (std::find(std::begin(kValueFlags), std::end(kValueFlags), flag) == std::end(kValueFlags)) {
      return Bad(flag, "unknown flag (see --help)");
    }
    if (value.empty()) {
      if (i + 1 >= args.size()) return Bad(flag, "needs a value");
      value = args[++i];
    }
    absl::Status s;
    if (flag == "--server") {
      o.server = std::string(value);
    } else if (flag == "--token") {
      o.token = std::string(value);
    } else if (flag == "--tallyd") {
      o.tallyd_path = std::string(value);
    } else if (flag == "--shards") {
      s = ParseInt<uint32_t>(flag, value, 1, shards_max, &o.spawn_shards);
    } else if (flag == "--io-threads") {
      s = ParseInt<uint32_t>(flag, value, 1, 1024, &o.spawn_io_threads);
    } else if (flag == "--workload") {
      if (value == "deduct")
        o.workload = WorkloadKind::deduct;
      else if (value == "mixed")
        o.workload = WorkloadKind::mixed;
      else if (value == "invoice-run")
        o.workload = WorkloadKind::invoice_run;
      else if (value == "allocate")
        o.workload = WorkloadKind::allocate;
      else
        s = Bad(flag, absl::StrCat("unknown workload '", Sv(value),
                                   "' (deduct, mixed, invoice-run, allocate)"));
    } else if (flag == "--wallets") {
      s = ParseInt<uint64_t>(flag, value, 1, bench_wallets_max, &o.wallets);
    } else if (flag == "--orgs") {
      s = ParseInt<uint32_t>(flag, value, 1, bench_orgs_max, &o.orgs);
    } else if (flag == "--org-base") {
      s = ParseInt<uint64_t>(flag, value, 1, uint64_t{1} << 62, &o.org_base);
    } else if (flag == "--dist") {
      if (value == "uniform")
        o.dist = Distribution::uniform;
      else if (value == "zipf")
        o.dist = Distribution::zipf;
      else
        s = Bad(flag, absl::StrCat("unknown distribution '", Sv(value), "' (uniform, zipf)"));
    } else if (flag == "--zipf-s") {
      s = ParseDouble(flag, value, 0.01, 0.999999, &o.zipf_s);
    } else if (flag == "--mix") {
      mix_given = true;
      mix_text = std::string(value);
    } else if (flag == "--amount") {
      amount_given = true;
      s = ParseInt<int64_t>(flag, value, 1, int64_t{1} << 40, &o.amount);
    } else if (flag == "--balance") {
      balance_given = true;
      s = ParseInt<int64_t>(flag, value, 1, int64_t{1} << 40, &o.balance);
    } else if (flag == "--invoice-lots") {
      s = ParseInt<uint32_t>(flag, value, 1, bench_invoice_lots_max, &o.invoice_lots);
    } else if (flag == "--allocate-targets") {
      s = ParseInt<uint32_t>(flag, value, 1, bench_allocate_targets_max, &o.allocate_targets);
    } else if (flag == "--connections") {
      s = ParseInt<uint32_t>(flag, value, 1, bench_connections_max, &o.connections);
    } else if (flag == "--depth") {
      s = ParseInt<uint32_t>(flag, value, 1, bench_depth_max, &o.depth);
    } else if (flag == "--ops-per-frame") {
      ops_per_frame_given = true;
      s = ParseInt<uint32_t>(flag, value, 1, frame_commands_max, &o.ops_per_frame);
    } else if (flag == "--threads") {
      s = ParseInt<uint32_t>(flag, value, 1, bench_threads_max, &o.threads);
    } else if (flag == "--rate") {
      std::string_view v = value;
      if (v.ends_with("/s")) v.remove_suffix(2);
      s = ParseDouble(flag, v, 1, 1e9, &o.rate_per_s);
    } else if (flag == "--duration-s") {
      s = ParseDouble(flag, value, 0.1, bench_duration_s_max, &o.duration_s);
    } else if (flag == "--warmup-s") {
      s = ParseDouble(flag, value, 0, bench_duration_s_max, &o.warmup_s);
    } else if (flag == "--verify-wallets") {
      s = ParseInt<uint64_t>(flag, value, 0, bench_wallets_max, &o.verify_wallets_max);
    } else if (flag == "--seed") {
      s = ParseInt<uint64_t>(flag, value, 0, uint64_t{1} << 62, &o.seed);
    } else {
      s = Bad(flag, "unknown flag (see --help)");
    }
    if (!s.ok()) return s;
  }

  if (mix_given) {
    absl::StatusOr<Mix> mix = ParseMix(mix_text);
    if (!mix.ok()) return mix.status();
    o.mix = *mix;
  } else {
    o.mix = DefaultMix(o.workload);
  }
  if (o.workload == WorkloadKind::invoice_run) {
    // Invoices: batches of a thousand, lots small enough that some run dry.
    if (!ops_per_frame_given) o.ops_per_frame = 1000;
    if (!balance_given) o.balance = 1000;
    if (!amount_given) o.amount = 100;
  }
  if (o.spawn && !o.server.empty()) return Bad("--spawn", "give either --spawn or --server");
  if (!o.spawn && (o.spawn_shards != 0 || o.spawn_io_threads != 0)) {
    return Bad("--shards", "--shards and --io-threads only go with --spawn");
  }
  if (o.orgs > o.wallets) return Bad("--orgs", "more orgs than wallets");
  if (o.allocate_targets > o.wallets) o.allocate_targets = static_cast<uint32_t>(o.wallets);
  if (o.warmup_s >= o.duration_s) return Bad("--warmup-s", "must be shorter than --duration-s");
  // The starting balances of every wallet, summed, must fit an int64 pool.
  if (static_cast<long double>(o.balance) * o.wallets * bench_invoice_lots_max > 9.0e18L) {
    return Bad("--balance", "balance × wallets does not fit a 64-bit pool");
  }
  for (size_t k = 0; k < op_kinds; ++k) {
    if (o.mix[k] == 0) continue;
    auto kind = static_cast<OpKind>(k);
    bool allowed = false;
    switch (o.workload) {
      case WorkloadKind::deduct:
      case WorkloadKind::mixed:
        allowed = kind == OpKind::deduct || kind == OpKind::hold || kind == OpKind::capture ||
                  kind == OpKind::release || kind == OpKind::balance || kind == OpKind::grant ||
                  kind == OpKind::invoice;
        break;
      case WorkloadKind::invoice_run:
        allowed = kind == OpKind::invoice || kind == OpKind::balance;
        break;
      case WorkloadKind::allocate:
        allowed = kind == OpKind::allocate || kind == OpKind::request || kind == OpKind::approve ||
                  kind == OpKind::balance;
        break;
    }
    if (!allowed) {
      return Bad("--mix", absl::StrCat("'", Sv(OpKindName(kind)), "' is not part of the ",
                                       Sv(WorkloadName(o.workload)), " workload"));
    }
  }
  return o;
}

std::string Usage() {
  return R"(tally-bench: drives a tallyd with a workload and reports throughput and latency.

Where:
  --server HOST:PORT     a running tallyd (token: --token, else $TALLY_TOKEN, else the
                         first admin token in ./tally-data/tokens)
  --spawn                start a tallyd of our own (beside this binary, or --tallyd PATH)
                         on a temporary data directory, and stop it at the end
  --shards N, --io-threads N   passed to the spawned tallyd
  --keep-data            keep the spawned tallyd's data directory

Workload:
  --workload deduct|mixed|invoice-run|allocate        (default deduct)
  --wallets N            wallets, up to 10,000,000           (default 100,000)
  --orgs N               orgs the wallets are spread over     (default 16)
  --dist uniform|zipf    which wallet each operation picks    (default uniform)
  --zipf-s S             zipf exponent, 0 < S < 1             (default 0.99)
  --mix K=N,...          shares of deduct, hold, capture, release, balance, grant,
                         invoice, allocate, request, approve
                         (mixed default: deduct=70,hold=10,capture=8,balance=7,grant=5)
  --amount N             credits per deduct (mean per invoice) (default 1)
  --balance N            starting balance of each wallet (invoice-run: of each lot)
                         (default 1,000,000,000; invoice-run 1,000, --amount 100)
  --invoice-lots N       lots per wallet in invoice-run, expiring 1, 2, ... days on (3)
  --allocate-targets N   wallets per allocate command          (default 64)

Load:
  --connections C        connections                            (default 50)
  --depth D              frames in flight per connection (closed loop) (default 1)
  --ops-per-frame K      operations per apply frame            (default 1; invoice-run 1000)
  --threads T            client threads                         (default min(C, cores))
  --rate N[/s]           open loop: N operations a second in total, latency measured
                         from each frame's intended send time
  --duration-s S         measured run, after the warm-up        (default 10)
  --warmup-s S           not measured                           (default 1)

Output:
  --json                 one JSON object on stdout at the end (live lines go to stderr)
  --quiet                no live line
  --no-verify            skip reading the balances back at the end
  --verify-wallets N     read back a sample of N wallets (default: every wallet)
  --seed N               random seed (default: from the clock)

Exit status: 0 when every operation was answered as expected and the balances
read back equal what the acknowledged operations imply; 1 otherwise; 2 for bad
flags or a server that could not be reached or set up.
)";
}

}  // namespace tally::bench
