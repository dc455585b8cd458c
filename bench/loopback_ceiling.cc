// loopback_ceiling: what a trivial server can do on this machine with
// tally-bench's client pattern and none of tally's work (no ledger, no
// decoding, no thread hand-offs), so tallyd's figures can be read as a
// share of the physical limit (docs/BENCH.md, "The loopback ceiling").
//
//   loopback_ceiling [--connections 50] [--depth 1] [--ops-per-frame 1]
//                    [--server-threads 2] [--client-threads 2]
//                    [--duration-s 5] [--warmup-s 1]
//                    [--sync none|round|pipelined] [--sync-dir /var/tmp]
//
// One process, two halves talking over 127.0.0.1:
//   - server: --server-threads epoll loops (like tallyd's I/O threads), the
//     connections spread over them.  A loop reads every ready socket (up to
//     16 KiB a read, like tallyd), counts the whole request frames, and
//     answers each with a reply frame, one write per socket per round.  With
//     --sync round it first writes the round's request bytes to its own log
//     file (one write) and fdatasyncs it once (group commit: one sync covers every frame
//     of the round, and requests that arrive during the sync make the next
//     round), so no reply goes out before a sync that covers it.  With
//     --sync pipelined the loop only writes the round to the log and hands
//     its replies to a sync thread of its own, and goes on reading: the sync
//     thread fdatasyncs everything handed to it before that sync started,
//     then sends those replies (one sync in flight at a time, the next one
//     covering every round written meanwhile), the best a group commit that
//     overlaps the sync with the next rounds (tallyd's) can do.  The log
//     file is zero-filled once at the start and overwritten in a ring, so a
//     sync flushes data and the device cache, never extent conversions.
//   - client: --client-threads threads (tally-bench's default: the core
//     count), the connections spread over them; each keeps --depth frames in
//     flight per connection (closed loop), sends what it can, ppolls, reads
//     whatever replies arrived — tally-bench's loop (tools/bench/runner.cc)
//     without the client library, the model and the verification.
// Frames have exactly the sizes of tally's apply request and reply for
// --ops-per-frame deducts (encoded with tally's own codec), so the kernel
// copies the same bytes; their contents are not checked.
//
// Prints ops/s and the frame latency p50 / p99 / p99.9 (send to reply, in
// the window after the warm-up), and with --json one line for scripts.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tally/codec.h"
#include "tally/commands.h"
#include "tally/protocol.h"

