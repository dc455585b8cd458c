// The client against a scripted peer on loopback: what it sends is what
// PROTOCOL.md says, what it makes of replies, refusals and broken peers.
// (The real server is exercised in tests/net/server_test.cc.)
#include "tally/client.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <thread>

#include "tally/codec.h"
#include "tally/commands.h"
#include "tests/net/raw_connection.h"
#include "tests/net/scripted_peer.h"

namespace tally {
namespace {

using proto::Opcode;

Command Deduct(uint64_t op_id, uint64_t org, uint64_t wallet, int64_t amount) {
  Command c = cmd::Deduct(org, wallet, amount);
  c.op_id = op_id;
  return c;
}

using Peer = testing::ScriptedPeer;

TEST(Client, HelloCarriesTheTokenAndLearnsRoleAndShards) {
  Peer peer([](Peer& p) { p.AcceptHello(); });
  auto client = Client::Connect(peer.address(), "tok-123");
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->role(), proto::Role::admin);
  EXPECT_EQ((*client)->shards(), 2u);
  EXPECT_EQ((*client)->token_name(), "ops");
  client->reset();
  EXPECT_EQ(peer.token, "tok-123");
}

TEST(Client, UnknownTokenIsUnauthenticatedWithTheCodeReadable) {
  Peer peer([](Peer& p) {
    proto::FrameHeader h;
    std::string body;
    ASSERT_TRUE(p.Read(&h, &body));
    std::string err;
    proto::EncodeErrorBody("unknown token", &err);
    p.Reply(Opcode::error, h.request_id, ResultCode::unauthenticated, err);
  });
  auto client = Client::Connect(peer.address(), "nope");
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(RefusalCode(client.status()), ResultCode::unauthenticated);
}

TEST(Client, ApplySendsTheCodecBatchAndReturnsOneResultPerCommand) {
  std::vector<Command> seen;
  Peer peer([&](Peer& p) {
    p.AcceptHello();
    proto::FrameHeader h;
    std::string body;
    ASSERT_TRUE(p.Read(&h, &body));
    ASSERT_EQ(h.opcode, Opcode::apply);
    DecodedBatch batch;
    ASSERT_TRUE(DecodeBatch(body, &batch).ok());
    EXPECT_EQ(batch.time_us, 0);
    seen = batch.commands;
    std::vector<Result> results(batch.commands.size());
    results[1].code = ResultCode::insufficient_funds;
    results[1].n[0] = 2;
    results[1].n[1] = 5;
    results[1].n[2] = 3;
    std::string reply;
    proto::EncodeApplyReply(77, results, &reply);
    p.Reply(Opcode::apply, h.request_id, ResultCode::ok, reply);
  });
  auto client = Client::Connect(peer.address(), "t");
  ASSERT_TRUE(client.ok());
  std::vector<Command> commands = {Deduct(1, 7, 42, 3), Deduct(2, 7, 43, 5)};
  int64_t time_us = 0;
  auto results = (*client)->Apply(commands, &time_us);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ((*results)[0].code, ResultCode::ok);
  EXPECT_EQ((*results)[1].code, ResultCode::insufficient_funds);
  EXPECT_EQ((*results)[1].shortfall(), 3);
  EXPECT_EQ(time_us, 77);
  client->reset();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].wallet_id, 43u);
  EXPECT_EQ(seen[1].amount, 5);
}

TEST(Client, QueryRefusalBecomesAStatusNamingTheCode) {
  Peer peer([](Peer& p) {
    p.AcceptHello();
    proto::FrameHeader h;
    std::string body;
    ASSERT_TRUE(p.Read(&h, &body));
    std::string err;
    proto::EncodeErrorBody("unknown_org: org 9", &err);
    p.Reply(Opcode::balance, h.request_id, ResultCode::unknown_org, err);
    // The connection stays usable after a refusal.
    ASSERT_TRUE(p.Read(&h, &body));
    std::string reply;
    proto::EncodeSummaryReply({10, 5, 15, 1, 0, 0, 10}, &reply);
    p.Reply(Opcode::org_summary, h.request_id, ResultCode::ok, reply);
  });
  auto client = Client::Connect(peer.address(), "t");
  ASSERT_TRUE(client.ok());
  auto balance = (*client)->GetBalance({.org_id = 9, .wallet_id = 1});
  ASSERT_FALSE(balance.ok());
  EXPECT_EQ(balance.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RefusalCode(balance.status()), ResultCode::unknown_org);
  EXPECT_EQ(balance.status().message(), "unknown_org: org 9");
  auto summary = (*client)->GetOrgSummary(7);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->total, 15);
}

