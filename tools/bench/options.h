// options.h: tally-bench's command line, parsed into Options.
//
// Every flag and its default is listed by Usage() (and in docs/BENCH.md).
// Parsing never exits: a bad flag is an InvalidArgument naming it, so the
// main prints it and tests check it.
//
// Example:
//   absl::StatusOr<tally::bench::Options> o = tally::bench::ParseOptions(
//       {"--spawn", "--workload", "mixed", "--mix", "deduct=80,balance=20"});
#ifndef TALLY_TOOLS_BENCH_OPTIONS_H_
#define TALLY_TOOLS_BENCH_OPTIONS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tally::bench {

enum class WorkloadKind : uint8_t { deduct = 1, mixed = 2, invoice_run = 3, allocate = 4 };
std::string_view WorkloadName(WorkloadKind kind);

enum class Distribution : uint8_t { uniform = 1, zipf = 2 };

// OpKind is one operation the generator may send.  `invoice` is a partial
// deduct (what an invoice run sends).
enum class OpKind : uint8_t {
  deduct = 0,
  hold,
  capture,
  release,
  balance,
  grant,
  allocate,
  request,
  approve,
  invoice,
  count_,  // not an op: the number of kinds
};
inline constexpr size_t op_kinds = static_cast<size_t>(OpKind::count_);
std::string_view OpKindName(OpKind kind);

// Mix is the share of each op kind, in parts (they need not sum to 100).
using Mix = std::array<uint32_t, op_kinds>;
// ParseMix reads "deduct=70,hold=10,..."; a kind not named gets 0.
absl::StatusOr<Mix> ParseMix(std::string_view text);
std::string MixString(const Mix& mix);
// DefaultMix is the workload's mix when --mix is not given.
Mix DefaultMix(WorkloadKind kind);

struct Options {
  // Where: --server HOST:PORT and --token, or --spawn (a tallyd of our own).
  std::string server;
  std::string token;
  bool spawn = false;
  std::string tallyd_path;        // --tallyd; default: beside tally-bench
  uint32_t spawn_shards = 0;      // --shards (spawn only); 0: tallyd's default
  uint32_t spawn_io_threads = 0;  // --io-threads (spawn only)
  bool keep_data = false;         // --keep-data: leave the spawned data directory

  // What.
  WorkloadKind workload = WorkloadKind::deduct;
  uint64_t wallets = 100000;
  uint32_t orgs = 16;     // wallets are spread over the orgs (and so over shards)
  uint64_t org_base = 0;  // --org-base; 0: random, so runs never collide, and
                          // spread evenly over the server's shards (EvenOrgBase)
  Distribution dist = Distribution::uniform;
  double zipf_s = 0.99;
  Mix mix{};                       // filled from DefaultMix unless --mix
  int64_t amount = 1;              // per deduct (mean per invoice)
  int64_t balance = 1000000000;    // each wallet's starting balance (deduct, mixed)
  uint32_t invoice_lots = 3;       // lots per wallet in invoice-run, each expiring later
  uint32_t allocate_targets = 64;  // wallets per allocate command (allocate workload)

  // How hard.
  uint32_t connections = 50;
  uint32_t depth = 1;  // frames in flight per connection
  uint32_t ops_per_frame = 1;
  uint32_t threads = 0;   // 0: min(connections, cores)
  double rate_per_s = 0;  // > 0: open loop at this many ops a second in total
  double duration_s = 10;
  double warmup_s = 1;

  // Output and checks.
  bool json = false;
  bool live = true;                 // --quiet turns the live line off
  bool verify = true;               // --no-verify
  uint64_t verify_wallets_max = 0;  // 0: every wallet; else a sample of this many
  uint64_t seed = 0;                // 0: from the clock
};

// ParseOptions reads the arguments after the program name.  --help yields
// NotFound("help") so the caller prints Usage().
absl::StatusOr<Options> ParseOptions(const std::vector<std::string_view>& args);
std::string Usage();

}  // namespace tally::bench

#endif  // TALLY_TOOLS_BENCH_OPTIONS_H_
