// huge_pages.h: memory for the big tables a batch touches at random.
//
// A deduct over a million wallets misses the cache on every table it reads
// (op-id slots, wallet index, wallets), and with 4 KiB pages each of those
// misses is also a TLB miss whose page walk misses the cache too.  Asking the
// kernel for 2 MiB pages (MADV_HUGEPAGE; this kernel's THP setting is
// "madvise", so nothing is huge unless asked) covers a 32 MB table with 16
// TLB entries.  Measured in bench/RESULTS.md ("huge pages, second try").
//
// HugeCalloc takes the memory from calloc, not from mmap directly, so the
// heap figures of the memory benchmarks still count it, and a big block
// stays lazily zeroed (the kernel's zero pages, faulted in as they are
// touched).  Only the 2 MiB-aligned interior of a block is advised; blocks
// under 4 MiB are left alone, so a small ledger in a test costs no huge page.
// The advice is a hint: when the kernel has no huge page to give, the memory
// is ordinary pages and everything works the same.
#ifndef TALLY_ENGINE_HUGE_PAGES_H_
#define TALLY_ENGINE_HUGE_PAGES_H_

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "tally/assert.h"

namespace tally::engine {

inline constexpr size_t huge_page_bytes = size_t{2} << 20;

// HugeCalloc returns size_bytes of zeroed memory (free with std::free),
// advised as huge pages where whole 2 MiB pages fit in it.
inline void* HugeCalloc(size_t size_bytes) {
  void* p = std::calloc(size_bytes == 0 ? 1 : size_bytes, 1);
  TALLY_ASSERT(p != nullptr);
  if (size_bytes >= 2 * huge_page_bytes) {
    uintptr_t begin = reinterpret_cast<uintptr_t>(p);
    uintptr_t first = (begin + huge_page_bytes - 1) & ~uintptr_t{huge_page_bytes - 1};
    uintptr_t last = (begin + size_bytes) & ~uintptr_t{huge_page_bytes - 1};
    if (last > first) {
      // A hint: failure changes nothing.
      (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
    }
  }
  return p;
}

struct HugeFree {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace tally::engine

#endif  // TALLY_ENGINE_HUGE_PAGES_H_
