// ledger_bench.cc: what the engine costs, in time and in memory.
//
// The targets, on one core:
//   deduct                        >= 10,000,000 a second  (BM_Deduct items_per_second)
//   a wallet with one lot         <= 96 bytes             (BM_MemoryWalletWithOneLot)
//   a history entry               <= 40 bytes             (BM_MemoryHistoryEntry)
//
// Memory is measured, not estimated: the growth of glibc's heap (mallinfo2:
// bytes in use from the arenas plus bytes in mmapped blocks) and of the
// engine's own huge-page mappings (engine::MappedBytes) across the work,
// divided by the number of wallets or entries it added.  The big worlds are
// built once and shared by every run of a benchmark.
//
//   ./build/release/bench/ledger_bench
//   ./build/release/bench/ledger_bench --benchmark_filter=Memory
#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/huge_pages.h"
#include "engine/ledger.h"
#include "engine/mix.h"
#include "tally/command.h"
#include "tally/commands.h"
#include "tally/limits.h"
#include "tally/result_code.h"

namespace tally {
namespace {

constexpr int64_t kT0 = int64_t{1'700'000'040} * 1'000'000;  // a whole minute
constexpr int64_t kSecondUs = 1'000'000;
constexpr int64_t kDayUs = 24 * 3600 * kSecondUs;
constexpr uint64_t kMillionWallets = 1'000'000;
constexpr uint32_t kDeductBatch = 1024;
constexpr int64_t kLotAmount = int64_t{1} << 40;  // never runs out

// HeapBytes is what the process holds from malloc right now, plus the
// blocks the engine maps itself for huge pages (engine/huge_pages.h), which
// malloc does not see.
size_t HeapBytes() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd + engine::MappedBytes();
}

// MinorFaults is the process's page faults so far that needed no I/O: the
// kernel handing out (and zeroing) fresh pages.  A timed loop that faults
// measures a warm-up a long-running server does not see.
int64_t MinorFaults() {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Clock hands out batch times and op ids, both increasing.
struct Clock {
  int64_t now_us = kT0;
  uint64_t next_op_id = 1;
};

// MustApply applies `commands` in batches of at most batch_commands_max and
// stops the program if one is refused: a world that is not what we think
// measures nothing.
void MustApply(Ledger& ledger, Clock& clock, std::span<Command> commands) {
  BatchOutput out;
  for (size_t begin = 0; begin < commands.size(); begin += batch_commands_max) {
    size_t n = std::min<size_t>(batch_commands_max, commands.size() - begin);
    std::span<Command> batch = commands.subspan(begin, n);
    for (Command& c : batch) {
      if (c.kind != CommandKind::expire_sweep) c.op_id = clock.next_op_id++;
    }
    ledger.Apply(clock.now_us, batch, &out);
    for (size_t i = 0; i < out.results.size(); ++i) {
      if (out.results[i].code != ResultCode::ok) {
        std::fprintf(stderr, "setup command %zu (kind %d) refused: %s\n", begin + i,
                     static_cast<int>(batch[i].kind),
                     std::string(ResultCodeName(out.results[i].code)).c_str());
        std::abort();
      }
    }
  }
}

using namespace ::tally::cmd;

// GiveEveryWalletThreeLots grants wallets [first, first + count) of `org`
// three lots each: one expiring in a year, one that never expires, one of a
// later priority, so a deduct walks a realistic, sorted lot array.
void GiveEveryWalletThreeLots(Ledger& ledger, Clock& clock, uint64_t org, uint64_t first,
                              uint64_t count) {
  std::vector<Command> commands;
  commands.reserve(3 * count);
  for (uint64_t w = first; w < first + count; ++w) {
    commands.push_back(Grant(org, w, kLotAmount, clock.now_us + 365 * kDayUs, 0));
    commands.push_back(Grant(org, w, kLotAmount, 0, 0));
    commands.push_back(Grant(org, w, kLotAmount, 0, 1));
  }
  MustApply(ledger, clock, commands);
}

// RandomWallets is a precomputed sequence of wallet ids in [1, wallets].
std::vector<uint64_t> RandomWallets(uint64_t wallets, size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> pick(1, wallets);
  std::vector<uint64_t> ids(count);
  for (uint64_t& id : ids) id = pick(rng);
  return ids;
}

// ---------------------------------------------------------------------------
// Deduct: 1,000,000 wallets with 3 lots each, random wallets, 1024 a batch.
// ---------------------------------------------------------------------------

// The world is measured in its steady state: the history ring (4M entries
// here, 160 MB) has already wrapped, so no run pays for first-touch pages
// of the ring, and the op-id memory has turned over several generations.
struct DeductWorld {
  static constexpr uint64_t orgs = 4;
  static constexpr uint64_t wallets_per_org = kMillionWallets / orgs;
  static constexpr uint64_t history_entries = uint64_t{1} << 22;
  static constexpr uint64_t hot_wallets = 1024;

  Ledger ledger;
  Clock clock;
  std::vector<uint64_t> sequence;      // random wallet ids in [1, 1,000,000]
  std::vector<uint64_t> hot_sequence;  // random wallet ids in [1, hot_wallets]
  size_t position = 0;

  static LedgerOptions Options() {
    LedgerOptions options;
    options.history_entries_max = history_entries;
    return options;
  }

  DeductWorld() : ledger(Options()) {
    std::vector<Command> create;
    for (uint64_t org = 1; org <= orgs; ++org) create.push_back(OrgCreate(org));
    MustApply(ledger, clock, create);
    for (uint64_t org = 1; org <= orgs; ++org) {
      GiveEveryWalletThreeLots(ledger, clock, org, 1, wallets_per_org);
    }
    sequence = RandomWallets(kMillionWallets, size_t{1} << 22, 42);
    hot_sequence = RandomWallets(hot_wallets, size_t{1} << 22, 43);
    // Wrap the history ring once more and turn the op-id memory over.
    std::vector<Command> warm;
    for (uint64_t i = 0; i < history_entries + (uint64_t{1} << 20); ++i) {
      uint64_t id = sequence[i & (sequence.size() - 1)];
      warm.push_back(Deduct(1 + (id - 1) / wallets_per_org, 1 + (id - 1) % wallets_per_org, 1));
    }
    MustApply(ledger, clock, warm);
  }

  static DeductWorld& Get() {
    static DeductWorld* world = new DeductWorld();
    return *world;
  }
};

// FillDeducts writes the next batch of deducts over `batch` (org and wallet
// from a random sequence, fresh op ids: in sequence, or scrambled).
void FillDeducts(DeductWorld& w, std::vector<Command>& batch, bool hot, bool random_ids) {
  const std::vector<uint64_t>& sequence = hot ? w.hot_sequence : w.sequence;
  for (Command& c : batch) {
    uint64_t id = sequence[w.position];
    w.position = (w.position + 1) & (sequence.size() - 1);
    c.org_id = 1 + (id - 1) / DeductWorld::wallets_per_org;
    c.wallet_id = 1 + (id - 1) % DeductWorld::wallets_per_org;
    const uint64_t n = w.clock.next_op_id++;
    // Scrambled: ids that look random, as random idempotency keys do
    // (Mix64 is a bijection, so they stay unique, and 0 only for 0).
    c.op_id = random_ids ? engine::Mix64(n) : n;
  }
}

// SetRollup sets every org's deduct rollup interval (0: one entry each).
void SetRollup(DeductWorld& w, int64_t interval_us) {
  std::vector<Command> settings;
  for (uint64_t org = 1; org <= DeductWorld::orgs; ++org) {
    Command c;
    c.kind = CommandKind::org_settings;
    c.org_id = org;
    c.settings.deduct_rollup_interval_us = interval_us;
    c.settings_mask = setting_deduct_rollup_interval;
    settings.push_back(c);
  }
  MustApply(w.ledger, w.clock, settings);
}

void RunDeducts(benchmark::State& state, bool rollup, bool hot, bool random_ids = false) {
  DeductWorld& w = DeductWorld::Get();
  if (rollup) SetRollup(w, 60 * kSecondUs);
  std::vector<Command> batch(kDeductBatch, Deduct(1, 1, 1));
  BatchOutput out;
  const uint64_t entries_before = w.ledger.history_entries_total();
  const int64_t faults_before = MinorFaults();
  bool checked = false;
  for (auto _ : state) {
    FillDeducts(w, batch, hot, random_ids);
    w.clock.now_us += 1000;  // a batch a millisecond, as a server would stamp them
    w.ledger.Apply(w.clock.now_us, batch, &out);
    benchmark::DoNotOptimize(out.results.data());
    if (!checked) {
      checked = true;
      for (const Result& r : out.results) {
        if (r.code != ResultCode::ok) {
          state.SkipWithError("a deduct was refused");
          break;
        }
      }
    }
  }
  if (rollup) SetRollup(w, 0);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kDeductBatch);
  state.counters["batch"] = kDeductBatch;
  state.counters["wallets"] = static_cast<double>(hot ? DeductWorld::hot_wallets : kMillionWallets);
  state.counters["faults_per_batch"] = static_cast<double>(MinorFaults() - faults_before) /
                                      static_cast<double>(state.iterations());
  state.counters["history_per_deduct"] =
      static_cast<double>(w.ledger.history_entries_total() - entries_before) /
      (static_cast<double>(state.iterations()) * kDeductBatch);
}

// BM_ExportHistory: Ledger::ExportHistory of the newest 8,192 entries (a
// batch's worth at tallyd's frames of 8,000 deducts) into a reused vector,
// as the history file takes them after every batch; entries of random
// wallets among 1,000,000.
void BM_ExportHistory(benchmark::State& state) {
  DeductWorld& w = DeductWorld::Get();
  constexpr uint64_t entries = 8192;
  const uint64_t to = w.ledger.history_entries_total() + 1;
  std::vector<HistoryRecord> records;
  for (auto _ : state) {
    records.clear();
    w.ledger.ExportHistory(to - entries, to, &records);
    benchmark::DoNotOptimize(records.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * entries));
}
BENCHMARK(BM_ExportHistory)->MinTime(1.0)->UseRealTime();

// BM_VisitHistory: the same entries through Ledger::VisitHistory, each
// ref's fields stored into a 96-byte slot of a reused buffer (what
// wal::HistoryFile does before its checksum), with no intermediate records.
void BM_VisitHistory(benchmark::State& state) {
  DeductWorld& w = DeductWorld::Get();
  constexpr uint64_t entries = 8192;
  const uint64_t to = w.ledger.history_entries_total() + 1;
  std::vector<char> buffer(entries * 96);
  for (auto _ : state) {
    char* at = buffer.data();
    w.ledger.VisitHistory(to - entries, to, [&at](const HistoryEntryRef& e) {
      std::memcpy(at, &e.org_id, 8);
      std::memcpy(at + 8, &e.wallet_id, 8);
      std::memcpy(at + 16, &e.time_us, 8);
      std::memcpy(at + 48, &e.amount, 8);
      std::memcpy(at + 56, &e.balance_after, 8);
      std::memcpy(at + 64, &e.related_id, 8);
      std::memcpy(at + 72, &e.prev_seq, 8);
      at += 96;
    });
    benchmark::DoNotOptimize(buffer.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * entries));
}
BENCHMARK(BM_VisitHistory)->MinTime(1.0)->UseRealTime();

// BM_Deduct: the metered hot path, one history entry per deduct, random
// wallets among 1,000,000: the target (>= 10 M/s).
void BM_Deduct(benchmark::State& state) { RunDeducts(state, /*rollup=*/false, /*hot=*/false); }
BENCHMARK(BM_Deduct)->MinTime(3.0)->UseRealTime();

// BM_DeductRandomOpIds: BM_Deduct with op ids that look random, as
// callers' random idempotency keys do, where BM_Deduct's are numbered in
// sequence, as a client's counter makes them.
void BM_DeductRandomOpIds(benchmark::State& state) {
  RunDeducts(state, /*rollup=*/false, /*hot=*/false, /*random_ids=*/true);
}
BENCHMARK(BM_DeductRandomOpIds)->MinTime(3.0)->UseRealTime();

// BM_DeductRollup: the same with deducts rolled up per wallet per minute.
void BM_DeductRollup(benchmark::State& state) { RunDeducts(state, /*rollup=*/true, /*hot=*/false); }
BENCHMARK(BM_DeductRollup)->MinTime(3.0)->UseRealTime();

// BM_DeductHotWallets: the same ledger, but every deduct goes to one of
// 1024 wallets, whose state stays in cache: the engine's own cost per
// deduct, without the cache misses of a random walk over 1,000,000 wallets.
void BM_DeductHotWallets(benchmark::State& state) {
  RunDeducts(state, /*rollup=*/false, /*hot=*/true);
}
BENCHMARK(BM_DeductHotWallets)->MinTime(3.0)->UseRealTime();

// BM_DeductSmallOpIdMemory: 1024 wallets with 3 lots each in a ledger whose
// op-id memory holds 4096 ids (the default holds 4,194,304): how much of a
// deduct's cost is remembering its op id in a table far bigger than cache.
void BM_DeductSmallOpIdMemory(benchmark::State& state) {
  constexpr uint64_t wallets = 1024;
  LedgerOptions options;
  options.op_ids_max = 4096;
  options.history_entries_max = uint64_t{1} << 20;
  Ledger ledger(options);
  Clock clock;
  std::vector<Command> setup = {OrgCreate(1)};
  MustApply(ledger, clock, setup);
  GiveEveryWalletThreeLots(ledger, clock, 1, 1, wallets);
  std::vector<uint64_t> sequence = RandomWallets(wallets, size_t{1} << 20, 5);
  size_t position = 0;
  std::vector<Command> batch(kDeductBatch, Deduct(1, 1, 1));
  BatchOutput out;
  for (auto _ : state) {
    for (Command& c : batch) {
      c.wallet_id = sequence[position];
      position = (position + 1) & (sequence.size() - 1);
      c.op_id = clock.next_op_id++;
    }
    clock.now_us += 1000;
    ledger.Apply(clock.now_us, batch, &out);
    benchmark::DoNotOptimize(out.results.data());
  }
  if (out.results.empty() || out.results[0].code != ResultCode::ok) {
    state.SkipWithError("a deduct was refused");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * kDeductBatch);
  state.counters["wallets"] = wallets;
  state.counters["op_ids_max"] = static_cast<double>(options.op_ids_max);
}
BENCHMARK(BM_DeductSmallOpIdMemory)->MinTime(3.0)->UseRealTime();

// ---------------------------------------------------------------------------
// Allocate: pool -> a list of wallets.
// ---------------------------------------------------------------------------

struct AllocateWorld {
  static constexpr uint64_t wallets = 100'000;
  Ledger ledger;
  Clock clock;
  std::vector<uint64_t> sequence;
  size_t position = 0;

