// Frames and bodies of include/tally/PROTOCOL.md: the worked example byte for
// byte, every body round-trips, and every kind of damage is refused.
#include "tally/protocol.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <random>

#include "tally/codec.h"

namespace tally::proto {
namespace {

std::string Hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    if (!out.empty()) out += ' ';
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string FromHex(std::string_view hex) {
  std::string out;
  int nibble = -1;
  for (char c : hex) {
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) continue;
    if (nibble < 0) {
      nibble = v;
    } else {
      out += static_cast<char>(nibble * 16 + v);
      nibble = -1;
    }
  }
  return out;
}

// Frame wraps a body built by `encode` in a frame.
std::string Frame(Opcode op, uint64_t id, const std::function<void(std::string*)>& encode,
                  uint16_t flags = 0, ResultCode status = ResultCode{}) {
  std::string out;
  size_t at = BeginFrame(&out);
  encode(&out);
  FinishFrame(&out, at, op, id, flags, status);
  return out;
}

TEST(Protocol, WorkedExampleDeductRequestMatchesProtocolMd) {
  Command c;
  c.kind = CommandKind::deduct;
  c.op_id = 1001;
  c.org_id = 7;
  c.wallet_id = 42;
  c.amount = 3;
  std::string frame =
      Frame(Opcode::apply, 5, [&](std::string* out) { ASSERT_TRUE(EncodeBatch(0, std::span(&c, 1), out).ok()); });
  EXPECT_EQ(Hex(frame), Hex(FromHex(
                            "54 41 4c 59 01 02 00 00 05 00 00 00 00 00 00 00"
                            "38 00 00 00 00 00 00 00 8c 8e 5c 8d e3 7b f0 75"
                            "00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00"
                            "09 00 00 00 00 00 00 00 e9 03 00 00 00 00 00 00"
                            "07 00 00 00 00 00 00 00 2a 00 00 00 00 00 00 00"
                            "03 00 00 00 00 00 00 00")));
}

TEST(Protocol, WorkedExampleReplyMatchesProtocolMd) {
  Result r;
  r.n[0] = 3;
  r.n[2] = 97;
  std::string frame = Frame(
      Opcode::apply, 5,
      [&](std::string* out) { EncodeApplyReply(1'700'000'000'000'000, std::span(&r, 1), out); },
      flag_reply, ResultCode::ok);
  EXPECT_EQ(Hex(frame), Hex(FromHex(
                            "54 41 4c 59 01 02 01 00 05 00 00 00 00 00 00 00"
                            "38 00 00 00 01 00 00 00 5f 2f d0 f9 d0 39 51 ac"
                            "00 40 1e 18 24 0a 06 00 01 00 00 00 00 00 00 00"
                            "01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
                            "03 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
                            "61 00 00 00 00 00 00 00")));
}

TEST(Protocol, HeaderRoundTripsAndChecksumCoversHeaderAndBody) {
  std::string frame = Frame(Opcode::balance, 77, [](std::string* out) {
    EncodeBalanceRequest({.org_id = 1, .wallet_id = 2}, out);
  });
  FrameHeader h;
  ASSERT_TRUE(DecodeFrameHeader(frame, &h).ok());
  EXPECT_EQ(h.opcode, Opcode::balance);
  EXPECT_EQ(h.request_id, 77u);
  EXPECT_EQ(h.body_bytes, frame.size() - frame_header_bytes);
  EXPECT_FALSE(h.is_reply());
  std::string_view header = std::string_view(frame).substr(0, frame_header_bytes);
  std::string_view body = std::string_view(frame).substr(frame_header_bytes);
  EXPECT_TRUE(VerifyChecksum(header, body));
  // Every single-bit flip anywhere in the frame is caught by the header
  // checks or the checksum.
  for (size_t i = 0; i < frame.size() * 8; ++i) {
    std::string bad = frame;
    bad[i / 8] = static_cast<char>(bad[i / 8] ^ (1 << (i % 8)));
    FrameHeader bh;
    std::string_view bheader = std::string_view(bad).substr(0, frame_header_bytes);
    bool refused = !DecodeFrameHeader(bad, &bh).ok() || bh.body_bytes != body.size() ||
                   !VerifyChecksum(bheader, std::string_view(bad).substr(frame_header_bytes));
    EXPECT_TRUE(refused) << "bit " << i;
  }
}

TEST(Protocol, HeaderRefusesEachKindOfDamageWithItsName) {
  std::string good = Frame(Opcode::hello, 1, [](std::string* out) { EncodeHello({"t", ""}, out); });
  struct Case {
    size_t offset;
    uint8_t value;
    std::string_view says;
  } cases[] = {
      {0, 'X', "bad magic"},          {4, 2, "unsupported version"},
      {5, 99, "unknown opcode"},      {6, 0x80, "unknown flags"},
      {22, 1, "reserved"},            {19, 0x7f, "over frame_body_bytes_max"},
  };
  for (const Case& c : cases) {
    std::string bad = good;
    bad[c.offset] = static_cast<char>(c.value);
    FrameHeader h;
    absl::Status s = DecodeFrameHeader(bad, &h);
    EXPECT_FALSE(s.ok()) << c.says;
    EXPECT_NE(std::string(s.message()).find(c.says), std::string::npos) << s.message();
  }
}

TEST(Protocol, HelloRoundTrips) {
  std::string body;
  EncodeHello({"secret-token", "tally-cli"}, &body);
  HelloRequest hello;
  ASSERT_TRUE(DecodeHello(body, &hello).ok());
  EXPECT_EQ(hello.token, "secret-token");
  EXPECT_EQ(hello.client_name, "tally-cli");
  std::string reply_body;
  EncodeHelloReply({Role::service, 4, "metering"}, &reply_body);
  HelloReply reply;
  ASSERT_TRUE(DecodeHelloReply(reply_body, &reply).ok());
  EXPECT_EQ(reply.role, Role::service);
  EXPECT_EQ(reply.shards, 4u);
  EXPECT_EQ(reply.token_name, "metering");
}

TEST(Protocol, ApplyReplyRoundTripsEveryField) {
  std::vector<Result> results(3);
  results[0] = {ResultCode::ok, false, 9, {1, 2, 3}};
  results[1] = {ResultCode::insufficient_funds, false, 0, {5, 10, 5}};
  results[2] = {ResultCode::ok, true, 0, {-1, INT64_MAX, INT64_MIN}};
  std::string body;
  EncodeApplyReply(123, results, &body);
  EXPECT_EQ(body.size(), 16 + 3 * result_bytes);
  int64_t time_us = 0;
  std::vector<Result> got;
  ASSERT_TRUE(DecodeApplyReply(body, &time_us, &got).ok());
  EXPECT_EQ(time_us, 123);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].code, results[i].code);
    EXPECT_EQ(got[i].replayed, results[i].replayed);
    EXPECT_EQ(got[i].id, results[i].id);
    for (int k = 0; k < 3; ++k) EXPECT_EQ(got[i].n[k], results[i].n[k]);
  }
}

