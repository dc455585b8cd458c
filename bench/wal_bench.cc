// wal_bench.cc: what durability costs (issue 3's targets).
//
//   log append with group commit   >= 80 % of a raw write+fdatasync loop of the
//                                  same sizes, measured side by side      (BM_GroupCommit)
//   replay                         >= 10 M operations/s                    (BM_Replay)
//   start with 1,000,000 wallets   <= 1 s from a snapshot                  (BM_StartFromSnapshot)
//   longest writer pause while a   <= 20 ms with 1,000,000 wallets         (BM_SnapshotWriterPause)
//   snapshot is taken
//   a ~100-byte record's write + fdatasync, fallocated vs zero-filled
//   segment (no target: what wal/FORMAT.md's zero-filled spare buys)      (BM_SmallRecordSync)
//
// Everything is on real files under $TALLY_BENCH_DIR (default /tmp), removed
// at the end.  The million-wallet world is ledger_bench's BM_Deduct world
// (4 orgs, 3 lots each from its own grant, 4 Mi history entries, op ids
// turned over), built once and written as a store whose snapshot holds it.
//
//   make bench-wal
//   ./build/release/bench/wal_bench --benchmark_filter=GroupCommit
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/ledger.h"
#include "tally/codec.h"
#include "tally/commands.h"
#include "tally/limits.h"
#include "wal/file.h"
#include "wal/huge_page_heap.h"
#include "wal/log_reader.h"
#include "wal/log_writer.h"
#include "wal/manifest.h"
#include "wal/store.h"

namespace tally::wal {
namespace {

constexpr int64_t kT0 = int64_t{1'700'000'040} * 1'000'000;
constexpr int64_t kDayUs = int64_t{24} * 3600 * 1'000'000;
constexpr uint64_t kOrgs = 4;
constexpr uint64_t kWalletsPerOrg = 250'000;
constexpr uint64_t kWallets = kOrgs * kWalletsPerOrg;
constexpr uint32_t kDeductBatch = 1024;
constexpr int64_t kLotAmount = int64_t{1} << 40;

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// StatusKb reads a "Name:   123 kB" line of /proc/self/status (0 if absent).
double StatusKb(const char* name) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  double kb = 0;
  const size_t n = std::strlen(name);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, name, n) == 0 && line[n] == ':') kb = std::atof(line + n + 1);
  }
  std::fclose(f);
  return kb;
}

// ThreadCpuMs is the CPU time this thread has used: a pause measured in it
// leaves out the time the thread waited for a core (the machine is shared).
double ThreadCpuMs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// ProcessCpuS is the CPU time of the whole process (every thread, also
// those that ended), in seconds.
double ProcessCpuS() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// ThreadMinorFaults counts this thread's minor page faults so far: after a
// fork, each copy-on-write of a page the writer touches is one.
int64_t ThreadMinorFaults() {
  rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "wal_bench: %s\n", what.c_str());
  std::abort();
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) Die(std::string(what) + ": " + std::string(s.message()));
}

// BenchRoot is this run's directory; never destroyed, so the atexit hook
// that removes it can still read it.
const std::string& BenchRoot() {
  static const std::string* root = [] {
    const char* base = std::getenv("TALLY_BENCH_DIR");
    auto* tmpl =
        new std::string(std::string(base != nullptr ? base : "/tmp") + "/tally-wal-bench-XXXXXX");
    if (mkdtemp(tmpl->data()) == nullptr) Die("mkdtemp " + *tmpl);
    return tmpl;
  }();
  static const bool hooked = [] {
    return std::atexit([] { std::filesystem::remove_all(*root); }) == 0;
  }();
  (void)hooked;
  return *root;
}

LedgerOptions WorldLedgerOptions() {
  LedgerOptions options;
  options.history_entries_max = uint64_t{1} << 22;
  return options;
}

StoreOptions WorldStoreOptions() {
  StoreOptions options;
  options.ledger = WorldLedgerOptions();
  options.snapshots_kept = 1;
  options.log_sink = [](std::string_view) {};
  return options;
}

// Deducts hands out batches of deducts over random wallets of the world.
// Each user gets its own op-id range: a repeated id would be a retry.
struct Deducts {
  explicit Deducts(uint64_t user) : rng(user), next_op_id(user << 48) {}
  std::mt19937_64 rng;
  uint64_t next_op_id;
  std::vector<Command> batch = std::vector<Command>(kDeductBatch, cmd::Deduct(1, 1, 1));

