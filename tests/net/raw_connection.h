// raw_connection.h: a bare TCP connection for tests that send what a
// well-behaved client never would (no hello, malformed frames, a client that
// never reads).  Every wait is bounded.
#ifndef TALLY_TESTS_NET_RAW_CONNECTION_H_
#define TALLY_TESTS_NET_RAW_CONNECTION_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tally/protocol.h"

namespace tally::testing {

// UnusedLoopbackPort is a loopback port that nothing listens on: bound,
// read and released (for "nothing listening" tests and fixed-port restarts).
inline uint16_t UnusedLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  (void)!bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Frame builds one frame with a correct checksum.
inline std::string Frame(proto::Opcode op, uint64_t request_id, std::string_view body) {
  std::string out;
  size_t at = proto::BeginFrame(&out);
  out.append(body);
  proto::FinishFrame(&out, at, op, request_id);
  return out;
}

inline std::string HelloFrame(std::string_view token, uint64_t request_id = 1) {
  std::string body;
  proto::EncodeHello({.token = token, .client_name = "raw-test"}, &body);
  return Frame(proto::Opcode::hello, request_id, body);
}

struct RawFrame {
  proto::FrameHeader header;
  std::string body;
};

class RawConnection {
 public:
  explicit RawConnection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  bool Write(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  // ReadFrame reads one frame (nullopt: closed, timed out or undecodable).
  std::optional<RawFrame> ReadFrame(int timeout_ms = 5000) {
    std::string header;
    if (!ReadExactly(proto::frame_header_bytes, timeout_ms, &header)) return std::nullopt;
    RawFrame frame;
    if (!proto::DecodeFrameHeader(header, &frame.header).ok()) return std::nullopt;
    if (!ReadExactly(frame.header.body_bytes, timeout_ms, &frame.body)) return std::nullopt;
    if (!proto::VerifyChecksum(header, frame.body)) return std::nullopt;
    return frame;
  }

  // ClosedByPeer: the server closed the connection within timeout_ms
  // (whatever else it still sent is read and dropped).
  bool ClosedByPeer(int timeout_ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    char buffer[4096];
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n == 0) return true;
      if (n < 0 && errno != EINTR && errno != EAGAIN) return true;  // reset
    }
    return false;
  }

 private:
  bool ReadExactly(size_t bytes, int timeout_ms, std::string* out) {
    out->clear();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (out->size() < bytes) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buffer[65536];
      size_t want = std::min(bytes - out->size(), sizeof(buffer));
      ssize_t n = ::recv(fd_, buffer, want, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      out->append(buffer, static_cast<size_t>(n));
    }
    return true;
  }

  int fd_ = -1;
};

}  // namespace tally::testing

#endif  // TALLY_TESTS_NET_RAW_CONNECTION_H_
