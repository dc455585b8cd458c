#include "tally/protocol.h"

#include <cstring>

#include "tally/assert.h"
#include "tally/bytes.h"
#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack, no allocation
#include "xxhash.h"

namespace tally::proto {
namespace {

// Fixed parts of the variable-length rows, for the limit checks below.
constexpr uint32_t history_entry_fixed_bytes = 72;
constexpr uint32_t request_row_fixed_bytes = 72;
static_assert(wire_history_entries_max * uint64_t{history_entry_fixed_bytes + 4 + 2 * text_bytes_max} +
                  24 <= frame_body_bytes_max);
static_assert(wire_requests_max * uint64_t{request_row_fixed_bytes + 6 + 3 * text_bytes_max} + 8 <=
              frame_body_bytes_max);
static_assert(wire_usage_rows_max * uint64_t{usage_row_bytes} + 8 <= frame_body_bytes_max);
static_assert(wire_events_max * uint64_t{event_bytes} + 8 <= frame_body_bytes_max);

void PutAsset(ByteWriter& w, Asset a) {
  w.Put<uint64_t>(a.lo());
  w.Put<uint64_t>(a.hi());
}
Asset GetAsset(ByteReader& r) {
  uint64_t lo = r.Get<uint64_t>();
  uint64_t hi = r.Get<uint64_t>();
  return Asset::FromPacked(lo, hi);
}
void Reserved(ByteReader& r, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    size_t at = r.pos();
    if (r.Get<uint8_t>() != 0 && r.ok()) r.Fail(at, "reserved byte is not zero");
  }
}
void PutZeros(ByteWriter& w, size_t n) {
  for (size_t i = 0; i < n; ++i) w.Put<uint8_t>(0);
}
// Finish checks that the whole body was read.
absl::Status Finish(ByteReader& r) {
  if (r.ok() && !r.done()) r.Fail(r.pos(), "trailing bytes after the body");
  return r.status();
}
// Rows reads a u32 row count no larger than `max_rows` that `min_bytes_each`
// bytes per row could follow.
uint32_t Rows(ByteReader& r, uint32_t max_rows, size_t min_bytes_each) {
  size_t at = r.pos();
  uint32_t n = r.Get<uint32_t>();
  if (r.ok() && (n > max_rows || n > r.left() / min_bytes_each)) {
    r.Fail(at, "row count over its limit or the bytes left");
    return 0;
  }
  return n;
}

// Bodies up to this size are hashed in one call over a copy of header and
// body (the same XXH3-64 value as the streaming form below): for the small
// frames of one deduct the streaming state's set-up cost more than the hash.
constexpr size_t checksum_one_shot_body_bytes_max = 512;

uint64_t Checksum(std::string_view header_bytes, std::string_view body) {
  if (body.size() <= checksum_one_shot_body_bytes_max) {
    char joined[24 + checksum_one_shot_body_bytes_max];
    std::memcpy(joined, header_bytes.data(), 24);
    if (!body.empty()) std::memcpy(joined + 24, body.data(), body.size());
    uint64_t sum = XXH3_64bits(joined, 24 + body.size());
    return sum == 0 ? 1 : sum;  // 0 never means "not checked" (STYLE.md)
  }
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header_bytes.data(), 24);
  XXH3_64bits_update(&state, body.data(), body.size());
  uint64_t sum = XXH3_64bits_digest(&state);
  return sum == 0 ? 1 : sum;  // 0 never means "not checked" (STYLE.md)
}

}  // namespace

std::string_view OpcodeName(Opcode op) {
  switch (op) {
    case Opcode::hello: return "hello";
    case Opcode::apply: return "apply";
    case Opcode::balance: return "balance";
    case Opcode::org_summary: return "org_summary";
    case Opcode::history: return "history";
    case Opcode::requests: return "requests";
    case Opcode::usage: return "usage";
    case Opcode::settings: return "settings";
    case Opcode::totals: return "totals";
    case Opcode::subscribe: return "subscribe";
    case Opcode::event: return "event";
    case Opcode::error: return "error";
  }
  return "unknown_opcode";
}

bool OpcodeKnown(uint8_t op) {
  return OpcodeName(static_cast<Opcode>(op)) != "unknown_opcode";
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::admin: return "admin";
    case Role::service: return "service";
    case Role::read: return "read";
  }
  return "unknown_role";
}