  std::span<const Command> Next() {
    for (Command& c : batch) {
      const uint64_t id = rng() % kWallets;
      c.org_id = 1 + id / kWalletsPerOrg;
      c.wallet_id = 1 + id % kWalletsPerOrg;
      c.op_id = next_op_id++;
    }
    return batch;
  }
};

void MustApply(Ledger& ledger, int64_t time_us, std::span<Command> commands, uint64_t* op_id) {
  BatchOutput out;
  for (size_t begin = 0; begin < commands.size(); begin += batch_commands_max) {
    const size_t n = std::min<size_t>(batch_commands_max, commands.size() - begin);
    std::span<Command> batch = commands.subspan(begin, n);
    for (Command& c : batch) c.op_id = (*op_id)++;
    ledger.Apply(time_us, batch, &out);
    for (const Result& r : out.results) {
      if (!r.ok()) Die("world setup: a command was refused");
    }
  }
}

// World is the million-wallet store directory, pristine: benchmarks copy it.
struct World {
  std::string dir;
  uint64_t snapshot_bytes = 0;

  World() {
    dir = BenchRoot() + "/world";
    {
      Ledger ledger(WorldLedgerOptions());
      uint64_t op_id = 1;
      std::vector<Command> commands;
      for (uint64_t org = 1; org <= kOrgs; ++org) commands.push_back(cmd::OrgCreate(org));
      MustApply(ledger, kT0, commands, &op_id);
      for (uint64_t org = 1; org <= kOrgs; ++org) {
        commands.clear();
        for (uint64_t w = 1; w <= kWalletsPerOrg; ++w) {
          commands.push_back(cmd::Grant(org, w, kLotAmount, kT0 + 365 * kDayUs, 0));
          commands.push_back(cmd::Grant(org, w, kLotAmount, 0, 0));
          commands.push_back(cmd::Grant(org, w, kLotAmount, 0, 1));
        }
        MustApply(ledger, kT0, commands, &op_id);
      }
      // Wrap the history ring and turn the op-id memory over, as BM_Deduct's world.
      Deducts deducts(1);
      BatchOutput out;
      int64_t t = kT0;
      for (uint64_t i = 0; i < ((uint64_t{1} << 22) + (uint64_t{1} << 20)) / kDeductBatch; ++i) {
        ledger.Apply(t += 1000, deducts.Next(), &out);
      }
      PosixFileSystem fs;
      std::filesystem::create_directories(dir + "/wal");
      Check(WriteSnapshotFile(&fs, dir, ledger, 0), "world snapshot");
      Check(WriteManifest(&fs, dir, Manifest{.snapshot_lsns = {0}, .log_from_lsn = 1}),
            "world manifest");
    }
    // Open once: the history file is written out from the RAM window, and a
    // snapshot makes it durable, so later starts find everything in place.
    PosixFileSystem fs;
    auto store = Store::Open(&fs, dir, WorldStoreOptions());
    Check(store.status(), "open world");
    Check((*store)->WriteSnapshot().status(), "world snapshot with history");
    snapshot_bytes = std::filesystem::file_size(dir + "/" + SnapshotName(0));
    store->reset();
    malloc_trim(0);  // what fork() copies page tables for is what stays mapped
  }

  // CopyTo makes a fresh copy of the world's store directory, written out
  // before it returns: a copy left in the page cache (~1 GB) is written back
  // by the kernel's flusher 30 s later, in the middle of whatever is being
  // measured then (it was: the writer-pause figures before 2026-12-02 18:00
  // included that writeback).
  std::string CopyTo(const std::string& name) const {
    const std::string to = BenchRoot() + "/" + name;
    std::filesystem::remove_all(to);
    std::filesystem::copy(dir, to, std::filesystem::copy_options::recursive);
    for (const auto& entry : std::filesystem::recursive_directory_iterator(to)) {
      const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || ::fsync(fd) != 0) Die("sync the copied world");
      ::close(fd);
    }
    return to;
  }

  static World& Get() {
    static World* world = new World();
    return *world;
  }
};

