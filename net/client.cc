// client.cc: tally::Client over a blocking POSIX socket.  Timeouts come from
// poll(); writes and reads loop until done, so a call's frame is never half
// sent when it returns.
#include "tally/client.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstring>

#include "tally/assert.h"
#include "tally/codec.h"

namespace tally {
namespace {

using proto::Opcode;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status Errno(std::string_view what) {
  return absl::UnavailableError(std::string(what) + ": " + std::strerror(errno));
}

// SplitAddress splits "HOST:PORT" (HOST may be "[v6]").
bool SplitAddress(std::string_view address, std::string* host, std::string* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == address.size()) return false;
  std::string_view h = address.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = std::string(h.empty() ? "127.0.0.1" : h);
  *port = std::string(address.substr(colon + 1));
  return true;
}

absl::StatusOr<int> Dial(std::string_view address, uint32_t timeout_ms) {
  std::string host, port;
  if (!SplitAddress(address, &host, &port)) {
    return absl::InvalidArgumentError("address must be HOST:PORT, got \"" +
                                      std::string(address) + "\"");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError("resolve " + host + ": " + gai_strerror(rc));
  }
  absl::Status last = absl::UnavailableError("no address for " + std::string(address));
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      last = Errno("socket");
      continue;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = poll(&p, 1, static_cast<int>(timeout_ms));
      int err = 0;
      socklen_t len = sizeof err;
      if (rc == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
        rc = 0;
      } else {
        errno = rc == 0 ? ETIMEDOUT : (err != 0 ? err : errno);
        rc = -1;
      }
    }
    if (rc != 0) {
      last = Errno("connect " + std::string(address));
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    freeaddrinfo(found);
    return fd;
  }
  freeaddrinfo(found);
  return last;
}

absl::StatusCode CodeFor(ResultCode code) {
  switch (code) {
    case ResultCode::unauthenticated: return absl::StatusCode::kUnauthenticated;
    case ResultCode::forbidden: return absl::StatusCode::kPermissionDenied;
    case ResultCode::unknown_org:
    case ResultCode::unknown_wallet:
    case ResultCode::unknown_grant:
    case ResultCode::unknown_hold:
    case ResultCode::unknown_request: return absl::StatusCode::kNotFound;
    case ResultCode::unavailable:
    case ResultCode::shutting_down: return absl::StatusCode::kUnavailable;
    case ResultCode::limit_exceeded: return absl::StatusCode::kResourceExhausted;
    case ResultCode::malformed_frame: return absl::StatusCode::kDataLoss;
    default: return absl::StatusCode::kFailedPrecondition;
  }
}

}  // namespace

absl::Status RefusalStatus(ResultCode code, std::string_view detail) {
  std::string message(ResultCodeName(code));
  if (!detail.empty() && detail.substr(0, message.size()) != message) {
    message += ": ";
    message += detail;
  } else if (!detail.empty()) {
    message = std::string(detail);
  }
  return absl::Status(CodeFor(code), message);
}

std::optional<ResultCode> RefusalCode(const absl::Status& status) {
  if (status.ok()) return std::nullopt;
  std::string_view message(status.message().data(), status.message().size());
  size_t end = message.find(':');
  std::optional<ResultCode> code = ParseResultCode(message.substr(0, end));
  if (!code.has_value() || CodeFor(*code) != status.code()) return std::nullopt;
  return code;
}

