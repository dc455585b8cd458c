// protocol.h: the frames tally speaks over TCP, and their bodies.
//
// Every message in either direction is a frame: a 32-byte header (magic,
// version, opcode, flags, request id, body length, status, XXH3 checksum)
// then a little-endian body whose layout the opcode fixes.  The byte-by-byte
// description, with a worked example, is include/tally/PROTOCOL.md; this file
// and protocol.cc are the one implementation the server, the client, the CLI
// and the load generator share.
//
// Changing operations travel as a command batch in the CODEC.md layout (the
// same bytes the log stores), so one `apply` frame carries up to
// frame_commands_max commands and gets one 40-byte result each.  Queries are
// one per frame.  Replies echo the request id, so a client may pipeline.
//
// Example (a client):
//   std::string out;
//   size_t at = proto::BeginFrame(&out);
//   proto::EncodeBalanceRequest({.org_id = 7, .wallet_id = 42}, &out);
//   proto::FinishFrame(&out, at, proto::Opcode::balance, /*request_id=*/1);
//   ... send out, read 32 bytes, DecodeFrameHeader, read the body,
//   VerifyChecksum, then DecodeBalanceReply(body, &reply).
#ifndef TALLY_PROTOCOL_H_
#define TALLY_PROTOCOL_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "tally/command.h"
#include "tally/limits.h"
#include "tally/query.h"
#include "tally/result_code.h"

namespace tally::proto {

// Frame magic: the bytes "TALY" (0x594c4154 read as a little-endian u32).
inline constexpr uint32_t frame_magic = 0x594c4154;
inline constexpr uint8_t protocol_version = 1;
inline constexpr uint32_t frame_header_bytes = 32;
inline constexpr uint32_t result_bytes = 40;       // one result in an apply reply
inline constexpr uint32_t lot_bytes = 48;          // one lot in a balance reply
inline constexpr uint32_t event_bytes = 72;        // one event in an event frame
inline constexpr uint32_t usage_row_bytes = 48;    // one row of a usage reply

// Opcode says what a frame is.  On-wire: numbered explicitly, 0 reserved.
enum class Opcode : uint8_t {
  hello = 1,       // the first frame of a connection: the token
  apply = 2,       // a batch of commands (CODEC.md with time_us 0)
  balance = 16,    // queries, one per frame
  org_summary = 17,
  history = 18,
  requests = 19,
  usage = 20,
  settings = 21,
  totals = 22,
  subscribe = 32,  // turns the connection into an event stream
  event = 33,      // server → client: events, on a subscribed connection
  error = 127,     // server → client: the connection is about to close
};
std::string_view OpcodeName(Opcode op);  // "hello", "apply", ...
bool OpcodeKnown(uint8_t op);

// Frame flags.
inline constexpr uint16_t flag_reply = 1 << 0;  // set on every server → client frame
inline constexpr uint16_t flags_known = flag_reply;

// Role is what a token may do (PROTOCOL.md "Authentication").
enum class Role : uint8_t {
  admin = 1,    // everything
  service = 2,  // deduct, hold, capture, release; balance
  read = 3,     // queries and the event stream
};
std::string_view RoleName(Role role);
bool ParseRole(std::string_view name, Role* role);
// Allowed says whether `role` may send commands of `kind`, or this query.
bool RoleMayApply(Role role, CommandKind kind);
bool RoleMayQuery(Role role, Opcode op);

// FrameHeader is a decoded header.  `status` is 0 on requests and the
// request's outcome (a ResultCode) on replies.
struct FrameHeader {
  Opcode opcode{};
  uint16_t flags = 0;
  uint64_t request_id = 0;
  uint32_t body_bytes = 0;
  uint16_t status = 0;
  uint64_t checksum = 0;

