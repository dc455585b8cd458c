// The CLI's second half against a scripted peer on loopback: what it sends
// (the bytes a real tallyd would get) and what it makes of a connection that
// breaks before the answer.  The real server: tally_e2e_test.cc.
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <string>

#include "tally/codec.h"
#include "tally/protocol.h"
#include "tests/net/scripted_peer.h"
#include "tools/cli/cli.h"

namespace tally::cli {
namespace {

using proto::Opcode;

using testing::ScriptedPeer;

// Peer is a scripted tallyd that answers the hello as an admin token named
// "ops", then runs `script` on the connection.
class Peer : public ScriptedPeer {
 public:
  explicit Peer(std::function<void(ScriptedPeer&)> script)
      : ScriptedPeer([script](ScriptedPeer& p) {
          if (p.AcceptHello()) script(p);
        }) {}
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
  Peer peer([](ScriptedPeer& p) {
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
  Peer peer([&](ScriptedPeer& p) {
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
  Peer peer([](ScriptedPeer& p) {
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
