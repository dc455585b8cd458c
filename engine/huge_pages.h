// huge_pages.h: memory for the big tables a batch touches at random.
//
// A deduct over a million wallets misses the cache on every table it reads
// (op-id slots, wallet index, wallets), and with 4 KiB pages each of those
// misses is also a TLB miss whose page walk misses the cache too.  Asking the
// kernel for 2 MiB pages (MADV_HUGEPAGE; this kernel's THP setting is
// "madvise", so nothing is huge unless asked) covers a 32 MB table with 16
// TLB entries.  Measured in bench/RESULTS.md ("huge pages, second try").
//
// Everything big goes through HugeBlock (below): its own mapping, aligned to
// 2 MiB, so every whole 2 MiB page of it can be huge.  (A calloc'd block,
// advised huge on its aligned interior, was tried for the wallet index: it
// left a third of a 6 MiB index on 4 KiB pages, and once glibc's mmap
// threshold has risen such a block can come from the brk heap;
// bench/RESULTS.md, "Deduct, fourth round".)
#ifndef TALLY_ENGINE_HUGE_PAGES_H_
#define TALLY_ENGINE_HUGE_PAGES_H_

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "tally/assert.h"

namespace tally::engine {

inline constexpr size_t huge_page_bytes = size_t{2} << 20;

// Prefault backs [p, p + size_bytes) with memory now, so that the first
// writes into it take no page fault.  On this VM a first touch is also a
// fault in the host (free page reporting gives freed memory back), ~30x a
// plain page clear, so a server that faults its big tables in beside the
// load keeps that cost off its batches (LedgerOptions::prefault).
//
// It writes every 4 KiB page once with an atomic no-op (an OR with zero),
// rather than madvise(MADV_POPULATE_WRITE): a page fault takes only the
// lock of its own mapping, while the madvise holds the whole address
// space's lock for reading all through its call, and on a busy machine a
// call that clears a 2 MiB page can last tens of milliseconds to seconds
// (the pre-fault thread runs at nice 19).  Any thread that maps or
// protects memory meanwhile (glibc grows a thread's heap with mprotect)
// waits for it, and every later fault of the process waits behind that:
// tallyd stalled for hundreds of milliseconds at a time (bench/RESULTS.md,
// "The pre-fault without the address space's lock").
//
// The contents do not change: the locked OR reads and writes back the same
// byte in one step, so a writer storing into the same byte at the same
// moment is ordered before or after it and never lost (x86 `lock or`; an
// exclusive-monitor loop elsewhere).  The writer's own accesses are plain,
// so this is a race the C++ model does not bless; it is confined here, on
// memory this process owns and maps writable.  Only whole 4 KiB pages
// inside the range are touched.  Nothing to refuse: a write fault that
// finds no memory is the OOM killer's, as the writer's own would be.
inline void Prefault(void* p, size_t size_bytes) {
  constexpr uintptr_t small_page_bytes = 4096;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + small_page_bytes - 1) &
                          ~(small_page_bytes - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + size_bytes) & ~(small_page_bytes - 1);
  for (uintptr_t at = begin; at < end; at += small_page_bytes) {
    std::atomic_ref<unsigned char>(*reinterpret_cast<unsigned char*>(at))
        .fetch_or(0, std::memory_order_relaxed);
  }
}

// mapped_bytes counts the bytes every HugeBlock of the process holds in its
// own mappings, which malloc's figures (mallinfo2) do not see: the memory
// benchmarks add it to the heap.  Atomic because shards are threads.
inline std::atomic<uint64_t> mapped_bytes{0};
inline uint64_t MappedBytes() { return mapped_bytes.load(std::memory_order_relaxed); }

// HugeBlock owns one block of memory for a store that grows in chunks
// (wallets, lots, history).  A block of at least huge_page_bytes is mapped
// by itself at a 2 MiB boundary, exactly its size rounded up to 4 KiB, and
// every whole 2 MiB page of it is advised huge: a random access into such a
// store then costs a cache miss but no page walk (docs/ENGINE.md, "Memory
// layout").  A calloc'd block cannot give that for a 2 MiB chunk: calloc's
// mmapped blocks start 16 bytes into a page, so no whole huge page fits.
// A smaller block comes from malloc, 64-byte aligned, so small ledgers (tests
// make thousands) cost no huge page.  The contents start zeroed (a mapping
// is zero pages until touched).
class HugeBlock {
 public:
  HugeBlock() = default;
  explicit HugeBlock(size_t size_bytes) {
    TALLY_ASSERT(size_bytes > 0);
    if (size_bytes < huge_page_bytes) {
      size_bytes_ = (size_bytes + 63) & ~size_t{63};
      data_ = static_cast<unsigned char*>(std::aligned_alloc(64, size_bytes_));
      TALLY_ASSERT(data_ != nullptr);
      std::memset(data_, 0, size_bytes_);
      return;
    }
    constexpr size_t small_page_bytes = 4096;
    size_bytes_ = (size_bytes + small_page_bytes - 1) & ~(small_page_bytes - 1);
    mapped_ = true;
    // Reserve a huge page more than needed, then give back the head and the
    // tail around the first 2 MiB boundary.
    const size_t reserve_bytes = size_bytes_ + huge_page_bytes;
    void* p = ::mmap(nullptr, reserve_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    TALLY_ASSERT(p != MAP_FAILED);
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p);
    const uintptr_t aligned = (begin + huge_page_bytes - 1) & ~uintptr_t{huge_page_bytes - 1};
    const uintptr_t end = begin + reserve_bytes;
    if (aligned > begin) ::munmap(p, aligned - begin);
    if (end > aligned + size_bytes_) {
      ::munmap(reinterpret_cast<void*>(aligned + size_bytes_), end - aligned - size_bytes_);
    }
    data_ = reinterpret_cast<unsigned char*>(aligned);
    // A hint: failure changes nothing.
    (void)::madvise(data_, size_bytes_ & ~(huge_page_bytes - 1), MADV_HUGEPAGE);
    mapped_bytes.fetch_add(size_bytes_, std::memory_order_relaxed);
  }
  HugeBlock(HugeBlock&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)),
        size_bytes_(std::exchange(other.size_bytes_, 0)),
        mapped_(other.mapped_) {}
  HugeBlock& operator=(HugeBlock&& other) noexcept {
    if (this != &other) {
      Release();
      data_ = std::exchange(other.data_, nullptr);
      size_bytes_ = std::exchange(other.size_bytes_, 0);
      mapped_ = other.mapped_;
    }
    return *this;
  }
  HugeBlock(const HugeBlock&) = delete;
  HugeBlock& operator=(const HugeBlock&) = delete;
  ~HugeBlock() { Release(); }

  unsigned char* data() const { return data_; }
  size_t size_bytes() const { return size_bytes_; }

 private:
  void Release() {
    if (data_ == nullptr) return;
    if (mapped_) {
      ::munmap(data_, size_bytes_);
      mapped_bytes.fetch_sub(size_bytes_, std::memory_order_relaxed);
    } else {
      std::free(data_);
    }
    data_ = nullptr;
  }

  unsigned char* data_ = nullptr;
  size_t size_bytes_ = 0;
  bool mapped_ = false;
};

}  // namespace tally::engine

#endif  // TALLY_ENGINE_HUGE_PAGES_H_
