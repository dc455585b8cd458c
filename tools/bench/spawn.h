// spawn.h: a tallyd of tally-bench's own, and finding a token.
//
// SpawnedServer starts the tallyd binary on a fresh temporary data directory
// with `--listen 127.0.0.1:0`, reads its one `tallyd listening on
// 127.0.0.1:<port>` line to learn the address, and reads the admin token
// tallyd wrote to `<data>/tokens` on its first start.  Stop() (and the
// destructor) sends SIGTERM to that PID alone, waits, and only if it has not
// exited after stop_timeout_ms sends SIGKILL; then removes the directory.
#ifndef TALLY_TOOLS_BENCH_SPAWN_H_
#define TALLY_TOOLS_BENCH_SPAWN_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"

namespace tally::bench {

inline constexpr int spawn_ready_timeout_ms = 60000;
inline constexpr int spawn_stop_timeout_ms = 30000;

class SpawnedServer {
 public:
  // Start runs `tallyd_path` with `extra_args` added to --data/--listen.
  static absl::StatusOr<std::unique_ptr<SpawnedServer>> Start(
      const std::string& tallyd_path, const std::vector<std::string>& extra_args, bool keep_data);
  ~SpawnedServer();

  const std::string& address() const { return address_; }
  const std::string& token() const { return token_; }
  const std::string& data_dir() const { return data_dir_; }
  pid_t pid() const { return pid_; }
  // Stop ends the server; the status says how it exited (OK: exit 0).
  absl::Status Stop();

 private:
  SpawnedServer() = default;
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::thread drain_;  // reads what tallyd prints after its ready line
  std::string dir_, data_dir_, address_, token_;
  bool keep_data_ = false;
};

// DefaultTallydPath is the tallyd beside the running executable.
std::string DefaultTallydPath();

// FirstAdminToken reads a token file (`<token> <role> <name> [orgs]` a line,
// `#` comments) and returns the first admin token.
absl::StatusOr<std::string> FirstAdminToken(const std::string& path);

}  // namespace tally::bench

#endif  // TALLY_TOOLS_BENCH_SPAWN_H_
