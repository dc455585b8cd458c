// tallyd_faults_test.cc: bad input and bad clients against the real tallyd.
// Every malformed frame gets an error frame and a close while a second
// connection keeps getting correct answers; a client that never reads is
// cut off while others are served; the connection bounds hold.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tally/client.h"
#include "tally/codec.h"
#include "tally/commands.h"
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

constexpr uint64_t kOrg = 3;

// Bystander is a second client that deducts 1 and reads the balance in a
// loop; every answer must be right while the test abuses another connection.
class Bystander {
 public:
  Bystander(const std::string& address, const std::string& token) {
    auto client = Client::Connect(address, token);
    EXPECT_TRUE(client.ok()) << client.status();
    if (!client.ok()) return;
    client_ = std::move(*client);
    Command create = cmd::OrgCreate(kOrg);
    create.op_id = 1;
    Command topup = cmd::Topup(kOrg, 1'000'000'000);
    topup.op_id = 2;
    std::vector<Command> setup = {create, topup};
    EXPECT_TRUE(client_->Apply(setup).ok());
    thread_ = std::thread([this] { Loop(); });
  }
  ~Bystander() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t answers() const { return answers_; }
  // WaitForAnswers waits (bounded) until at least n answers came back; a
  // busy disk makes each of them an fdatasync long.
  bool WaitForAnswers(uint64_t n, int timeout_ms = 15000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (answers_ < n && wrong_ == 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return answers_ >= n;
  }
  uint64_t wrong() const { return wrong_; }

 private:
  void Loop() {
    uint64_t op_id = 1000;
    int64_t expected = 1'000'000'000;
    while (!stop_) {
      Command d = cmd::Deduct(kOrg, 0, 1);
      d.op_id = op_id++;
      auto r = client_->Apply(d);
      if (!r.ok() || r->code != ResultCode::ok || r->balance_after() != --expected) {
        ++wrong_;
        return;
      }
      auto b = client_->GetBalance({.org_id = kOrg});
      if (!b.ok() || b->available != expected) {
        ++wrong_;
        return;
      }
      ++answers_;
    }
  }

  std::unique_ptr<Client> client_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> answers_{0};
  std::atomic<uint64_t> wrong_{0};
};

class TallydFaultsTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> flags = {"--shards", "2", "--io-threads", "2"}) {
    ASSERT_TRUE(tallyd_.Start(dir_.path() + "/data", flags).ok());
    token_ = tallyd_.AdminToken();
  }
  // Authenticated opens a raw connection that has said hello.
  std::unique_ptr<RawConnection> Authenticated() {
    auto raw = std::make_unique<RawConnection>(tallyd_.port());
    EXPECT_TRUE(raw->connected());
    EXPECT_TRUE(raw->Write(HelloFrame(token_)));
    auto reply = raw->ReadFrame();
    EXPECT_TRUE(reply.has_value());
    if (reply.has_value()) {
      EXPECT_EQ(reply->header.result(), ResultCode::ok);
    }
    return raw;
  }
  // ExpectMalformed sends `bytes` on a fresh authenticated connection and
  // expects an error frame naming `problem`, then a close.
  void ExpectMalformed(std::string_view bytes, std::string_view problem,
                       bool shutdown_write = false) {
    SCOPED_TRACE(std::string(problem));
    auto raw = Authenticated();
    ASSERT_TRUE(raw->Write(bytes));
    if (shutdown_write) raw->ShutdownWrite();
    auto frame = raw->ReadFrame();
    ASSERT_TRUE(frame.has_value()) << "no error frame";
    EXPECT_EQ(frame->header.opcode, proto::Opcode::error);
    EXPECT_EQ(frame->header.result(), ResultCode::malformed_frame);
    std::string message = proto::DecodeErrorBody(frame->body);
    EXPECT_NE(message.find(problem), std::string::npos) << message;
    EXPECT_TRUE(raw->ClosedByPeer()) << "the connection stayed open";
  }