bool ParseRole(std::string_view name, Role* role) {
  for (Role r : {Role::admin, Role::service, Role::read}) {
    if (RoleName(r) == name) {
      *role = r;
      return true;
    }
  }
  return false;
}

bool RoleMayApply(Role role, CommandKind kind) {
  switch (role) {
    case Role::admin: return true;
    case Role::service:
      return kind == CommandKind::deduct || kind == CommandKind::hold ||
             kind == CommandKind::capture || kind == CommandKind::release;
    case Role::read: return false;
  }
  return false;
}

bool RoleMayQuery(Role role, Opcode op) {
  switch (role) {
    case Role::admin:
    case Role::read: return true;
    case Role::service: return op == Opcode::balance;
  }
  return false;
}

size_t BeginFrame(std::string* out) {
  size_t at = out->size();
  out->append(frame_header_bytes, '\0');
  return at;
}

void FinishFrame(std::string* out, size_t at, Opcode op, uint64_t request_id, uint16_t flags,
                 ResultCode status) {
  TALLY_ASSERT(out->size() >= at + frame_header_bytes);
  size_t body_bytes = out->size() - at - frame_header_bytes;
  TALLY_ASSERT(body_bytes <= frame_body_bytes_max);
  char* h = out->data() + at;
  uint32_t magic = frame_magic;
  uint8_t version = protocol_version;
  uint8_t opcode = static_cast<uint8_t>(op);
  uint32_t length = static_cast<uint32_t>(body_bytes);
  uint16_t code = static_cast<uint16_t>(status);
  uint16_t reserved = 0;
  std::memcpy(h + 0, &magic, 4);
  std::memcpy(h + 4, &version, 1);
  std::memcpy(h + 5, &opcode, 1);
  std::memcpy(h + 6, &flags, 2);
  std::memcpy(h + 8, &request_id, 8);
  std::memcpy(h + 16, &length, 4);
  std::memcpy(h + 20, &code, 2);
  std::memcpy(h + 22, &reserved, 2);
  uint64_t sum = Checksum(std::string_view(h, frame_header_bytes),
                          std::string_view(h + frame_header_bytes, body_bytes));
  std::memcpy(h + 24, &sum, 8);
}

void EncodeErrorBody(std::string_view message, std::string* out) {
  ByteWriter w(out);
  if (message.size() > 1024) message = message.substr(0, 1024);
  w.Text<uint16_t>(message);
}

std::string DecodeErrorBody(std::string_view body) {
  ByteReader r(body, "error");
  std::string_view message = r.Text<uint16_t>(1024);
  return r.ok() ? std::string(message) : std::string();
}

absl::Status DecodeFrameHeader(std::string_view header_bytes, FrameHeader* header) {
  TALLY_ASSERT(header_bytes.size() >= frame_header_bytes);
  ByteReader r(header_bytes.substr(0, frame_header_bytes), "frame");
  uint32_t magic = r.Get<uint32_t>();
  uint8_t version = r.Get<uint8_t>();
  uint8_t opcode = r.Get<uint8_t>();
  header->flags = r.Get<uint16_t>();
  header->request_id = r.Get<uint64_t>();
  header->body_bytes = r.Get<uint32_t>();
  header->status = r.Get<uint16_t>();
  uint16_t reserved = r.Get<uint16_t>();
  header->checksum = r.Get<uint64_t>();
  header->opcode = static_cast<Opcode>(opcode);
  if (magic != frame_magic) return absl::InvalidArgumentError("bad magic");
  if (version != protocol_version) {
    return absl::InvalidArgumentError("unsupported version " + std::to_string(version));
  }
  if (!OpcodeKnown(opcode)) {
    return absl::InvalidArgumentError("unknown opcode " + std::to_string(opcode));
  }
  if ((header->flags & ~flags_known) != 0) return absl::InvalidArgumentError("unknown flags");
  if (reserved != 0) return absl::InvalidArgumentError("reserved header bytes are not zero");
  if (header->body_bytes > frame_body_bytes_max) {
    return absl::InvalidArgumentError("body length " + std::to_string(header->body_bytes) +
                                      " over frame_body_bytes_max");
  }
  return absl::OkStatus();
}