  AllocateWorld() {
    std::vector<Command> setup = {OrgCreate(1), Topup(1, int64_t{1} << 62)};
    for (uint64_t w = 1; w <= wallets; ++w) setup.push_back(WalletUpsert(1, w));
    MustApply(ledger, clock, setup);
    sequence = RandomWallets(wallets, size_t{1} << 20, 7);
  }
  static AllocateWorld& Get() {
    static AllocateWorld* world = new AllocateWorld();
    return *world;
  }
};

void BM_Allocate(benchmark::State& state) {
  AllocateWorld& w = AllocateWorld::Get();
  const size_t targets_per_command = static_cast<size_t>(state.range(0));
  std::vector<WalletAmount> targets(targets_per_command);
  Command c;
  c.kind = CommandKind::allocate;
  c.org_id = 1;
  BatchOutput out;
  for (auto _ : state) {
    for (WalletAmount& t : targets) {
      t.wallet_id = w.sequence[w.position];
      t.amount = 1;
      w.position = (w.position + 1) & (w.sequence.size() - 1);
    }
    c.targets = targets;
    c.op_id = w.clock.next_op_id++;
    w.clock.now_us += 1000;
    w.ledger.Apply(w.clock.now_us, std::span<const Command>(&c, 1), &out);
    if (out.results[0].code != ResultCode::ok) {
      state.SkipWithError("allocate refused");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * targets_per_command));
  state.counters["targets"] = static_cast<double>(targets_per_command);
}
BENCHMARK(BM_Allocate)->Arg(16)->Arg(1024)->Arg(allocate_targets_max)->UseRealTime();

// ---------------------------------------------------------------------------
// Expiry sweep: 60,000 wallets whose lots all expire at once.
// ---------------------------------------------------------------------------

void BM_ExpirySweep(benchmark::State& state) {
  constexpr uint64_t wallets = 60'000;  // below sweep_lots_max: one sweep command
  Ledger ledger;
  Clock clock;
  {
    std::vector<Command> setup = {OrgCreate(1)};
    for (uint64_t w = 1; w <= wallets; ++w) setup.push_back(WalletUpsert(1, w));
    MustApply(ledger, clock, setup);
  }
  Command sweep;
  sweep.kind = CommandKind::expire_sweep;
  BatchOutput out;
  int64_t expired = 0;
  for (auto _ : state) {
    state.PauseTiming();
    // A pool lot that expires in a second, spread over every wallet.
    Command all;
    all.kind = CommandKind::allocate;
    all.flags = flag_all;
    all.org_id = 1;
    all.amount = 1;
    std::vector<Command> setup = {Topup(1, wallets, clock.now_us + kSecondUs), all};
    MustApply(ledger, clock, setup);
    clock.now_us += 2 * kSecondUs;
    state.ResumeTiming();

    ledger.Apply(clock.now_us, std::span<const Command>(&sweep, 1), &out);
    if (out.results[0].code != ResultCode::ok || out.results[0].n[2] != 0) {
      state.SkipWithError("the sweep did not finish in one command");
      break;
    }
    expired += out.results[0].n[0];
  }
  state.SetItemsProcessed(expired);
  state.counters["lots_per_sweep"] =
      static_cast<double>(expired) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_ExpirySweep)->Unit(benchmark::kMillisecond)->UseRealTime();

// ---------------------------------------------------------------------------
// History page: 2,000,000 deducts over 10,000 wallets, then pages of 100.
// ---------------------------------------------------------------------------

struct HistoryWorld {
  static constexpr uint64_t wallets = 10'000;
  static constexpr uint64_t deducts = 2'000'000;
  Ledger ledger;
  Clock clock;
  std::vector<uint64_t> sequence;
  size_t position = 0;

