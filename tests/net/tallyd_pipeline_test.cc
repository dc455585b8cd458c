// tallyd_pipeline_test.cc: many frames on one connection, as tallyd reads
// them now: every complete frame of one socket read is handled before the
// next read, the apply frames of a read go to each shard in one hand-off,
// and the replies of a batch go out in one write.  What that makes possible
// to get wrong: a frame split across reads at any byte, a bad frame in the
// middle of a read (the frames before it are applied, none after it), a
// frame bigger than the read buffer among small ones, and the in-flight
// bound with thousands of frames in one write.
#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tally/client.h"
#include "tally/codec.h"
#include "tally/commands.h"
#include "tally/limits.h"
#include "tally/shard.h"
#include "tests/net/raw_connection.h"
#include "tests/net/tallyd_process.h"

namespace tally {
namespace {

using testing::Frame;
using testing::HelloFrame;
using testing::RawConnection;
using testing::TallydProcess;
using testing::TempDir;

inline void PrintTo(ResultCode code, std::ostream* os) { *os << ResultCodeName(code); }

constexpr uint32_t kShards = 2;
constexpr uint64_t kOrgs = 4;  // orgs 1..4, on both shards
constexpr int64_t kFunds = 1'000'000'000;

std::string ApplyFrame(uint64_t request_id, const std::vector<Command>& commands) {
  std::string body;
  EXPECT_TRUE(EncodeBatch(0, commands, &body).ok());
  return Frame(proto::Opcode::apply, request_id, body);
}

std::string BalanceFrame(uint64_t request_id, uint64_t org) {
  std::string body;
  proto::EncodeBalanceRequest({.org_id = org}, &body);
  return Frame(proto::Opcode::balance, request_id, body);
}

// Deduct of `amount` from org `org`'s pool with op id `op_id`.
Command PoolDeduct(uint64_t org, int64_t amount, uint64_t op_id) {
  Command c = cmd::Deduct(org, 0, amount);
  c.op_id = op_id;
  return c;
}

class TallydPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tallyd_.Start(dir_.path(), {"--shards", std::to_string(kShards)}).ok());
    token_ = tallyd_.AdminToken();
    auto client = Client::Connect(tallyd_.address(), token_);
    ASSERT_TRUE(client.ok()) << client.status();
    admin_ = std::move(*client);
    std::vector<Command> setup;
    for (uint64_t org = 1; org <= kOrgs; ++org) {
      setup.push_back(cmd::OrgCreate(org));
      setup.back().op_id = org * 10;
      setup.push_back(cmd::Topup(org, kFunds));
      setup.back().op_id = org * 10 + 1;
    }
    auto results = admin_->Apply(setup);
    ASSERT_TRUE(results.ok()) << results.status();
    for (const Result& r : *results) ASSERT_EQ(r.code, ResultCode::ok);
    // The frames below must really span both shards.
    ASSERT_NE(ShardOf(1, kShards), ShardOf(2, kShards));
  }

  int64_t Pool(uint64_t org) {
    auto b = admin_->GetBalance({.org_id = org});
    EXPECT_TRUE(b.ok()) << b.status();
    return b.ok() ? b->available : -1;
  }

  // Settle makes sure every apply queued on every shard before it is durable:
  // a shard takes its queue in order, so once an apply to each org queued
  // after them is answered, they are applied.
  void Settle() {
    std::vector<Command> marks;
    for (uint64_t org = 1; org <= kOrgs; ++org) marks.push_back(PoolDeduct(org, 0, ++settle_op_));
    auto r = admin_->Apply(marks);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  TempDir dir_;
  TallydProcess tallyd_;
  std::string token_;
  std::unique_ptr<Client> admin_;
  uint64_t settle_op_ = 900'000'000;
};

// What one stream of pipelined frames asks, and what its replies must say.
struct Stream {
  std::string bytes;
  std::map<uint64_t, int64_t> apply_amount;   // request id -> credits deducted
  std::map<uint64_t, size_t> apply_commands;  // request id -> commands
  std::vector<uint64_t> queries;              // balance request ids
  int64_t total_by_org[kOrgs + 1] = {};
};

