// huge_page_heap.h: run the process with glibc's heap in transparent huge
// pages, so a snapshot's fork() copies few page tables.
//
// A snapshot forks the writer (docs/DURABILITY.md); fork() copies the page
// tables of everything mapped, one 8-byte entry per 4 KiB page: 43 ms of CPU
// for the million-wallet world's 1 GB on this VM, against a 20 ms budget for
// the writer's pause.  glibc's `glibc.malloc.hugetlb=1` tunable makes malloc
// advise its heap and its mmap'd blocks as transparent huge pages (THP is
// "madvise" only on this kernel), and fork then copies one entry per 2 MiB
// (measured: 11 ms).  Tunables are read only when a program starts, so a
// program that wants them and was started without them sets the variable and
// executes itself again, once, before it does anything else:
//
//   int main(int argc, char** argv) {
//     tally::wal::EnsureHugePageHeap(argv);  // returns in the re-executed process
//     ...
//
// The re-executed process keeps its PID, descriptors, arguments and
// environment (plus the tunable).  TALLY_HUGE_PAGE_HEAP=0 in the environment
// opts out; an operator's own GLIBC_TUNABLES that already mention
// glibc.malloc.hugetlb are left as they are.
#ifndef TALLY_WAL_HUGE_PAGE_HEAP_H_
#define TALLY_WAL_HUGE_PAGE_HEAP_H_

#include <optional>
#include <string>

namespace tally::wal {

inline constexpr char kHugeTlbTunable[] = "glibc.malloc.hugetlb=1";
inline constexpr char kHugePageHeapOptOut[] = "TALLY_HUGE_PAGE_HEAP";

// HugeTlbTunables is the GLIBC_TUNABLES value to run with, given the current
// one (null: unset): the current tunables plus kHugeTlbTunable; nothing when
// they already choose a glibc.malloc.hugetlb value.
std::optional<std::string> HugeTlbTunables(const char* current);

// EnsureHugePageHeap re-executes the program (its own file, same argv)
// with GLIBC_TUNABLES from HugeTlbTunables, unless the environment already
// has it or opts out.  Returns only when it did not re-execute; when the
// exec itself failed it says so on standard error and the program goes on
// with ordinary pages.  Call it first in main(), before threads start.
void EnsureHugePageHeap(char** argv);

}  // namespace tally::wal

#endif  // TALLY_WAL_HUGE_PAGE_HEAP_H_
