// tally-bench: the load generator.  Drives a tallyd (or one it starts with
// --spawn) with a workload, prints a live line every second, then
// throughput, latency percentiles and whether the balances read back match
// what the acknowledged operations imply.  docs/BENCH.md; flags: --help.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "tools/bench/options.h"
#include "tools/bench/runner.h"
#include "tools/bench/spawn.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

int Fail(const std::string& what) {
  std::cerr << "tally-bench: " << what << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string_view> args(argv + 1, argv + argc);
  absl::StatusOr<tally::bench::Options> options = tally::bench::ParseOptions(args);
  if (!options.ok()) {
    if (absl::IsNotFound(options.status())) {
      std::cout << tally::bench::Usage();
      return 0;
    }
    return Fail(std::string(options.status().message()) + " (see --help)");
  }
  tally::bench::Options& o = *options;

  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<tally::bench::SpawnedServer> server;
  std::string address = o.server, token = o.token;
  if (o.spawn) {
    std::vector<std::string> extra;
    if (o.spawn_shards != 0)
      extra.insert(extra.end(), {"--shards", std::to_string(o.spawn_shards)});
    if (o.spawn_io_threads != 0) {
      extra.insert(extra.end(), {"--io-threads", std::to_string(o.spawn_io_threads)});
    }
    std::string path = o.tallyd_path.empty() ? tally::bench::DefaultTallydPath() : o.tallyd_path;
    auto started = tally::bench::SpawnedServer::Start(path, extra, o.keep_data);
    if (!started.ok()) return Fail("--spawn: " + started.status().ToString());
    server = std::move(*started);
    address = server->address();
    token = server->token();
    std::cerr << "tally-bench: spawned tallyd pid " << server->pid() << " at " << address
              << ", data in " << server->data_dir() << "\n";
  } else {
    if (address.empty()) {
      const char* env = std::getenv("TALLY_SERVER");
      address = env != nullptr && *env != '\0' ? env : "127.0.0.1:7411";
    }
    if (token.empty()) {
      const char* env = std::getenv("TALLY_TOKEN");
      if (env != nullptr && *env != '\0') {
        token = env;
      } else {
        auto found = tally::bench::FirstAdminToken("./tally-data/tokens");
        if (!found.ok()) {
          return Fail(
              "no token: give --token, set TALLY_TOKEN, or run where ./tally-data/tokens is (" +
              found.status().ToString() + ")");
        }
        token = *found;
      }
    }
  }

  absl::StatusOr<tally::bench::RunReport> report =
      tally::bench::Run(o, address, token, o.live ? &std::cerr : nullptr, &g_stop);
  absl::Status stopped = server != nullptr ? server->Stop() : absl::OkStatus();
  if (!report.ok()) return Fail(report.status().ToString());
  if (o.json) {
    std::cout << tally::bench::ReportJson(o, *report) << std::endl;
  } else {
    std::cout << tally::bench::ReportText(o, *report);
  }
  if (!stopped.ok()) {
    std::cerr << "tally-bench: " << stopped << "\n";
    return 1;
  }
  bool good = report->error_count() == 0 && (!o.verify || report->verify.ok());
  return good ? 0 : 1;
}