// ---------------------------------------------------------------------------
// BM_GroupCommit/<record bytes>/<records per sync>: the log against the raw
// disk, alternating round by round in the same run so both see the same
// noise.  Raw = one pwrite of the same bytes (records + their 24-byte
// headers) into a file preallocated the same way, then fdatasync; a new
// preallocated file when the segment size is reached, as the log does.
// Raw direct = the same with O_DIRECT, as the log writes now: one pwrite of
// the whole blocks from the start of the last partial one (padded) from an
// aligned buffer, then fdatasync (log_vs_raw_direct_pct; 0 where the file
// system refuses O_DIRECT).
// ---------------------------------------------------------------------------
void BM_GroupCommit(benchmark::State& state) {
  const size_t record_bytes = static_cast<size_t>(state.range(0));
  const int per_sync = static_cast<int>(state.range(1));
  const std::string dir = BenchRoot() + "/group-commit";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/log");
  PosixFileSystem fs;
  auto writer = LogWriter::Create(&fs, dir + "/log", 1);
  Check(writer.status(), "log writer");
  std::vector<std::byte> payload(record_bytes);
  std::mt19937_64 rng(7);
  for (std::byte& b : payload) b = std::byte(rng());
  std::vector<std::byte> raw(per_sync * (record_bytes + kRecordHeaderBytes));
  for (std::byte& b : raw) b = std::byte(rng() | 1);

  int raw_fd = -1;
  uint64_t raw_offset = 0, raw_files = 0;
  auto raw_roll = [&] {
    if (raw_fd >= 0) ::close(raw_fd);
    const std::string path = dir + "/raw-" + std::to_string(raw_files++);
    raw_fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (raw_fd < 0 || ::posix_fallocate(raw_fd, 0, wal_segment_bytes_default) != 0) Die("raw file");
    ::fdatasync(raw_fd);
    raw_offset = kSegmentHeaderBytes;
  };
  raw_roll();

  // The raw O_DIRECT loop: its own file, made the same way.
  constexpr uint64_t kBlock = direct_io_alignment_bytes;
  int direct_fd = -1;
  uint64_t direct_offset = 0, direct_files = 0;
  AlignedBuffer direct_source(raw.size() + 2 * kBlock);
  std::byte* direct_bytes = direct_source.Append(raw.size() + 2 * kBlock);
  for (size_t i = 0; i < raw.size() + 2 * kBlock; ++i) direct_bytes[i] = std::byte(rng() | 1);
  auto direct_roll = [&] {
    if (direct_fd >= 0) ::close(direct_fd);
    const std::string path = dir + "/raw-direct-" + std::to_string(direct_files++);
    direct_fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC | O_DIRECT, 0644);
    if (direct_fd < 0) return;  // no O_DIRECT here
    if (::posix_fallocate(direct_fd, 0, wal_segment_bytes_default) != 0) Die("raw direct file");
    ::fdatasync(direct_fd);
    direct_offset = kSegmentHeaderBytes;
  };
  direct_roll();

  Clock::duration log_time{}, raw_time{}, direct_time{};
  for (auto _ : state) {
    auto t0 = Clock::now();
    for (int i = 0; i < per_sync; ++i) Check((*writer)->Append(RecordType::kBatch, payload).status(), "append");
    Check((*writer)->Sync(), "sync");
    auto t1 = Clock::now();
    if (raw_offset + raw.size() > wal_segment_bytes_default) raw_roll();
    if (::pwrite(raw_fd, raw.data(), raw.size(), static_cast<off_t>(raw_offset)) !=
        static_cast<ssize_t>(raw.size())) {
      Die("raw pwrite");
    }
    if (::fdatasync(raw_fd) != 0) Die("raw fdatasync");
    raw_offset += raw.size();
    auto t2 = Clock::now();
    if (direct_fd >= 0) {
      if (direct_offset + raw.size() > wal_segment_bytes_default) direct_roll();
      const uint64_t from = direct_offset / kBlock * kBlock;
      const uint64_t to = (direct_offset + raw.size() + kBlock - 1) / kBlock * kBlock;
      if (::pwrite(direct_fd, direct_bytes, to - from, static_cast<off_t>(from)) !=
          static_cast<ssize_t>(to - from)) {
        Die("raw direct pwrite");
      }
      if (::fdatasync(direct_fd) != 0) Die("raw direct fdatasync");
      direct_offset += raw.size();
    }
    auto t3 = Clock::now();
    log_time += t1 - t0;
    raw_time += t2 - t1;
    direct_time += t3 - t2;
  }
  ::close(raw_fd);
  if (direct_fd >= 0) ::close(direct_fd);
  writer->reset();
  std::filesystem::remove_all(dir);
  const double records = static_cast<double>(state.iterations()) * per_sync;
  const double bytes = records * static_cast<double>(record_bytes + kRecordHeaderBytes);
  state.counters["log_records_per_s"] = records / Seconds(log_time);
  state.counters["raw_records_per_s"] = records / Seconds(raw_time);
  state.counters["log_MB_per_s"] = bytes / Seconds(log_time) / 1e6;
  state.counters["raw_MB_per_s"] = bytes / Seconds(raw_time) / 1e6;
  state.counters["log_vs_raw_pct"] = 100.0 * Seconds(raw_time) / Seconds(log_time);
  if (direct_time.count() > 0) {
    state.counters["raw_direct_records_per_s"] = records / Seconds(direct_time);
    state.counters["log_vs_raw_direct_pct"] = 100.0 * Seconds(direct_time) / Seconds(log_time);
  }
}
BENCHMARK(BM_GroupCommit)
    ->Args({128, 1})
    ->Args({128, 64})
    ->Args({4096, 16})
    ->Args({65536, 4})
    ->MinTime(2.0)
    ->UseRealTime();