TEST(Client, PipelinedRepliesAreMatchedByRequestIdInAnyOrder) {
  Peer peer([](Peer& p) {
    p.AcceptHello();
    std::vector<uint64_t> ids;
    proto::FrameHeader h;
    std::string body;
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(p.Read(&h, &body));
      ids.push_back(h.request_id);
    }
    for (auto it = ids.rbegin(); it != ids.rend(); ++it) {  // answered backwards
      Result r;
      r.n[0] = static_cast<int64_t>(*it);
      std::string reply;
      proto::EncodeApplyReply(1, std::span(&r, 1), &reply);
      p.Reply(Opcode::apply, *it, ResultCode::ok, reply);
    }
  });
  auto client = Client::Connect(peer.address(), "t");
  ASSERT_TRUE(client.ok());
  std::vector<uint64_t> sent;
  for (uint64_t op = 1; op <= 3; ++op) {
    Command c = Deduct(op, 1, 1, 1);
    auto id = (*client)->SendApply(std::span(&c, 1));
    ASSERT_TRUE(id.ok());
    sent.push_back(*id);
  }
  EXPECT_EQ((*client)->in_flight(), 3u);
  ASSERT_TRUE((*client)->Flush().ok());
  for (int i = 2; i >= 0; --i) {
    auto reply = (*client)->Receive();
    ASSERT_TRUE(reply.ok()) << reply.status();
    EXPECT_EQ(reply->request_id, sent[static_cast<size_t>(i)]);
    int64_t t;
    std::vector<Result> results;
    ASSERT_TRUE(proto::DecodeApplyReply(reply->body, &t, &results).ok());
    EXPECT_EQ(results[0].n[0], static_cast<int64_t>(sent[static_cast<size_t>(i)]));
  }
  EXPECT_EQ((*client)->in_flight(), 0u);
}

TEST(Client, DamagedReplyBreaksTheConnectionForGood) {
  Peer peer([](Peer& p) {
    p.AcceptHello();
    proto::FrameHeader h;
    std::string body;
    ASSERT_TRUE(p.Read(&h, &body));
    std::string out;
    size_t at = proto::BeginFrame(&out);
    proto::EncodeSettingsReply({}, &out);
    proto::FinishFrame(&out, at, Opcode::settings, h.request_id, proto::flag_reply, ResultCode::ok);
    out.back() ^= 1;  // a flipped bit in the body
    p.Write(out);
  });
  auto client = Client::Connect(peer.address(), "t");
  ASSERT_TRUE(client.ok());
  auto settings = (*client)->GetSettings(1);
  ASSERT_FALSE(settings.ok());
  EXPECT_EQ(settings.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE((*client)->GetSettings(1).ok()) << "a broken connection stays broken";
}

TEST(Client, SilentPeerTimesOut) {
  Peer peer([](Peer& p) {
    p.AcceptHello();
    proto::FrameHeader h;
    std::string body;
    (void)p.Read(&h, &body);  // the request, never answered
    (void)p.Read(&h, &body);  // returns when the client gives up and closes
  });
  ClientOptions options;
  options.reply_timeout_ms = 200;
  auto client = Client::Connect(peer.address(), "t", options);
  ASSERT_TRUE(client.ok());
  auto totals = (*client)->GetTotals(1);
  ASSERT_FALSE(totals.ok());
  EXPECT_EQ(totals.status().code(), absl::StatusCode::kDeadlineExceeded);
  client->reset();
}

TEST(Client, NothingListeningIsUnavailableAndBadAddressIsInvalid) {
  auto client = Client::Connect(
      "127.0.0.1:" + std::to_string(testing::UnusedLoopbackPort()), "t");
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Client::Connect("no-port", "t").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Client, RefusalCodeOnlyReadsRefusals) {
  EXPECT_EQ(RefusalCode(RefusalStatus(ResultCode::forbidden, "token ops")), ResultCode::forbidden);
  EXPECT_EQ(RefusalCode(RefusalStatus(ResultCode::insufficient_pool, "")),
            ResultCode::insufficient_pool);
  EXPECT_EQ(RefusalCode(absl::UnavailableError("connect: refused")), std::nullopt);
  EXPECT_EQ(RefusalCode(absl::OkStatus()), std::nullopt);
}

}  // namespace
}  // namespace tally
