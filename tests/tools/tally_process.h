// tally_process.h: run the real `tally` binary (its path from the TALLY_PATH
// compile definition) the way a script would, and collect its exit code,
// stdout and stderr.  Every run is bounded: past timeout_ms the child is
// killed by its PID and the result says so.
//
// Example:
//   TallyRun r = RunTally({"--server", addr, "--token", tok, "balance", "7", "42"});
//   EXPECT_EQ(r.exit_code, 0) << r.err;
#ifndef TALLY_TESTS_TOOLS_TALLY_PROCESS_H_
#define TALLY_TESTS_TOOLS_TALLY_PROCESS_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#ifndef TALLY_PATH
#error "TALLY_PATH must name the tally binary (a compile definition)"
#endif

namespace tally::testing {

struct TallyRun {
  int exit_code = -1;  // -signal when a signal ended it; -1000 when it timed out
  std::string out;
  std::string err;
};

// RunTally runs `tally args...` with `env` as its whole environment (so no
// TALLY_SERVER / TALLY_TOKEN of the test's own environment leaks in) from
// working directory `cwd` (empty: the test's own).  `on_start`, when given,
// learns the child's PID (to signal it) right after it is spawned.
inline TallyRun RunTally(const std::vector<std::string>& args,
                         const std::vector<std::string>& env = {}, const std::string& cwd = "",
                         int timeout_ms = 20000,
                         const std::function<void(pid_t)>& on_start = nullptr) {
  TallyRun run;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return run;
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return run;
  }
  // Built before fork: the child of a threaded process may not allocate.
  std::vector<std::string> argv_strings = {TALLY_PATH};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = env;
  std::vector<char*> envp;
  for (std::string& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(err[1], STDERR_FILENO);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(out[0]);
    ::close(err[0]);
    return run;
  }
  if (on_start) on_start(pid);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&run.out, &run.err};
  int open_fds = 2;
  bool timed_out = false;
  while (open_fds > 0) {
    int left_ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       deadline - std::chrono::steady_clock::now())
                                       .count());
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    if (::poll(fds, 2, left_ms) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (timed_out) {
    run.exit_code = -1000;
  } else if (WIFEXITED(status)) {
    run.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    run.exit_code = -WTERMSIG(status);
  }
  return run;
}

}  // namespace tally::testing

#endif  // TALLY_TESTS_TOOLS_TALLY_PROCESS_H_
