// server.cc: tallyd's I/O side: listening, connections, frames, tokens,
// routing to the shards, replies and the event stream.  See server.h and
// docs/SERVER.md.
#include "net/server.h"

#include <pthread.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "net/shard.h"
#include "net/tokens.h"
#include "tally/assert.h"
#include "tally/codec.h"
#include "tally/protocol.h"
#include "tally/shard.h"
#include "wal/file.h"
#include "wal/manifest.h"

namespace tally::net {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using proto::Opcode;
constexpr auto nothrow_awaitable = asio::as_tuple(asio::use_awaitable);

// Cat joins anything streamable (Debian's Abseil has its own string_view,
// which absl::StrCat will not take from std::string_view).
template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// How long a connection being closed (cut off, refused, shutting down) gets
// to take its last frame before the socket is closed anyway.
constexpr auto close_grace = std::chrono::milliseconds(1000);
// How long a sender waits before it offers a part to a full shard queue again.
constexpr auto queue_full_retry = std::chrono::milliseconds(1);
// Write buffer capacity a connection keeps between bursts.
constexpr size_t write_buffer_keep_bytes = size_t{1} << 20;
// A connection's read buffer: one read takes every frame the kernel holds up
// to this much; a bigger frame grows it for as long as it takes to read.
constexpr size_t read_buffer_bytes = size_t{16} << 10;
// Read buffer capacity a connection keeps after a big frame.
constexpr size_t read_buffer_keep_bytes = size_t{1} << 20;
// Finished apply jobs a connection keeps for reuse (their buffers keep their
// capacity, so a frame in steady state allocates nothing), and the largest
// frame body a kept job may have held.
constexpr size_t job_pool_max = 64;
constexpr size_t job_keep_body_bytes = size_t{64} << 10;
// How long shutdown waits for connections to flush their last replies.
constexpr auto shutdown_flush_max = std::chrono::milliseconds(3000);

// Answer is a query's outcome: a reply body, or a refusal's error body.
struct Answer {
  ResultCode status = ResultCode::ok;
  std::string body;
};

Answer Refusal(ResultCode code, std::string_view detail) {
  Answer answer{.status = code};
  proto::EncodeErrorBody(Cat(ResultCodeName(code), ": ", detail), &answer.body);
  return answer;
}

// FromStatus turns an engine query's error into a refusal: the engine names
// the result code in NotFound's message.
Answer FromStatus(const absl::Status& status, std::string_view subject) {
  ResultCode code = ResultCode::invalid_command;
  if (status.code() == absl::StatusCode::kNotFound) {
    code = ParseResultCode(std::string_view(status.message().data(), status.message().size()))
               .value_or(ResultCode::invalid_command);
  } else if (status.code() == absl::StatusCode::kOutOfRange) {
    code = ResultCode::limit_exceeded;
  }
  if (code == ResultCode::invalid_command || code == ResultCode::limit_exceeded) {
    return Refusal(code, Cat(status.message(), " (", subject, ")"));
  }
  return Refusal(code, subject);
}

// NamesItsActor: commands a person decides (grants, allocations, approvals,
// settings) record the token's name as their actor when they carry none.
// The metering hot path (deduct, hold, capture, release) does not: one text
// per metered history entry would cost the engine a map entry each, in time
// and in RAM, to repeat the same service name millions of times.
bool NamesItsActor(CommandKind kind) {
  switch (kind) {
    case CommandKind::deduct:
    case CommandKind::hold:
    case CommandKind::capture:
    case CommandKind::release:
      return false;
    default:
      return true;
  }
}

absl::StatusOr<uint32_t> ReadShardCount(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  uint32_t shards = 0;
  if (!absl::SimpleAtoi(text, &shards) || shards == 0 || shards > shards_max) {
    return absl::DataLossError(
        Cat(path, " does not hold a shard count in 1..", shards_max, ": '", text, "'"));
  }
  return shards;
}

absl::StatusOr<tcp::endpoint> ResolveListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port > 65535) {
    return absl::InvalidArgumentError(Cat("--listen '", listen, "' is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:7411
  }
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(address, static_cast<uint16_t>(port));
  asio::io_context io;
  tcp::resolver resolver(io);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(Cat("--listen: cannot resolve '", host, "'"));
  }
  return results.begin()->endpoint();
}

}  // namespace

class Connection;

// ServerJob is an apply job and the connection waiting for it.
struct ServerJob : ApplyJob {
  std::shared_ptr<Connection> connection;  // set while the job is in flight
  uint64_t request_id = 0;
};

// Completions takes the finished apply jobs of one I/O thread's connections
// from the shard threads.  A shard's batch finishes many frames at once:
// they queue here and the I/O thread is woken once (one post while the queue
// is not empty), answers them all, and then starts one write per connection
// with every reply it got.
class Completions final : public JobSink {
 public:
  explicit Completions(asio::io_context& io) : io_(io) {}
  ~Completions();
  Completions(const Completions&) = delete;
  Completions& operator=(const Completions&) = delete;

  void Finished(ApplyJob* job) override {
    bool post = false;
    {
      std::lock_guard lock(mu_);
      ready_.push_back(static_cast<ServerJob*>(job));
      post = !posted_;
      posted_ = true;
    }
    if (post) asio::post(io_, [this] { Drain(); });
  }

  void FinishedAll(std::span<ApplyJob* const> jobs) override {
    bool post = false;
    {
      std::lock_guard lock(mu_);
      for (ApplyJob* job : jobs) ready_.push_back(static_cast<ServerJob*>(job));
      post = !posted_;
      posted_ = true;
    }
    if (post) asio::post(io_, [this] { Drain(); });
  }

 private:
  void Drain();  // on the I/O thread

  asio::io_context& io_;
  std::mutex mu_;
  std::vector<ServerJob*> ready_;  // guarded by mu_; owned (in flight)
  bool posted_ = false;            // guarded by mu_
  // I/O thread only.
  std::vector<ServerJob*> draining_;
  std::vector<std::shared_ptr<Connection>> touched_;
};

