#include "tools/bench/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tools/bench/strings.h"

namespace tally::bench {

namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

absl::Status Errno(std::string_view what) {
  return absl::InternalError(absl::StrCat(Sv(what), ": ", std::strerror(errno)));
}

constexpr std::string_view kReadyPrefix = "tallyd listening on ";

}  // namespace

std::string DefaultTallydPath() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "tallyd";
  return (self.parent_path() / "tallyd").string();
}

absl::StatusOr<std::string> FirstAdminToken(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read the token file ", path));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view l = absl::StripAsciiWhitespace(line);
    if (l.empty() || l.front() == '#') continue;
    std::vector<absl::string_view> fields = absl::StrSplit(l, ' ', absl::SkipWhitespace());
    if (fields.size() >= 3 && fields[1] == "admin") return std::string(fields[0]);
  }
  return absl::NotFoundError(absl::StrCat("no admin token in ", path));
}

absl::StatusOr<std::unique_ptr<SpawnedServer>> SpawnedServer::Start(
    const std::string& tallyd_path, const std::vector<std::string>& extra_args, bool keep_data) {
  if (access(tallyd_path.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("no tallyd at ", tallyd_path, " (give --tallyd PATH)"));
  }
  std::unique_ptr<SpawnedServer> s(new SpawnedServer());
  s->keep_data_ = keep_data;
  std::string templ = (std::filesystem::temp_directory_path() / "tally-bench-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) return Errno("mkdtemp");
  s->dir_ = templ;
  s->data_dir_ = s->dir_ + "/data";
  std::string log_path = s->dir_ + "/tallyd.log";

  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Errno("pipe");
  std::vector<std::string> args = {tallyd_path, "--data", s->data_dir_, "--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log_fd < 0) return Errno("open tallyd.log");

  pid_t pid = fork();
  if (pid < 0) return Errno("fork");
  if (pid == 0) {
    // The child: stdout to the pipe, stderr to the log; nothing else.
    dup2(out[1], STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(log_fd);
  s->pid_ = pid;
  s->stdout_fd_ = out[0];

  // Wait for the ready line.
  std::string got;
  int64_t deadline = NowMs() + spawn_ready_timeout_ms;
  while (got.find('\n') == std::string::npos) {
    int64_t left = deadline - NowMs();
    if (left <= 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "tallyd printed no ready line within ", spawn_ready_timeout_ms, " ms; see ", log_path));
    }
    pollfd p{s->stdout_fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[512];
    ssize_t n = read(s->stdout_fd_, buf, sizeof buf);
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("tallyd exited before it was ready; see ", log_path));
    }
    got.append(buf, static_cast<size_t>(n));
  }
  absl::string_view line(got.data(), got.find('\n'));
  if (!absl::ConsumePrefix(&line, Sv(kReadyPrefix))) {
    return absl::InternalError(absl::StrCat("unexpected first line from tallyd: ", line));
  }
  s->address_ = std::string(line);
  // What tallyd prints later is read and dropped, so it never blocks on a pipe.
  s->drain_ = std::thread([fd = s->stdout_fd_] {
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    }
  });

  absl::StatusOr<std::string> token = FirstAdminToken(s->data_dir_ + "/tokens");
  if (!token.ok()) return token.status();
  s->token_ = *token;
  return s;
}

absl::Status SpawnedServer::Stop() {
  absl::Status status;
  if (pid_ > 0) {
    kill(pid_, SIGTERM);
    int wstatus = 0;
    int64_t deadline = NowMs() + spawn_stop_timeout_ms;
    pid_t r = 0;
    while ((r = waitpid(pid_, &wstatus, WNOHANG)) == 0 && NowMs() < deadline) {
      usleep(10000);
    }
    if (r == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &wstatus, 0);
      status = absl::DeadlineExceededError("tallyd did not stop on SIGTERM; killed");
    } else if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
      status = absl::InternalError(
          WIFEXITED(wstatus) ? absl::StrCat("tallyd exited with status ", WEXITSTATUS(wstatus))
                             : absl::StrCat("tallyd died of signal ", WTERMSIG(wstatus)));
    }
    pid_ = -1;
  }
  if (drain_.joinable()) drain_.join();  // the pipe closed when tallyd exited
  if (stdout_fd_ >= 0) {
    close(stdout_fd_);
    stdout_fd_ = -1;
  }
  if (!dir_.empty() && !keep_data_) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    dir_.clear();
  }
  return status;
}

SpawnedServer::~SpawnedServer() { (void)Stop(); }

}  // namespace tally::bench