  HistoryWorld() {
    std::vector<Command> setup = {OrgCreate(1)};
    MustApply(ledger, clock, setup);
    GiveEveryWalletThreeLots(ledger, clock, 1, 1, wallets);
    std::vector<uint64_t> ids = RandomWallets(wallets, deducts, 3);
    std::vector<Command> work;
    work.reserve(deducts);
    for (uint64_t id : ids) work.push_back(Deduct(1, id, 1));
    for (size_t begin = 0; begin < work.size(); begin += 4096) {
      clock.now_us += kSecondUs / 100;
      MustApply(
          ledger, clock,
          std::span<Command>(work).subspan(begin, std::min<size_t>(4096, work.size() - begin)));
    }
    sequence = RandomWallets(wallets, size_t{1} << 16, 11);
  }
  static HistoryWorld& Get() {
    static HistoryWorld* world = new HistoryWorld();
    return *world;
  }
};

// Arg 0: one wallet's newest 100.  Arg 1: the org's newest 100, then older
// pages by cursor.  Arg 2: one wallet, only its grants (3 among ~200
// entries: the filter walks the whole chain).
void BM_HistoryPage(benchmark::State& state) {
  HistoryWorld& w = HistoryWorld::Get();
  const int64_t mode = state.range(0);
  HistoryQuery q;
  q.org_id = 1;
  q.limit = 100;
  int64_t entries = 0;
  uint64_t org_cursor = 0;
  for (auto _ : state) {
    q.wallet_id = w.sequence[w.position];
    w.position = (w.position + 1) & (w.sequence.size() - 1);
    q.all_wallets = mode == 1;
    q.cursor = mode == 1 ? org_cursor : 0;
    q.kind_mask = mode == 2 ? (1u << static_cast<int>(HistoryKind::grant)) : 0;
    auto page = w.ledger.GetHistory(q);
    if (!page.ok()) {
      state.SkipWithError("history query failed");
      break;
    }
    entries += static_cast<int64_t>(page->entries.size());
    if (mode == 1) org_cursor = page->next_cursor;
    benchmark::DoNotOptimize(page->entries.data());
  }
  state.SetItemsProcessed(entries);
  state.counters["entries_per_page"] =
      static_cast<double>(entries) / static_cast<double>(state.iterations());
  state.SetLabel(mode == 0 ? "wallet" : mode == 1 ? "org, paged" : "wallet, kind filter");
}
BENCHMARK(BM_HistoryPage)->Arg(0)->Arg(1)->Arg(2)->UseRealTime();

// ---------------------------------------------------------------------------
// Memory, measured with mallinfo2.
// ---------------------------------------------------------------------------

// BM_MemoryWalletWithOneLot: 1,000,000 wallets each with one lot, allocated
// from the pool (8192 targets a command), measured from a warm ledger whose
// history ring is one chunk (already allocated) and whose op-id memory is
// tiny, so the growth is the wallets alone.  "granted" repeats it with one
// grant per wallet, which adds the grant's own record.
void MeasureWallets(benchmark::State& state, bool granted) {
  for (auto _ : state) {
    LedgerOptions options;
    options.history_entries_max = history_chunk_entries;
    options.op_ids_max = 1024;
    auto ledger = std::make_unique<Ledger>(options);
    Clock clock;
    std::vector<Command> warm = {OrgCreate(1), Topup(1, int64_t{1} << 50)};
    for (uint64_t i = 0; i < history_chunk_entries; ++i) warm.push_back(Deduct(1, 0, 1));
    MustApply(*ledger, clock, warm);

    const uint64_t wallets_before = ledger->wallet_count();
    const size_t heap_before = HeapBytes();
    if (granted) {
      std::vector<Command> grants;
      grants.reserve(kMillionWallets);
      for (uint64_t w = 1; w <= kMillionWallets; ++w) {
        grants.push_back(Grant(1, w, 10, 0, 0));
      }
      const size_t command_bytes = grants.capacity() * sizeof(Command);
      MustApply(*ledger, clock, grants);
      const size_t heap_after = HeapBytes();
      state.counters["bytes_per_wallet"] =
          (static_cast<double>(heap_after) - static_cast<double>(heap_before) -
           static_cast<double>(command_bytes)) /
          static_cast<double>(ledger->wallet_count() - wallets_before);
    } else {
      std::vector<WalletAmount> targets(allocate_targets_max);
      BatchOutput out;
      uint64_t next = 1;
      const size_t scratch_bytes = targets.capacity() * sizeof(WalletAmount);
      while (next <= kMillionWallets) {
        size_t n = std::min<uint64_t>(allocate_targets_max, kMillionWallets - next + 1);
        for (size_t i = 0; i < n; ++i) targets[i] = WalletAmount{next++, 10};
        Command c;
        c.kind = CommandKind::allocate;
        c.org_id = 1;
        c.op_id = clock.next_op_id++;
        c.targets = std::span<const WalletAmount>(targets.data(), n);
        ledger->Apply(clock.now_us, std::span<const Command>(&c, 1), &out);
        if (out.results[0].code != ResultCode::ok) {
          state.SkipWithError("allocate refused");
          return;
        }
      }
      out = BatchOutput{};
      const size_t heap_after = HeapBytes();
      state.counters["bytes_per_wallet"] =
          (static_cast<double>(heap_after) - static_cast<double>(heap_before) -
           static_cast<double>(scratch_bytes)) /
          static_cast<double>(ledger->wallet_count() - wallets_before);
    }
    state.counters["wallets"] = static_cast<double>(ledger->wallet_count() - wallets_before);
  }
}

void BM_MemoryWalletWithOneLot(benchmark::State& state) { MeasureWallets(state, false); }
BENCHMARK(BM_MemoryWalletWithOneLot)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_MemoryWalletWithOneGrantedLot(benchmark::State& state) { MeasureWallets(state, true); }
BENCHMARK(BM_MemoryWalletWithOneGrantedLot)->Iterations(1)->Unit(benchmark::kMillisecond);

// BM_MemoryHistoryEntry: 4,194,304 deducts beyond a warm state (1024 wallets
// with a lot each, 65,536 entries and the op-id memory already at its
// bound), with room for every entry in RAM.  The ring grows a chunk of
// history_chunk_entries at a time; N is a multiple of the chunk.
void BM_MemoryHistoryEntry(benchmark::State& state) {
  constexpr uint64_t wallets = 1024;
  constexpr uint64_t entries = uint64_t{1} << 22;
  constexpr uint64_t batch = 4096;
  for (auto _ : state) {
    LedgerOptions options;
    options.history_entries_max = uint64_t{1} << 23;
    options.op_ids_max = 1024;
    auto ledger = std::make_unique<Ledger>(options);
    Clock clock;
    std::vector<Command> warm = {OrgCreate(1)};
    for (uint64_t w = 1; w <= wallets; ++w) warm.push_back(Grant(1, w, kLotAmount, 0, 0));
    MustApply(*ledger, clock, warm);
    std::vector<Command> deducts(batch, Deduct(1, 1, 1));
    uint64_t w = 0;
    auto fill = [&] {
      for (Command& c : deducts) c.wallet_id = 1 + (w++ % wallets);
    };
    // Warm up to the start of a fresh chunk.
    while (ledger->history_entries_total() % history_chunk_entries != 0 ||
           ledger->history_entries_total() < history_chunk_entries) {
      uint64_t total = ledger->history_entries_total();
      uint64_t to_boundary = history_chunk_entries - total % history_chunk_entries;
      std::vector<Command> some(std::min<uint64_t>(to_boundary, batch), Deduct(1, 1, 1));
      MustApply(*ledger, clock, some);
    }
    BatchOutput out;
    out.results.reserve(batch);
    out.events.reserve(batch);
    const uint64_t entries_before = ledger->history_entries_total();
    const size_t heap_before = HeapBytes();
    for (uint64_t done = 0; done < entries; done += batch) {
      fill();
      for (Command& c : deducts) c.op_id = clock.next_op_id++;
      clock.now_us += 1000;
      ledger->Apply(clock.now_us, deducts, &out);
    }
    const size_t heap_after = HeapBytes();
    const uint64_t added = ledger->history_entries_total() - entries_before;
    state.counters["bytes_per_entry"] =
        (static_cast<double>(heap_after) - static_cast<double>(heap_before)) /
        static_cast<double>(added);
    state.counters["entries"] = static_cast<double>(added);
  }
}
BENCHMARK(BM_MemoryHistoryEntry)->Iterations(1)->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// Snapshots of the deduct world: 1,000,000 wallets with 3 lots each, 4 Mi
// history entries and 4 Mi op ids remembered (issue 3: start from a snapshot
// of a million wallets in <= 1 s).

void BM_SnapshotEncode(benchmark::State& state) {
  DeductWorld& w = DeductWorld::Get();
  std::string bytes;
  for (auto _ : state) {
    bytes.clear();
    w.ledger.EncodeSnapshot(&bytes);
    benchmark::DoNotOptimize(bytes.data());
  }
  state.counters["snapshot_mb"] = static_cast<double>(bytes.size()) / 1e6;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_SnapshotEncode)->Iterations(3)->Unit(benchmark::kMillisecond);

void BM_SnapshotDecode(benchmark::State& state) {
  DeductWorld& w = DeductWorld::Get();
  std::string bytes;
  w.ledger.EncodeSnapshot(&bytes);
  for (auto _ : state) {
    auto restored = Ledger::DecodeSnapshot(bytes, DeductWorld::Options());
    if (!restored.ok()) state.SkipWithError("decode failed");
    benchmark::DoNotOptimize(restored);
  }
  state.counters["snapshot_mb"] = static_cast<double>(bytes.size()) / 1e6;
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * bytes.size()));
}
BENCHMARK(BM_SnapshotDecode)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tally

BENCHMARK_MAIN();