// MakeStream: a hello, then frames of one deduct, frames across all orgs
// (both shards), and a balance query among them; op ids from `op_base`.
Stream MakeStream(const std::string& token, uint64_t op_base) {
  Stream s;
  s.bytes = HelloFrame(token, 1);
  uint64_t id = 2;
  uint64_t op = op_base;
  for (int round = 0; round < 3; ++round) {
    uint64_t org = 1 + static_cast<uint64_t>(round) % kOrgs;
    s.bytes += ApplyFrame(id, {PoolDeduct(org, 1, op++)});
    s.apply_amount[id] = 1;
    s.apply_commands[id++] = 1;
    s.total_by_org[org] += 1;
    std::vector<Command> across;
    for (uint64_t o = 1; o <= kOrgs; ++o) {
      across.push_back(PoolDeduct(o, static_cast<int64_t>(o), op++));
      s.total_by_org[o] += static_cast<int64_t>(o);
    }
    s.bytes += ApplyFrame(id, across);
    s.apply_amount[id] = 1 + 2 + 3 + 4;
    s.apply_commands[id++] = across.size();
    if (round == 1) {
      s.bytes += BalanceFrame(id, 2);
      s.queries.push_back(id++);
    }
  }
  return s;
}

// ExpectReplies reads the hello reply and one reply per request of `s`, in
// any order, each matching its request.
void ExpectReplies(RawConnection& raw, const Stream& s, const std::string& where) {
  auto hello = raw.ReadFrame();
  ASSERT_TRUE(hello.has_value()) << where;
  ASSERT_EQ(hello->header.opcode, proto::Opcode::hello) << where;
  ASSERT_EQ(hello->header.request_id, 1u) << where;
  std::map<uint64_t, int64_t> applies = s.apply_amount;
  std::vector<uint64_t> queries = s.queries;
  size_t expected = applies.size() + queries.size();
  for (size_t n = 0; n < expected; ++n) {
    auto reply = raw.ReadFrame();
    ASSERT_TRUE(reply.has_value()) << where << ": reply " << n << " of " << expected;
    ASSERT_TRUE(reply->header.is_reply()) << where;
    ASSERT_EQ(reply->header.result(), ResultCode::ok) << where;
    uint64_t id = reply->header.request_id;
    if (reply->header.opcode == proto::Opcode::balance) {
      auto it = std::find(queries.begin(), queries.end(), id);
      ASSERT_NE(it, queries.end()) << where << ": balance reply to request " << id;
      queries.erase(it);
      continue;
    }
    ASSERT_EQ(reply->header.opcode, proto::Opcode::apply) << where;
    auto it = applies.find(id);
    ASSERT_NE(it, applies.end()) << where << ": a second or unknown reply to request " << id;
    int64_t time_us = 0;
    std::vector<Result> results;
    ASSERT_TRUE(proto::DecodeApplyReply(reply->body, &time_us, &results).ok()) << where;
    ASSERT_EQ(results.size(), s.apply_commands.at(id)) << where << ": request " << id;
    int64_t applied = 0;
    for (const Result& r : results) {
      EXPECT_EQ(r.code, ResultCode::ok) << where;
      EXPECT_FALSE(r.replayed) << where;
      applied += r.applied();
    }
    EXPECT_EQ(applied, it->second) << where << ": request " << id;
    applies.erase(it);
  }
}