  std::string BalanceFrame(uint64_t request_id) {
    std::string body;
    proto::EncodeBalanceRequest({.org_id = kOrg}, &body);
    return Frame(proto::Opcode::balance, request_id, body);
  }

  TempDir dir_;
  TallydProcess tallyd_;
  std::string token_;
};

TEST_F(TallydFaultsTest, EachMalformedFrameIsAnsweredAndClosedWhileOthersAreServed) {
  Start();
  Bystander bystander(tallyd_.address(), token_);

  std::string frame = BalanceFrame(9);
  std::string bad_magic = frame;
  bad_magic[0] = 'X';
  ExpectMalformed(bad_magic, "magic");

  std::string bad_version = frame;
  bad_version[4] = 7;
  ExpectMalformed(bad_version, "version");

  std::string bad_checksum = frame;
  bad_checksum.back() ^= 0x01;
  ExpectMalformed(bad_checksum, "checksum");

  std::string unknown_opcode = frame;
  unknown_opcode[5] = 99;
  ExpectMalformed(unknown_opcode, "opcode");

  std::string oversize = frame;
  uint32_t huge = frame_body_bytes_max + 1;
  std::memcpy(oversize.data() + 16, &huge, sizeof(huge));
  ExpectMalformed(oversize.substr(0, proto::frame_header_bytes), "length");

  // Header promises 40 body bytes, 20 come, then the client stops sending.
  ExpectMalformed(std::string_view(frame).substr(0, proto::frame_header_bytes + 20), "truncated",
                  /*shutdown_write=*/true);

  std::mt19937_64 random(42);
  std::string garbage;
  for (int i = 0; i < 64; ++i) garbage.push_back(static_cast<char>(random()));
  ExpectMalformed(garbage, "malformed_frame");

  // A well-framed apply whose body is not a batch.
  ExpectMalformed(Frame(proto::Opcode::apply, 4, "not a batch at all"), "apply");
  // A balance request of the wrong size.
  ExpectMalformed(Frame(proto::Opcode::balance, 5, "short"), "balance");
  // A server-only opcode from a client.
  ExpectMalformed(Frame(proto::Opcode::event, 6, ""), "server only");

  const uint64_t answered = bystander.answers();
  EXPECT_TRUE(bystander.WaitForAnswers(answered + 3)) << "the bystander is not served";
  bystander.Stop();
  EXPECT_EQ(bystander.wrong(), 0u);
}

TEST_F(TallydFaultsTest, ApplyWithTooManyCommandsIsMalformed) {
  Start();
  std::vector<Command> commands(frame_commands_max + 1, cmd::Deduct(kOrg, 0, 1));
  for (size_t i = 0; i < commands.size(); ++i) commands[i].op_id = i + 1;
  std::string body;
  ASSERT_TRUE(EncodeBatch(0, commands, &body).ok());
  ExpectMalformed(Frame(proto::Opcode::apply, 1, body), "commands");
}