// EventHub knows the subscribed connections and hands each the events it
// may see.  Shard threads publish; subscribers live on I/O threads.
class EventHub {
 public:
  void Add(const std::shared_ptr<Connection>& connection, asio::any_io_executor executor,
           uint64_t org_id, const Token* token, uint64_t request_id) {
    std::lock_guard lock(mu_);
    subscribers_.push_back(
        Subscriber{connection, std::move(executor), org_id, token, request_id, connection.get()});
  }
  void Remove(const Connection* connection) {
    std::lock_guard lock(mu_);
    std::erase_if(subscribers_, [&](const Subscriber& s) { return s.key == connection; });
  }
  // Publish runs on a shard thread after the events' batch is durable.
  void Publish(std::span<const Event> events);

 private:
  struct Subscriber {
    std::weak_ptr<Connection> connection;
    asio::any_io_executor executor;
    uint64_t org_id = 0;  // 0: every org the token may read
    const Token* token = nullptr;
    uint64_t request_id = 0;
    const Connection* key = nullptr;
  };
  std::mutex mu_;
  std::vector<Subscriber> subscribers_;  // guarded by mu_
};

class ServerImpl {
 public:
  explicit ServerImpl(const ServerOptions& options) : options_(options) {}
  absl::Status Open();
  void Run();
  void Stop();

  const ServerOptions& options() const { return options_; }
  const Tokens& tokens() const { return tokens_; }
  uint32_t shard_count() const { return static_cast<uint32_t>(shards_.size()); }
  Shard& shard(uint32_t index) { return *shards_[index]; }
  Completions* completions(uint32_t context) { return completions_[context].get(); }
  EventHub& hub() { return hub_; }
  void Closed(const Connection* connection);
  std::string listen_address() const {
    std::string host = endpoint_.address().to_string();
    if (endpoint_.address().is_v6()) host = "[" + host + "]";
    return Cat(host, ":", endpoint_.port());
  }
  uint16_t port() const { return endpoint_.port(); }

 private:
  absl::Status PrepareDataDir();
  asio::awaitable<void> AcceptLoop();

  ServerOptions options_;
  wal::PosixFileSystem fs_;
  Tokens tokens_;
  // Destroyed after the shards (a stopping shard may still finish jobs).
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<std::unique_ptr<Completions>> completions_;  // one per context
  std::vector<std::unique_ptr<Shard>> shards_;
  EventHub hub_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  // Made in Open(), before the listening line is printed: a signal that
  // comes before Run() waits in it instead of killing the process.
  std::unique_ptr<asio::signal_set> signals_;
  tcp::endpoint endpoint_;
  uint32_t next_context_ = 0;

  std::mutex mu_;
  std::condition_variable stop_wake_;
  bool stop_ = false;                                   // guarded by mu_
  std::vector<std::weak_ptr<Connection>> connections_;  // guarded by mu_
  uint32_t connection_count_ = 0;                       // guarded by mu_
};

