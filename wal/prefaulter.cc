// prefaulter.cc: see prefaulter.h.
#include "wal/prefaulter.h"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "engine/huge_pages.h"

namespace tally::wal {

Prefaulter::Prefaulter(std::vector<Ledger::PrefaultRegion> regions, uint64_t entries_now,
                       PrefaulterOptions options)
    : options_(std::move(options)), entries_at_start_(entries_now), entries_(entries_now) {
  if (regions.empty()) return;
  thread_ = std::thread([this, r = std::move(regions)]() mutable { Run(std::move(r)); });
}

void Prefaulter::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_.store(true, std::memory_order_relaxed);
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
}

bool Prefaulter::WaitUntilReached(uint64_t after_entries) {
  // Polls the writer every poll_min while it moves, backing off to poll_max
  // while it does not (an idle server wakes this thread 5 times a second,
  // not 50); the window is many polls of the heaviest load, so the writer
  // cannot outrun a thread that slept poll_max.
  auto idle_sleep = options_.poll_min;
  uint64_t seen = entries_.load(std::memory_order_relaxed);
  for (;;) {
    if (stop_.load(std::memory_order_relaxed)) return false;
    const uint64_t now = entries_.load(std::memory_order_relaxed);
    if (after_entries <= now - entries_at_start_ + options_.ahead_entries) return true;
    idle_sleep = now != seen ? options_.poll_min : std::min(2 * idle_sleep, options_.poll_max);
    seen = now;
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, idle_sleep, [&] { return stop_.load(std::memory_order_relaxed); });
  }
}

void Prefaulter::Run(std::vector<Ledger::PrefaultRegion> regions) {
  // Lowest priority: on a busy machine this thread takes the time the
  // others leave (the shard's fdatasync waits), not theirs.  That is safe
  // only because engine::Prefault holds no lock another thread needs: it
  // write-faults pages (each fault takes its own mapping's lock), where a
  // madvise(MADV_POPULATE_WRITE) held the address space's lock for as long
  // as this starved thread took to clear 2 MiB, and stalled the server
  // behind it (docs/MEMORY.md, "Why not MADV_POPULATE_WRITE").
  // A window ahead of the writer, not everything at once: the work and the
  // memory then follow the load (a server that takes few writes does not
  // spend seconds of CPU and a gigabyte on tables it will not fill soon).
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
  (void)::pthread_setname_np(::pthread_self(), options_.thread_name.substr(0, 15).c_str());
  constexpr size_t step_bytes = size_t{2} << 20;
  const auto start = std::chrono::steady_clock::now();
  uint64_t done = 0;
  for (const Ledger::PrefaultRegion& region : regions) {
    if (!WaitUntilReached(region.after_entries)) break;
    for (size_t at = 0; at < region.memory.size(); at += step_bytes) {
      if (stop_.load(std::memory_order_relaxed)) break;
      const size_t n = std::min(step_bytes, region.memory.size() - at);
      engine::Prefault(region.memory.data() + at, n);
      done += n;
      done_bytes_.store(done, std::memory_order_relaxed);
    }
  }
  if (options_.log && !stop_.load(std::memory_order_relaxed)) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    options_.log(
        absl::StrFormat("pre-faulted %.0f MB in %.1f s", static_cast<double>(done) / 1e6, seconds));
  }
}

}  // namespace tally::wal
