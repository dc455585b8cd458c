// History past the RAM window (wal/HISTORY.md): a ledger with the smallest
// window, its history file, and a twin ledger whose window holds everything
// as the reference.  Every query must answer exactly as the twin does.
#include "wal/history_file.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "tally/commands.h"
#include "tests/temp_dir.h"

namespace tally::wal {
namespace {

constexpr uint64_t kOrg = 1;
constexpr uint64_t kOtherOrg = 2;
constexpr int64_t kT0 = int64_t{1'700'000'040} * 1'000'000;
constexpr int64_t kSecond = 1'000'000;

// World applies the same batches to a small-window ledger (spilled to a
// history file) and to a twin that keeps everything in RAM.
class World {
 public:
  explicit World(WritePath write_path = WritePath::kPageCache) : small_(Small()), twin_(Big()) {
    fs_.SimulateDirect(write_path == WritePath::kDirect);
    HistoryRecovery report;
    file_ = HistoryFile::Open(&fs_, "/h", small_, &report, write_path).value();
  }
  // On another file system (a real directory), direct writes off.
  World(FileSystem* fs, const std::string& dir) : small_(Small()), twin_(Big()) {
    HistoryRecovery report;
    file_ = HistoryFile::Open(fs, dir, small_, &report).value();
  }
  static LedgerOptions Small() {
    LedgerOptions o;
    o.history_entries_max = 1;  // rounds up to one chunk (65,536 entries)
    return o;
  }
  static LedgerOptions Big() {
    LedgerOptions o;
    o.history_entries_max = uint64_t{1} << 20;
    return o;
  }

  void Apply(std::vector<Command> commands) {
    for (Command& c : commands) c.op_id = ++op_id_;
    time_us_ += kSecond;
    small_.Apply(time_us_, commands, &out_);
    twin_.Apply(time_us_, commands, &out_);
    ASSERT_TRUE(file_->Append(small_).ok());
  }

  // Build: two orgs, wallets 1..4 in kOrg and 9 in kOtherOrg, then `deducts`
  // small deducts spread over them, some with a reference, some refused
  // (refusals make no history).
  void Build(int deducts) {
    Apply({cmd::OrgCreate(kOrg), cmd::OrgCreate(kOtherOrg)});
    Apply({cmd::Topup(kOrg, 10'000'000), cmd::Topup(kOtherOrg, 1'000'000)});
    std::vector<WalletAmount> targets = {{1, 2'000'000}, {2, 2'000'000}, {3, 2'000'000}, {4, 10}};
    Command alloc = cmd::Allocate(kOrg, targets);
    std::vector<WalletAmount> other = {{9, 500'000}};
    Command alloc2 = cmd::Allocate(kOtherOrg, other);
    Apply({alloc, alloc2});
    std::mt19937_64 rng(11);
    std::vector<Command> batch;
    for (int i = 0; i < deducts; ++i) {
      uint64_t wallet = 1 + rng() % 4;
      Command c = wallet == 4 && i % 2 ? cmd::Deduct(kOtherOrg, 9, 1 + rng() % 3)
                                       : cmd::Deduct(kOrg, wallet, 1 + rng() % 3);
      if (i % 97 == 0) c.text = references_[i % 3];
      batch.push_back(c);
      if (batch.size() == 1000) {
        Apply(batch);
        batch.clear();
      }
    }
    if (!batch.empty()) Apply(batch);
  }

  MemFileSystem fs_;
  Ledger small_;
  Ledger twin_;
  std::unique_ptr<HistoryFile> file_;
  BatchOutput out_;
  uint64_t op_id_ = 0;
  int64_t time_us_ = kT0;
  std::string references_[3] = {"invoice 17", "api call", "report"};
};

// AllPages pages through `q` to the end with `get`, checking each page's size.
template <typename Get>
std::vector<HistoryEntryView> AllPages(HistoryQuery q, Get get, bool* truncated) {
  std::vector<HistoryEntryView> all;
  *truncated = false;
  for (int pages = 0; pages < 100000; ++pages) {
    absl::StatusOr<HistoryPage> page = get(q);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) break;
    EXPECT_LE(page->entries.size(), q.limit);
    all.insert(all.end(), page->entries.begin(), page->entries.end());
    *truncated = *truncated || page->truncated;
    if (page->next_cursor == 0) break;
    q.cursor = page->next_cursor;
  }
  return all;
}

// FromFile: every page of `q` from a history file over the small ledger.
// FromTwin: the same from the twin, the ledger big enough never to forget.
std::vector<HistoryEntryView> FromFile(const HistoryFile& file, const Ledger& ledger,
                                       const HistoryQuery& q, bool* truncated) {
  return AllPages(
      q, [&](const HistoryQuery& x) { return file.GetHistory(ledger, x); }, truncated);
}
std::vector<HistoryEntryView> FromTwin(const Ledger& twin, const HistoryQuery& q) {
  bool truncated = false;
  return AllPages(
      q, [&](const HistoryQuery& x) { return twin.GetHistory(x); }, &truncated);
}

void ExpectSame(const std::vector<HistoryEntryView>& got,
                const std::vector<HistoryEntryView>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(got[i].seq, want[i].seq);
    EXPECT_EQ(got[i].time_us, want[i].time_us);
    EXPECT_EQ(got[i].wallet_id, want[i].wallet_id);
    EXPECT_EQ(got[i].kind, want[i].kind);
    EXPECT_EQ(got[i].out, want[i].out);
    EXPECT_EQ(got[i].amount, want[i].amount);
    EXPECT_EQ(got[i].balance_after, want[i].balance_after);
    EXPECT_EQ(got[i].related_id, want[i].related_id);
    EXPECT_EQ(got[i].reference, want[i].reference);
    EXPECT_EQ(got[i].actor, want[i].actor);
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(HistoryFile, AWalletsWholeHistoryPagesPastTheRamWindow) {
  World w;
  w.Build(150'000);
  ASSERT_GT(w.small_.history_begin_seq(), 50'000u) << "the window must have moved";
  HistoryQuery q;
  q.org_id = kOrg;
  q.wallet_id = 2;
  q.limit = 777;
  bool truncated_ram = false, truncated_file = false;
  auto ram_only = AllPages(
      q, [&](const HistoryQuery& x) { return w.small_.GetHistory(x); }, &truncated_ram);
  EXPECT_TRUE(truncated_ram) << "the small ledger alone cannot reach the start";
  auto with_file = FromFile(*w.file_, w.small_, q, &truncated_file);
  auto twin = FromTwin(w.twin_, q);
  EXPECT_FALSE(truncated_file);
  EXPECT_GT(with_file.size(), ram_only.size());
  ExpectSame(with_file, twin);
  // The oldest entry is the allocation that created the wallet.
  EXPECT_EQ(with_file.back().kind, HistoryKind::allocate);
}

// With direct writes, the whole blocks of each batch's entries bypass the
// page cache (only the partial blocks at the ends of a write go through
// it), and what reads back is the same.
TEST(HistoryFile, DirectWritesTakeTheWholeBlocksAndReadBackTheSame) {
  World w(WritePath::kDirect);
  w.Build(150'000);
  const uint64_t direct = w.fs_.direct_bytes_written();
  const uint64_t cached = w.fs_.cached_bytes_written();
  EXPECT_GT(direct, 10 * cached) << "direct " << direct << ", cached " << cached;
  HistoryQuery q;
  q.org_id = kOrg;
  q.wallet_id = 1;
  q.limit = 1000;
  bool t1 = false;
  auto with_file = FromFile(*w.file_, w.small_, q, &t1);
  auto twin = FromTwin(w.twin_, q);
  EXPECT_FALSE(t1);
  ExpectSame(with_file, twin);
  ASSERT_TRUE(w.file_->Sync().ok());
  HistoryRecovery report;
  auto reopened = HistoryFile::Open(&w.fs_, "/h", w.small_, &report, WritePath::kDirect);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(report.entries_lost, 0u);
  EXPECT_EQ(report.entries_respilled, 0u);
}

// A batch bigger than one write (history_write_entries_max entries) is
// encoded from the ledger in several writes; entries with only an actor,
// only a reference, or both must keep their texts across the writes' ends,
// on either write path.
TEST(HistoryFile, BatchesBiggerThanAWriteKeepTheirTextsAcrossWrites) {
  for (WritePath path : {WritePath::kPageCache, WritePath::kDirect}) {
    SCOPED_TRACE(path == WritePath::kDirect ? "direct" : "page cache");
    World w(path);
    w.Build(0);
    const std::string actors[2] = {"alice", "a much longer actor name, to move the texts"};
    std::mt19937_64 rng(5);
    for (int b = 0; b < 8; ++b) {
      std::vector<Command> batch;
      for (int i = 0; i < 3 * static_cast<int>(history_write_entries_max) + 123; ++i) {
        Command c = cmd::Deduct(kOrg, 1 + rng() % 3, 1);
        if (i % 7 == 0) c.text = w.references_[i % 3];
        if (i % 11 == 0) c.actor = actors[i % 2];
        batch.push_back(c);
      }
      w.Apply(batch);
    }
    ASSERT_GT(w.small_.history_begin_seq(), 20'000u) << "the window must have moved";
    HistoryQuery q;
    q.org_id = kOrg;
    q.all_wallets = true;
    q.limit = 5000;
    bool t1 = false;
    auto with_file = FromFile(*w.file_, w.small_, q, &t1);
    auto twin = FromTwin(w.twin_, q);
    EXPECT_FALSE(t1);
    ExpectSame(with_file, twin);
    size_t only_actor = 0;
    for (const HistoryEntryView& e : with_file)
      only_actor += e.reference.empty() && !e.actor.empty();
    EXPECT_GT(only_actor, 1000u);
  }
}

// On a real file the entries file's pages are written out and dropped from
// the page cache a few MiB behind the end (HistoryFile::RecycleCache); what
// was dropped reads back from the disk the same, also after a reopen.
TEST(HistoryFile, OnARealFileDroppedPagesReadBackTheSame) {
  const tally::testing::TempDir temp("tally-history-test");
  const std::string dir = temp.path() + "/h";
  {
    PosixFileSystem fs;
    World w(&fs, dir);
    w.Build(200'000);  // 19 MB of entries: several steps written out and dropped
    ASSERT_GT(w.file_->entries() * history_record_bytes, 3 * history_cache_step_bytes);
    HistoryQuery q;
    q.org_id = kOrg;
    q.wallet_id = 1;
    q.limit = 1000;
    bool t1 = false;
    auto twin = FromTwin(w.twin_, q);
    ExpectSame(FromFile(*w.file_, w.small_, q, &t1), twin);
    EXPECT_FALSE(t1);
    ASSERT_TRUE(w.file_->Sync().ok());
    HistoryRecovery report;
    auto reopened = HistoryFile::Open(&fs, dir, w.small_, &report);
    ASSERT_TRUE(reopened.ok()) << reopened.status();
    EXPECT_EQ(report.entries_lost, 0u);
    EXPECT_EQ(report.entries_respilled, 0u);
    ExpectSame(FromFile(**reopened, w.small_, q, &t1), twin);
  }
}

TEST(HistoryFile, OrgHistoryWithFiltersMatchesTheTwin) {
  World w;
  w.Build(120'000);
  HistoryQuery q;
  q.org_id = kOrg;
  q.all_wallets = true;
  q.kind_mask = 1u << static_cast<uint8_t>(HistoryKind::deduct);
  q.from_us = kT0 + 5 * kSecond;
  q.to_us = kT0 + 60 * kSecond;
  q.limit = 5000;
  bool t1 = false;
  auto with_file = FromFile(*w.file_, w.small_, q, &t1);
  auto twin = FromTwin(w.twin_, q);
  EXPECT_FALSE(t1);
  ASSERT_FALSE(twin.empty());
  ExpectSame(with_file, twin);
  for (const HistoryEntryView& e : with_file) {
    EXPECT_NE(e.wallet_id, 9u) << "another org's entry";
  }
}

TEST(HistoryFile, BalanceAtAPastTimeBeyondTheWindow) {
  World w;
  w.Build(150'000);
  int64_t at = kT0 + 20 * kSecond;
  EXPECT_EQ(w.small_.BalanceAt(kOrg, 1, Asset::Credits(), at).status().code(),
            absl::StatusCode::kOutOfRange);
  for (uint64_t wallet : {1, 2, 3, 4}) {
    absl::StatusOr<int64_t> got = w.file_->BalanceAt(w.small_, kOrg, wallet, Asset::Credits(), at);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, *w.twin_.BalanceAt(kOrg, wallet, Asset::Credits(), at)) << wallet;
  }
}

TEST(HistoryFile, ReopenAfterSyncTrustsTheDiskAndRewritesOnlyTheUnsyncedTail) {
  World w;
  w.Build(100'000);
  ASSERT_TRUE(w.file_->Sync().ok());
  w.Build(0);  // org_create again is refused, topup and allocate add entries
  HistoryRecovery report;
  auto reopened = HistoryFile::Open(&w.fs_, "/h", w.small_, &report);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_EQ(report.entries_lost, 0u);
  EXPECT_GT(report.entries_respilled, 0u);
  EXPECT_LT(report.entries_respilled, 100u);
  EXPECT_EQ((*reopened)->entries(), w.small_.history_entries_total());
  HistoryQuery q;
  q.org_id = kOrg;
  q.wallet_id = 3;
  q.limit = 10000;
  bool t1 = false;
  ExpectSame(FromFile(**reopened, w.small_, q, &t1), FromTwin(w.twin_, q));
}

TEST(HistoryFile, EntriesOfALostLogTailAreNeverShownAndGetOverwritten) {
  // The file got entries of batches whose log records a crash then lost: the
  // recovered ledger is behind the file.  Model it with a ledger that
  // applied fewer batches.
  World w;
  w.Build(5'000);
  HistoryRecovery report;
  Ledger behind(World::Small());
  BatchOutput out;
  Command create = cmd::OrgCreate(kOrg);
  create.op_id = 1;
  behind.Apply(kT0, std::span(&create, 1), &out);
  Command topup = cmd::Topup(kOrg, 50);
  topup.op_id = 2;
  behind.Apply(kT0 + 1, std::span(&topup, 1), &out);
  auto file = HistoryFile::Open(&w.fs_, "/h", behind, &report);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->entries(), behind.history_entries_total());
  HistoryQuery q;
  q.org_id = kOrg;
  q.all_wallets = true;
  auto page = (*file)->GetHistory(behind, q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->entries.size(), 1u);
  EXPECT_EQ(page->entries[0].amount, 50);
}

TEST(HistoryFile, ADamagedOldEntryEndsTheWalkWithTruncatedNotWrongData) {
  World w;
  w.Build(150'000);
  ASSERT_TRUE(w.file_->Sync().ok());
  // Damage wallet 1's allocation entry (seq 5 or so; find it in the twin).
  HistoryQuery q;
  q.org_id = kOrg;
  q.wallet_id = 1;
  q.limit = 10000;
  bool t = false;
  auto twin = FromTwin(w.twin_, q);
  uint64_t seq = twin.back().seq;
  w.fs_.FlipBit("/h/entries", (seq - 1) * history_record_bytes + 50, 3);
  auto got = FromFile(*w.file_, w.small_, q, &t);
  EXPECT_TRUE(t);
  EXPECT_EQ(got.size(), twin.size() - 1);
  // And a start of the file layer that did not sync counts it as lost.
  w.fs_.Truncate("/h/synced", 0);
  HistoryRecovery report;
  ASSERT_TRUE(HistoryFile::Open(&w.fs_, "/h", w.small_, &report).ok());
  EXPECT_EQ(report.entries_lost, 1u);
}

TEST(HistoryFile, AFailedWriteIsReported) {
  World w;
  w.Build(10);
  w.fs_.FailWrite(EIO);
  Command c = cmd::Deduct(kOrg, 1, 1);
  c.op_id = 999'999;
  w.small_.Apply(w.time_us_ + kSecond, std::span(&c, 1), &w.out_);
  EXPECT_FALSE(w.file_->Append(w.small_).ok());
}

}  // namespace
}  // namespace tally::wal
