// tallyd_throughput: durable deducts per second against a running tallyd,
// through the client library.  A quick, fixed-shape measurement for
// bench/RESULTS.md (the full load generator is tally-bench, issue 5).
//
//   tallyd_throughput --server 127.0.0.1:7411 --token TOKEN
//                     [--connections 50] [--frame-commands 1] [--seconds 5]
//                     [--orgs 64] [--wallets 1000]
//
// Each connection runs on its own thread with one frame in flight: it sends
// a frame of `frame-commands` deducts (random org and wallet), waits for the
// reply (sent only after the covering fdatasync), and sends the next.  Orgs
// 1..orgs are created and funded first.  Prints deducts/s and the frame
// latency percentiles.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tally/client.h"
#include "tally/commands.h"

namespace {

struct Options {
  std::string server = "127.0.0.1:7411";
  std::string token;
  int connections = 50;
  int frame_commands = 1;
  int seconds = 5;
  uint64_t orgs = 64;
  uint64_t wallets = 1000;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "tallyd_throughput: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view flag = argv[i];
    std::string value = argv[i + 1];
    if (flag == "--server")
      o.server = value;
    else if (flag == "--token")
      o.token = value;
    else if (flag == "--connections")
      o.connections = std::atoi(value.c_str());
    else if (flag == "--frame-commands")
      o.frame_commands = std::atoi(value.c_str());
    else if (flag == "--seconds")
      o.seconds = std::atoi(value.c_str());
    else if (flag == "--orgs")
      o.orgs = std::strtoull(value.c_str(), nullptr, 10);
    else if (flag == "--wallets")
      o.wallets = std::strtoull(value.c_str(), nullptr, 10);
    else
      return Fail("unknown flag " + std::string(flag));
  }
  if (o.connections < 1 || o.frame_commands < 1 ||
      o.frame_commands > static_cast<int>(tally::frame_commands_max) || o.seconds < 1 ||
      o.orgs < 1 || o.wallets < 1 || o.wallets > tally::allocate_targets_max) {
    return Fail("bad flag values");
  }
  // Op ids: unique per run (time-based), so reruns on the same data are not
  // answered from the op-id memory.
  const uint64_t op_base =
      static_cast<uint64_t>(std::chrono::system_clock::now().time_since_epoch().count()) &
      ((uint64_t{1} << 62) - 1);
  std::atomic<uint64_t> next_op{op_base};
  {
    auto admin = tally::Client::Connect(o.server, o.token);
    if (!admin.ok()) return Fail(std::string(admin.status().message()));
    // Every wallet funded by an allocation (which creates it).
    std::vector<tally::WalletAmount> targets;
    for (uint64_t w = 1; w <= o.wallets; ++w) targets.push_back({w, int64_t{1} << 30});
    std::vector<tally::Command> setup;
    for (uint64_t org = 1; org <= o.orgs; ++org) {
      setup.push_back(tally::cmd::OrgCreate(org));  // org_exists on a rerun: fine
      setup.push_back(tally::cmd::Topup(org, int64_t{1} << 50));
      setup.push_back(tally::cmd::Allocate(org, targets));
    }
    for (auto& c : setup) c.op_id = next_op++;
    auto r = (*admin)->Apply(setup);
    if (!r.ok()) return Fail(std::string(r.status().message()));
  }

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> deducts{0};
  std::atomic<uint64_t> refused{0};
  std::vector<std::vector<double>> latencies_us(o.connections);
  std::vector<std::thread> threads;
  for (int t = 0; t < o.connections; ++t) {
    threads.emplace_back([&, t] {
      auto client = tally::Client::Connect(o.server, o.token);
      if (!client.ok()) {
        std::fprintf(stderr, "connect: %s\n", std::string(client.status().message()).c_str());
        return;
      }
      std::mt19937_64 random(t + 1);
      std::vector<tally::Command> frame(o.frame_commands);
      while (!stop.load(std::memory_order_relaxed)) {
        for (auto& c : frame) {
          c = tally::cmd::Deduct(1 + random() % o.orgs, 1 + random() % o.wallets, 1,
                                 /*partial=*/true);
          c.op_id = next_op.fetch_add(1, std::memory_order_relaxed);
        }
        auto start = std::chrono::steady_clock::now();
        auto results = (*client)->Apply(frame);
        auto end = std::chrono::steady_clock::now();
        if (!results.ok()) {
          std::fprintf(stderr, "apply: %s\n", std::string(results.status().message()).c_str());
          return;
        }
        for (const auto& r : *results) {
          if (r.code != tally::ResultCode::ok) refused.fetch_add(1, std::memory_order_relaxed);
        }
        deducts.fetch_add(results->size(), std::memory_order_relaxed);
        latencies_us[t].push_back(std::chrono::duration<double, std::micro>(end - start).count());
      }
    });
  }
  auto began = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(o.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double elapsed_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();

  std::vector<double> all;
  for (auto& v : latencies_us) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) {
    return all.empty() ? 0.0 : all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))];
  };
  std::printf(
      "connections %d, %d deducts a frame, %.1f s: %.0f durable deducts/s "
      "(%llu frames; frame latency p50 %.0f us, p99 %.0f us, max %.0f us; %llu refused)\n",
      o.connections, o.frame_commands, elapsed_s, deducts.load() / elapsed_s,
      static_cast<unsigned long long>(all.size()), pct(0.5), pct(0.99),
      all.empty() ? 0.0 : all.back(), static_cast<unsigned long long>(refused.load()));
  return 0;
}