// Connection is one client.  Every member runs on the connection's own
// io_context thread (one thread per context), so none needs a lock.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ServerImpl* server, tcp::socket socket, Completions* completions)
      : server_(server),
        completions_(completions),
        executor_(socket.get_executor()),
        socket_(std::move(socket)),
        resume_(executor_),
        watchdog_(executor_),
        outbox_(server->shard_count()),
        shard_counts_(server->shard_count()),
        shard_log_bytes_(server->shard_count()) {}

  // A refusal decided while frames of the same read wait in the outbox: it
  // is sent once they are handed on.
  using PendingRefusal = std::tuple<ResultCode, std::string, uint64_t>;

  // executor() may be called on any thread (it never changes).
  const asio::any_io_executor& executor() const { return executor_; }

  void Start() {
    boost::system::error_code ec;
    socket_.set_option(tcp::no_delay(true), ec);
    Touch();
    asio::co_spawn(executor(), Read(shared_from_this()), asio::detached);
    asio::co_spawn(executor(), Watchdog(shared_from_this()), asio::detached);
  }

  // Refuse sends an error frame and closes the connection once it is
  // written (or after close_grace).
  void Refuse(ResultCode code, std::string_view message, uint64_t request_id) {
    if (closed_ || closing_) return;
    closing_ = true;
    std::string body;
    proto::EncodeErrorBody(message, &body);
    Write(Opcode::error, request_id, code, body, /*counted=*/false);
    deadline_ = std::chrono::steady_clock::now() + close_grace;
    watchdog_.cancel();
    if (!writing_) Close();
  }

  // ShutDown is the server stopping: the last replies are already queued.
  void ShutDown() { Refuse(ResultCode::shutting_down, "shutting_down: the server is stopping", 0); }

  // gone() may be read on any thread: a shard skips the queries of a
  // connection that is gone instead of computing replies no one reads.
  bool gone() const { return gone_.load(std::memory_order_relaxed); }

  void Close() {
    if (closed_) return;
    closed_ = true;
    gone_.store(true, std::memory_order_relaxed);
    closing_ = true;
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
    watchdog_.cancel();
    resume_.cancel();
    AbandonOutbox();
    server_->hub().Remove(this);
    server_->Closed(this);
  }

  void SendEvents(uint64_t request_id, const std::vector<Event>& events) {
    for (size_t at = 0; at < events.size() && !closing_; at += wire_events_max) {
      size_t n = std::min<size_t>(wire_events_max, events.size() - at);
      scratch_.clear();
      proto::EncodeEvents(std::span(events).subspan(at, n), &scratch_);
      Write(Opcode::event, request_id, ResultCode::ok, scratch_, /*counted=*/true);
    }
  }

 private:
  using Clock = std::chrono::steady_clock;

  void Touch() {
    deadline_ = Clock::now() + std::chrono::milliseconds(server_->options().idle_timeout_ms);
  }

  // Write queues one frame.  A peer that lets more than the unsent bound
  // pile up is cut off: it would otherwise hold the server's memory hostage.
  // With kick false the frame only queues: the caller starts the write once
  // it has queued everything it has (one write for many replies).
  void Write(Opcode op, uint64_t request_id, ResultCode status, std::string_view body,
             bool counted, bool kick = true) {
    if (closed_) return;
    if (counted &&
        (closing_ || pending_.size() + in_write_.size() + body.size() + proto::frame_header_bytes >
                         server_->options().connection_unsent_bytes_max)) {
      if (closing_) return;
      pending_.clear();
      Refuse(ResultCode::limit_exceeded,
             Cat("limit_exceeded: more than ", server_->options().connection_unsent_bytes_max,
                 " reply bytes unread; the client stopped reading"),
             0);
      return;
    }
    size_t at = proto::BeginFrame(&pending_);
    pending_.append(body);
    proto::FinishFrame(&pending_, at, op, request_id, proto::flag_reply, status);
    if (kick && !writing_) StartWrite();
  }

 public:
  // KickWrite starts writing what queued without a kick.
  void KickWrite() {
    if (!closed_ && !writing_ && !pending_.empty()) StartWrite();
  }

  // ApplyFinished answers a finished apply job (its write waits for
  // KickWrite) and keeps the job for reuse.
  void ApplyFinished(std::unique_ptr<ServerJob> job) {
    scratch_.clear();
    proto::EncodeApplyReply(job->time_us.load(std::memory_order_relaxed), job->results,
                            &scratch_);
    Write(Opcode::apply, job->request_id, ResultCode::ok, scratch_, /*counted=*/true,
          /*kick=*/false);
    GiveJob(std::move(job));
    RequestDone();
  }

  bool touched_ = false;  // in Completions::Drain's list (I/O thread only)

 private:
  std::unique_ptr<ServerJob> TakeJob() {
    if (free_jobs_.empty()) return std::make_unique<ServerJob>();
    std::unique_ptr<ServerJob> job = std::move(free_jobs_.back());
    free_jobs_.pop_back();
    return job;
  }

  void GiveJob(std::unique_ptr<ServerJob> job) {
    job->connection.reset();
    if (free_jobs_.size() < job_pool_max && job->body.capacity() <= job_keep_body_bytes) {
      free_jobs_.push_back(std::move(job));
    }
  }

  void StartWrite() {
    TALLY_ASSERT(!writing_ && !pending_.empty());
    in_write_.swap(pending_);
    pending_.clear();
    writing_ = true;
    asio::async_write(
        socket_, asio::buffer(in_write_),
        [self = shared_from_this()](boost::system::error_code ec, size_t) { self->Written(ec); });
  }

  void Written(boost::system::error_code ec) {
    writing_ = false;
    in_write_.clear();
    // A burst (a big history page, a flood of events) must not pin its
    // buffer for the connection's life: idle memory stays small.
    if (in_write_.capacity() > write_buffer_keep_bytes) std::string().swap(in_write_);
    if (closed_) return;
    if (ec) {
      Close();
      return;
    }
    if (!pending_.empty()) {
      StartWrite();
    } else if (closing_) {
      Close();
    } else {
      FinishDrain();
    }
  }

  // FinishDrain closes a connection whose peer has finished sending once
  // every reply it asked for is out (a subscriber goes on receiving events).
  void FinishDrain() {
    if (draining_ && !closing_ && !subscribed_ && in_flight_ == 0 && !writing_ &&
        pending_.empty()) {
      Close();
    }
  }

  void Reply(Opcode op, uint64_t request_id, const Answer& answer) {
    Write(op, request_id, answer.status, answer.body, /*counted=*/true);
  }

  void RequestDone() {
    TALLY_ASSERT(in_flight_ > 0);
    --in_flight_;
    if (reader_waiting_) resume_.cancel();
    FinishDrain();
  }

  asio::awaitable<void> Watchdog(std::shared_ptr<Connection> /*keep_alive*/) {
    while (!closed_) {
      watchdog_.expires_at(deadline_);
      co_await watchdog_.async_wait(nothrow_awaitable);
      if (closed_) break;
      if (Clock::now() < deadline_) continue;  // re-armed: the deadline moved
      if (!closing_ && (subscribed_ || in_flight_ > 0)) {
        Touch();  // a stream or a request in progress is not idle
        continue;
      }
      Close();
    }
  }

  // Read takes what the kernel has (up to the buffer's size) in one read and
  // handles every complete frame in it before reading again.  The apply
  // frames of one read go to each shard in one hand-off (FlushOutbox).
  asio::awaitable<void> Read(std::shared_ptr<Connection> /*keep_alive*/) {
    rbuf_.resize(read_buffer_bytes);
    // Set when a frame is bad: sent after the frames before it are handed on.
    std::optional<PendingRefusal> refuse;
    while (!closing_) {
      size_t frame_bytes = proto::frame_header_bytes;  // what the next frame needs
      bool touched = false;  // the idle clock restarts once a read, not once a frame
      while (!closing_ && !refuse) {
        size_t have = read_end_ - read_begin_;
        if (have < proto::frame_header_bytes) break;
        const char* at = rbuf_.data() + read_begin_;
        std::string_view header_view(at, proto::frame_header_bytes);
        proto::FrameHeader header;
        if (absl::Status s = proto::DecodeFrameHeader(header_view, &header); !s.ok()) {
          uint64_t request_id = 0;
          if (std::memcmp(at, "TALY", 4) == 0) std::memcpy(&request_id, at + 8, sizeof request_id);
          refuse.emplace(ResultCode::malformed_frame, Cat("malformed_frame: ", s.message()),
                         request_id);
          break;
        }
        frame_bytes = proto::frame_header_bytes + header.body_bytes;
        if (have < frame_bytes) break;
        std::string_view body(at + proto::frame_header_bytes, header.body_bytes);
        if (!proto::VerifyChecksum(header_view, body)) {
          refuse.emplace(ResultCode::malformed_frame, "malformed_frame: checksum mismatch",
                         header.request_id);
          break;
        }
        if (header.is_reply()) {
          refuse.emplace(ResultCode::malformed_frame,
                         "malformed_frame: reply flag set on a request", header.request_id);
          break;
        }
        // The body stays in rbuf_ until the next read: nothing below reads.
        read_begin_ += frame_bytes;
        frame_bytes = proto::frame_header_bytes;
        if (!touched) {
          Touch();
          touched = true;
        }
        if (header.opcode == Opcode::apply && token_ != nullptr && !subscribed_) {
          Apply(header.request_id, body, &refuse);
        } else {
          // Other requests keep their place behind the applies before them.
          if (!TryFlushOutbox()) co_await WaitFlushOutbox();
          co_await Dispatch(header, body);
        }
        // Too many requests unanswered: stop reading until replies drain.
        while (!closing_ && in_flight_ >= connection_requests_in_flight_max) {
          if (!TryFlushOutbox()) co_await WaitFlushOutbox();
          reader_waiting_ = true;
          resume_.expires_at(Clock::time_point::max());
          co_await resume_.async_wait(nothrow_awaitable);
          reader_waiting_ = false;
        }
      }
      // Every frame before a bad one is handed on (and answered if the
      // connection lives long enough); nothing after it is.
      if (!TryFlushOutbox()) co_await WaitFlushOutbox();
      if (refuse) {
        auto& [code, message, request_id] = *refuse;
        Refuse(code, message, request_id);
        break;
      }
      if (closing_) break;

      // Room for the rest of the next frame: move what is left to the front,
      // grow for a frame bigger than the buffer, shrink after one.
      size_t have = read_end_ - read_begin_;
      if (have == 0 && rbuf_.size() > read_buffer_keep_bytes) {
        std::string(read_buffer_bytes, '\0').swap(rbuf_);
      }
      if (read_begin_ > 0 && (have == 0 || rbuf_.size() - read_begin_ < frame_bytes ||
                              rbuf_.size() - read_end_ < read_buffer_bytes / 4)) {
        std::memmove(rbuf_.data(), rbuf_.data() + read_begin_, have);
        read_begin_ = 0;
        read_end_ = have;
      }
      if (rbuf_.size() < frame_bytes) rbuf_.resize(frame_bytes);

      auto [ec, n] = co_await socket_.async_read_some(
          asio::buffer(rbuf_.data() + read_end_, rbuf_.size() - read_end_), nothrow_awaitable);
      if (closing_) break;
      read_end_ += n;
      if (!ec) continue;
      have = read_end_ - read_begin_;
      if (ec == asio::error::eof && have > 0 && have < proto::frame_header_bytes) {
        Refuse(ResultCode::malformed_frame,
               Cat("malformed_frame: truncated frame: ", have, " of ", proto::frame_header_bytes,
                   " header bytes before the end"),
               0);
      } else if (ec == asio::error::eof && have > 0) {
        // A whole header is here (the loop above checked it): the body is short.
        proto::FrameHeader header;
        std::string_view header_view(rbuf_.data() + read_begin_, proto::frame_header_bytes);
        TALLY_ASSERT(proto::DecodeFrameHeader(header_view, &header).ok());
        Refuse(ResultCode::malformed_frame,
               Cat("malformed_frame: truncated frame: ", have - proto::frame_header_bytes, " of ",
                   header.body_bytes, " body bytes before the end"),
               header.request_id);
      } else if (ec == asio::error::eof) {
        // The peer finished sending between frames: answer what it asked.
        draining_ = true;
        FinishDrain();
      } else {
        Close();
      }
      break;
    }
  }

  // TryFlushOutbox hands the queued apply parts to their shards, each shard's
  // under one lock with one wake-up; false when a full shard queue kept some.
  bool TryFlushOutbox() {
    bool all = true;
    for (uint32_t s = 0; s < outbox_.size(); ++s) {
      std::vector<ApplyPart>& parts = outbox_[s];
      if (parts.empty()) continue;
      size_t taken = 0;
      Shard::Push pushed = server_->shard(s).PushApplies(parts, &taken);
      if (pushed == Shard::Push::stopped) {
        RefuseParts(parts, ResultCode::shutting_down);
        continue;
      }
      parts.erase(parts.begin(), parts.begin() + static_cast<ptrdiff_t>(taken));
      all = all && parts.empty();
    }
    return all;
  }

  // AbandonOutbox refuses the parts of a closed connection that were never
  // handed on (it closed while a full shard queue held them back): no one
  // will read their replies, and a job must not wait for a part that never
  // goes (the job would keep the connection alive for good).
  void AbandonOutbox() {
    for (std::vector<ApplyPart>& parts : outbox_) RefuseParts(parts, ResultCode::shutting_down);
  }

  // WaitFlushOutbox retries while a shard's queue is full: this connection
  // stops being read until there is room (backpressure), the others go on.
  asio::awaitable<void> WaitFlushOutbox() {
    asio::steady_timer wait(executor());
    while (!TryFlushOutbox()) {
      wait.expires_after(queue_full_retry);
      co_await wait.async_wait(nothrow_awaitable);
    }
  }

  asio::awaitable<void> Dispatch(const proto::FrameHeader& header, std::string_view body) {
    const uint64_t id = header.request_id;
    if (token_ == nullptr && header.opcode != Opcode::hello) {
      Refuse(ResultCode::unauthenticated,
             "unauthenticated: the first frame of a connection must be a hello", id);
      co_return;
    }
    if (subscribed_) {
      Refuse(ResultCode::malformed_frame,
             "malformed_frame: a subscribed connection takes no further requests", id);
      co_return;
    }
    switch (header.opcode) {
      case Opcode::hello:
        Hello(id, body);
        co_return;
      case Opcode::apply: {
        std::optional<PendingRefusal> refuse;
        Apply(id, body, &refuse);
        if (!TryFlushOutbox()) co_await WaitFlushOutbox();
        if (refuse) Refuse(std::get<0>(*refuse), std::get<1>(*refuse), std::get<2>(*refuse));
        co_return;
      }
      case Opcode::subscribe:
        Subscribe(id, body);
        co_return;
      case Opcode::event:
      case Opcode::error:
        Refuse(ResultCode::malformed_frame,
               Cat("malformed_frame: opcode ", proto::OpcodeName(header.opcode),
                   " is sent by the server only"),
               id);
        co_return;
      default:
        co_await Query(header.opcode, id, body);
        co_return;
    }
  }

  void Hello(uint64_t id, std::string_view body) {
    if (token_ != nullptr) {
      Refuse(ResultCode::malformed_frame, "malformed_frame: a second hello", id);
      return;
    }
    proto::HelloRequest hello;
    if (absl::Status s = proto::DecodeHello(body, &hello); !s.ok()) {
      Refuse(ResultCode::malformed_frame, Cat("malformed_frame: hello: ", s.message()), id);
      return;
    }
    const Token* token = server_->tokens().Find(hello.token);
    if (token == nullptr) {
      Refuse(ResultCode::unauthenticated, "unauthenticated: unknown token", id);
      return;
    }
    token_ = token;
    Answer answer;
    proto::EncodeHelloReply(
        {.role = token->role, .shards = server_->shard_count(), .token_name = token->name},
        &answer.body);
    Reply(Opcode::hello, id, answer);
  }

  // Apply decodes an apply frame into a (reused) job and queues one part per
  // shard it touches in the outbox; TryFlushOutbox hands them on.  A frame
  // that does not decode sets *refuse: the caller hands on the frames
  // before it first.
  void Apply(uint64_t id, std::string_view body, std::optional<PendingRefusal>* refuse) {
    std::unique_ptr<ServerJob> job = TakeJob();
    job->body.assign(body.data(), body.size());
    if (absl::Status s = DecodeBatch(job->body, &job->batch); !s.ok()) {
      GiveJob(std::move(job));
      refuse->emplace(ResultCode::malformed_frame, Cat("malformed_frame: apply: ", s.message()),
                      id);
      return;
    }
    const size_t count = job->batch.commands.size();
    if (job->batch.time_us != 0 || count == 0 || count > frame_commands_max) {
      int64_t time_us = job->batch.time_us;
      GiveJob(std::move(job));
      refuse->emplace(ResultCode::malformed_frame,
                      Cat("malformed_frame: apply wants time_us 0 and 1 to ", frame_commands_max,
                          " commands; got time_us ", time_us, " and ", count),
                      id);
      return;
    }
    job->request_id = id;
    job->reencode = false;
    job->time_us.store(0, std::memory_order_relaxed);
    job->results.resize(count);
    // Group the commands by shard, each group in request order (a counting
    // sort: no allocation once the buffers have grown).
    constexpr uint32_t refused = UINT32_MAX;
    const uint32_t shards = server_->shard_count();
    command_shards_.resize(count);
    std::fill(shard_counts_.begin(), shard_counts_.end(), 0);
    std::fill(shard_log_bytes_.begin(), shard_log_bytes_.end(), 0);
    const uint32_t* ends = job->batch.command_ends.data();
    uint32_t placed = 0;
    for (uint32_t i = 0; i < count; ++i) {
      Command& c = job->batch.commands[i];
      // The sweep is the server's own command; clients never send it.
      if (c.kind == CommandKind::expire_sweep || !proto::RoleMayApply(token_->role, c.kind) ||
          !token_->MayUseOrg(c.org_id)) {
        job->results[i] = Result{.code = ResultCode::forbidden};
        command_shards_[i] = refused;
        continue;
      }
      // The token outlives the server's connections: the name stays valid.
      // What the command takes in the log: its bytes in the frame (encoding
      // it again gives no more), plus the actor named here.
      uint32_t log_bytes = ends[i] - (i == 0 ? batch_header_bytes : ends[i - 1]);
      if (c.actor.empty() && NamesItsActor(c.kind)) {
        c.actor = token_->name;
        job->reencode = true;  // its bytes in the body no longer say this
        log_bytes += 2 + static_cast<uint32_t>(c.actor.size());
      }
      uint32_t s = ShardOf(c.org_id, shards);
      command_shards_[i] = s;
      ++shard_counts_[s];
      shard_log_bytes_[s] += log_bytes;
      ++placed;
    }
    job->order.resize(placed);
    uint32_t parts = 0;
    uint32_t begin = 0;
    for (uint32_t s = 0; s < shards; ++s) {
      uint32_t n = shard_counts_[s];
      shard_counts_[s] = begin;  // from here on: where shard s's next index goes
      if (n > 0) ++parts;
      begin += n;
    }
    for (uint32_t i = 0; i < count; ++i) {
      if (command_shards_[i] != refused) job->order[shard_counts_[command_shards_[i]]++] = i;
    }
    ++in_flight_;
    if (parts == 0) {  // every command refused: answered at once
      job->connection = shared_from_this();
      ApplyFinished(std::move(job));
      KickWrite();
      return;
    }
    job->parts_left.store(parts, std::memory_order_relaxed);
    job->sink = completions_;
    job->connection = shared_from_this();
    ServerJob* flying = job.release();  // comes back through Completions
    begin = 0;
    for (uint32_t s = 0; s < shards; ++s) {
      uint32_t end = shard_counts_[s];
      if (end > begin) outbox_[s].push_back(ApplyPart{flying, begin, end, shard_log_bytes_[s]});
      begin = end;
    }
  }

  asio::awaitable<void> Query(Opcode op, uint64_t id, std::string_view body) {
    if (!proto::RoleMayQuery(token_->role, op)) {
      Reply(op, id,
            Refusal(ResultCode::forbidden,
                    Cat("token ", token_->name, " (", proto::RoleName(token_->role),
                        ") may not send ", proto::OpcodeName(op))));
      co_return;
    }
    absl::Status decoded;
    uint64_t org_id = 0;
    std::function<Answer(const wal::Store&, int64_t)> compute;
    switch (op) {
      case Opcode::balance: {
        proto::BalanceRequest r;
        decoded = proto::DecodeBalanceRequest(body, &r);
        org_id = r.org_id;
        compute = [r](const wal::Store& store, int64_t now_us) {
          const Ledger& ledger = store.ledger();
          std::string subject = Cat("org ", r.org_id, " wallet ", r.wallet_id);
          Answer answer;
          if (r.at_us != 0) {
            // From the history, on disk where the RAM window ends.
            absl::StatusOr<int64_t> at = store.BalanceAt(r.org_id, r.wallet_id, r.asset, r.at_us);
            if (!at.ok()) return FromStatus(at.status(), subject);
            proto::EncodeBalanceReply(Balance{.available = *at}, r.at_us, &answer.body);
            return answer;
          }
          absl::StatusOr<Balance> b = ledger.GetBalance(r.org_id, r.wallet_id, r.asset, now_us);
          if (!b.ok()) return FromStatus(b.status(), subject);
          proto::EncodeBalanceReply(*b, now_us, &answer.body);
          return answer;
        };
        break;
      }
      case Opcode::org_summary:
      case Opcode::settings:
      case Opcode::totals: {
        proto::OrgRequest r;
        decoded = proto::DecodeOrgRequest(body, &r);
        org_id = r.org_id;
        compute = [r, op](const wal::Store& store, int64_t now_us) {
          const Ledger& ledger = store.ledger();
          std::string subject = Cat("org ", r.org_id);
          Answer answer;
          if (op == Opcode::org_summary) {
            auto v = ledger.GetOrgSummary(r.org_id, r.asset, now_us);
            if (!v.ok()) return FromStatus(v.status(), subject);
            proto::EncodeSummaryReply(*v, &answer.body);
          } else if (op == Opcode::settings) {
            auto v = ledger.GetSettings(r.org_id);
            if (!v.ok()) return FromStatus(v.status(), subject);
            proto::EncodeSettingsReply(*v, &answer.body);
          } else {
            auto v = ledger.GetTotals(r.org_id, r.asset);
            if (!v.ok()) return FromStatus(v.status(), subject);
            proto::EncodeTotalsReply(*v, &answer.body);
          }
          return answer;
        };
        break;
      }
      case Opcode::history: {
        HistoryQuery q;
        decoded = proto::DecodeHistoryRequest(body, &q);
        org_id = q.org_id;
        q.limit = std::min(q.limit, wire_history_entries_max);
        compute = [q](const wal::Store& store, int64_t) {
          auto page = store.GetHistory(q);  // continues on disk beyond the RAM window
          if (!page.ok()) {
            return FromStatus(page.status(), Cat("org ", q.org_id, " wallet ", q.wallet_id));
          }
          Answer answer;
          proto::EncodeHistoryReply(*page, &answer.body);
          return answer;
        };
        break;
      }
      case Opcode::requests: {
        proto::RequestsRequest r;
        decoded = proto::DecodeRequestsRequest(body, &r);
        org_id = r.org_id;
        compute = [r](const wal::Store& store, int64_t) {
          auto rows = store.ledger().GetRequests(r.org_id, r.status);
          if (!rows.ok()) return FromStatus(rows.status(), Cat("org ", r.org_id));
          bool truncated = rows->size() > wire_requests_max;
          if (truncated) rows->resize(wire_requests_max);
          Answer answer;
          proto::EncodeRequestsReply(*rows, truncated, &answer.body);
          return answer;
        };
        break;
      }
      case Opcode::usage: {
        proto::UsageRequest r;
        decoded = proto::DecodeUsageRequest(body, &r);
        org_id = r.org_id;
        compute = [r](const wal::Store& store, int64_t) {
          auto rows = store.ledger().GetUsage(r.org_id, r.from_us, r.to_us);
          if (!rows.ok()) return FromStatus(rows.status(), Cat("org ", r.org_id));
          bool truncated = rows->size() > wire_usage_rows_max;
          if (truncated) rows->resize(wire_usage_rows_max);
          Answer answer;
          proto::EncodeUsageReply(*rows, truncated, &answer.body);
          return answer;
        };
        break;
      }
      default:
        Refuse(ResultCode::malformed_frame,
               Cat("malformed_frame: opcode ", static_cast<int>(op), " is not a request"), id);
        co_return;
    }
    if (!decoded.ok()) {
      Refuse(ResultCode::malformed_frame,
             Cat("malformed_frame: ", proto::OpcodeName(op), ": ", decoded.message()), id);
      co_return;
    }
    if (!token_->MayUseOrg(org_id)) {
      Reply(
          op, id,
          Refusal(ResultCode::forbidden, Cat("token ", token_->name, " may not use org ", org_id)));
      co_return;
    }
    ++in_flight_;
    QueryFn query = [self = shared_from_this(), op, id,
                     compute = std::move(compute)](const ShardView& view) {
      if (self->gone()) return;  // its in-flight count died with it
      Answer answer = view.store != nullptr ? compute(*view.store, view.now_us)
                                            : Refusal(view.refusal, view.reason);
      asio::post(self->executor(), [self, op, id, answer = std::move(answer)] {
        self->Reply(op, id, answer);
        self->RequestDone();
      });
    };
    Shard& shard = server_->shard(ShardOf(org_id, server_->shard_count()));
    asio::steady_timer wait(executor());
    for (;;) {
      Shard::Push pushed = shard.PushQuery(std::move(query), reinterpret_cast<uintptr_t>(this));
      if (pushed == Shard::Push::accepted) break;
      if (pushed == Shard::Push::stopped) {
        Reply(op, id, Refusal(ResultCode::shutting_down, "the server is stopping"));
        RequestDone();
        break;
      }
      wait.expires_after(queue_full_retry);
      co_await wait.async_wait(nothrow_awaitable);
    }
  }

  void Subscribe(uint64_t id, std::string_view body) {
    if (!proto::RoleMayQuery(token_->role, Opcode::subscribe)) {
      Reply(Opcode::subscribe, id,
            Refusal(ResultCode::forbidden, Cat("token ", token_->name, " may not subscribe")));
      return;
    }
    proto::SubscribeRequest r;
    if (absl::Status s = proto::DecodeSubscribeRequest(body, &r); !s.ok()) {
      Refuse(ResultCode::malformed_frame, Cat("malformed_frame: subscribe: ", s.message()), id);
      return;
    }
    if (r.org_id != 0 && !token_->MayUseOrg(r.org_id)) {
      Reply(Opcode::subscribe, id,
            Refusal(ResultCode::forbidden,
                    Cat("token ", token_->name, " may not use org ", r.org_id)));
      return;
    }
    subscribed_ = true;
    server_->hub().Add(shared_from_this(), executor(), r.org_id, token_, id);
    Reply(Opcode::subscribe, id, Answer{});
  }

  ServerImpl* server_;
  Completions* completions_;  // this connection's I/O thread's
  const asio::any_io_executor executor_;
  tcp::socket socket_;
  asio::steady_timer resume_;    // the reader waits here while in_flight_ is at its bound
  asio::steady_timer watchdog_;  // idle timeout and close grace
  Clock::time_point deadline_{};
  const Token* token_ = nullptr;  // set by a successful hello
  bool subscribed_ = false;
  bool draining_ = false;  // the peer sent its end of stream between frames
  bool closing_ = false;   // no more requests are read; close after the last write
  bool closed_ = false;
  std::atomic<bool> gone_{false};  // closed_, for other threads
  bool writing_ = false;
  uint32_t in_flight_ = 0;
  std::string pending_;   // frames queued behind the write in progress
  std::string in_write_;  // the frames being written
  std::string scratch_;
  bool reader_waiting_ = false;  // the reader waits on resume_ for replies to drain
  std::string rbuf_;             // bytes read, frames not yet handled: [read_begin_, read_end_)
  size_t read_begin_ = 0;
  size_t read_end_ = 0;
  std::vector<std::vector<ApplyPart>> outbox_;  // per shard: parts not yet handed on
  std::vector<std::unique_ptr<ServerJob>> free_jobs_;
  std::vector<uint32_t> command_shards_;   // Apply's scratch
  std::vector<uint32_t> shard_counts_;     // Apply's scratch
  std::vector<uint32_t> shard_log_bytes_;  // Apply's scratch
};