  bool is_reply() const { return (flags & flag_reply) != 0; }
  ResultCode result() const { return static_cast<ResultCode>(status); }
};

// BeginFrame reserves a header at the end of *out and returns its offset;
// append the body, then FinishFrame fills the header and checksum in.
size_t BeginFrame(std::string* out);
void FinishFrame(std::string* out, size_t at, Opcode op, uint64_t request_id,
                 uint16_t flags = 0, ResultCode status = ResultCode{});
// EncodeErrorBody is the body of a refused request or an error frame.
void EncodeErrorBody(std::string_view message, std::string* out);
std::string DecodeErrorBody(std::string_view body);

// DecodeFrameHeader checks what 32 bytes alone can show: magic, version,
// opcode, flags, reserved bytes, body length ≤ frame_body_bytes_max.  The
// error (InvalidArgument) names the first problem.
absl::Status DecodeFrameHeader(std::string_view header_bytes, FrameHeader* header);
// VerifyChecksum compares the header's checksum with XXH3-64 over header
// bytes 0–23 followed by the body.
bool VerifyChecksum(std::string_view header_bytes, std::string_view body);

// ---- hello ----------------------------------------------------------------
struct HelloRequest {
  std::string_view token;
  std::string_view client_name;  // for the server's log; may be empty
};
void EncodeHello(const HelloRequest& hello, std::string* out);
absl::Status DecodeHello(std::string_view body, HelloRequest* hello);

struct HelloReply {
  Role role{};
  uint32_t shards = 0;
  std::string token_name;
};
void EncodeHelloReply(const HelloReply& reply, std::string* out);
absl::Status DecodeHelloReply(std::string_view body, HelloReply* reply);

// ---- apply ------------------------------------------------------------------
// The request body is EncodeBatch(0, commands) (codec.h).  The reply:
void EncodeApplyReply(int64_t time_us, std::span<const Result> results, std::string* out);
absl::Status DecodeApplyReply(std::string_view body, int64_t* time_us,
                              std::vector<Result>* results);

// ---- queries ----------------------------------------------------------------
struct BalanceRequest {
  uint64_t org_id = 0;
  uint64_t wallet_id = 0;
  Asset asset = Asset::Credits();
  int64_t at_us = 0;  // 0: now; else the available balance as of that time
};
void EncodeBalanceRequest(const BalanceRequest& request, std::string* out);
absl::Status DecodeBalanceRequest(std::string_view body, BalanceRequest* request);
// The reply: `as_of_us` is the time the server read at.
void EncodeBalanceReply(const Balance& balance, int64_t as_of_us, std::string* out);
absl::Status DecodeBalanceReply(std::string_view body, Balance* balance, int64_t* as_of_us);

// OrgRequest is the body of org_summary, settings and totals.
struct OrgRequest {
  uint64_t org_id = 0;
  Asset asset = Asset::Credits();  // ignored by settings
};
void EncodeOrgRequest(const OrgRequest& request, std::string* out);
absl::Status DecodeOrgRequest(std::string_view body, OrgRequest* request);

void EncodeSummaryReply(const OrgSummary& summary, std::string* out);
absl::Status DecodeSummaryReply(std::string_view body, OrgSummary* summary);
void EncodeSettingsReply(const OrgSettings& settings, std::string* out);
absl::Status DecodeSettingsReply(std::string_view body, OrgSettings* settings);
void EncodeTotalsReply(const TotalsView& totals, std::string* out);
absl::Status DecodeTotalsReply(std::string_view body, TotalsView* totals);

void EncodeHistoryRequest(const HistoryQuery& query, std::string* out);
absl::Status DecodeHistoryRequest(std::string_view body, HistoryQuery* query);
void EncodeHistoryReply(const HistoryPage& page, std::string* out);
absl::Status DecodeHistoryReply(std::string_view body, HistoryPage* page);

struct RequestsRequest {
  uint64_t org_id = 0;
  RequestStatus status = RequestStatus::pending;
};
void EncodeRequestsRequest(const RequestsRequest& request, std::string* out);
absl::Status DecodeRequestsRequest(std::string_view body, RequestsRequest* request);
// At most wire_requests_max rows; `truncated` says more matched.
void EncodeRequestsReply(std::span<const RequestView> rows, bool truncated, std::string* out);
absl::Status DecodeRequestsReply(std::string_view body, std::vector<RequestView>* rows,
                                 bool* truncated);

struct UsageRequest {
  uint64_t org_id = 0;
  int64_t from_us = 0;  // inclusive; 0 = no bound
  int64_t to_us = 0;    // exclusive; 0 = no bound
};
void EncodeUsageRequest(const UsageRequest& request, std::string* out);
absl::Status DecodeUsageRequest(std::string_view body, UsageRequest* request);
// At most wire_usage_rows_max rows; `truncated` says more matched.
void EncodeUsageReply(std::span<const UsageRow> rows, bool truncated, std::string* out);
absl::Status DecodeUsageReply(std::string_view body, std::vector<UsageRow>* rows,
                              bool* truncated);

// ---- events -------------------------------------------------------------------
struct SubscribeRequest {
  uint64_t org_id = 0;  // 0: every org the token may read
};
void EncodeSubscribeRequest(const SubscribeRequest& request, std::string* out);
absl::Status DecodeSubscribeRequest(std::string_view body, SubscribeRequest* request);
void EncodeEvents(std::span<const Event> events, std::string* out);
absl::Status DecodeEvents(std::string_view body, std::vector<Event>* events);

}  // namespace tally::proto

#endif  // TALLY_PROTOCOL_H_
