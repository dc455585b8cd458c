#include "wal/huge_page_heap.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace tally::wal {

std::optional<std::string> HugeTlbTunables(const char* current) {
  if (current == nullptr || *current == '\0') return std::string(kHugeTlbTunable);
  // Tunables are colon-separated name=value pairs; the operator's own
  // hugetlb choice (0, 1 or 2) wins.
  std::string_view rest(current);
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    std::string_view pair = rest.substr(0, colon);
    if (pair.starts_with("glibc.malloc.hugetlb=")) return std::nullopt;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return std::string(current) + ":" + kHugeTlbTunable;
}

void EnsureHugePageHeap(char** argv) {
  if (const char* opt = std::getenv(kHugePageHeapOptOut); opt != nullptr && opt[0] == '0') {
    return;
  }
  const char* current = std::getenv("GLIBC_TUNABLES");
  const std::optional<std::string> before =
      current != nullptr ? std::optional<std::string>(current) : std::nullopt;
  std::optional<std::string> tunables = HugeTlbTunables(current);
  if (!tunables) return;  // already running with it (or the operator chose)
  if (::setenv("GLIBC_TUNABLES", tunables->c_str(), 1) != 0) return;
  // The program's own path, not /proc/self/exe: the kernel names a process
  // after the file it executes, and operators look for `tallyd` in ps, top
  // and pkill, not `exe`.  /proc/self/exe only when the path is unknown or
  // the file was replaced since (then the link ends in " (deleted)").
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  const std::string_view deleted = " (deleted)";
  if (n > 0 && static_cast<size_t>(n) < sizeof path - 1 &&
      !std::string_view(path, static_cast<size_t>(n)).ends_with(deleted)) {
    path[n] = '\0';
    ::execv(path, argv);
  }
  ::execv("/proc/self/exe", argv);
  // Only on failure: go on as we are, and say so once.
  std::fprintf(stderr, "%s: could not re-execute with %s (%s); the heap stays in 4 KiB pages\n",
               argv[0] != nullptr ? argv[0] : "tally", kHugeTlbTunable, std::strerror(errno));
  if (before) {
    ::setenv("GLIBC_TUNABLES", before->c_str(), 1);
  } else {
    ::unsetenv("GLIBC_TUNABLES");
  }
}

}  // namespace tally::wal