absl::Status Reply::status_value() const {
  if (ok()) return absl::OkStatus();
  return RefusalStatus(status, proto::DecodeErrorBody(body));
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(std::string_view address,
                                                       std::string_view token,
                                                       const ClientOptions& options) {
  absl::StatusOr<int> fd = Dial(address, options.connect_timeout_ms);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<Client> client(new Client(*fd, options));
  if (absl::Status s = client->Hello(token); !s.ok()) return s;
  return client;
}

Client::~Client() {
  if (fd_ >= 0) close(fd_);
}

absl::Status Client::Broken(absl::Status status) {
  if (broken_.ok()) broken_ = status;
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  return status;
}

absl::Status Client::Hello(std::string_view token) {
  size_t at = proto::BeginFrame(&out_);
  proto::EncodeHello({token, options_.client_name}, &out_);
  uint64_t id = next_request_id_++;
  proto::FinishFrame(&out_, at, Opcode::hello, id);
  ++in_flight_;
  absl::StatusOr<Reply> reply = Call(id);
  if (!reply.ok()) return reply.status();
  if (!reply->ok()) return Broken(reply->status_value());
  if (absl::Status s = proto::DecodeHelloReply(reply->body, &hello_); !s.ok()) return Broken(s);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Client::SendApply(std::span<const Command> commands) {
  if (commands.empty() || commands.size() > frame_commands_max) {
    return absl::InvalidArgumentError("an apply frame carries 1 to frame_commands_max commands");
  }
  size_t at = proto::BeginFrame(&out_);
  if (absl::Status s = EncodeBatch(0, commands, &out_); !s.ok()) {
    out_.resize(at);
    return s;
  }
  if (out_.size() - at - proto::frame_header_bytes > frame_body_bytes_max) {
    out_.resize(at);
    return absl::InvalidArgumentError("commands do not fit one frame (frame_body_bytes_max)");
  }
  uint64_t id = next_request_id_++;
  proto::FinishFrame(&out_, at, Opcode::apply, id);
  ++in_flight_;
  return id;
}

uint64_t Client::SendQuery(Opcode opcode, std::string_view body) {
  size_t at = proto::BeginFrame(&out_);
  out_.append(body);
  uint64_t id = next_request_id_++;
  proto::FinishFrame(&out_, at, opcode, id);
  ++in_flight_;
  return id;
}

absl::Status Client::Flush() {
  if (!broken_.ok()) return broken_;
  size_t sent = 0;
  int64_t deadline_ms = NowMs() + options_.reply_timeout_ms;
  while (sent < out_.size()) {
    ssize_t n = send(fd_, out_.data() + sent, out_.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int64_t left_ms = deadline_ms - NowMs();
      if (left_ms <= 0) return Broken(absl::DeadlineExceededError("send: server not reading"));
      pollfd p{fd_, POLLOUT, 0};
      poll(&p, 1, static_cast<int>(left_ms));
      continue;
    }
    return Broken(Errno("send"));
  }
  out_.clear();
  return absl::OkStatus();
}

absl::Status Client::SendRaw(std::string_view bytes) {
  out_.append(bytes);
  return Flush();
}

// How much one recv may take: many replies at once.
constexpr size_t receive_chunk_bytes = size_t{64} << 10;
// Receive buffer capacity kept after a big reply.
constexpr size_t receive_keep_bytes = size_t{1} << 20;

absl::Status Client::Fill(size_t bytes, uint32_t timeout_ms) {
  int64_t deadline_ms = NowMs() + timeout_ms;
  while (in_end_ - in_begin_ < bytes) {
    // Room for the rest: move what is left to the front, grow for a big frame.
    size_t have = in_end_ - in_begin_;
    if (in_begin_ > 0 &&
        (in_.size() - in_begin_ < bytes || in_.size() - in_end_ < receive_chunk_bytes / 4)) {
      std::memmove(in_.data(), in_.data() + in_begin_, have);
      in_begin_ = 0;
      in_end_ = have;
    }
    if (in_.size() < std::max(bytes, receive_chunk_bytes)) {
      in_.resize(std::max(bytes, receive_chunk_bytes));
    }
    ssize_t r = recv(fd_, in_.data() + in_end_, in_.size() - in_end_, 0);
    if (r > 0) {
      in_end_ += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return absl::UnavailableError("connection closed by the server");
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return Errno("recv");
    int64_t left_ms = deadline_ms - NowMs();
    if (left_ms <= 0) return absl::DeadlineExceededError("no reply within reply_timeout_ms");
    pollfd p{fd_, POLLIN, 0};
    poll(&p, 1, static_cast<int>(left_ms));
  }
  return absl::OkStatus();
}

bool Client::reply_buffered() const {
  size_t have = in_end_ - in_begin_;
  if (!broken_.ok() || have < proto::frame_header_bytes) return false;
  proto::FrameHeader h;
  if (!proto::DecodeFrameHeader(std::string_view(in_.data() + in_begin_, proto::frame_header_bytes),
                                &h)
           .ok()) {
    return true;  // Receive reports it at once
  }
  return have >= proto::frame_header_bytes + h.body_bytes;
}

absl::StatusOr<Reply> Client::Receive() {
  if (!broken_.ok()) return broken_;
  if (absl::Status s = Fill(proto::frame_header_bytes, options_.reply_timeout_ms); !s.ok()) {
    return Broken(s);
  }
  proto::FrameHeader h;
  if (absl::Status s = proto::DecodeFrameHeader(
          std::string_view(in_.data() + in_begin_, proto::frame_header_bytes), &h);
      !s.ok()) {
    return Broken(absl::DataLossError("reply: " + std::string(s.message())));
  }
  if (absl::Status s = Fill(proto::frame_header_bytes + h.body_bytes, options_.reply_timeout_ms);
      !s.ok()) {
    return Broken(s);
  }
  std::string_view header(in_.data() + in_begin_, proto::frame_header_bytes);
  std::string_view body(header.data() + proto::frame_header_bytes, h.body_bytes);
  if (!proto::VerifyChecksum(header, body)) {
    return Broken(absl::DataLossError("reply: checksum mismatch"));
  }
  Reply reply;
  reply.request_id = h.request_id;
  reply.opcode = h.opcode;
  reply.status = h.result();
  reply.body.assign(body.data(), body.size());
  in_begin_ += proto::frame_header_bytes + h.body_bytes;
  if (in_begin_ == in_end_) {
    in_begin_ = in_end_ = 0;
    if (in_.size() > receive_keep_bytes) std::string().swap(in_);
  }
  if (!h.is_reply()) return Broken(absl::DataLossError("reply: frame without the reply flag"));
  if (h.opcode == Opcode::error) {
    // The server closes after an error frame: the connection is done.
    return Broken(reply.status_value());
  }
  if (h.opcode != Opcode::event && in_flight_ > 0) --in_flight_;
  return reply;
}

absl::StatusOr<Reply> Client::Call(uint64_t request_id) {
  TALLY_ASSERT(in_flight_ == 1);
  if (absl::Status s = Flush(); !s.ok()) return s;
  absl::StatusOr<Reply> reply = Receive();
  if (!reply.ok()) return reply;
  if (reply->request_id != request_id) {
    return Broken(absl::DataLossError("reply for request " + std::to_string(reply->request_id) +
                                      ", expected " + std::to_string(request_id)));
  }
  return reply;
}

absl::StatusOr<Reply> Client::Query(Opcode opcode, std::string_view body) {
  if (in_flight_ != 0) {
    return absl::FailedPreconditionError("a blocking call with pipelined requests in flight");
  }
  uint64_t id = SendQuery(opcode, body);
  absl::StatusOr<Reply> reply = Call(id);
  if (!reply.ok()) return reply;
  if (reply->opcode != opcode) return Broken(absl::DataLossError("reply opcode mismatch"));
  if (!reply->ok()) return reply->status_value();
  return reply;
}

absl::StatusOr<std::vector<Result>> Client::Apply(std::span<const Command> commands,
                                                  int64_t* time_us) {
  if (in_flight_ != 0) {
    return absl::FailedPreconditionError("a blocking call with pipelined requests in flight");
  }
  std::vector<Result> all;
  all.reserve(commands.size());
  std::vector<Result> part;
  for (size_t begin = 0; begin < commands.size(); begin += frame_commands_max) {
    size_t n = std::min<size_t>(frame_commands_max, commands.size() - begin);
    absl::StatusOr<uint64_t> id = SendApply(commands.subspan(begin, n));
    if (!id.ok()) return id.status();
    absl::StatusOr<Reply> reply = Call(*id);
    if (!reply.ok()) return reply.status();
    if (!reply->ok()) return reply->status_value();
    int64_t t = 0;
    if (absl::Status s = proto::DecodeApplyReply(reply->body, &t, &part); !s.ok()) {
      return Broken(s);
    }
    if (part.size() != n) return Broken(absl::DataLossError("apply reply: wrong result count"));
    if (time_us != nullptr) *time_us = t;
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

absl::StatusOr<std::vector<Result>> Client::Apply(std::span<const Command> commands) {
  return Apply(commands, nullptr);
}

absl::StatusOr<Result> Client::Apply(const Command& command) {
  absl::StatusOr<std::vector<Result>> results = Apply(std::span(&command, 1), nullptr);
  if (!results.ok()) return results.status();
  return results->front();
}

absl::StatusOr<Balance> Client::GetBalance(const proto::BalanceRequest& request,
                                           int64_t* as_of_us) {
  scratch_.clear();
  proto::EncodeBalanceRequest(request, &scratch_);
  absl::StatusOr<Reply> reply = Query(Opcode::balance, scratch_);
  if (!reply.ok()) return reply.status();
  Balance balance;
  int64_t as_of = 0;
  if (absl::Status s = proto::DecodeBalanceReply(reply->body, &balance, &as_of); !s.ok()) {
    return Broken(s);
  }
  if (as_of_us != nullptr) *as_of_us = as_of;
  return balance;
}

absl::StatusOr<OrgSummary> Client::GetOrgSummary(uint64_t org_id, Asset asset) {
  scratch_.clear();
  proto::EncodeOrgRequest({org_id, asset}, &scratch_);
  absl::StatusOr<Reply> reply = Query(Opcode::org_summary, scratch_);
  if (!reply.ok()) return reply.status();
  OrgSummary summary;
  if (absl::Status s = proto::DecodeSummaryReply(reply->body, &summary); !s.ok()) return Broken(s);
  return summary;
}

absl::StatusOr<HistoryPage> Client::GetHistory(const HistoryQuery& query) {
  scratch_.clear();
  proto::EncodeHistoryRequest(query, &scratch_);
  absl::StatusOr<Reply> reply = Query(Opcode::history, scratch_);
  if (!reply.ok()) return reply.status();
  HistoryPage page;
  if (absl::Status s = proto::DecodeHistoryReply(reply->body, &page); !s.ok()) return Broken(s);
  return page;
}

absl::StatusOr<std::vector<RequestView>> Client::GetRequests(uint64_t org_id,
                                                             RequestStatus status,
                                                             bool* truncated) {
  scratch_.clear();
  proto::EncodeRequestsRequest({org_id, status}, &scratch_);
  absl::StatusOr<Reply> reply = Query(Opcode::requests, scratch_);
  if (!reply.ok()) return reply.status();
  std::vector<RequestView> rows;
  bool more = false;
  if (absl::Status s = proto::DecodeRequestsReply(reply->body, &rows, &more); !s.ok()) {
    return Broken(s);
  }
  if (truncated != nullptr) *truncated = more;
  return rows;
}

absl::StatusOr<std::vector<UsageRow>> Client::GetUsage(uint64_t org_id, int64_t from_us,
                                                       int64_t to_us, bool* truncated) {
  scratch_.clear();
  proto::EncodeUsageRequest({org_id, from_us, to_us}, &scratch_);
  absl::StatusOr<Reply> reply = Query(Opcode::usage, scratch_);
  if (!reply.ok()) return reply.status();
  std::vector<UsageRow> rows;
  bool more = false;
  if (absl::Status s = proto::DecodeUsageReply(reply->body, &rows, &more); !s.ok()) {
    return Broken(s);
  }
  if (truncated != nullptr) *truncated = more;
  return rows;
}

absl::StatusOr<OrgSettings> Client::GetSettings(uint64_t org_id) {
  scratch_.clear();
  proto::EncodeOrgRequest({org_id, Asset::Credits()}, &scratch_);
  absl::StatusOr<Reply> reply = Query(Opcode::settings, scratch_);
  if (!reply.ok()) return reply.status();
  OrgSettings settings;
  if (absl::Status s = proto::DecodeSettingsReply(reply->body, &settings); !s.ok()) {
    return Broken(s);
  }
  return settings;
}

absl::StatusOr<TotalsView> Client::GetTotals(uint64_t org_id, Asset asset) {
  scratch_.clear();
  proto::EncodeOrgRequest({org_id, asset}, &scratch_);
  absl::StatusOr<Reply> reply = Query(Opcode::totals, scratch_);
  if (!reply.ok()) return reply.status();
  TotalsView totals;
  if (absl::Status s = proto::DecodeTotalsReply(reply->body, &totals); !s.ok()) return Broken(s);
  return totals;
}

absl::Status Client::Subscribe(uint64_t org_id) {
  scratch_.clear();
  proto::EncodeSubscribeRequest({org_id}, &scratch_);
  absl::StatusOr<Reply> reply = Query(Opcode::subscribe, scratch_);
  return reply.status();
}

absl::StatusOr<std::vector<Event>> Client::NextEvents(uint32_t timeout_ms) {
  if (!broken_.ok()) return broken_;
  if (!reply_buffered()) {
    pollfd p{fd_, POLLIN, 0};
    int rc = poll(&p, 1, static_cast<int>(timeout_ms));
    // A signal (EINTR) ends the wait early like a timeout: the caller decides
    // whether to stop; reading on would block for reply_timeout_ms.
    if (rc == 0 || (rc < 0 && errno == EINTR)) return std::vector<Event>{};
    if (rc < 0) return Broken(Errno("poll"));
  }
  absl::StatusOr<Reply> reply = Receive();
  if (!reply.ok()) return reply.status();
  if (reply->opcode != Opcode::event) {
    return Broken(absl::DataLossError("expected an event frame"));
  }
  std::vector<Event> events;
  if (absl::Status s = proto::DecodeEvents(reply->body, &events); !s.ok()) return Broken(s);
  return events;
}

}  // namespace tally