namespace {

// When a reply may go out: at once, after the round's own fdatasync in the
// reading loop, or after a fdatasync on the loop's sync thread.
enum class Sync { none, round, pipelined };

const char* SyncName(Sync sync) {
  switch (sync) {
    case Sync::none:
      return "none";
    case Sync::round:
      return "round";
    case Sync::pipelined:
      return "pipelined";
  }
  return "?";
}

struct Options {
  uint32_t connections = 50;
  uint32_t depth = 1;
  uint32_t ops_per_frame = 1;
  uint32_t server_threads = 2;
  uint32_t client_threads = 2;
  uint32_t duration_s = 5;
  uint32_t warmup_s = 1;
  Sync sync = Sync::none;
  std::string sync_dir = "/var/tmp";
  bool json = false;
};

// A connection's read buffer, as tallyd's (net/server.cc).
constexpr size_t read_buffer_bytes = size_t{16} << 10;
// The ring each server thread's log file is overwritten in.
constexpr size_t log_file_bytes = size_t{64} << 20;
constexpr uint32_t connections_max = 4096;
constexpr uint32_t depth_max = 4096;
constexpr uint32_t threads_max = 64;

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "loopback_ceiling: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

[[noreturn]] void Usage(const std::string& bad) {
  std::fprintf(stderr,
               "loopback_ceiling: bad argument '%s'\n"
               "usage: loopback_ceiling [--connections N] [--depth N] [--ops-per-frame N]\n"
               "  [--server-threads N] [--client-threads N] [--duration-s N] [--warmup-s N]\n"
               "  [--sync none|round|pipelined] [--sync-dir DIR] [--json]\n",
               bad.c_str());
  std::exit(2);
}

uint32_t ParseCount(const std::string& flag, const char* text, uint32_t max) {
  char* end = nullptr;
  unsigned long value = std::strtoul(text, &end, 10);
  if (end == text || *end != '\0' || value == 0 || value > max) Usage(flag + " " + text);
  return static_cast<uint32_t>(value);
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--json") {
      o.json = true;
      continue;
    }
    if (i + 1 >= argc) Usage(flag);
    const char* value = argv[++i];
    if (flag == "--connections") {
      o.connections = ParseCount(flag, value, connections_max);
    } else if (flag == "--depth") {
      o.depth = ParseCount(flag, value, depth_max);
    } else if (flag == "--ops-per-frame") {
      o.ops_per_frame = ParseCount(flag, value, tally::frame_commands_max);
    } else if (flag == "--server-threads") {
      o.server_threads = ParseCount(flag, value, threads_max);
    } else if (flag == "--client-threads") {
      o.client_threads = ParseCount(flag, value, threads_max);
    } else if (flag == "--duration-s") {
      o.duration_s = ParseCount(flag, value, 3600);
    } else if (flag == "--warmup-s") {
      o.warmup_s = std::strcmp(value, "0") == 0 ? 0 : ParseCount(flag, value, 3600);
    } else if (flag == "--sync") {
      if (std::strcmp(value, "none") == 0) {
        o.sync = Sync::none;
      } else if (std::strcmp(value, "round") == 0) {
        o.sync = Sync::round;
      } else if (std::strcmp(value, "pipelined") == 0) {
        o.sync = Sync::pipelined;
      } else {
        Usage(value);
      }
    } else if (flag == "--sync-dir") {
      o.sync_dir = value;
    } else {
      Usage(flag);
    }
  }
  o.server_threads = std::min(o.server_threads, o.connections);
  o.client_threads = std::min(o.client_threads, o.connections);
  return o;
}

// FrameBytes: the sizes of tally's apply frame of `ops` deducts and of its
// reply, from tally's codec.
struct FrameBytes {
  std::string request;
  std::string reply;
};

FrameBytes MakeFrames(uint32_t ops) {
  std::vector<tally::Command> commands;
  std::vector<tally::Result> results;
  for (uint32_t i = 0; i < ops; ++i) {
    tally::Command c = tally::cmd::Deduct(/*org_id=*/7, /*wallet_id=*/1000 + i, /*amount=*/1);
    c.op_id = (uint64_t{1} << 40) + i;
    commands.push_back(c);
    results.push_back(tally::Result{.n = {1, 0, 999'999'999}});
  }
  FrameBytes f;
  size_t at = tally::proto::BeginFrame(&f.request);
  if (!tally::EncodeBatch(0, commands, &f.request).ok()) Die("encode");
  tally::proto::FinishFrame(&f.request, at, tally::proto::Opcode::apply, 1);
  at = tally::proto::BeginFrame(&f.reply);
  tally::proto::EncodeApplyReply(1'800'000'000'000'000, results, &f.reply);
  tally::proto::FinishFrame(&f.reply, at, tally::proto::Opcode::apply, 1, tally::proto::flag_reply,
                            tally::ResultCode::ok);
  return f;
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// WriteAll writes all of `bytes` to a blocking socket or file.
void WriteAll(int fd, const char* bytes, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) Die("write");
    bytes += n;
    size -= static_cast<size_t>(n);
  }
}

// ---------------------------------------------------------------- server

// SendAll writes all of `bytes` to a blocking socket; a client that has gone
// (the run is over) just stops being answered.
void SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

struct ServerConnection {
  int fd = -1;
  size_t partial_bytes = 0;  // bytes of a request frame not yet whole
  uint64_t owed_frames = 0;  // replies this round
};

class ServerLoop {
 public:
  ServerLoop(const Options& o, const FrameBytes& frames, uint32_t index)
      : o_(o), frames_(frames), index_(index) {
    epoll_ = epoll_create1(0);
    if (epoll_ < 0) Die("epoll_create1");
    if (o_.sync != Sync::none) OpenLog();
  }
  ~ServerLoop() {
    for (ServerConnection& c : conns_) close(c.fd);
    if (log_ >= 0) close(log_);
    close(epoll_);
  }

  void Add(int fd) { conns_.push_back(ServerConnection{.fd = fd}); }

