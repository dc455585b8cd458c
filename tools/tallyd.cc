// tallyd: the tally ledger server.  Flags (all optional):
//
//   --data DIR                   data directory (default ./tally-data)
//   --listen HOST:PORT           default 127.0.0.1:7411; port 0 picks a free one
//   --shards N                   default: the stored count, else half the cores (at least 1)
//   --io-threads N               default: the core count
//   --tokens FILE                default <data>/tokens (created on first start)
//   --snapshot-every-records N   a snapshot every N log records per shard
//   --snapshot-every-s N         ... or every N seconds (defaults in limits.h; 0 = off)
//   --sweep-every-ms N           expiry sweep period (default 1000; 0 = off)
//   --connections-max N          default connections_max_default
//   --idle-timeout-ms N          default idle_timeout_ms_default
//   --prefault on|off            fault each shard's history ring and op-id memory
//                                in from the start, in the background (default on;
//                                docs/MEMORY.md, "Pre-faulting")
//
// When ready it prints exactly one line on stdout, "tallyd listening on
// 127.0.0.1:<port>", and flushes it; everything else goes to stderr.
// SIGINT / SIGTERM stop it cleanly.
#include <csignal>
#include <cstdio>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "net/server.h"
#include "wal/huge_page_heap.h"

namespace {

int Usage(const char* problem) {
  std::fprintf(stderr,
               "tallyd: %s\n"
               "usage: tallyd [--data DIR] [--listen HOST:PORT] [--shards N] [--io-threads N]\n"
               "              [--tokens FILE] [--snapshot-every-records N] [--snapshot-every-s N]\n"
               "              [--sweep-every-ms N] [--connections-max N] [--idle-timeout-ms N]\n"
               "              [--prefault on|off]\n",
               problem);
  return 2;
}

template <typename T>
bool ParseNumber(std::string_view text, T* out) {
  uint64_t value = 0;
  if (!absl::SimpleAtoi(absl::string_view(text.data(), text.size()), &value)) return false;
  if (value > static_cast<uint64_t>(static_cast<T>(-1))) return false;
  *out = static_cast<T>(value);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  // Heap in huge pages, so a snapshot's fork() pauses the shard briefly
  // (wal/huge_page_heap.h): re-executes once when the tunable is missing.
  tally::wal::EnsureHugePageHeap(argv);
  // A peer that went away must not kill the server through a write.
  std::signal(SIGPIPE, SIG_IGN);
  tally::net::ServerOptions options;
  options.prefault = true;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    std::string value;
    if (size_t eq = flag.find('='); flag.starts_with("--") && eq != std::string_view::npos) {
      value = std::string(flag.substr(eq + 1));
      flag = flag.substr(0, eq);
    } else if (flag == "--help" || flag == "-h") {
      Usage("the ledger server");
      return 0;
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Usage(("flag " + std::string(flag) + " wants a value").c_str());
    }
    bool ok = true;
    if (flag == "--data") {
      options.data_dir = value;
    } else if (flag == "--listen") {
      options.listen = value;
    } else if (flag == "--tokens") {
      options.tokens_path = value;
    } else if (flag == "--shards") {
      ok = ParseNumber(value, &options.shards) && options.shards > 0;
    } else if (flag == "--io-threads") {
      ok = ParseNumber(value, &options.io_threads) && options.io_threads > 0 &&
           options.io_threads <= 1024;
    } else if (flag == "--snapshot-every-records") {
      ok = ParseNumber(value, &options.snapshot_every_records);
    } else if (flag == "--snapshot-every-s") {
      ok = ParseNumber(value, &options.snapshot_every_s);
    } else if (flag == "--sweep-every-ms") {
      ok = ParseNumber(value, &options.sweep_every_ms);
    } else if (flag == "--connections-max") {
      ok = ParseNumber(value, &options.connections_max) && options.connections_max > 0;
    } else if (flag == "--idle-timeout-ms") {
      ok = ParseNumber(value, &options.idle_timeout_ms) && options.idle_timeout_ms > 0;
    } else if (flag == "--prefault") {
      ok = value == "on" || value == "off";
      options.prefault = value == "on";
    } else {
      return Usage(("unknown flag " + std::string(flag)).c_str());
    }
    if (!ok) {
      return Usage(("bad value '" + value + "' for " + std::string(flag)).c_str());
    }
  }

  auto server = tally::net::Server::Open(options);
  if (!server.ok()) {
    std::fprintf(stderr, "tallyd: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::printf("tallyd listening on %s\n", (*server)->listen_address().c_str());
  std::fflush(stdout);
  const uint32_t shards = (*server)->shards();
  std::fprintf(stderr, "tallyd: %u shard%s, data in %s\n", shards, shards == 1 ? "" : "s",
               options.data_dir.c_str());
  (*server)->Run();
  return 0;
}
