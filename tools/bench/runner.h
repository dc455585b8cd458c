// runner.h: one tally-bench run against a tallyd: set up, drive, verify.
//
// Run() creates the orgs and funds the wallets (setup, batched frames), then
// drives the workload from `threads` threads, each owning some of the
// connections and keeping requests pipelined on them (closed loop: `depth`
// frames in flight per connection; open loop: frames sent at their intended
// times, latency measured from the intended time so a stalled server cannot
// hide its queue).  Every acknowledged result is folded into the expected
// state (Model); at the end the balances and the org totals are read back
// and compared with it.  A connection that breaks has its unanswered frames
// sent again with the same operation ids afterwards, so their outcome is
// known too (the server answers a retry with the first result).
//
// The design and the meaning of every figure: docs/BENCH.md.
#ifndef TALLY_TOOLS_BENCH_RUNNER_H_
#define TALLY_TOOLS_BENCH_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "tools/bench/histogram.h"
#include "tools/bench/options.h"

namespace tally::bench {

struct VerifyReport {
  bool done = false;
  uint64_t wallets_checked = 0;
  uint64_t wallet_mismatches = 0;
  uint64_t orgs_checked = 0;
  uint64_t org_mismatches = 0;
  uint64_t unresolved_ops = 0;  // outcome unknown (a connection broke for good)
  std::string first_mismatch;   // the first one, in words
  bool ok() const {
    return done && wallet_mismatches == 0 && org_mismatches == 0 && unresolved_ops == 0;
  }
};

struct RunReport {
  double setup_s = 0;
  double measured_s = 0;                     // the measured window (after warm-up)
  uint64_t ops = 0;                          // operations acknowledged in the measured window
  uint64_t frames = 0;                       // frames (requests) answered in the window
  uint64_t ops_total = 0;                    // acknowledged over the whole run, warm-up included
  uint64_t allocate_targets = 0;             // wallets credited by allocate commands (window)
  HistogramSnapshot latency_ns;              // per frame, in the window
  std::map<std::string, uint64_t> refusals;  // expected refusals by result code
  std::map<std::string, uint64_t> errors;    // anything unexpected, by code or cause
  uint64_t invoices_full = 0, invoices_partial = 0, invoices_unpaid = 0;
  uint64_t retried_frames = 0;  // sent again after a broken connection
  VerifyReport verify;

  uint64_t error_count() const;
  double ops_per_s() const { return measured_s > 0 ? static_cast<double>(ops) / measured_s : 0; }
};

// EvenOrgBase picks an org base for `orgs` orgs (ids base .. base+orgs-1)
// that ShardOf spreads evenly over `shards` (no shard more than one org
// ahead of another), from a sequence that starts at `seed`: runs with
// different seeds get different orgs.  A random base splits 16 orgs 8 / 8
// over two shards in only 20 % of runs, and the busier shard bounds the
// throughput (bench/RESULTS.md, "The batched path outside the engine").
// Tries a bounded number of bases; past it, the most even one seen.
uint64_t EvenOrgBase(uint64_t seed, uint32_t orgs, uint32_t shards);

// Run drives the tallyd at `address` with `token` (an admin token: setup
// creates orgs).  Live lines go to *live (may be null) once a second.  Stops
// early when *stop becomes true (SIGINT), still draining and verifying.
// Error only when setup fails (the server is unreachable or refuses it);
// failures during the run are counted in the report.
absl::StatusOr<RunReport> Run(const Options& options, const std::string& address,
                              const std::string& token, std::ostream* live,
                              const std::atomic<bool>* stop);

// Printing the report: a table for people, or one JSON object.
std::string ReportText(const Options& options, const RunReport& report);
std::string ReportJson(const Options& options, const RunReport& report);

}  // namespace tally::bench

#endif  // TALLY_TOOLS_BENCH_RUNNER_H_