TEST(Protocol, ApplyReplyRefusesABadReplayedFlagOrReservedByteInAnyRow) {
  std::vector<Result> results(3);
  results[1] = {ResultCode::ok, true, 7, {1, 2, 3}};
  std::string body;
  EncodeApplyReply(5, results, &body);
  // Row r starts at 16 + 40 r: code (2 bytes), replayed (1), reserved (5).
  for (size_t row = 0; row < 3; ++row) {
    for (size_t offset = 2; offset < 8; ++offset) {
      std::string bad = body;
      bad[16 + row * result_bytes + offset] = 2;
      int64_t time_us = 0;
      std::vector<Result> got;
      absl::Status s = DecodeApplyReply(bad, &time_us, &got);
      EXPECT_FALSE(s.ok()) << "row " << row << " byte " << offset;
      EXPECT_NE(s.message().find(offset == 2 ? "replayed" : "reserved"), std::string::npos)
          << s.message();
      EXPECT_TRUE(got.empty());
    }
  }
}

TEST(Protocol, BalanceRoundTripsWithLots) {
  Balance b;
  b.available = 150;
  b.held = 20;
  b.expiring_soon = 50;
  b.lots.push_back({11, Asset::Credits(), 50, 1'800'000'000'000'000, -1});
  b.lots.push_back({12, *Asset::Parse("USD"), 100, 0, 0});
  std::string body;
  EncodeBalanceReply(b, 42, &body);
  Balance got;
  int64_t as_of = 0;
  ASSERT_TRUE(DecodeBalanceReply(body, &got, &as_of).ok());
  EXPECT_EQ(as_of, 42);
  EXPECT_EQ(got.available, 150);
  EXPECT_EQ(got.held, 20);
  EXPECT_EQ(got.expiring_soon, 50);
  ASSERT_EQ(got.lots.size(), 2u);
  EXPECT_EQ(got.lots[0].grant_id, 11u);
  EXPECT_EQ(got.lots[0].expires_at_us, 1'800'000'000'000'000);
  EXPECT_EQ(got.lots[0].priority, -1);
  EXPECT_EQ(got.lots[1].asset.name(), "USD");

  std::string req;
  EncodeBalanceRequest({7, 42, *Asset::Parse("api_calls"), 99}, &req);
  EXPECT_EQ(req.size(), 40u);
  BalanceRequest q;
  ASSERT_TRUE(DecodeBalanceRequest(req, &q).ok());
  EXPECT_EQ(q.org_id, 7u);
  EXPECT_EQ(q.wallet_id, 42u);
  EXPECT_EQ(q.asset.name(), "api_calls");
  EXPECT_EQ(q.at_us, 99);
}

TEST(Protocol, SummarySettingsTotalsRoundTrip) {
  std::string body;
  EncodeSummaryReply({1, 2, 3, 4, 5, 6, -7}, &body);
  OrgSummary s;
  ASSERT_TRUE(DecodeSummaryReply(body, &s).ok());
  EXPECT_EQ(s.pool, 1);
  EXPECT_EQ(s.wallets, 4u);
  EXPECT_EQ(s.pool_if_all_approved, -7);

  body.clear();
  EncodeSettingsReply({false, 10, 20, 30}, &body);
  OrgSettings st;
  ASSERT_TRUE(DecodeSettingsReply(body, &st).ok());
  EXPECT_FALSE(st.credit_payments);
  EXPECT_EQ(st.low_balance_threshold, 10);
  EXPECT_EQ(st.deduct_rollup_interval_us, 30);

  body.clear();
  EncodeTotalsReply({100, 50, 10, 30, 5, 3, 2}, &body);
  TotalsView t;
  ASSERT_TRUE(DecodeTotalsReply(body, &t).ok());
  EXPECT_EQ(t.in, 100);
  EXPECT_EQ(t.adjusted_out, 2);

  body.clear();
  EncodeOrgRequest({9, *Asset::Parse("EUR")}, &body);
  OrgRequest o;
  ASSERT_TRUE(DecodeOrgRequest(body, &o).ok());
  EXPECT_EQ(o.org_id, 9u);
  EXPECT_EQ(o.asset.name(), "EUR");
}

TEST(Protocol, HistoryRoundTripsQueryAndPage) {
  HistoryQuery q;
  q.org_id = 3;
  q.all_wallets = true;
  q.kind_mask = 1u << 7;
  q.from_us = 10;
  q.to_us = 20;
  q.asset = Asset::Credits();
  q.cursor = 55;
  q.limit = 500;
  std::string body;
  EncodeHistoryRequest(q, &body);
  EXPECT_EQ(body.size(), 72u);
  HistoryQuery g;
  ASSERT_TRUE(DecodeHistoryRequest(body, &g).ok());
  EXPECT_TRUE(g.all_wallets);
  EXPECT_EQ(g.kind_mask, 1u << 7);
  EXPECT_EQ(g.cursor, 55u);
  EXPECT_EQ(g.limit, 500u);
  EXPECT_EQ(g.asset, Asset::Credits());

  HistoryPage page;
  page.next_cursor = 8;
  page.truncated = true;
  HistoryEntryView e;
  e.seq = 4;
  e.time_us = 1000;
  e.wallet_id = 42;
  e.kind = HistoryKind::deduct;
  e.out = true;
  e.asset = Asset::Credits();
  e.amount = 3;
  e.balance_after = 97;
  e.related_id = 1001;
  e.reference = "invoice 17";
  e.actor = "metering";
  page.entries.push_back(e);
  body.clear();
  EncodeHistoryReply(page, &body);
  HistoryPage got;
  ASSERT_TRUE(DecodeHistoryReply(body, &got).ok());
  EXPECT_EQ(got.next_cursor, 8u);
  EXPECT_TRUE(got.truncated);
  ASSERT_EQ(got.entries.size(), 1u);
  EXPECT_EQ(got.entries[0].kind, HistoryKind::deduct);
  EXPECT_TRUE(got.entries[0].out);
  EXPECT_EQ(got.entries[0].balance_after, 97);
  EXPECT_EQ(got.entries[0].reference, "invoice 17");
  EXPECT_EQ(got.entries[0].actor, "metering");
}

TEST(Protocol, RequestsUsageEventsRoundTrip) {
  RequestView v;
  v.request_id = 5;
  v.wallet_id = 6;
  v.asset = Asset::Credits();
  v.amount = 100;
  v.approved_amount = 80;
  v.status = RequestStatus::approved;
  v.created_at_us = 1;
  v.decided_at_us = 2;
  v.reason = "project";
  v.decided_by = "admin";
  std::string body;
  EncodeRequestsReply(std::span(&v, 1), true, &body);
  std::vector<RequestView> rows;
  bool truncated = false;
  ASSERT_TRUE(DecodeRequestsReply(body, &rows, &truncated).ok());
  EXPECT_TRUE(truncated);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].approved_amount, 80);
  EXPECT_EQ(rows[0].status, RequestStatus::approved);
  EXPECT_EQ(rows[0].decided_by, "admin");

  UsageRow u{42, Asset::Credits(), 10, 20, 30};
  body.clear();
  EncodeUsageReply(std::span(&u, 1), false, &body);
  std::vector<UsageRow> urows;
  ASSERT_TRUE(DecodeUsageReply(body, &urows, &truncated).ok());
  EXPECT_FALSE(truncated);
  ASSERT_EQ(urows.size(), 1u);
  EXPECT_EQ(urows[0].expired, 30);

  Event ev{EventKind::balance_low, 7, 42, 0, Asset::Credits(), 3, 9, 1000};
  body.clear();
  EncodeEvents(std::span(&ev, 1), &body);
  EXPECT_EQ(body.size(), 8 + event_bytes);
  std::vector<Event> events;
  ASSERT_TRUE(DecodeEvents(body, &events).ok());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, EventKind::balance_low);
  EXPECT_EQ(events[0].balance_after, 9);
  EXPECT_EQ(events[0].time_us, 1000);
}