bool VerifyChecksum(std::string_view header_bytes, std::string_view body) {
  uint64_t stated = 0;
  std::memcpy(&stated, header_bytes.data() + 24, 8);
  return stated == Checksum(header_bytes, body);
}

// ---- hello ------------------------------------------------------------------

void EncodeHello(const HelloRequest& hello, std::string* out) {
  ByteWriter w(out);
  w.Text<uint16_t>(hello.token.substr(0, token_bytes_max));
  w.Text<uint16_t>(hello.client_name.substr(0, client_name_bytes_max));
}

absl::Status DecodeHello(std::string_view body, HelloRequest* hello) {
  ByteReader r(body, "hello");
  hello->token = r.Text<uint16_t>(token_bytes_max);
  hello->client_name = r.Text<uint16_t>(client_name_bytes_max);
  return Finish(r);
}

void EncodeHelloReply(const HelloReply& reply, std::string* out) {
  ByteWriter w(out);
  w.Put<uint8_t>(static_cast<uint8_t>(reply.role));
  PutZeros(w, 3);
  w.Put<uint32_t>(reply.shards);
  w.Text<uint16_t>(std::string_view(reply.token_name).substr(0, text_bytes_max));
}

absl::Status DecodeHelloReply(std::string_view body, HelloReply* reply) {
  ByteReader r(body, "hello reply");
  reply->role = static_cast<Role>(r.Get<uint8_t>());
  Reserved(r, 3);
  reply->shards = r.Get<uint32_t>();
  reply->token_name = std::string(r.Text<uint16_t>(text_bytes_max));
  return Finish(r);
}

// ---- apply ------------------------------------------------------------------

void EncodeApplyReply(int64_t time_us, std::span<const Result> results, std::string* out) {
  TALLY_ASSERT(results.size() <= frame_commands_max);
  // Sized once and written in place: a reply of 8,000 results was 48,000
  // appends, each checking the capacity.
  const size_t from = out->size();
  out->resize(from + 16 + results.size() * size_t{result_bytes});
  char* p = out->data() + from;
  const uint32_t count = static_cast<uint32_t>(results.size());
  std::memcpy(p, &time_us, 8);
  std::memcpy(p + 8, &count, 4);
  std::memset(p + 12, 0, 4);
  p += 16;
  for (const Result& res : results) {
    char row[result_bytes] = {};
    const uint16_t code = static_cast<uint16_t>(res.code);
    std::memcpy(row, &code, 2);
    row[2] = res.replayed ? 1 : 0;
    std::memcpy(row + 8, &res.id, 8);
    std::memcpy(row + 16, res.n, 24);
    std::memcpy(p, row, result_bytes);
    p += result_bytes;
  }
}

absl::Status DecodeApplyReply(std::string_view body, int64_t* time_us,
                              std::vector<Result>* results) {
  ByteReader r(body, "apply reply");
  *time_us = r.Get<int64_t>();
  uint32_t n = Rows(r, frame_commands_max, result_bytes);
  Reserved(r, 4);
  results->clear();
  if (r.ok() && r.left() != n * size_t{result_bytes}) r.Fail(r.pos(), "body length != count");
  if (r.ok()) results->resize(n);
  // The length is checked above: each row is read unchecked (Take), with
  // its replayed flag and reserved bytes still checked.
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    Result& res = (*results)[i];
    res.code = static_cast<ResultCode>(r.Take<uint16_t>());
    const size_t at = r.pos();
    const uint8_t replayed = r.Take<uint8_t>();
    if (replayed > 1) r.Fail(at, "replayed is not 0 or 1");
    res.replayed = replayed == 1;
    const char* reserved = r.TakeBytes(5);
    for (size_t k = 0; k < 5; ++k) {
      if (reserved[k] != 0) r.Fail(at + 1 + k, "reserved byte is not zero");
    }
    res.id = r.Take<uint64_t>();
    for (int64_t& v : res.n) v = r.Take<int64_t>();
  }
  if (!r.ok()) results->clear();
  return Finish(r);
}

// ---- queries ----------------------------------------------------------------

void EncodeBalanceRequest(const BalanceRequest& q, std::string* out) {
  ByteWriter w(out);
  w.Put<uint64_t>(q.org_id);
  w.Put<uint64_t>(q.wallet_id);
  PutAsset(w, q.asset);
  w.Put<int64_t>(q.at_us);
}