TEST_F(TallydPipelineTest, FramesSplitAcrossReadsAtEveryByteAreAllAnsweredOnce) {
  // One stream per split point, each with its own op ids (a repeated op id
  // would be a replay, not a deduct).
  const size_t length = MakeStream(token_, 0).bytes.size();
  int64_t total_by_org[kOrgs + 1] = {};
  for (size_t split = 1; split < length; ++split) {
    Stream s = MakeStream(token_, 1'000'000 + split * 100);
    ASSERT_EQ(s.bytes.size(), length);
    RawConnection raw(tallyd_.port());
    ASSERT_TRUE(raw.connected());
    int one = 1;
    ::setsockopt(raw.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ASSERT_TRUE(raw.Write(std::string_view(s.bytes).substr(0, split)));
    // Give the server time to read the first piece on its own.
    std::this_thread::sleep_for(std::chrono::microseconds(300));
    ASSERT_TRUE(raw.Write(std::string_view(s.bytes).substr(split)));
    ExpectReplies(raw, s, "split at byte " + std::to_string(split));
    if (HasFatalFailure()) return;
    for (uint64_t org = 1; org <= kOrgs; ++org) total_by_org[org] += s.total_by_org[org];
  }
  for (uint64_t org = 1; org <= kOrgs; ++org) {
    EXPECT_EQ(Pool(org), kFunds - total_by_org[org]) << "org " << org;
  }
}

TEST_F(TallydPipelineTest, ABadFrameInTheMiddleOfOneReadGetsTheErrorAndNothingAfterIsApplied) {
  struct Bad {
    const char* what;
    std::string frame;
  };
  std::vector<Bad> bads;
  {
    std::string frame = ApplyFrame(77, {PoolDeduct(2, 100, 5000)});
    frame.back() ^= 0x01;  // the body no longer matches the checksum
    bads.push_back({"checksum", frame});
  }
  bads.push_back({"undecodable apply body", Frame(proto::Opcode::apply, 77, "not a batch")});
  {
    std::string frame = ApplyFrame(77, {PoolDeduct(2, 100, 5001)});
    frame[0] = 'X';  // bad magic
    bads.push_back({"magic", frame});
  }
  uint64_t op = 10'000;
  for (const Bad& bad : bads) {
    SCOPED_TRACE(bad.what);
    int64_t before_1 = Pool(1);
    int64_t before_2 = Pool(2);
    // Before the bad frame: deducts of 1 from orgs 1 and 2; after it: 1,000
    // from each, which must never be applied.  All in one write.
    std::string bytes = HelloFrame(token_, 1);
    bytes += ApplyFrame(2, {PoolDeduct(1, 1, ++op), PoolDeduct(2, 1, ++op)});
    bytes += ApplyFrame(3, {PoolDeduct(2, 1, ++op)});
    bytes += bad.frame;
    bytes += ApplyFrame(4, {PoolDeduct(1, 1000, ++op), PoolDeduct(2, 1000, ++op)});
    bytes += BalanceFrame(5, 1);
    bytes += ApplyFrame(6, {PoolDeduct(2, 1000, ++op)});
    RawConnection raw(tallyd_.port());
    ASSERT_TRUE(raw.connected());
    ASSERT_TRUE(raw.Write(bytes));
    // Frames come until the error frame; none answers a request after it.
    bool got_error = false;
    for (int n = 0; n < 10 && !got_error; ++n) {
      auto frame = raw.ReadFrame();
      if (!frame.has_value()) break;
      uint64_t id = frame->header.request_id;
      if (frame->header.opcode == proto::Opcode::error) {
        EXPECT_EQ(frame->header.result(), ResultCode::malformed_frame);
        if (std::string(bad.what) != "magic") {
          EXPECT_EQ(id, 77u);
        }
        got_error = true;
        break;
      }
      EXPECT_TRUE(id == 1 || id == 2 || id == 3) << "a reply to request " << id;
    }
    EXPECT_TRUE(got_error);
    EXPECT_TRUE(raw.ClosedByPeer());
    Settle();
    EXPECT_EQ(Pool(1), before_1 - 1);
    EXPECT_EQ(Pool(2), before_2 - 2);
  }
}

TEST_F(TallydPipelineTest, AFrameBiggerThanTheReadBufferAmongSmallOnes) {
  // 8,000 deducts (about 450 kB, many times the 16 KiB read buffer)
  // between small frames, all in one write, twice over: the buffer grows for
  // the big frame and shrinks back after it.
  std::string bytes = HelloFrame(token_, 1);
  uint64_t op = 20'000'000;
  uint64_t id = 2;
  int64_t total_by_org[kOrgs + 1] = {};
  std::map<uint64_t, size_t> commands_of;
  for (int round = 0; round < 2; ++round) {
    bytes += ApplyFrame(id, {PoolDeduct(1, 1, ++op)});
    commands_of[id++] = 1;
    total_by_org[1] += 1;
    std::vector<Command> big;
    for (int i = 0; i < 8000; ++i) {
      uint64_t org = 1 + static_cast<uint64_t>(i) % kOrgs;
      big.push_back(PoolDeduct(org, 1, ++op));
      total_by_org[org] += 1;
    }
    bytes += ApplyFrame(id, big);
    commands_of[id++] = big.size();
    bytes += ApplyFrame(id, {PoolDeduct(3, 2, ++op)});
    commands_of[id++] = 1;
    total_by_org[3] += 2;
  }
  ASSERT_GT(bytes.size(), size_t{4} * 64 * 1024);
  RawConnection raw(tallyd_.port());
  ASSERT_TRUE(raw.connected());
  ASSERT_TRUE(raw.Write(bytes));
  auto hello = raw.ReadFrame();
  ASSERT_TRUE(hello.has_value());
  for (size_t n = 0; n < 6; ++n) {
    auto reply = raw.ReadFrame(15000);
    ASSERT_TRUE(reply.has_value()) << "reply " << n;
    ASSERT_EQ(reply->header.opcode, proto::Opcode::apply);
    auto it = commands_of.find(reply->header.request_id);
    ASSERT_NE(it, commands_of.end()) << "request " << reply->header.request_id;
    int64_t time_us = 0;
    std::vector<Result> results;
    ASSERT_TRUE(proto::DecodeApplyReply(reply->body, &time_us, &results).ok());
    ASSERT_EQ(results.size(), it->second);
    for (const Result& r : results) ASSERT_EQ(r.code, ResultCode::ok);
    commands_of.erase(it);
  }
  for (uint64_t org = 1; org <= kOrgs; ++org) {
    EXPECT_EQ(Pool(org), kFunds - total_by_org[org]) << "org " << org;
  }
}

TEST_F(TallydPipelineTest, MoreFramesInOneWriteThanTheInFlightBoundAreAllAnswered) {
  // The server stops reading at connection_requests_in_flight_max requests
  // unanswered and must resume as replies go out, also in the middle of
  // frames it already holds in its buffer.
  const uint64_t frames = connection_requests_in_flight_max + 1500;
  auto client = Client::Connect(tallyd_.address(), token_);
  ASSERT_TRUE(client.ok()) << client.status();
  std::map<uint64_t, uint64_t> org_of;
  int64_t total_by_org[kOrgs + 1] = {};
  for (uint64_t i = 0; i < frames; ++i) {
    uint64_t org = 1 + i % kOrgs;
    Command d = PoolDeduct(org, 1, 30'000'000 + i);
    auto id = (*client)->SendApply(std::span(&d, 1));
    ASSERT_TRUE(id.ok());
    org_of[*id] = org;
    total_by_org[org] += 1;
  }
  // Sent before anything is read.  The server counts a request answered
  // once its reply is queued, so it takes the whole stream even while this
  // client is not reading yet.
  ASSERT_TRUE((*client)->Flush().ok());
  for (uint64_t n = 0; n < frames; ++n) {
    auto reply = (*client)->Receive();
    ASSERT_TRUE(reply.ok()) << reply.status() << " after " << n << " replies";
    ASSERT_EQ(org_of.erase(reply->request_id), 1u) << "request " << reply->request_id;
    int64_t time_us = 0;
    std::vector<Result> results;
    ASSERT_TRUE(proto::DecodeApplyReply(reply->body, &time_us, &results).ok());
    ASSERT_EQ(results.size(), 1u);
    ASSERT_EQ(results[0].code, ResultCode::ok);
  }
  EXPECT_TRUE(org_of.empty());
  for (uint64_t org = 1; org <= kOrgs; ++org) {
    EXPECT_EQ(Pool(org), kFunds - total_by_org[org]) << "org " << org;
  }
}

}  // namespace
}  // namespace tally