// ---------------------------------------------------------------------------
// BM_SmallRecordSync: write + fdatasync of one ~100-byte record (a 76-byte
// payload and its header: what one deduct's frame logs under the 50 x 1
// load), into a segment made the two ways of wal/FORMAT.md: preallocated
// with fallocate (unwritten extents: the first sync into each block also
// converts an extent and writes the inode) and zero-filled (the spare).
// Alternating in rounds of 500 syncs in the same run, so both see the same
// noise; per-sync latency quantiles and the mean, each way.
// ---------------------------------------------------------------------------
void BM_SmallRecordSync(benchmark::State& state) {
  constexpr uint64_t kRecordBytes = 100;
  constexpr int kRounds = 8, kSyncsPerRound = 500;
  const std::string dir = BenchRoot() + "/small-sync";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  PosixFileSystem fs;
  auto make = [&](const std::string& name, bool zero_filled) {
    auto file = fs.Open(dir + "/" + name, OpenMode::kCreate);
    Check(file.status(), "small-sync file");
    if (zero_filled) {
      const std::vector<std::byte> zeros(1 << 20);
      for (uint64_t at = 0; at < wal_segment_bytes_default; at += zeros.size()) {
        Check((*file)->PWrite(at, zeros), "zero-fill");
      }
    } else {
      Check((*file)->Preallocate(wal_segment_bytes_default), "fallocate");
    }
    Check((*file)->Sync(), "fsync");
    return std::move(*file);
  };
  std::unique_ptr<File> files[2] = {make("fallocated", false), make("zero-filled", true)};
  std::vector<std::byte> record(kRecordBytes, std::byte{0x5a});
  std::vector<double> us[2];
  uint64_t offset[2] = {kSegmentHeaderBytes, kSegmentHeaderBytes};
  for (auto _ : state) {
    for (int round = 0; round < kRounds; ++round) {
      for (int way = 0; way < 2; ++way) {
        for (int i = 0; i < kSyncsPerRound; ++i) {
          const auto t0 = Clock::now();
          Check(files[way]->PWrite(offset[way], record), "write");
          Check(files[way]->DataSync(), "fdatasync");
          us[way].push_back(Seconds(Clock::now() - t0) * 1e6);
          offset[way] += kRecordBytes;
        }
      }
    }
  }
  files[0].reset();
  files[1].reset();
  std::filesystem::remove_all(dir);
  const char* names[2] = {"fallocated", "zero_filled"};
  for (int way = 0; way < 2; ++way) {
    std::vector<double>& v = us[way];
    double sum = 0;
    for (double x : v) sum += x;
    std::sort(v.begin(), v.end());
    auto q = [&](double p) { return v[std::min(v.size() - 1, size_t(p * double(v.size())))]; };
    const std::string n = names[way];
    state.counters[n + "_p50_us"] = q(0.5);
    state.counters[n + "_p90_us"] = q(0.9);
    state.counters[n + "_p99_us"] = q(0.99);
    state.counters[n + "_mean_us"] = sum / double(v.size());
  }
}
BENCHMARK(BM_SmallRecordSync)->Iterations(1)->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// BM_StartFromSnapshot: Store::Open on the million-wallet store, nothing to
// replay (page cache warm: the file was just written or read).
// BM_StartFromSnapshot/P: P 0 has LedgerOptions::prefault off, 1 on, as
// tallyd runs (a prefault-load thread faults the new ledger's memory in
// beside the decode: docs/MEMORY.md).  On this VM a first write to fresh
// memory can cost a host fault; /1 shows what tallyd's start pays then.
// ---------------------------------------------------------------------------
void BM_StartFromSnapshot(benchmark::State& state) {
  World& world = World::Get();
  static const std::string dir = world.CopyTo("start");
  PosixFileSystem fs;
  StoreOptions options = WorldStoreOptions();
  options.ledger.prefault = state.range(0) != 0;
  double load_s = 0, total_s = 0, load_cpu_s = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    auto store = Store::Open(&fs, dir, options);
    const auto t1 = Clock::now();
    Check(store.status(), "open");
    if ((*store)->ledger().wallet_count() < kWallets) Die("the world is not there");
    load_s += (*store)->recovery().snapshot_load_s;
    load_cpu_s += (*store)->recovery().snapshot_load_cpu_s;
    total_s += Seconds(t1 - t0);
    state.SetIterationTime(Seconds(t1 - t0));
    state.PauseTiming();
    store->reset();  // freeing 2 GB is not part of a start
    state.ResumeTiming();
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["open_s"] = total_s / n;
  state.counters["snapshot_read_decode_s"] = load_s / n;
  state.counters["snapshot_read_decode_cpu_s"] = load_cpu_s / n;
  state.counters["snapshot_MB"] = static_cast<double>(world.snapshot_bytes) / 1e6;
  state.counters["wallets"] = static_cast<double>(kWallets);
}
BENCHMARK(BM_StartFromSnapshot)
    ->Arg(0)
    ->Arg(1)
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// BM_Replay: Store::Open replaying 4,194,304 deducts (4096 records of 1024)
// after the million-wallet snapshot.  replay_ops_per_s is the replay alone
// (read, checksum, decode, apply); read_decode_ops_per_s is the log layer
// without the engine (LogReader + DecodeBatch over the same log).
// BM_Replay/P/R: P 0 has LedgerOptions::prefault off, 1 on, as tallyd runs
// (a nice-19 thread faults the ring and the op-id memory in ahead of the
// replay, wal/prefaulter.h).  R 0 opens with the world's history window
// (4 Mi entries: the snapshot fills it, so the replay wraps into memory the
// snapshot load wrote); R 1 with 8 Mi, so the replay appends into fresh
// chunks, as a shard whose ring is not full yet does.  replay_cpu_s is the replaying thread's;
// prefault_cpu_s the rest of the process's during the open (the pre-fault
// thread, on the other core).
// ---------------------------------------------------------------------------
void BM_Replay(benchmark::State& state) {
  const bool prefault = state.range(0) != 0;
  World& world = World::Get();
  constexpr int kRecords = 4096;
  static const std::string dir = [&] {
    const std::string d = world.CopyTo("replay");
    PosixFileSystem fs;
    auto store = Store::Open(&fs, d, WorldStoreOptions());
    Check(store.status(), "open");
    Deducts deducts(2);
    BatchOutput out;
    int64_t t = (*store)->ledger().last_time_us();
    for (int i = 0; i < kRecords; ++i) {
      Check((*store)->Apply(t += 1000, deducts.Next(), &out).status(), "apply");
      if (i % 16 == 15) Check((*store)->Sync(), "sync");
    }
    Check((*store)->Sync(), "sync");
    return d;
  }();
  PosixFileSystem fs;
  double replay_s = 0, open_s = 0, read_decode_s = 0, replay_cpu_s = 0, read_decode_cpu_s = 0;
  double other_cpu_s = 0, prefaulted_mb = 0, open_faults = 0, replay_faults = 0;
  uint64_t records = 0;
  StoreOptions options = WorldStoreOptions();
  options.ledger.prefault = prefault;
  if (state.range(1) != 0) options.ledger.history_entries_max = uint64_t{1} << 23;
  for (auto _ : state) {
    const double process0 = ProcessCpuS();
    const double thread0 = ThreadCpuMs() / 1e3;
    const int64_t faults0 = ThreadMinorFaults();
    const auto t0 = Clock::now();
    auto store = Store::Open(&fs, dir, options);
    const auto t1 = Clock::now();
    other_cpu_s += (ProcessCpuS() - process0) - (ThreadCpuMs() / 1e3 - thread0);
    open_faults += static_cast<double>(ThreadMinorFaults() - faults0);
    if (store.ok()) replay_faults += static_cast<double>((*store)->recovery().replay_minor_faults);
    if (store.ok()) prefaulted_mb += static_cast<double>((*store)->recovery().replay_prefaulted_bytes) / 1e6;
    Check(store.status(), "open");
    records = (*store)->recovery().records_replayed;
    if (records != kRecords) Die("replayed the wrong number of records");
    replay_s += (*store)->recovery().replay_s;
    replay_cpu_s += (*store)->recovery().replay_cpu_s;
    open_s += Seconds(t1 - t0);
    state.SetIterationTime((*store)->recovery().replay_s);
    state.PauseTiming();
    store->reset();
    // The log layer alone.
    const auto r0 = Clock::now();
    const double rc0 = ThreadCpuMs();
    auto reader = LogReader::Open(&fs, dir + "/wal", {.start_lsn = 1});
    Check(reader.status(), "reader");
    LogRecord record;
    DecodedBatch batch;
    uint64_t commands = 0;
    while (true) {
      absl::StatusOr<bool> more = (*reader)->Next(&record);
      Check(more.status(), "read");
      if (!*more) break;
      Check(DecodeBatch(std::string_view(reinterpret_cast<const char*>(record.payload.data()),
                                         record.payload.size()),
                        &batch),
            "decode");
      commands += batch.commands.size();
    }
    read_decode_s += Seconds(Clock::now() - r0);
    read_decode_cpu_s += (ThreadCpuMs() - rc0) / 1e3;
    if (commands != uint64_t{kRecords} * kDeductBatch) Die("read the wrong number of commands");
    state.ResumeTiming();
  }
  const double n = static_cast<double>(state.iterations());
  const double ops = static_cast<double>(records) * kDeductBatch;
  state.counters["replay_ops_per_s"] = ops / (replay_s / n);
  state.counters["read_decode_ops_per_s"] = ops / (read_decode_s / n);
  // By CPU time of the thread: what the load of a shared machine leaves alone.
  state.counters["replay_ops_per_cpu_s"] = ops / (replay_cpu_s / n);
  state.counters["read_decode_ops_per_cpu_s"] = ops / (read_decode_cpu_s / n);
  state.counters["open_s"] = open_s / n;
  state.counters["replay_cpu_s"] = replay_cpu_s / n;
  state.counters["prefault_cpu_s"] = other_cpu_s / n;
  state.counters["prefaulted_MB"] = prefaulted_mb / n;
  state.counters["open_thread_faults"] = open_faults / n;
  state.counters["replay_thread_faults"] = replay_faults / n;
  state.counters["replayed_ops"] = ops;
}
BENCHMARK(BM_Replay)
    ->Args({0, 0})
    ->Args({1, 0})
    ->Args({0, 1})
    ->Args({1, 1})
    ->Iterations(3)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// ---------------------------------------------------------------------------