// Every decoder refuses every truncation and a trailing byte, and never
// reads past its input on random bytes (ASan checks the last part).
TEST(Protocol, DecodersRefuseTruncationTrailingBytesAndGarbage) {
  HistoryPage page;
  page.entries.resize(2);
  page.entries[0].reference = "abc";
  RequestView rv;
  rv.status = RequestStatus::pending;
  rv.reason = "why";
  UsageRow ur;
  Event ev{EventKind::credits_granted};
  Balance bal;
  bal.lots.resize(2);
  Result res;
  std::vector<std::pair<std::string, std::function<absl::Status(std::string_view)>>> bodies;
  auto add = [&](std::function<void(std::string*)> enc,
                 std::function<absl::Status(std::string_view)> dec) {
    std::string b;
    enc(&b);
    bodies.emplace_back(b, dec);
  };
  add([&](std::string* o) { EncodeHello({"tok", "x"}, o); },
      [](std::string_view b) { HelloRequest h; return DecodeHello(b, &h); });
  add([&](std::string* o) { EncodeApplyReply(1, std::span(&res, 1), o); },
      [](std::string_view b) { int64_t t; std::vector<Result> r; return DecodeApplyReply(b, &t, &r); });
  add([&](std::string* o) { EncodeBalanceReply(bal, 1, o); },
      [](std::string_view b) { Balance x; int64_t t; return DecodeBalanceReply(b, &x, &t); });
  add([&](std::string* o) { EncodeHistoryReply(page, o); },
      [](std::string_view b) { HistoryPage p; return DecodeHistoryReply(b, &p); });
  add([&](std::string* o) { EncodeHistoryRequest(HistoryQuery{}, o); },
      [](std::string_view b) { HistoryQuery q; return DecodeHistoryRequest(b, &q); });
  add([&](std::string* o) { EncodeRequestsReply(std::span(&rv, 1), false, o); },
      [](std::string_view b) { std::vector<RequestView> r; bool t; return DecodeRequestsReply(b, &r, &t); });
  add([&](std::string* o) { EncodeUsageReply(std::span(&ur, 1), false, o); },
      [](std::string_view b) { std::vector<UsageRow> r; bool t; return DecodeUsageReply(b, &r, &t); });
  add([&](std::string* o) { EncodeEvents(std::span(&ev, 1), o); },
      [](std::string_view b) { std::vector<Event> e; return DecodeEvents(b, &e); });
  add([&](std::string* o) { EncodeBalanceRequest({}, o); },
      [](std::string_view b) { BalanceRequest q; return DecodeBalanceRequest(b, &q); });
  add([&](std::string* o) { EncodeRequestsRequest({}, o); },
      [](std::string_view b) { RequestsRequest q; return DecodeRequestsRequest(b, &q); });
  std::mt19937_64 rng(7);
  for (auto& [body, decode] : bodies) {
    ASSERT_TRUE(decode(body).ok());
    for (size_t n = 0; n < body.size(); ++n) {
      EXPECT_FALSE(decode(std::string_view(body).substr(0, n)).ok()) << "prefix " << n;
    }
    EXPECT_FALSE(decode(body + '\0').ok());
    for (int trial = 0; trial < 2000; ++trial) {
      std::string garbage(rng() % 200, '\0');
      for (char& c : garbage) c = static_cast<char>(rng());
      (void)decode(garbage);
    }
  }
}

TEST(Protocol, RolesAllowWhatPROTOCOLmdSays) {
  EXPECT_TRUE(RoleMayApply(Role::admin, CommandKind::allocate));
  EXPECT_TRUE(RoleMayApply(Role::service, CommandKind::deduct));
  EXPECT_TRUE(RoleMayApply(Role::service, CommandKind::capture));
  EXPECT_FALSE(RoleMayApply(Role::service, CommandKind::allocate));
  EXPECT_FALSE(RoleMayApply(Role::service, CommandKind::grant));
  EXPECT_FALSE(RoleMayApply(Role::read, CommandKind::deduct));
  EXPECT_TRUE(RoleMayQuery(Role::service, Opcode::balance));
  EXPECT_FALSE(RoleMayQuery(Role::service, Opcode::history));
  EXPECT_TRUE(RoleMayQuery(Role::read, Opcode::history));
  Role r;
  EXPECT_TRUE(ParseRole("service", &r));
  EXPECT_EQ(r, Role::service);
  EXPECT_FALSE(ParseRole("root", &r));
}

}  // namespace
}  // namespace tally::proto