absl::Status DecodeBalanceRequest(std::string_view body, BalanceRequest* q) {
  ByteReader r(body, "balance");
  q->org_id = r.Get<uint64_t>();
  q->wallet_id = r.Get<uint64_t>();
  q->asset = GetAsset(r);
  q->at_us = r.Get<int64_t>();
  return Finish(r);
}

void EncodeBalanceReply(const Balance& b, int64_t as_of_us, std::string* out) {
  ByteWriter w(out);
  w.Put<int64_t>(b.available);
  w.Put<int64_t>(b.held);
  w.Put<int64_t>(b.expiring_soon);
  w.Put<int64_t>(as_of_us);
  TALLY_ASSERT(b.lots.size() <= wallet_lots_max);
  w.Put<uint32_t>(static_cast<uint32_t>(b.lots.size()));
  w.Put<uint32_t>(0);
  for (const LotView& lot : b.lots) {
    w.Put<uint64_t>(lot.grant_id);
    PutAsset(w, lot.asset);
    w.Put<int64_t>(lot.remaining);
    w.Put<int64_t>(lot.expires_at_us);
    w.Put<int32_t>(lot.priority);
    w.Put<uint32_t>(0);
  }
}

absl::Status DecodeBalanceReply(std::string_view body, Balance* b, int64_t* as_of_us) {
  ByteReader r(body, "balance reply");
  b->available = r.Get<int64_t>();
  b->held = r.Get<int64_t>();
  b->expiring_soon = r.Get<int64_t>();
  *as_of_us = r.Get<int64_t>();
  uint32_t n = Rows(r, wallet_lots_max, lot_bytes);
  Reserved(r, 4);
  b->lots.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    LotView lot;
    lot.grant_id = r.Get<uint64_t>();
    lot.asset = GetAsset(r);
    lot.remaining = r.Get<int64_t>();
    lot.expires_at_us = r.Get<int64_t>();
    lot.priority = r.Get<int32_t>();
    Reserved(r, 4);
    b->lots.push_back(lot);
  }
  return Finish(r);
}

void EncodeOrgRequest(const OrgRequest& q, std::string* out) {
  ByteWriter w(out);
  w.Put<uint64_t>(q.org_id);
  PutAsset(w, q.asset);
}

absl::Status DecodeOrgRequest(std::string_view body, OrgRequest* q) {
  ByteReader r(body, "org request");
  q->org_id = r.Get<uint64_t>();
  q->asset = GetAsset(r);
  return Finish(r);
}

void EncodeSummaryReply(const OrgSummary& s, std::string* out) {
  ByteWriter w(out);
  w.Put<int64_t>(s.pool);
  w.Put<int64_t>(s.allocated);
  w.Put<int64_t>(s.total);
  w.Put<uint64_t>(s.wallets);
  w.Put<uint64_t>(s.pending_requests);
  w.Put<int64_t>(s.pending_requested);
  w.Put<int64_t>(s.pool_if_all_approved);
}

absl::Status DecodeSummaryReply(std::string_view body, OrgSummary* s) {
  ByteReader r(body, "summary reply");
  s->pool = r.Get<int64_t>();
  s->allocated = r.Get<int64_t>();
  s->total = r.Get<int64_t>();
  s->wallets = r.Get<uint64_t>();
  s->pending_requests = r.Get<uint64_t>();
  s->pending_requested = r.Get<int64_t>();
  s->pool_if_all_approved = r.Get<int64_t>();
  return Finish(r);
}

void EncodeSettingsReply(const OrgSettings& s, std::string* out) {
  ByteWriter w(out);
  w.Put<uint8_t>(s.credit_payments ? 1 : 0);
  PutZeros(w, 7);
  w.Put<int64_t>(s.low_balance_threshold);
  w.Put<int64_t>(s.expiring_soon_window_us);
  w.Put<int64_t>(s.deduct_rollup_interval_us);
}