Completions::~Completions() {
  // Jobs finished after the I/O threads stopped: nobody will answer them.
  for (ServerJob* job : ready_) delete job;
}

void Completions::Drain() {
  {
    std::lock_guard lock(mu_);
    draining_.swap(ready_);
    posted_ = false;
  }
  for (ServerJob* job : draining_) {
    std::shared_ptr<Connection> connection = std::move(job->connection);
    connection->ApplyFinished(std::unique_ptr<ServerJob>(job));
    if (!connection->touched_) {
      connection->touched_ = true;
      touched_.push_back(std::move(connection));
    }
  }
  draining_.clear();
  for (const std::shared_ptr<Connection>& connection : touched_) {
    connection->touched_ = false;
    connection->KickWrite();
  }
  touched_.clear();
}

void EventHub::Publish(std::span<const Event> events) {
  std::lock_guard lock(mu_);
  for (const Subscriber& s : subscribers_) {
    std::vector<Event> mine;
    for (const Event& e : events) {
      if (s.org_id != 0 ? e.org_id == s.org_id : s.token->MayUseOrg(e.org_id)) {
        mine.push_back(e);
      }
    }
    if (mine.empty()) continue;
    asio::post(s.executor, [connection = s.connection, id = s.request_id, mine = std::move(mine)] {
      if (auto c = connection.lock()) c->SendEvents(id, mine);
    });
  }
}

