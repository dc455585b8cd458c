// client.h: a C++ client for tallyd (include/tally/PROTOCOL.md).
//
// One Client is one authenticated TCP connection, used from one thread.  It
// offers blocking calls (send one request, wait for its reply) and a
// pipelined API (queue many requests, flush once, receive the replies as
// they come) that the load generator uses to keep thousands of operations in
// flight.  Errors are values: a transport failure is Unavailable /
// DeadlineExceeded; a request the server refused as a whole carries its
// result code, e.g. NotFound("unknown_org: org 9"), and RefusalCode() reads
// it back.  Per-command outcomes of an apply are in its Results.
//
// Example:
//   auto client = tally::Client::Connect("127.0.0.1:7411", token).value();
//   tally::Result r = client->Apply(tally::cmd::Deduct(op_id, org, wallet, 3)).value();
//   if (r.code == tally::ResultCode::insufficient_funds) ...
//   tally::Balance b = client->GetBalance({.org_id = org, .wallet_id = wallet}).value();
#ifndef TALLY_CLIENT_H_
#define TALLY_CLIENT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tally/command.h"
#include "tally/protocol.h"
#include "tally/query.h"

namespace tally {

struct ClientOptions {
  std::string client_name = "tally-client";
  uint32_t connect_timeout_ms = 5000;
  // A blocking call, or Receive(), that waits longer than this fails with
  // DeadlineExceeded and the connection is closed (its replies are unknown).
  uint32_t reply_timeout_ms = 30000;
};

// Reply is one reply frame, for the pipelined API.
struct Reply {
  uint64_t request_id = 0;
  proto::Opcode opcode{};
  ResultCode status{};
  std::string body;  // decode with the proto::Decode*Reply matching `opcode`

  bool ok() const { return status == ResultCode::ok; }
  // Status: OK, or the refusal as RefusalStatus() makes it.
  absl::Status status_value() const;
};

// RefusalStatus is the absl::Status a client gives for a request refused as
// a whole with `code` (message "<code name>: <detail>").
absl::Status RefusalStatus(ResultCode code, std::string_view detail);
// RefusalCode reads the result code back from such a Status; nullopt for a
// Status that is not a refusal (transport errors, OK).
std::optional<ResultCode> RefusalCode(const absl::Status& status);

class Client {
 public:
  // Connect opens "HOST:PORT" and sends the hello.  Unauthenticated for a
  // token the server does not know.
  static absl::StatusOr<std::unique_ptr<Client>> Connect(std::string_view address,
                                                         std::string_view token,
                                                         const ClientOptions& options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  proto::Role role() const { return hello_.role; }
  uint32_t shards() const { return hello_.shards; }
  const std::string& token_name() const { return hello_.token_name; }

  // ---- blocking calls: each waits for its reply (nothing may be in flight)
  // Apply sends the commands (in frames of at most frame_commands_max) and
  // returns one Result per command, in order, once all are durable.
  absl::StatusOr<std::vector<Result>> Apply(std::span<const Command> commands);
  absl::StatusOr<Result> Apply(const Command& command);
  // *time_us (optional) is the time the server applied the last frame at.
  absl::StatusOr<std::vector<Result>> Apply(std::span<const Command> commands, int64_t* time_us);

  absl::StatusOr<Balance> GetBalance(const proto::BalanceRequest& request,
                                     int64_t* as_of_us = nullptr);
  absl::StatusOr<OrgSummary> GetOrgSummary(uint64_t org_id, Asset asset = Asset::Credits());
  absl::StatusOr<HistoryPage> GetHistory(const HistoryQuery& query);
  absl::StatusOr<std::vector<RequestView>> GetRequests(uint64_t org_id, RequestStatus status,
                                                       bool* truncated = nullptr);
  absl::StatusOr<std::vector<UsageRow>> GetUsage(uint64_t org_id, int64_t from_us,
                                                 int64_t to_us, bool* truncated = nullptr);
  absl::StatusOr<OrgSettings> GetSettings(uint64_t org_id);
  absl::StatusOr<TotalsView> GetTotals(uint64_t org_id, Asset asset = Asset::Credits());

  // ---- event stream: after Subscribe the connection only receives events.
  absl::Status Subscribe(uint64_t org_id);
  // NextEvents waits up to timeout_ms for the next event frame; an empty
  // vector when none came in time.
  absl::StatusOr<std::vector<Event>> NextEvents(uint32_t timeout_ms);

  // ---- pipelined API: Send* queue a frame and return its request id;
  // Flush writes everything queued; Receive returns the next reply.
  absl::StatusOr<uint64_t> SendApply(std::span<const Command> commands);
  uint64_t SendQuery(proto::Opcode opcode, std::string_view body);
  absl::Status Flush();
  absl::StatusOr<Reply> Receive();
  // Replies not yet received.
  uint64_t in_flight() const { return in_flight_; }
  // reply_buffered: a whole frame is already read, so Receive() returns
  // without waiting.  Receive reads everything the kernel holds (many
  // replies) at once, so a caller that polls fd() for readability must
  // first take the buffered replies: poll cannot see them.
  bool reply_buffered() const;
  // Bytes queued and not yet flushed.
  size_t queued_bytes() const { return out_.size(); }

  // SendRaw writes bytes as they are (tests of malformed input).
  absl::Status SendRaw(std::string_view bytes);
  int fd() const { return fd_; }

 private:
  Client(int fd, const ClientOptions& options) : fd_(fd), options_(options) {}
  absl::Status Hello(std::string_view token);
  // Call sends one queued request and waits for its reply.
  absl::StatusOr<Reply> Call(uint64_t request_id);
  absl::StatusOr<Reply> Query(proto::Opcode opcode, std::string_view body);
  // Fill reads until at least `bytes` are buffered, or fails after timeout_ms.
  absl::Status Fill(size_t bytes, uint32_t timeout_ms);
  absl::Status Broken(absl::Status status);

  int fd_ = -1;
  ClientOptions options_;
  proto::HelloReply hello_;
  uint64_t next_request_id_ = 1;
  uint64_t in_flight_ = 0;
  std::string out_;      // frames queued, not yet written
  std::string scratch_;  // a request body being built
  absl::Status broken_;  // once the connection failed, every call fails
  std::string in_;  // bytes received: [in_begin_, in_end_) not yet taken by Receive
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
};

}  // namespace tally

#endif  // TALLY_CLIENT_H_
