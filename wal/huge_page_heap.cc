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