namespace {
// DefaultShards: half the cores, at least one. A shard's thread wants a core
// to itself while it applies, and the I/O threads (one per core), the log's
// sync threads and, on a small machine, the clients share the rest; on 2
// cores one shard did 1.38× the deducts of two at 50 connections × 32 one-op
// frames, for 0.59× the CPU each, and 0.91× at frames of 8,000, where two
// engines apply side by side (bench/RESULTS.md, 2026-12-04; docs/SERVER.md).
uint32_t DefaultShards() { return std::max(1u, std::thread::hardware_concurrency() / 2); }
}  // namespace

absl::Status ServerImpl::PrepareDataDir() {
  const std::string& data = options_.data_dir;
  std::error_code ec;
  std::filesystem::create_directories(data, ec);
  if (ec) return absl::InternalError(Cat("create ", data, ": ", ec.message()));

  std::string shards_path = data + "/shards";
  uint32_t shards = 0;
  if (std::filesystem::exists(shards_path)) {
    absl::StatusOr<uint32_t> stored = ReadShardCount(shards_path);
    if (!stored.ok()) return stored.status();
    if (options_.shards != 0 && options_.shards != *stored) {
      return absl::FailedPreconditionError(
          Cat(data, " holds ", *stored, " shards; --shards ", options_.shards,
              " differs (the shard count of a data directory never changes)"));
    }
    shards = *stored;
  } else {
    shards = options_.shards != 0 ? options_.shards : DefaultShards();
    if (shards > shards_max) {
      if (options_.shards != 0) {
        return absl::InvalidArgumentError(
            Cat("--shards ", shards, " is over the limit of ", shards_max));
      }
      shards = shards_max;
    }
    if (absl::Status s = wal::WriteFileDurably(&fs_, data, shards_path, Cat(shards, "\n"));
        !s.ok()) {
      return s;
    }
  }

  std::string tokens_path = options_.tokens_path.empty() ? data + "/tokens" : options_.tokens_path;
  if (options_.tokens_path.empty() && !std::filesystem::exists(tokens_path)) {
    absl::StatusOr<std::string> created = CreateAdminTokenFile(tokens_path);
    if (!created.ok()) return created.status();
    std::fprintf(stderr, "tallyd: created %s holding an admin token (name admin)\n",
                 tokens_path.c_str());
  }
  absl::StatusOr<Tokens> tokens = LoadTokens(tokens_path);
  if (!tokens.ok()) return tokens.status();
  tokens_ = std::move(*tokens);

  // Every shard recovers (snapshot + replay) on its own thread, at once: a
  // replay is one core's work, and the shards' logs are independent
  // (docs/DURABILITY.md, "Recovery").  All are joined before anything is
  // judged; the lowest-numbered failure is the answer, as when they opened
  // one after another, and the shards that did open are closed unstarted.
  std::vector<absl::StatusOr<std::unique_ptr<Shard>>> opened(shards);
  {
    std::vector<std::thread> openers;
    openers.reserve(shards);
    for (uint32_t i = 0; i < shards; ++i) {
      ShardOptions shard_options;
      shard_options.index = i;
      shard_options.dir = Cat(data, "/shard-", i);
      shard_options.sweep_every_ms = options_.sweep_every_ms;
      shard_options.store.snapshot_every_records = options_.snapshot_every_records;
      shard_options.store.ledger.prefault = options_.prefault;
      shard_options.store.snapshot_every_ms =
          static_cast<int64_t>(options_.snapshot_every_s) * 1000;
      // One fprintf a line: lines of shards recovering side by side do not
      // mix (stdio locks the stream per call), and each names its shard.
      shard_options.store.log_sink = [i](std::string_view line) {
        std::fprintf(stderr, "tallyd: shard %u: %.*s\n", i, static_cast<int>(line.size()),
                     line.data());
      };
      auto open = [this, i, &opened, shard_options = std::move(shard_options)] {
        opened[i] = Shard::Open(&fs_, shard_options,
                                [this](std::span<const Event> events) { hub_.Publish(events); });
      };
      try {
        openers.emplace_back([i, open = std::move(open)] {
          char name[16];
          std::snprintf(name, sizeof name, "recover-%u", i);
          (void)::pthread_setname_np(::pthread_self(), name);
          open();
        });
      } catch (const std::system_error& e) {  // no thread to be had: the start fails
        opened[i] =
            absl::ResourceExhaustedError(Cat("shard ", i, ": no recovery thread: ", e.what()));
      }
    }
    for (std::thread& opener : openers) opener.join();
  }
  for (uint32_t i = 0; i < shards; ++i) {
    if (!opened[i].ok()) return opened[i].status();  // `opened` closes the others
  }
  for (uint32_t i = 0; i < shards; ++i) {
    const wal::RecoveryReport& report = (*opened[i])->recovery();
    if (report.torn_bytes_dropped > 0) {
      std::fprintf(stderr, "tallyd: shard %u: cut a torn tail of %llu bytes off the log\n", i,
                   static_cast<unsigned long long>(report.torn_bytes_dropped));
    }
    shards_.push_back(std::move(*opened[i]));
  }
  return absl::OkStatus();
}

