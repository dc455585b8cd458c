// server.h: tallyd, the ledger served over TCP (include/tally/PROTOCOL.md).
//
// Threads (docs/SERVER.md has the whole picture):
//   - io_threads Boost.Asio threads, each running its own io_context; a
//     connection lives on one of them for its whole life, so its state needs
//     no lock.  An I/O thread reads frames, checks them, authenticates,
//     splits an apply frame by ShardOf() into per-shard parts, and writes
//     replies and events.
//   - one thread per shard (net/shard.h), the only one that touches that
//     shard's ledger: batches, group commit, queries, the expiry sweep.
// Replies go back to a connection's thread with asio::post.
//
// Example (tools/tallyd.cc):
//   auto server = tally::net::Server::Open(options);   // recovers, listens
//   std::printf("tallyd listening on %s\n", (*server)->listen_address().c_str());
//   (*server)->Run();  // until SIGINT/SIGTERM or Stop()
#ifndef TALLY_NET_SERVER_H_
#define TALLY_NET_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tally/limits.h"

namespace tally::net {

struct ServerOptions {
  std::string data_dir = "./tally-data";
  std::string listen = "127.0.0.1:7411";  // port 0: any free port
  uint32_t shards = 0;                    // 0: as stored in <data>/shards, else half the cores
  uint32_t io_threads = 0;                // 0: the core count
  std::string tokens_path;                // empty: <data>/tokens
  // Snapshot policy of every shard's store (Store::MaybeSnapshot): a
  // snapshot when this many log records or seconds passed; 0 turns either off.
  uint64_t snapshot_every_records = snapshot_every_records_default;
  uint64_t snapshot_every_s = snapshot_every_s_default;
  uint32_t sweep_every_ms = 1000;  // expiry sweep and hold timeouts; 0 = off
  uint32_t connections_max = connections_max_default;
  uint32_t idle_timeout_ms = idle_timeout_ms_default;
  uint64_t connection_unsent_bytes_max = tally::connection_unsent_bytes_max;
  bool handle_signals = true;  // Run() stops on SIGINT / SIGTERM
  // Fault each shard's history ring and op-id memory in on a background
  // thread from the start (LedgerOptions::prefault, docs/MEMORY.md): about
  // 0.9 GB resident per shard from then on.  tallyd turns it on; off here
  // so that tests making many servers do not pay it.
  bool prefault = false;
};

class ServerImpl;

class Server {
 public:
  // Open prepares the data directory (shard count, tokens), recovers every
  // shard and binds the listening socket.  Nothing is served until Run().
  static absl::StatusOr<std::unique_ptr<Server>> Open(const ServerOptions& options);
  ~Server();

  // "127.0.0.1:<port>", the address actually bound.
  std::string listen_address() const;
  uint16_t port() const;
  uint32_t shards() const;

  // Run serves until Stop() or a signal, then shuts down cleanly: stop
  // accepting, finish each shard's batch and sync it, flush replies, close.
  void Run();
  // Stop may be called from any thread.
  void Stop();

 private:
  explicit Server(std::unique_ptr<ServerImpl> impl);
  std::unique_ptr<ServerImpl> impl_;
};

}  // namespace tally::net

#endif  // TALLY_NET_SERVER_H_