// BM_SnapshotWriterPause: the writer applies and syncs batches of 1024
// deducts over the million wallets and calls MaybeSnapshot between them, as
// the server's shard thread does; a snapshot becomes due after 256 batches.
// The pause is the longest writer iteration (apply + sync + MaybeSnapshot)
// while the snapshot is taken, against the longest before it.
// ---------------------------------------------------------------------------
void BM_SnapshotWriterPause(benchmark::State& state) {
  World& world = World::Get();
  static const std::string dir = world.CopyTo("pause");
  constexpr int64_t kEveryMs = 1'000'000;  // the bench moves this clock itself
  constexpr int kBaseline = 256;
  StoreOptions options = WorldStoreOptions();
  options.snapshot_every_ms = kEveryMs;
  // TALLY_FORK_RESERVE_MB: the store's fork reserve (StoreOptions), to compare
  // (0: none).
  if (const char* mb = std::getenv("TALLY_FORK_RESERVE_MB")) {
    options.fork_reserve_bytes = uint64_t(std::atoll(mb)) << 20;
  }
  PosixFileSystem fs;
  static Store* store = [&] {
    auto s = Store::Open(&fs, dir, options);
    Check(s.status(), "open");
    return s->release();
  }();
  static Deducts deducts(3);
  static int64_t now_ms = 0;
  BatchOutput out;
  int64_t t = store->ledger().last_time_us();
  // Per writer iteration: apply (engine + log buffer + history append),
  // sync (the group commit's fdatasync), MaybeSnapshot.
  struct Max {
    double apply = 0, sync = 0, maybe = 0, iteration = 0, cpu = 0;
  } before, during;
  double fork_call_ms = 0, fork_call_cpu_ms = 0, reap_call_ms = 0, snapshot_s = 0,
         during_sum_ms = 0;
  uint64_t during_n = 0;
  std::vector<double> during_iterations_ms;  // every iteration while the child ran
  // TALLY_PAUSE_TRACE=<file>: one line per iteration while the child ran
  // (seconds after the fork, apply, sync, MaybeSnapshot ms, CPU ms, minor
  // page faults).
  FILE* trace = std::getenv("TALLY_PAUSE_TRACE") ? std::fopen(std::getenv("TALLY_PAUSE_TRACE"), "w")
                                                 : nullptr;
  struct Worst {  // the longest iteration while the child ran, in parts
    double ms = 0, at_s = 0, apply_ms = 0, sync_ms = 0, maybe_ms = 0, cpu_ms = 0;
    int64_t minor_faults = 0;
  } worst;
  int64_t first_minor_faults = 0, during_minor_faults = 0, before_max_minor_faults = 0;
  for (auto _ : state) {
    Check(store->MaybeSnapshot(now_ms), "maybe snapshot");  // not due: the clock stands
    const uint64_t start_lsn = store->manifest().current_snapshot_lsn();
    bool started = false;
    Clock::time_point snapshot_start;
    for (int i = 0; i < 100'000; ++i) {
      if (i == kBaseline) now_ms += kEveryMs;  // now it is due
      // TALLY_PAUSE_COLD=<shell command>, run just before the snapshot is due:
      // e.g. one that touches and frees gigabytes, then sleeps until the VM
      // has given them back to its host, so fresh pages are as cold as on a
      // quiet machine (bench/RESULTS.md, 2026-12-02 21:55).
      if (i == kBaseline - 1 && std::getenv("TALLY_PAUSE_COLD") != nullptr) {
        (void)std::system(std::getenv("TALLY_PAUSE_COLD"));
      }
      const double c0 = ThreadCpuMs();
      const int64_t f0 = ThreadMinorFaults();
      const auto t0 = Clock::now();
      Check(store->Apply(t += 1000, deducts.Next(), &out).status(), "apply");
      const auto t1 = Clock::now();
      Check(store->Sync(), "sync");
      const auto t2 = Clock::now();
      const double c2 = ThreadCpuMs();
      const bool was_running = store->snapshot_running();
      Check(store->MaybeSnapshot(now_ms), "maybe snapshot");
      const auto t3 = Clock::now();
      const double c3 = ThreadCpuMs();
      const int64_t faults = ThreadMinorFaults() - f0;
      const double apply_ms = Seconds(t1 - t0) * 1e3, sync_ms = Seconds(t2 - t1) * 1e3,
                   maybe_ms = Seconds(t3 - t2) * 1e3, iteration_ms = Seconds(t3 - t0) * 1e3;
      const bool forked_now = !was_running && store->snapshot_running();
      Max& m = started || forked_now ? during : before;
      m.apply = std::max(m.apply, apply_ms);
      m.sync = std::max(m.sync, sync_ms);
      m.iteration = std::max(m.iteration, iteration_ms);
      m.cpu = std::max(m.cpu, c3 - c0);
      if (forked_now) {
        started = true;
        snapshot_start = t2;
        fork_call_ms = std::max(fork_call_ms, maybe_ms);
        fork_call_cpu_ms = std::max(fork_call_cpu_ms, c3 - c2);
      } else if (started) {
        m.maybe = std::max(m.maybe, maybe_ms);
        during_sum_ms += iteration_ms;
        ++during_n;
        during_iterations_ms.push_back(iteration_ms);
        if (during_n == 1) first_minor_faults = faults;
        during_minor_faults += faults;
        if (trace != nullptr) {
          std::fprintf(trace, "%.4f %.3f %.3f %.3f %.3f %lld\n", Seconds(t0 - snapshot_start),
                       apply_ms, sync_ms, maybe_ms, c3 - c0, static_cast<long long>(faults));
        }
        if (iteration_ms > worst.ms) {
          worst = Worst{iteration_ms, Seconds(t0 - snapshot_start), apply_ms, sync_ms, maybe_ms,
                        c3 - c0, faults};
        }
        if (!store->snapshot_running()) {  // reaped in this call
          reap_call_ms = std::max(reap_call_ms, maybe_ms);
          break;
        }
      } else {
        m.maybe = std::max(m.maybe, maybe_ms);
        before_max_minor_faults = std::max(before_max_minor_faults, faults);
      }
    }
    if (!started || store->manifest().current_snapshot_lsn() == start_lsn) {
      state.SkipWithError("no snapshot was taken");
      return;
    }
    snapshot_s = Seconds(Clock::now() - snapshot_start);
    // The writer's pause: the fork, or the longest iteration while the child ran.
    state.SetIterationTime(std::max(fork_call_ms, during.iteration) / 1e3);
  }
  state.counters["fork_call_ms"] = fork_call_ms;
  state.counters["fork_call_cpu_ms"] = fork_call_cpu_ms;
  state.counters["reap_call_ms"] = reap_call_ms;
  state.counters["during_max_iteration_ms"] = during.iteration;
  state.counters["during_max_iteration_cpu_ms"] = during.cpu;
  state.counters["before_max_iteration_cpu_ms"] = before.cpu;
  state.counters["during_max_apply_ms"] = during.apply;
  state.counters["during_max_sync_ms"] = during.sync;
  state.counters["during_mean_iteration_ms"] =
      during_n ? during_sum_ms / static_cast<double>(during_n) : 0;
  if (trace != nullptr) std::fclose(trace);
  // The tail, not only the one worst iteration (this VM's disk is shared).
  std::sort(during_iterations_ms.begin(), during_iterations_ms.end());
  auto quantile = [&](double q) {
    if (during_iterations_ms.empty()) return 0.0;
    return during_iterations_ms[std::min(during_iterations_ms.size() - 1,
                                         size_t(q * double(during_iterations_ms.size())))];
  };
  state.counters["during_p50_iteration_ms"] = quantile(0.5);
  state.counters["during_p99_iteration_ms"] = quantile(0.99);
  state.counters["during_iterations"] = double(during_iterations_ms.size());
  state.counters["during_iterations_over_20ms"] = double(std::count_if(
      during_iterations_ms.begin(), during_iterations_ms.end(), [](double ms) { return ms > 20; }));
  state.counters["during_worst_at_s"] = worst.at_s;  // after the fork
  state.counters["during_worst_apply_ms"] = worst.apply_ms;
  state.counters["during_worst_sync_ms"] = worst.sync_ms;
  state.counters["during_worst_maybe_ms"] = worst.maybe_ms;
  state.counters["during_worst_cpu_ms"] = worst.cpu_ms;
  state.counters["during_worst_minor_faults"] = double(worst.minor_faults);
  // Copy-on-write: the first iteration after the fork, and all of them.
  state.counters["during_first_minor_faults"] = double(first_minor_faults);
  state.counters["during_minor_faults"] = double(during_minor_faults);
  state.counters["before_max_minor_faults"] = double(before_max_minor_faults);
  state.counters["before_max_iteration_ms"] = before.iteration;
  state.counters["before_max_apply_ms"] = before.apply;
  state.counters["before_max_sync_ms"] = before.sync;
  state.counters["snapshot_s"] = snapshot_s;
  // What fork() copies: the page tables of everything mapped.
  state.counters["process_rss_MB"] = StatusKb("VmRSS") / 1e3;
  state.counters["page_tables_MB"] = StatusKb("VmPTE") / 1e3;
}
BENCHMARK(BM_SnapshotWriterPause)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tally::wal

// Run under the heap tallyd runs with (wal/huge_page_heap.h): re-executes
// once with glibc.malloc.hugetlb=1.  TALLY_HUGE_PAGE_HEAP=0 measures the
// ordinary 4 KiB heap.
int main(int argc, char** argv) {
  tally::wal::EnsureHugePageHeap(argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