absl::Status ServerImpl::Open() {
  if (absl::Status s = PrepareDataDir(); !s.ok()) return s;
  absl::StatusOr<tcp::endpoint> endpoint = ResolveListen(options_.listen);
  if (!endpoint.ok()) return endpoint.status();
  uint32_t threads = options_.io_threads != 0 ? options_.io_threads
                                              : std::max(1u, std::thread::hardware_concurrency());
  for (uint32_t i = 0; i < threads; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
    completions_.push_back(std::make_unique<Completions>(*contexts_.back()));
  }
  boost::system::error_code ec;
  acceptor_ = std::make_unique<tcp::acceptor>(*contexts_[0]);
  acceptor_->open(endpoint->protocol(), ec);
  if (!ec) acceptor_->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_->bind(*endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(Cat("listen on ", options_.listen, ": ", ec.message()));
  }
  endpoint_ = acceptor_->local_endpoint(ec);
  if (options_.handle_signals) {
    signals_ = std::make_unique<asio::signal_set>(*contexts_[0], SIGINT, SIGTERM);
  }
  return absl::OkStatus();
}

asio::awaitable<void> ServerImpl::AcceptLoop() {
  asio::steady_timer backoff(acceptor_->get_executor());
  for (;;) {
    const uint32_t context_index = next_context_;
    asio::io_context& context = *contexts_[context_index];
    next_context_ = (next_context_ + 1) % contexts_.size();
    auto [ec, socket] = co_await acceptor_->async_accept(context, nothrow_awaitable);
    if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
    if (ec) {
      // Out of file descriptors, say: wait a little instead of spinning.
      std::fprintf(stderr, "tallyd: accept: %s\n", ec.message().c_str());
      backoff.expires_after(std::chrono::milliseconds(50));
      co_await backoff.async_wait(nothrow_awaitable);
      continue;
    }
    auto connection = std::make_shared<Connection>(this, std::move(socket),
                                                   completions_[context_index].get());
    bool over = false;
    {
      std::lock_guard lock(mu_);
      over = stop_ || connection_count_ >= options_.connections_max;
      ++connection_count_;
      std::erase_if(connections_, [](const auto& c) { return c.expired(); });
      connections_.push_back(connection);
    }
    asio::post(connection->executor(), [connection, over, max = options_.connections_max] {
      if (over) {
        connection->Refuse(ResultCode::limit_exceeded,
                           Cat("limit_exceeded: the server has ", max, " connections, its limit"),
                           0);
      } else {
        connection->Start();
      }
    });
  }
}