  void Run(const std::atomic<bool>& stop) {
    std::thread syncer;
    if (o_.sync == Sync::pipelined) {
      owed_by_conn_.assign(conns_.size(), 0);
      syncer = std::thread([this] { SyncLoop(); });
    }
    Serve(stop);
    if (syncer.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stopping_ = true;
      }
      wake_.notify_one();
      syncer.join();
    }
  }

 private:
  void Serve(const std::atomic<bool>& stop) {
    for (size_t i = 0; i < conns_.size(); ++i) {
      epoll_event ev{.events = EPOLLIN, .data = {.u64 = i}};
      if (epoll_ctl(epoll_, EPOLL_CTL_ADD, conns_[i].fd, &ev) != 0) Die("epoll_ctl");
    }
    std::string rbuf(read_buffer_bytes, '\0');
    std::vector<epoll_event> events(conns_.size());
    std::vector<uint32_t> ready;
    std::string replies;
    while (!stop.load(std::memory_order_relaxed)) {
      int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 100);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) Die("epoll_wait");
      ready.clear();
      for (int k = 0; k < n; ++k) {
        uint32_t i = static_cast<uint32_t>(events[k].data.u64);
        ServerConnection& c = conns_[i];
        ssize_t got = read(c.fd, rbuf.data(), rbuf.size());
        if (got <= 0) {  // the client is done
          epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
          continue;
        }
        size_t bytes = c.partial_bytes + static_cast<size_t>(got);
        c.owed_frames += bytes / frames_.request.size();
        c.partial_bytes = bytes % frames_.request.size();
        if (o_.sync != Sync::none) round_.append(rbuf.data(), static_cast<size_t>(got));
        if (c.owed_frames > 0) ready.push_back(i);
      }
      if (ready.empty()) continue;
      if (o_.sync == Sync::pipelined) {
        AppendToLog(round_.data(), round_.size());
        round_.clear();
        HandToSync(ready);
        continue;
      }
      if (o_.sync == Sync::round) {
        // One write and one fdatasync for the whole round, as a log writer
        // with group commit does.
        AppendToLog(round_.data(), round_.size());
        round_.clear();
        if (fdatasync(log_) != 0) Die("fdatasync");
      }
      for (uint32_t i : ready) {
        ServerConnection& c = conns_[i];
        replies.clear();
        for (uint64_t f = 0; f < c.owed_frames; ++f) replies.append(frames_.reply);
        c.owed_frames = 0;
        SendAll(c.fd, replies);
      }
    }
  }

  // HandToSync queues the round's owed replies (written to the log just
  // before) for the sync thread, whose next fdatasync starts after this.
  void HandToSync(const std::vector<uint32_t>& ready) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (uint32_t i : ready) {
        queued_.push_back(Owed{.conn = i, .frames = conns_[i].owed_frames});
        conns_[i].owed_frames = 0;
      }
    }
    wake_.notify_one();
  }

  // SyncLoop: take everything queued, fdatasync (covering every round
  // written before the take), send those replies, again.
  void SyncLoop() {
    std::vector<Owed> batch;
    std::vector<uint32_t> touched;
    std::string replies;
    for (;;) {
      batch.clear();
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [this] { return !queued_.empty() || stopping_; });
        if (queued_.empty()) return;
        batch.swap(queued_);
      }
      if (fdatasync(log_) != 0) Die("fdatasync");
      touched.clear();
      for (const Owed& owed : batch) {
        if (owed_by_conn_[owed.conn] == 0) touched.push_back(owed.conn);
        owed_by_conn_[owed.conn] += owed.frames;
      }
      for (uint32_t i : touched) {
        replies.clear();
        for (uint64_t f = 0; f < owed_by_conn_[i]; ++f) replies.append(frames_.reply);
        owed_by_conn_[i] = 0;
        SendAll(conns_[i].fd, replies);
      }
    }
  }

  void OpenLog() {
    std::string path = o_.sync_dir + "/loopback-ceiling-" + std::to_string(getpid()) + "-" +
                       std::to_string(index_) + ".log";
    log_ = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (log_ < 0) Die("open the log file");
    unlink(path.c_str());  // gone when closed
    std::string zeros(size_t{1} << 20, '\0');
    for (size_t at = 0; at < log_file_bytes; at += zeros.size()) {
      WriteAll(log_, zeros.data(), zeros.size());
    }
    if (fsync(log_) != 0) Die("fsync");
  }

  // AppendToLog writes the bytes at the ring's current place (what a log
  // writer does with a record: one write into the page cache).
  void AppendToLog(const char* bytes, size_t size) {
    while (size > 0) {
      size_t room = log_file_bytes - log_at_;
      size_t n = std::min(size, room);
      if (pwrite(log_, bytes, n, static_cast<off_t>(log_at_)) != static_cast<ssize_t>(n)) {
        Die("pwrite");
      }
      log_at_ = (log_at_ + n) % log_file_bytes;
      bytes += n;
      size -= n;
    }
  }

  const Options& o_;
  const FrameBytes& frames_;
  uint32_t index_;
  int epoll_ = -1;
  int log_ = -1;
  size_t log_at_ = 0;
  std::string round_;  // the request bytes read this round, for the log
  std::vector<ServerConnection> conns_;

  // --sync pipelined: replies written to the log and waiting for a sync.
  struct Owed {
    uint32_t conn = 0;
    uint64_t frames = 0;
  };
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<Owed> queued_;            // guarded by mu_
  bool stopping_ = false;               // guarded by mu_
  std::vector<uint64_t> owed_by_conn_;  // the sync thread's own
};

