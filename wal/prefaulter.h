// prefaulter.h: a thread that faults a ledger's big tables in ahead of the
// thread that writes them (docs/MEMORY.md, "Pre-faulting").
//
// A Prefaulter takes Ledger::PrefaultRegions() and faults them in with
// engine::Prefault (a write fault a page; no address-space lock held),
// 2 MiB a step, at nice 19, keeping `ahead_entries`
// history entries ahead of what the writer has appended (the writer says so
// with Advance()).  Two users: a shard thread of tallyd (the whole life of
// the shard) and Store::Open while it replays the log (the replay grows into
// the same memory, and on this VM a first touch costs a host fault).  The
// engine stays free of threads: this lives beside the store.
//
// Example:
//   Prefaulter pf(ledger.PrefaultRegions(), ledger.history_entries_total(),
//                 {.thread_name = "prefault-0"});
//   ... apply a batch ...; pf.Advance(ledger.history_entries_total());
//   pf.Stop();  // or let it go out of scope
#ifndef TALLY_WAL_PREFAULTER_H_
#define TALLY_WAL_PREFAULTER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/ledger.h"

namespace tally::wal {

struct PrefaulterOptions {
  // The thread's name for perf and /proc (at most 15 characters).
  std::string thread_name = "prefault";
  // How far ahead of the history written the memory is kept faulted in, in
  // history entries (the op-id entries alongside).
  uint64_t ahead_entries = 16 * history_chunk_entries;
  // The thread polls the writer this often while it moves, backing off to
  // poll_max while it does not.
  std::chrono::milliseconds poll_min{20};
  std::chrono::milliseconds poll_max{200};
  // Where the closing line ("pre-faulted N MB in S s") goes;
  // null: nowhere.
  std::function<void(std::string_view line)> log;
};

class Prefaulter {
 public:
  // Prefaulter starts the thread when `regions` is not empty (the ledger's
  // prefault option is on); `entries_now` is the ledger's
  // history_entries_total() when the regions were listed.  The regions must
  // stay mapped until Stop() returned.
  Prefaulter(std::vector<Ledger::PrefaultRegion> regions, uint64_t entries_now,
             PrefaulterOptions options);
  ~Prefaulter() { Stop(); }
  Prefaulter(const Prefaulter&) = delete;
  Prefaulter& operator=(const Prefaulter&) = delete;

  // Advance publishes the writer's history_entries_total() (a relaxed store:
  // cheap enough for every batch).
  void Advance(uint64_t entries_total) { entries_.store(entries_total, std::memory_order_relaxed); }
  // Stop ends the thread within one 2 MiB step and joins it.  Idempotent.
  void Stop();
  // done_bytes is what the thread faulted in (valid after Stop()).
  uint64_t done_bytes() const { return done_bytes_.load(std::memory_order_relaxed); }

 private:
  void Run(std::vector<Ledger::PrefaultRegion> regions);
  // WaitUntilReached waits until the writer is within ahead_entries of
  // `after_entries`; false when stopped.
  bool WaitUntilReached(uint64_t after_entries);

  PrefaulterOptions options_;
  const uint64_t entries_at_start_;
  std::atomic<uint64_t> entries_;
  std::atomic<uint64_t> done_bytes_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;  // only for wake_: Stop() ends a wait at once
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace tally::wal

#endif  // TALLY_WAL_PREFAULTER_H_