void ServerImpl::Closed(const Connection*) {
  std::lock_guard lock(mu_);
  --connection_count_;
}

void ServerImpl::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  stop_wake_.notify_all();
}

void ServerImpl::Run() {
  for (auto& shard : shards_) shard->Start();
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  for (auto& context : contexts_) guards.push_back(asio::make_work_guard(*context));
  asio::co_spawn(*contexts_[0], AcceptLoop(), asio::detached);
  if (signals_) {
    signals_->async_wait([this](boost::system::error_code ec, int) {
      if (!ec) Stop();
    });
  }
  std::vector<std::thread> threads;
  for (auto& context : contexts_) {
    threads.emplace_back([&context] { context->run(); });
  }

  {
    std::unique_lock lock(mu_);
    stop_wake_.wait(lock, [&] { return stop_; });
  }
  std::fprintf(stderr, "tallyd: shutting down\n");
  // 1. No new connections.
  asio::post(*contexts_[0], [this] {
    boost::system::error_code ec;
    acceptor_->close(ec);
    if (signals_) signals_->cancel(ec);
  });
  // 2. Each shard finishes its batch and syncs; what is still queued is
  // answered shutting_down.  Their replies are posted to the connections.
  for (auto& shard : shards_) shard->Stop();
  // 3. Each connection writes what it has, then closes.
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(mu_);
    for (auto& weak : connections_) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  for (auto& connection : open) {
    asio::post(connection->executor(), [connection] { connection->ShutDown(); });
  }
  open.clear();
  auto give_up = std::chrono::steady_clock::now() + shutdown_flush_max;
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (connection_count_ == 0) break;
    }
    if (std::chrono::steady_clock::now() >= give_up) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  guards.clear();
  for (auto& context : contexts_) context->stop();
  for (auto& thread : threads) thread.join();
  std::fprintf(stderr, "tallyd: stopped\n");
}

absl::StatusOr<std::unique_ptr<Server>> Server::Open(const ServerOptions& options) {
  auto impl = std::make_unique<ServerImpl>(options);
  if (absl::Status s = impl->Open(); !s.ok()) return s;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<ServerImpl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;
std::string Server::listen_address() const { return impl_->listen_address(); }
uint16_t Server::port() const { return impl_->port(); }
uint32_t Server::shards() const { return impl_->shard_count(); }
void Server::Run() { impl_->Run(); }
void Server::Stop() { impl_->Stop(); }

}  // namespace tally::net