// A client that sends large queries and never reads its replies: the server
// cuts it off at the unsent-bytes bound and every other client is served
// meanwhile.
TEST_F(TallydFaultsTest, ClientThatNeverReadsIsCutOffWhileAnotherIsServed) {
  Start();
  {
    // 2,000 history entries in one wallet: each history reply is ~150 KB.
    auto admin = Client::Connect(tallyd_.address(), token_);
    ASSERT_TRUE(admin.ok());
    Command create = cmd::OrgCreate(kOrg + 1);
    create.op_id = 1;
    Command topup = cmd::Topup(kOrg + 1, 1'000'000);
    topup.op_id = 2;
    std::vector<Command> setup = {create, topup};
    for (uint64_t i = 0; i < 2000; ++i) {
      setup.push_back(cmd::Deduct(kOrg + 1, 0, 1));
      setup.back().op_id = 10 + i;
    }
    auto results = (*admin)->Apply(setup);
    ASSERT_TRUE(results.ok()) << results.status();
  }
  Bystander bystander(tallyd_.address(), token_);
  auto hog = Authenticated();
  std::string body;
  proto::EncodeHistoryRequest({.org_id = kOrg + 1, .wallet_id = 0, .limit = 2000}, &body);
  std::string request = Frame(proto::Opcode::history, 1, body);
  std::string burst;
  for (int i = 0; i < 64; ++i) burst += request;
  int flags = ::fcntl(hog->fd(), F_GETFL);
  ::fcntl(hog->fd(), F_SETFL, flags | O_NONBLOCK);
  // Keep sending, never read, until the server closes the connection.
  bool cut_off = false;
  size_t sent_bytes = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!cut_off && std::chrono::steady_clock::now() < deadline) {
    ssize_t n = ::send(hog->fd(), burst.data(), burst.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent_bytes += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // The server stopped reading us (in-flight bound) or is cutting us
      // off; look whether it closed.
      pollfd p{hog->fd(), POLLOUT, 0};
      ::poll(&p, 1, 50);
      if ((p.revents & (POLLHUP | POLLERR)) != 0) cut_off = true;
      continue;
    }
    cut_off = true;  // EPIPE / ECONNRESET: closed by the server
  }
  EXPECT_TRUE(cut_off) << "still connected after sending " << sent_bytes << " bytes";
  // The bystander was served meanwhile and still is.
  const uint64_t answered = bystander.answers();
  EXPECT_GT(answered, 0u) << "the bystander got nothing while the hog was connected";
  EXPECT_TRUE(bystander.WaitForAnswers(answered + 3)) << "the bystander is not served";
  bystander.Stop();
  EXPECT_EQ(bystander.wrong(), 0u);
}

TEST_F(TallydFaultsTest, TwoHundredConcurrentConnections) {
  Start();
  constexpr int kConnections = 200;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kConnections; ++i) {
    auto client = Client::Connect(tallyd_.address(), token_);
    ASSERT_TRUE(client.ok()) << "connection " << i << ": " << client.status();
    clients.push_back(std::move(*client));
  }
  Command create = cmd::OrgCreate(kOrg);
  create.op_id = 1;
  Command topup = cmd::Topup(kOrg, 100000);
  topup.op_id = 2;
  std::vector<Command> setup = {create, topup};
  ASSERT_TRUE(clients[0]->Apply(setup).ok());
  // Every connection has a deduct in flight at once, then reads its reply.
  std::vector<Command> deducts(kConnections);
  for (int i = 0; i < kConnections; ++i) {
    deducts[i] = cmd::Deduct(kOrg, 0, 1);
    deducts[i].op_id = 100 + static_cast<uint64_t>(i);
    ASSERT_TRUE(clients[i]->SendApply(std::span(&deducts[i], 1)).ok());
    ASSERT_TRUE(clients[i]->Flush().ok());
  }
  for (int i = 0; i < kConnections; ++i) {
    auto reply = clients[i]->Receive();
    ASSERT_TRUE(reply.ok()) << reply.status();
    int64_t time_us = 0;
    std::vector<Result> results;
    ASSERT_TRUE(proto::DecodeApplyReply(reply->body, &time_us, &results).ok());
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].code, ResultCode::ok);
  }
  auto b = clients[kConnections - 1]->GetBalance({.org_id = kOrg});
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->available, 100000 - kConnections);
}

TEST_F(TallydFaultsTest, ConnectionsOverTheLimitAreRefused) {
  Start({"--shards", "1", "--io-threads", "1", "--connections-max", "3"});
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    auto client = Client::Connect(tallyd_.address(), token_);
    ASSERT_TRUE(client.ok()) << client.status();
    clients.push_back(std::move(*client));
  }
  auto fourth = Client::Connect(tallyd_.address(), token_);
  ASSERT_FALSE(fourth.ok());
  EXPECT_EQ(RefusalCode(fourth.status()), ResultCode::limit_exceeded) << fourth.status();
  // One leaves: a new one gets in (the server notices the close promptly).
  clients.pop_back();
  bool admitted = false;
  for (int attempt = 0; attempt < 100 && !admitted; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    admitted = Client::Connect(tallyd_.address(), token_).ok();
  }
  EXPECT_TRUE(admitted);
}