absl::Status DecodeSettingsReply(std::string_view body, OrgSettings* s) {
  ByteReader r(body, "settings reply");
  size_t at = r.pos();
  uint8_t credit_payments = r.Get<uint8_t>();
  if (r.ok() && credit_payments > 1) r.Fail(at, "credit_payments is not 0 or 1");
  s->credit_payments = credit_payments == 1;
  Reserved(r, 7);
  s->low_balance_threshold = r.Get<int64_t>();
  s->expiring_soon_window_us = r.Get<int64_t>();
  s->deduct_rollup_interval_us = r.Get<int64_t>();
  return Finish(r);
}

void EncodeTotalsReply(const TotalsView& t, std::string* out) {
  ByteWriter w(out);
  for (int64_t v : {t.in, t.available, t.held, t.spent, t.expired, t.voided, t.adjusted_out}) {
    w.Put<int64_t>(v);
  }
}

absl::Status DecodeTotalsReply(std::string_view body, TotalsView* t) {
  ByteReader r(body, "totals reply");
  for (int64_t* v : {&t->in, &t->available, &t->held, &t->spent, &t->expired, &t->voided,
                     &t->adjusted_out}) {
    *v = r.Get<int64_t>();
  }
  return Finish(r);
}

void EncodeHistoryRequest(const HistoryQuery& q, std::string* out) {
  ByteWriter w(out);
  w.Put<uint64_t>(q.org_id);
  w.Put<uint64_t>(q.wallet_id);
  w.Put<uint32_t>(q.all_wallets ? 1 : 0);
  w.Put<uint32_t>(q.kind_mask);
  w.Put<int64_t>(q.from_us);
  w.Put<int64_t>(q.to_us);
  PutAsset(w, q.asset);
  w.Put<uint64_t>(q.cursor);
  w.Put<uint32_t>(q.limit);
  w.Put<uint32_t>(0);
}

absl::Status DecodeHistoryRequest(std::string_view body, HistoryQuery* q) {
  ByteReader r(body, "history");
  q->org_id = r.Get<uint64_t>();
  q->wallet_id = r.Get<uint64_t>();
  size_t at = r.pos();
  uint32_t flags = r.Get<uint32_t>();
  if (r.ok() && flags > 1) r.Fail(at, "unknown history flags");
  q->all_wallets = flags == 1;
  q->kind_mask = r.Get<uint32_t>();
  q->from_us = r.Get<int64_t>();
  q->to_us = r.Get<int64_t>();
  q->asset = GetAsset(r);
  q->cursor = r.Get<uint64_t>();
  q->limit = r.Get<uint32_t>();
  Reserved(r, 4);
  return Finish(r);
}

void EncodeHistoryReply(const HistoryPage& page, std::string* out) {
  TALLY_ASSERT(page.entries.size() <= wire_history_entries_max);
  ByteWriter w(out);
  w.Put<uint64_t>(page.next_cursor);
  w.Put<uint8_t>(page.truncated ? 1 : 0);
  PutZeros(w, 3);
  w.Put<uint32_t>(static_cast<uint32_t>(page.entries.size()));
  for (const HistoryEntryView& e : page.entries) {
    w.Put<uint64_t>(e.seq);
    w.Put<int64_t>(e.time_us);
    w.Put<uint64_t>(e.wallet_id);
    w.Put<uint8_t>(static_cast<uint8_t>(e.kind));
    w.Put<uint8_t>(e.out ? 1 : 0);
    w.Put<uint8_t>(e.held ? 1 : 0);
    PutZeros(w, 5);
    PutAsset(w, e.asset);
    w.Put<int64_t>(e.amount);
    w.Put<int64_t>(e.balance_after);
    w.Put<uint64_t>(e.related_id);
    w.Text<uint16_t>(std::string_view(e.reference).substr(0, text_bytes_max));
    w.Text<uint16_t>(std::string_view(e.actor).substr(0, text_bytes_max));
  }
}

