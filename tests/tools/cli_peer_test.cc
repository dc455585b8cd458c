// The CLI's second half against a scripted peer on loopback: what it sends
// (the bytes a real tallyd would get) and what it makes of a connection that
// breaks before the answer.  The real server: tally_e2e_test.cc.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <string>
#include <thread>

#include "tally/codec.h"
#include "tally/protocol.h"
#include "tools/cli/cli.h"

namespace tally::cli {
namespace {

using proto::Opcode;

// Peer listens on 127.0.0.1:<free port>, answers the hello as an admin
// token named "ops", then runs `script` on the connection.
class Peer {
 public:
  explicit Peer(std::function<void(Peer&)> script) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(listen(listen_fd_, 4), 0);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this, script] {
      fd_ = accept(listen_fd_, nullptr, nullptr);
      if (fd_ < 0) return;
      proto::FrameHeader h;
      std::string body;
      if (Read(&h, &body) && h.opcode == Opcode::hello) {
        std::string reply;
        proto::EncodeHelloReply({proto::Role::admin, 2, "ops"}, &reply);
        Reply(Opcode::hello, h.request_id, reply);
        script(*this);
      }
      close(fd_);
    });
  }
  ~Peer() {
    thread_.join();
    close(listen_fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  bool Read(proto::FrameHeader* h, std::string* body) {
    char header[proto::frame_header_bytes];
    if (!ReadFull(header, sizeof header)) return false;
    if (!proto::DecodeFrameHeader(std::string_view(header, sizeof header), h).ok()) return false;
    body->resize(h->body_bytes);
    if (!ReadFull(body->data(), body->size())) return false;
    return proto::VerifyChecksum(std::string_view(header, sizeof header), *body);
  }
  void Reply(Opcode op, uint64_t id, const std::string& body) {
    std::string out;
    size_t at = proto::BeginFrame(&out);
    out += body;
    proto::FinishFrame(&out, at, op, id, proto::flag_reply, ResultCode::ok);
    (void)!send(fd_, out.data(), out.size(), MSG_NOSIGNAL);
  }

 private:
  bool ReadFull(char* p, size_t n) {
    while (n > 0) {
      ssize_t r = recv(fd_, p, n, 0);
      if (r <= 0) return false;
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }
  int listen_fd_ = -1;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

std::string ReadAll(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string text;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  return text;
}

Env TestEnv() {
  Env env;
  env.now_us = int64_t{1796211249} * 1000000;
  env.new_op_id = [] { return uint64_t{4242}; };
  return env;
}

TEST(CliPeer, ABrokenConnectionAfterAChangeSaysTheOutcomeIsUnknownAndHowToRetry) {
  Peer peer([](Peer& p) {
    proto::FrameHeader h;
    std::string body;
    EXPECT_TRUE(p.Read(&h, &body));
    EXPECT_EQ(h.opcode, Opcode::apply);
    // ... and close without answering.
  });
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  int rc = tally::cli::Run(
      {"--server", peer.address(), "--token", "t", "deduct", "7", "42", "3", "--op-id", "55"},
      TestEnv(), out, err);
  EXPECT_EQ(rc, exit_connect);
  std::string e = ReadAll(err);
  EXPECT_NE(e.find("outcome is unknown"), std::string::npos) << e;
  EXPECT_NE(e.find("--op-id 55"), std::string::npos) << e;
  EXPECT_EQ(ReadAll(out), "");
  std::fclose(out);
  std::fclose(err);
}

TEST(CliPeer, ApproveSendsTheCommandWithTheTokenNameAsActor) {
  DecodedBatch seen;
  std::string actor;  // the command's texts point into the frame body
  Peer peer([&](Peer& p) {
    proto::FrameHeader h;
    std::string body;
    ASSERT_TRUE(p.Read(&h, &body));
    ASSERT_EQ(h.opcode, Opcode::apply);
    ASSERT_TRUE(DecodeBatch(body, &seen).ok());
    ASSERT_EQ(seen.commands.size(), 1u);
    actor = std::string(seen.commands[0].actor);
    std::vector<Result> results(seen.commands.size());
    results[0].n[0] = 1000;
    results[0].n[1] = 200;
    results[0].n[2] = 800;
    std::string reply;
    proto::EncodeApplyReply(1, results, &reply);
    p.Reply(Opcode::apply, h.request_id, reply);
  });
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  int rc = tally::cli::Run({"--server", peer.address(), "--token", "t", "--json", "approve", "7",
                            "3", "--amount", "200"},
                           TestEnv(), out, err);
  EXPECT_EQ(rc, exit_ok) << ReadAll(err);
  EXPECT_EQ(ReadAll(out),
            "{\"result\":\"ok\",\"op_id\":4242,\"replayed\":false,\"request_id\":3,"
            "\"pool_before\":1000,\"allocated\":200,\"pool_after\":800}\n");
  ASSERT_EQ(seen.commands.size(), 1u);
  const Command& c = seen.commands[0];
  EXPECT_EQ(c.kind, CommandKind::approve);
  EXPECT_EQ(c.op_id, 4242u);
  EXPECT_EQ(c.org_id, 7u);
  EXPECT_EQ(c.target_id, 3u);
  EXPECT_EQ(c.amount, 200);
  EXPECT_EQ(actor, "ops");
  std::fclose(out);
  std::fclose(err);
}

// A capture of a hold past its timeout: exit 1, the code name and the
// numbers on one stderr line, and with --json one error object on stdout.
TEST(CliPeer, HoldExpiredIsARefusalWithAppliedAndRemainder) {
  Peer peer([](Peer& p) {
    proto::FrameHeader h;
    std::string body;
    ASSERT_TRUE(p.Read(&h, &body));
    std::vector<Result> results(1);
    results[0].code = ResultCode::hold_expired;
    results[0].n[1] = 60;
    std::string reply;
    proto::EncodeApplyReply(1, results, &reply);
    p.Reply(Opcode::apply, h.request_id, reply);
  });
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  std::vector<std::string> argv = {"--server", peer.address(), "--token", "t", "capture", "7",
                                   "1",        "60",           "--json"};
  int rc = tally::cli::Run(argv, TestEnv(), out, err);
  EXPECT_EQ(rc, exit_refused);
  EXPECT_EQ(ReadAll(err),
            "tally: hold_expired: hold 1 of org 7 timed out and was released; applied 0, "
            "remainder 60\n");
  EXPECT_EQ(ReadAll(out),
            "{\"error\":\"hold_expired\",\"applied\":0,\"remainder\":60,\"detail\":\"hold 1 "
            "of org 7 timed out and was released; applied 0, remainder 60\",\"op_id\":4242}\n");
  std::fclose(out);
  std::fclose(err);
}

}  // namespace
}  // namespace tally::cli
