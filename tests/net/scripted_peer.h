// scripted_peer.h: a fake tallyd on loopback for client-side tests.
//
// A ScriptedPeer listens on 127.0.0.1:<free port> and runs a script on the
// first connection it accepts: the script reads the frames the client sent
// and answers them byte for byte as a test wants (including broken answers
// and silence), so tests can check what a client sends and what it makes of
// any reply.  Used by the client library's and the CLI's tests.
#ifndef TALLY_TESTS_NET_SCRIPTED_PEER_H_
#define TALLY_TESTS_NET_SCRIPTED_PEER_H_

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "tally/protocol.h"
#include "tally/result_code.h"

namespace tally::testing {

class ScriptedPeer {
 public:
  explicit ScriptedPeer(std::function<void(ScriptedPeer&)> script) {
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
      if (fd_ >= 0) script(*this);
      if (fd_ >= 0) close(fd_);
    });
  }
  ~ScriptedPeer() {
    thread_.join();
    close(listen_fd_);
  }
  ScriptedPeer(const ScriptedPeer&) = delete;
  ScriptedPeer& operator=(const ScriptedPeer&) = delete;

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Read reads one whole frame; false at EOF or on a bad header or checksum.
  bool Read(proto::FrameHeader* h, std::string* body) {
    char header[proto::frame_header_bytes];
    if (!ReadFull(header, sizeof header)) return false;
    if (!proto::DecodeFrameHeader(std::string_view(header, sizeof header), h).ok()) return false;
    body->resize(h->body_bytes);
    if (!ReadFull(body->data(), body->size())) return false;
    return proto::VerifyChecksum(std::string_view(header, sizeof header), *body);
  }
  // Reply sends one reply frame with `body`.
  void Reply(proto::Opcode op, uint64_t request_id, ResultCode status, std::string_view body) {
    std::string out;
    size_t at = proto::BeginFrame(&out);
    out += body;
    proto::FinishFrame(&out, at, op, request_id, proto::flag_reply, status);
    Write(out);
  }
  void Reply(proto::Opcode op, uint64_t request_id, std::string_view body) {
    Reply(op, request_id, ResultCode::ok, body);
  }
  // Write sends raw bytes (a broken frame, half a frame ...).
  void Write(std::string_view bytes) {
    (void)!send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // AcceptHello reads the hello and answers it as an admin token named "ops"
  // on a server of two shards; false (and a test failure) if the first frame
  // is not a hello.  The token the client presented is kept in `token`.
  bool AcceptHello() {
    proto::FrameHeader h;
    std::string body;
    if (!Read(&h, &body) || h.opcode != proto::Opcode::hello) {
      ADD_FAILURE() << "the client's first frame is not a hello";
      return false;
    }
    proto::HelloRequest hello;
    if (!proto::DecodeHello(body, &hello).ok()) {
      ADD_FAILURE() << "the hello does not decode";
      return false;
    }
    token = std::string(hello.token);
    std::string reply;
    proto::EncodeHelloReply({proto::Role::admin, 2, "ops"}, &reply);
    Reply(proto::Opcode::hello, h.request_id, reply);
    return true;
  }
  std::string token;

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

}  // namespace tally::testing

#endif  // TALLY_TESTS_NET_SCRIPTED_PEER_H_