absl::Status DecodeHistoryReply(std::string_view body, HistoryPage* page) {
  ByteReader r(body, "history reply");
  page->next_cursor = r.Get<uint64_t>();
  size_t at = r.pos();
  uint8_t truncated = r.Get<uint8_t>();
  if (r.ok() && truncated > 1) r.Fail(at, "truncated is not 0 or 1");
  page->truncated = truncated == 1;
  Reserved(r, 3);
  uint32_t n = Rows(r, wire_history_entries_max, history_entry_fixed_bytes + 4);
  page->entries.clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    HistoryEntryView e;
    e.seq = r.Get<uint64_t>();
    e.time_us = r.Get<int64_t>();
    e.wallet_id = r.Get<uint64_t>();
    e.kind = static_cast<HistoryKind>(r.Get<uint8_t>());
    size_t flags_at = r.pos();
    uint8_t out = r.Get<uint8_t>();
    uint8_t held = r.Get<uint8_t>();
    if (r.ok() && (out > 1 || held > 1)) r.Fail(flags_at, "out or held is not 0 or 1");
    e.out = out == 1;
    e.held = held == 1;
    Reserved(r, 5);
    e.asset = GetAsset(r);
    e.amount = r.Get<int64_t>();
    e.balance_after = r.Get<int64_t>();
    e.related_id = r.Get<uint64_t>();
    e.reference = std::string(r.Text<uint16_t>(text_bytes_max));
    e.actor = std::string(r.Text<uint16_t>(text_bytes_max));
    page->entries.push_back(std::move(e));
  }
  return Finish(r);
}

void EncodeRequestsRequest(const RequestsRequest& q, std::string* out) {
  ByteWriter w(out);
  w.Put<uint64_t>(q.org_id);
  w.Put<uint8_t>(static_cast<uint8_t>(q.status));
  PutZeros(w, 7);
}

absl::Status DecodeRequestsRequest(std::string_view body, RequestsRequest* q) {
  ByteReader r(body, "requests");
  q->org_id = r.Get<uint64_t>();
  size_t at = r.pos();
  uint8_t status = r.Get<uint8_t>();
  if (r.ok() && (status < 1 || status > 3)) r.Fail(at, "unknown request status");
  q->status = static_cast<RequestStatus>(status);
  Reserved(r, 7);
  return Finish(r);
}

void EncodeRequestsReply(std::span<const RequestView> rows, bool truncated, std::string* out) {
  TALLY_ASSERT(rows.size() <= wire_requests_max);
  ByteWriter w(out);
  w.Put<uint32_t>(static_cast<uint32_t>(rows.size()));
  w.Put<uint8_t>(truncated ? 1 : 0);
  PutZeros(w, 3);
  for (const RequestView& v : rows) {
    w.Put<uint64_t>(v.request_id);
    w.Put<uint64_t>(v.wallet_id);
    PutAsset(w, v.asset);
    w.Put<int64_t>(v.amount);
    w.Put<int64_t>(v.approved_amount);
    w.Put<uint8_t>(static_cast<uint8_t>(v.status));
    PutZeros(w, 7);
    w.Put<int64_t>(v.created_at_us);
    w.Put<int64_t>(v.decided_at_us);
    w.Text<uint16_t>(std::string_view(v.reason).substr(0, text_bytes_max));
    w.Text<uint16_t>(std::string_view(v.decided_by).substr(0, text_bytes_max));
    w.Text<uint16_t>(std::string_view(v.decision_note).substr(0, text_bytes_max));
  }
}

absl::Status DecodeRequestsReply(std::string_view body, std::vector<RequestView>* rows,
                                 bool* truncated) {
  ByteReader r(body, "requests reply");
  uint32_t n = Rows(r, wire_requests_max, 1);
  size_t at = r.pos();
  uint8_t t = r.Get<uint8_t>();
  if (r.ok() && t > 1) r.Fail(at, "truncated is not 0 or 1");
  *truncated = t == 1;
  Reserved(r, 3);
  if (r.ok() && n > r.left() / (request_row_fixed_bytes + 6)) r.Fail(0, "row count over the bytes left");
  rows->clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    RequestView v;
    v.request_id = r.Get<uint64_t>();
    v.wallet_id = r.Get<uint64_t>();
    v.asset = GetAsset(r);
    v.amount = r.Get<int64_t>();
    v.approved_amount = r.Get<int64_t>();
    v.status = static_cast<RequestStatus>(r.Get<uint8_t>());
    Reserved(r, 7);
    v.created_at_us = r.Get<int64_t>();
    v.decided_at_us = r.Get<int64_t>();
    v.reason = std::string(r.Text<uint16_t>(text_bytes_max));
    v.decided_by = std::string(r.Text<uint16_t>(text_bytes_max));
    v.decision_note = std::string(r.Text<uint16_t>(text_bytes_max));
    rows->push_back(std::move(v));
  }
  return Finish(r);
}

