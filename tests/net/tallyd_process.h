// tallyd_process.h: run the real tallyd binary from a test.
//
// TallydProcess spawns tallyd (its path from the TALLYD_PATH compile
// definition) with a data directory and `--listen 127.0.0.1:0`, reads the
// port from its "tallyd listening on 127.0.0.1:<port>" line, and ends it by
// PID: Terminate() (SIGTERM, a clean shutdown) or Kill() (SIGKILL, a
// crash).  Every wait is bounded; the destructor kills what is still running.
// TempDir is a fresh directory under $TMPDIR (or /tmp), removed at the end.
//
// Example:
//   TempDir dir;
//   TallydProcess tallyd;
//   ASSERT_TRUE(tallyd.Start(dir.path() + "/data", {"--shards", "2"}).ok());
//   auto client = tally::Client::Connect(tallyd.address(), tallyd.AdminToken());
//   ...
//   EXPECT_EQ(tallyd.Terminate(), 0);  // the exit status
#ifndef TALLY_TESTS_NET_TALLYD_PROCESS_H_
#define TALLY_TESTS_NET_TALLYD_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "tests/temp_dir.h"

#ifndef TALLYD_PATH
#error "TALLYD_PATH must name the tallyd binary (a compile definition)"
#endif

namespace tally::testing {

class TallydProcess {
 public:
  TallydProcess() = default;
  ~TallydProcess() { Kill(); }
  TallydProcess(const TallydProcess&) = delete;
  TallydProcess& operator=(const TallydProcess&) = delete;

  // Start spawns tallyd --data data_dir --listen 127.0.0.1:0 plus `flags`
  // and waits (up to start_timeout_ms) for its listening line.
  absl::Status Start(const std::string& data_dir, const std::vector<std::string>& flags = {},
                     int start_timeout_ms = 20000) {
    if (pid_ > 0) return absl::FailedPreconditionError("tallyd is running already");
    data_dir_ = data_dir;
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    std::vector<std::string> args = {TALLYD_PATH, "--data", data_dir, "--listen", "127.0.0.1:0"};
    args.insert(args.end(), flags.begin(), flags.end());
    // Tests start hundreds of tallyds, most for a few requests: unless a test
    // asks, none faults in its ~1 GB per shard (tallyd's default is on).
    if (std::find(flags.begin(), flags.end(), "--prefault") == flags.end()) {
      args.insert(args.end(), {"--prefault", "off"});
    }
    // Built before fork: the child of a threaded process may not allocate.
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const uint64_t file_bytes_max = file_bytes_max_;
    const char* stderr_path = stderr_path_.empty() ? nullptr : stderr_path_.c_str();
    pid_t pid = ::fork();
    if (pid < 0) return absl::InternalError("fork");
    if (pid == 0) {
      if (file_bytes_max != 0) {
        // A write at or past the limit then fails with EFBIG, in any file,
        // preallocated or not: a disk that refuses writes, for a real
        // process.  SIGXFSZ ignored, so the write fails instead of killing.
        ::signal(SIGXFSZ, SIG_IGN);
        rlimit limit{.rlim_cur = file_bytes_max, .rlim_max = file_bytes_max};
        ::setrlimit(RLIMIT_FSIZE, &limit);
      }
      if (stderr_path != nullptr) {
        int err = ::open(stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (err < 0 || ::dup2(err, STDERR_FILENO) < 0) ::_exit(126);
      }
      ::dup2(out[1], STDOUT_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    pid_ = pid;
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(start_timeout_ms);
    while (line.find('\n') == std::string::npos) {
      int left_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         deadline - std::chrono::steady_clock::now())
                                         .count());
      if (left_ms <= 0) break;
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, left_ms) <= 0) continue;
      char buffer[256];
      ssize_t n = ::read(out[0], buffer, sizeof(buffer));
      if (n <= 0) break;  // tallyd exited (or closed stdout) before it listened
      line.append(buffer, static_cast<size_t>(n));
    }
    ::close(out[0]);  // tallyd prints nothing else on stdout
    const std::string prefix = "tallyd listening on ";
    size_t at = line.find(prefix);
    size_t end = line.find('\n');
    if (at != 0 || end == std::string::npos) {
      Kill();
      return absl::UnavailableError("tallyd did not print its listening line; got '" + line + "'");
    }
    address_ = line.substr(prefix.size(), end - prefix.size());
    port_ = static_cast<uint16_t>(std::stoi(address_.substr(address_.rfind(':') + 1)));
    return absl::OkStatus();
  }

  // Terminate sends SIGTERM and waits (bounded; then SIGKILL).  Returns the
  // exit status, or -signal when a signal ended it, or -1000 when it had to
  // be killed.
  int Terminate(int timeout_ms = 20000) { return Signal(SIGTERM, timeout_ms); }
  // Kill sends SIGKILL and waits.
  int Kill() { return Signal(SIGKILL, 20000); }

  // set_file_bytes_max makes the next Start()s run tallyd with
  // RLIMIT_FSIZE at `bytes` (0: no limit): every write at an offset at or
  // past it fails with EFBIG ("File too large"), as a full or failing disk
  // would refuse it.
  void set_file_bytes_max(uint64_t bytes) { file_bytes_max_ = bytes; }

  // set_stderr_path makes the next Start()s append tallyd's standard error
  // to `path` (empty: the test's own standard error).
  void set_stderr_path(std::string path) { stderr_path_ = std::move(path); }

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::string& address() const { return address_; }  // "127.0.0.1:<port>"

  // AdminToken is the token tallyd wrote into <data>/tokens on first start.
  std::string AdminToken() const {
    std::ifstream in(data_dir_ + "/tokens");
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      std::istringstream fields(line);
      std::string token, role, name;
      fields >> token >> role >> name;
      if (role == "admin") return token;
    }
    return "";
  }

 private:
  int Signal(int signal, int timeout_ms) {
    if (pid_ <= 0) return 0;
    ::kill(pid_, signal);
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (r < 0) {
        pid_ = -1;
        return -1;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return -1000;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    pid_ = -1;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return -WTERMSIG(status);
    return -1;
  }

  pid_t pid_ = -1;
  uint64_t file_bytes_max_ = 0;
  std::string stderr_path_;
  std::string data_dir_;
  std::string address_;
  uint16_t port_ = 0;
};

}  // namespace tally::testing

#endif  // TALLY_TESTS_NET_TALLYD_PROCESS_H_