TEST_F(TallydFaultsTest, IdleConnectionIsClosedBusyOneIsNot) {
  Start({"--shards", "1", "--io-threads", "1", "--idle-timeout-ms", "300"});
  auto idle = Authenticated();
  auto busy = Client::Connect(tallyd_.address(), token_);
  ASSERT_TRUE(busy.ok());
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(900);
  while (std::chrono::steady_clock::now() < until) {
    auto r = (*busy)->GetBalance({.org_id = 1});
    EXPECT_EQ(RefusalCode(r.status()), ResultCode::unknown_org) << r.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(idle->ClosedByPeer(2000)) << "the idle connection is still open";
}

// SIGTERM while clients keep sending: everything acknowledged before it is
// there after a restart, and the process exits 0.
TEST_F(TallydFaultsTest, CleanShutdownUnderLoadKeepsEveryAcknowledgedChange) {
  Start();
  auto setup_client = Client::Connect(tallyd_.address(), token_);
  ASSERT_TRUE(setup_client.ok());
  Command create = cmd::OrgCreate(kOrg);
  create.op_id = 1;
  ASSERT_TRUE((*setup_client)->Apply(create).ok());
  std::atomic<int64_t> acknowledged{0};
  std::atomic<bool> stop{false};
  std::thread loader([&] {
    auto client = Client::Connect(tallyd_.address(), token_);
    if (!client.ok()) return;
    for (uint64_t op = 100; !stop; ++op) {
      Command g = cmd::Grant(kOrg, 1, 1);
      g.op_id = op;
      auto r = (*client)->Apply(g);
      if (!r.ok() || r->code != ResultCode::ok) return;
      ++acknowledged;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(tallyd_.Terminate(), 0);
  stop = true;
  loader.join();
  ASSERT_GT(acknowledged.load(), 0);
  ASSERT_TRUE(tallyd_.Start(dir_.path() + "/data", {"--shards", "2"}).ok());
  auto client = Client::Connect(tallyd_.address(), token_);
  ASSERT_TRUE(client.ok());
  auto b = (*client)->GetBalance({.org_id = kOrg, .wallet_id = 1});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->available, acknowledged.load());
}

// Connections that go away with many apply frames in flight (small frames
// of one or two commands, which tallyd keeps inside its jobs, and frames of
// six, over both shards), and then a SIGTERM with frames in flight: no crash,
// the process exits 0 (under ASan: nothing leaked, no job touches a freed
// connection), a bystander is served throughout, and every acknowledged
// deduct is there after a restart.
TEST_F(TallydFaultsTest, ClosesAndAStopWithAppliesInFlightLoseNothingAcknowledged) {
  Start();
  Bystander bystander(tallyd_.address(), token_);
  constexpr uint64_t kFirstOrg = 10;
  constexpr uint64_t kOrgs = 4;  // both shards
  constexpr int64_t kGranted = 1'000'000'000;
  {
    auto client = Client::Connect(tallyd_.address(), token_);
    ASSERT_TRUE(client.ok());
    for (uint64_t org = kFirstOrg; org < kFirstOrg + kOrgs; ++org) {
      std::vector<Command> setup = {cmd::OrgCreate(org), cmd::Grant(org, 1, kGranted),
                                    cmd::Grant(org, 2, kGranted)};
      for (uint64_t i = 0; i < setup.size(); ++i) setup[i].op_id = org * 10 + i;
      auto r = (*client)->Apply(setup);
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }
  uint64_t op_id = 1'000'000;
  // Frames of 1, 2 and 6 deducts of 1 from `wallet`, spread over the orgs.
  auto frames = [&](uint64_t wallet, uint64_t first_id, int n, int64_t* deducts) {
    std::string bytes;
    for (int i = 0; i < n; ++i) {
      const int k = i % 3 == 0 ? 1 : i % 3 == 1 ? 2 : 6;
      std::vector<Command> commands;
      for (int j = 0; j < k; ++j) {
        Command d = cmd::Deduct(kFirstOrg + (op_id % kOrgs), wallet, 1);
        d.op_id = op_id++;
        commands.push_back(d);
      }
      std::string body;
      EXPECT_TRUE(EncodeBatch(0, commands, &body).ok());
      bytes += Frame(proto::Opcode::apply, first_id + static_cast<uint64_t>(i), body);
      *deducts += k;
    }
    return bytes;
  };
  // 1. Connections closed right after writing hundreds of frames.
  int64_t dropped = 0;
  for (int c = 0; c < 8; ++c) {
    auto raw = Authenticated();
    ASSERT_TRUE(raw->Write(frames(1, 100, 300, &dropped)));
  }  // each closes here, its frames still in flight
  ASSERT_TRUE(bystander.WaitForAnswers(bystander.answers() + 5));
  EXPECT_EQ(bystander.wrong(), 0u);

  // 2. SIGTERM while one connection has frames in flight; the replies read
  // before it are acknowledged deducts.
  auto raw = Authenticated();
  int64_t sent = 0;
  constexpr int kFrames = 3000;
  ASSERT_TRUE(raw->Write(frames(2, 100, kFrames, &sent)));
  int64_t acknowledged = 0;
  for (int i = 0; i < 300; ++i) {
    auto reply = raw->ReadFrame();
    ASSERT_TRUE(reply.has_value()) << "reply " << i;
    ASSERT_EQ(reply->header.opcode, proto::Opcode::apply);
    int64_t time_us = 0;
    std::vector<Result> results;
    ASSERT_TRUE(proto::DecodeApplyReply(reply->body, &time_us, &results).ok());
    for (const Result& r : results) {
      ASSERT_EQ(r.code, ResultCode::ok);
      ++acknowledged;
    }
  }
  bystander.Stop();
  EXPECT_EQ(tallyd_.Terminate(), 0);
  EXPECT_EQ(bystander.wrong(), 0u);

  ASSERT_TRUE(tallyd_.Start(dir_.path() + "/data", {"--shards", "2"}).ok());
  auto client = Client::Connect(tallyd_.address(), token_);
  ASSERT_TRUE(client.ok());
  int64_t kept = 0;
  int64_t kept_dropped = 0;
  for (uint64_t org = kFirstOrg; org < kFirstOrg + kOrgs; ++org) {
    for (uint64_t wallet : {1, 2}) {
      auto b = (*client)->GetBalance({.org_id = org, .wallet_id = wallet});
      ASSERT_TRUE(b.ok()) << b.status();
      (wallet == 2 ? kept : kept_dropped) += kGranted - b->available;
    }
  }
  EXPECT_GE(kept, acknowledged);
  EXPECT_LE(kept, sent);
  EXPECT_LE(kept_dropped, dropped);
}

// A client that sends its requests and then its end of stream still gets
// every reply, and then the server closes.
TEST_F(TallydFaultsTest, HalfClosedClientGetsEveryReplyThenClose) {
  Start();
  auto raw = Authenticated();
  std::vector<Command> setup = {cmd::OrgCreate(kOrg), cmd::Topup(kOrg, 50)};
  setup[0].op_id = 1;
  setup[1].op_id = 2;
  std::string body;
  ASSERT_TRUE(EncodeBatch(0, setup, &body).ok());
  std::string requests = Frame(proto::Opcode::apply, 10, body);
  for (uint64_t id = 11; id <= 13; ++id) requests += BalanceFrame(id);
  ASSERT_TRUE(raw->Write(requests));
  raw->ShutdownWrite();
  std::vector<uint64_t> ids;
  for (int i = 0; i < 4; ++i) {
    auto frame = raw->ReadFrame();
    ASSERT_TRUE(frame.has_value()) << "reply " << i << " missing";
    EXPECT_NE(frame->header.opcode, proto::Opcode::error);
    ids.push_back(frame->header.request_id);
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<uint64_t>{10, 11, 12, 13}));
  EXPECT_TRUE(raw->ClosedByPeer());
}

}  // namespace
}  // namespace tally