void EncodeUsageRequest(const UsageRequest& q, std::string* out) {
  ByteWriter w(out);
  w.Put<uint64_t>(q.org_id);
  w.Put<int64_t>(q.from_us);
  w.Put<int64_t>(q.to_us);
}

absl::Status DecodeUsageRequest(std::string_view body, UsageRequest* q) {
  ByteReader r(body, "usage");
  q->org_id = r.Get<uint64_t>();
  q->from_us = r.Get<int64_t>();
  q->to_us = r.Get<int64_t>();
  return Finish(r);
}

void EncodeUsageReply(std::span<const UsageRow> rows, bool truncated, std::string* out) {
  TALLY_ASSERT(rows.size() <= wire_usage_rows_max);
  ByteWriter w(out);
  w.Put<uint32_t>(static_cast<uint32_t>(rows.size()));
  w.Put<uint8_t>(truncated ? 1 : 0);
  PutZeros(w, 3);
  for (const UsageRow& row : rows) {
    w.Put<uint64_t>(row.wallet_id);
    PutAsset(w, row.asset);
    w.Put<int64_t>(row.spent);
    w.Put<int64_t>(row.granted);
    w.Put<int64_t>(row.expired);
  }
}

absl::Status DecodeUsageReply(std::string_view body, std::vector<UsageRow>* rows,
                              bool* truncated) {
  ByteReader r(body, "usage reply");
  uint32_t n = Rows(r, wire_usage_rows_max, 1);
  size_t at = r.pos();
  uint8_t t = r.Get<uint8_t>();
  if (r.ok() && t > 1) r.Fail(at, "truncated is not 0 or 1");
  *truncated = t == 1;
  Reserved(r, 3);
  if (r.ok() && r.left() != n * size_t{usage_row_bytes}) r.Fail(r.pos(), "body length != count");
  rows->clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    UsageRow row;
    row.wallet_id = r.Get<uint64_t>();
    row.asset = GetAsset(r);
    row.spent = r.Get<int64_t>();
    row.granted = r.Get<int64_t>();
    row.expired = r.Get<int64_t>();
    rows->push_back(row);
  }
  return Finish(r);
}

// ---- events -------------------------------------------------------------------

void EncodeSubscribeRequest(const SubscribeRequest& q, std::string* out) {
  ByteWriter w(out);
  w.Put<uint64_t>(q.org_id);
}

absl::Status DecodeSubscribeRequest(std::string_view body, SubscribeRequest* q) {
  ByteReader r(body, "subscribe");
  q->org_id = r.Get<uint64_t>();
  return Finish(r);
}

void EncodeEvents(std::span<const Event> events, std::string* out) {
  TALLY_ASSERT(events.size() <= wire_events_max);
  ByteWriter w(out);
  w.Put<uint32_t>(static_cast<uint32_t>(events.size()));
  w.Put<uint32_t>(0);
  for (const Event& e : events) {
    w.Put<uint8_t>(static_cast<uint8_t>(e.kind));
    PutZeros(w, 7);
    w.Put<uint64_t>(e.org_id);
    w.Put<uint64_t>(e.wallet_id);
    w.Put<uint64_t>(e.id);
    PutAsset(w, e.asset);
    w.Put<int64_t>(e.amount);
    w.Put<int64_t>(e.balance_after);
    w.Put<int64_t>(e.time_us);
  }
}

absl::Status DecodeEvents(std::string_view body, std::vector<Event>* events) {
  ByteReader r(body, "events");
  uint32_t n = Rows(r, wire_events_max, event_bytes);
  Reserved(r, 4);
  if (r.ok() && r.left() != n * size_t{event_bytes}) r.Fail(r.pos(), "body length != count");
  events->clear();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    Event e;
    e.kind = static_cast<EventKind>(r.Get<uint8_t>());
    Reserved(r, 7);
    e.org_id = r.Get<uint64_t>();
    e.wallet_id = r.Get<uint64_t>();
    e.id = r.Get<uint64_t>();
    e.asset = GetAsset(r);
    e.amount = r.Get<int64_t>();
    e.balance_after = r.Get<int64_t>();
    e.time_us = r.Get<int64_t>();
    events->push_back(e);
  }
  return Finish(r);
}

}  // namespace tally::proto