// ---------------------------------------------------------------- client

struct ClientConnection {
  int fd = -1;                  // non-blocking: the client never waits in a write, so it
                                // always reads the replies the server's blocking writes send
  std::deque<int64_t> sent_ns;  // one per frame in flight, oldest first
  size_t partial_bytes = 0;
  std::string unsent;  // request bytes the socket did not take yet
};

// Flush writes what the socket takes now.
void Flush(ClientConnection& c) {
  while (!c.unsent.empty()) {
    ssize_t n = send(c.fd, c.unsent.data(), c.unsent.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) Die("send a request");
    c.unsent.erase(0, static_cast<size_t>(n));
  }
}

struct ClientStats {
  uint64_t frames = 0;                // replies in the measured window
  std::vector<int64_t> latencies_ns;  // of those replies
};

void ClientLoop(const Options& o, const FrameBytes& frames, std::vector<ClientConnection>& conns,
                int64_t window_begin_ns, int64_t window_end_ns, ClientStats* stats) {
  std::string rbuf(size_t{64} << 10, '\0');
  std::vector<pollfd> fds(conns.size());
  stats->latencies_ns.reserve(size_t{1} << 20);
  for (;;) {
    int64_t now = NowNs();
    if (now >= window_end_ns) break;
    for (ClientConnection& c : conns) {
      while (c.sent_ns.size() < o.depth) {
        c.unsent.append(frames.request);
        c.sent_ns.push_back(now);
      }
      Flush(c);
    }
    for (size_t i = 0; i < conns.size(); ++i) {
      short want = conns[i].unsent.empty() ? POLLIN : POLLIN | POLLOUT;
      fds[i] = {conns[i].fd, want, 0};
    }
    timespec wait{0, 10'000'000};
    int ready = ppoll(fds.data(), fds.size(), &wait, nullptr);
    if (ready <= 0) continue;
    for (size_t i = 0; i < conns.size(); ++i) {
      if (fds[i].revents == 0) continue;
      ClientConnection& c = conns[i];
      if (fds[i].revents & POLLOUT) Flush(c);
      if ((fds[i].revents & (POLLIN | POLLERR | POLLHUP)) == 0) continue;
      ssize_t got = read(c.fd, rbuf.data(), rbuf.size());
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) continue;
      if (got <= 0) Die("read a reply");
      int64_t at = NowNs();
      size_t bytes = c.partial_bytes + static_cast<size_t>(got);
      size_t whole = bytes / frames.reply.size();
      c.partial_bytes = bytes % frames.reply.size();
      for (size_t f = 0; f < whole; ++f) {
        if (c.sent_ns.empty()) Die("a reply nobody asked for");
        int64_t sent = c.sent_ns.front();
        c.sent_ns.pop_front();
        if (sent >= window_begin_ns && at <= window_end_ns) {
          ++stats->frames;
          stats->latencies_ns.push_back(at - sent);
        }
      }
    }
  }
}

int ConnectLoopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Die("connect");
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) Die("fcntl");
  return fd;
}

double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t at =
      std::min(sorted.size() - 1, static_cast<size_t>(p * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[at]) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseOptions(argc, argv);
  const FrameBytes frames = MakeFrames(o.ops_per_frame);

  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) Die("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) Die("bind");
  if (listen(listener, static_cast<int>(o.connections)) != 0) Die("listen");
  if (getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) Die("getsockname");
  const uint16_t port = ntohs(addr.sin_port);

  // Connect everything first, then start the threads: the set-up is not
  // measured.
  std::vector<std::vector<ClientConnection>> client_conns(o.client_threads);
  std::vector<std::unique_ptr<ServerLoop>> servers;
  for (uint32_t t = 0; t < o.server_threads; ++t) {
    servers.push_back(std::make_unique<ServerLoop>(o, frames, t));
  }
  for (uint32_t i = 0; i < o.connections; ++i) {
    client_conns[i % o.client_threads].push_back(ClientConnection{.fd = ConnectLoopback(port)});
    int fd = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) Die("accept");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    servers[i % o.server_threads]->Add(fd);
  }
  close(listener);

  std::atomic<bool> stop{false};
  std::vector<std::thread> server_threads;
  for (auto& server : servers) {
    server_threads.emplace_back([&server, &stop] { server->Run(stop); });
  }
  const int64_t start_ns = NowNs();
  const int64_t window_begin_ns = start_ns + int64_t{o.warmup_s} * 1'000'000'000;
  const int64_t window_end_ns = window_begin_ns + int64_t{o.duration_s} * 1'000'000'000;
  std::vector<ClientStats> stats(o.client_threads);
  std::vector<std::thread> client_threads;
  for (uint32_t t = 0; t < o.client_threads; ++t) {
    client_threads.emplace_back([&, t] {
      ClientLoop(o, frames, client_conns[t], window_begin_ns, window_end_ns, &stats[t]);
    });
  }
  for (std::thread& t : client_threads) t.join();
  // Closing the client sockets ends the server loops' reads; the flag ends
  // their waits.
  for (auto& conns : client_conns) {
    for (ClientConnection& c : conns) shutdown(c.fd, SHUT_RDWR);
  }
  stop.store(true);
  for (std::thread& t : server_threads) t.join();
  for (auto& conns : client_conns) {
    for (ClientConnection& c : conns) close(c.fd);
  }

  uint64_t frames_total = 0;
  std::vector<int64_t> latencies;
  for (ClientStats& s : stats) {
    frames_total += s.frames;
    latencies.insert(latencies.end(), s.latencies_ns.begin(), s.latencies_ns.end());
  }
  std::sort(latencies.begin(), latencies.end());
  const double ops_per_s =
      static_cast<double>(frames_total) * o.ops_per_frame / static_cast<double>(o.duration_s);
  if (o.json) {
    std::printf(
        "{\"connections\":%u,\"depth\":%u,\"ops_per_frame\":%u,\"sync\":\"%s\","
        "\"request_bytes\":%zu,\"reply_bytes\":%zu,\"ops_per_s\":%.0f,"
        "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f}\n",
        o.connections, o.depth, o.ops_per_frame, SyncName(o.sync), frames.request.size(),
        frames.reply.size(), ops_per_s, Percentile(latencies, 0.50), Percentile(latencies, 0.99),
        Percentile(latencies, 0.999));
  } else {
    std::printf(
        "%u connections x %u in flight x %u ops a frame (request %zu B, reply %zu B), sync %s, "
        "%u server + %u client threads:\n  %.0f ops/s, frame latency p50 %.3f ms, p99 %.3f ms, "
        "p99.9 %.3f ms\n",
        o.connections, o.depth, o.ops_per_frame, frames.request.size(), frames.reply.size(),
        SyncName(o.sync), o.server_threads, o.client_threads, ops_per_s,
        Percentile(latencies, 0.50), Percentile(latencies, 0.99), Percentile(latencies, 0.999));
  }
  return 0;
}
