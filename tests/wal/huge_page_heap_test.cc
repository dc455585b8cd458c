// huge_page_heap_test.cc: tallyd runs with glibc's heap in huge pages on its
// defaults (wal/huge_page_heap.h), checked on the real binary.
#include "wal/huge_page_heap.h"

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"
#include "tests/net/tallyd_process.h"

namespace tally::wal {
namespace {

TEST(HugeTlbTunables, AddsTheTunableWhenUnset) {
  EXPECT_EQ(HugeTlbTunables(nullptr), "glibc.malloc.hugetlb=1");
  EXPECT_EQ(HugeTlbTunables(""), "glibc.malloc.hugetlb=1");
}

TEST(HugeTlbTunables, KeepsOtherTunables) {
  EXPECT_EQ(HugeTlbTunables("glibc.malloc.arena_max=2"),
            "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1");
}

TEST(HugeTlbTunables, LeavesTheOperatorsChoice) {
  EXPECT_EQ(HugeTlbTunables("glibc.malloc.hugetlb=0"), std::nullopt);
  EXPECT_EQ(HugeTlbTunables("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2"), std::nullopt);
  // A name that only starts alike is another tunable.
  EXPECT_EQ(HugeTlbTunables("glibc.malloc.hugetlbx=0"),
            "glibc.malloc.hugetlbx=0:glibc.malloc.hugetlb=1");
}

// EnvironmentOf is the NUL-separated environment of a running process.
std::string EnvironmentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool HasVariable(const std::string& environment, const std::string& assignment) {
  const std::string nul(1, '\0');
  return (nul + environment + nul).find(nul + assignment + nul) != std::string::npos;
}

TEST(TallydHugePageHeap, ReexecutesItselfWithTheTunable) {
  ::unsetenv("GLIBC_TUNABLES");  // tallyd inherits this environment
  testing::TempDir dir;
  testing::TallydProcess tallyd;
  ASSERT_TRUE(tallyd.Start(dir.path(), {"--shards", "1", "--io-threads", "1"}).ok());
  // Same PID (exec, not a new process), now with the tunable.
  EXPECT_TRUE(HasVariable(EnvironmentOf(tallyd.pid()), "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"));
  // Still called tallyd (ps, top, pkill), not "exe" after /proc/self/exe.
  std::ifstream comm("/proc/" + std::to_string(tallyd.pid()) + "/comm");
  std::string name;
  std::getline(comm, name);
  EXPECT_EQ(name, "tallyd");
  EXPECT_EQ(tallyd.Terminate(), 0);
}

TEST(TallydHugePageHeap, OptOutLeavesTheEnvironmentAlone) {
  ASSERT_EQ(::setenv(kHugePageHeapOptOut, "0", 1), 0);
  testing::TempDir dir;
  testing::TallydProcess tallyd;
  const absl::Status started = tallyd.Start(dir.path(), {"--shards", "1", "--io-threads", "1"});
  ::unsetenv(kHugePageHeapOptOut);
  ASSERT_TRUE(started.ok()) << started;
  EXPECT_EQ(EnvironmentOf(tallyd.pid()).find("GLIBC_TUNABLES"), std::string::npos);
  EXPECT_EQ(tallyd.Terminate(), 0);
}

}  // namespace
}  // namespace tally::wal
