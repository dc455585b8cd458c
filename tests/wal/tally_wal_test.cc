// tally_wal_test.cc: the tally-wal binary on real store directories.
#include <sys/wait.h>

#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/engine/workload.h"
#include "tests/temp_dir.h"
#include "wal/file.h"
#include "wal/format.h"
#include "wal/store.h"

namespace tally::wal {
namespace {

using tally::testing::Workload;

struct ToolRun {
  int exit_code = -1;
  std::string out;  // stdout and stderr
};

ToolRun RunTool(const std::string& args) {
  ToolRun run;
  const std::string command = std::string(TALLY_WAL_BIN) + " " + args + " 2>&1";
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) return run;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) run.out.append(buf, n);
  const int status = pclose(p);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

class TallyWal : public ::testing::Test {
 protected:

  StoreOptions Options() {
    StoreOptions options;
    options.ledger.history_entries_max = 1 << 16;
    options.ledger.op_ids_max = 1 << 12;
    options.log.segment_bytes = 8 << 10;
    options.snapshots_kept = 1;
    options.archive = true;
    options.log_sink = [](std::string_view) {};
    return options;
  }

  // Fill writes `batches` batches at strictly increasing times, with a
  // snapshot every 40, and remembers the time and digest after batch `mark`.
  void Fill(const std::string& dir, uint64_t seed, int batches, int mark) {
    PosixFileSystem fs;
    auto store = Store::Open(&fs, dir, Options());
    ASSERT_TRUE(store.ok()) << store.status();
    Workload work(seed);
    BatchOutput out;
    int64_t t = 0;
    for (int b = 1; b <= batches; ++b) {
      std::vector<Command> batch = work.Next(1 + b % 15);
      t = std::max(t + 1000, work.now_us());
      ASSERT_TRUE((*store)->Apply(t, batch, &out).ok());
      ASSERT_TRUE((*store)->Sync().ok());
      if (b == mark) {
        mark_time_us_ = t;
        mark_digest_ = (*store)->ledger().Digest();
      }
      if (b % 40 == 0) {
        ASSERT_TRUE((*store)->WriteSnapshot().ok());
      }
    }
    final_digest_ = (*store)->ledger().Digest();
  }

  const tally::testing::TempDir temp_{"tally-wal-tool"};
  const std::string& root_ = temp_.path();
  int64_t mark_time_us_ = 0;
  uint64_t mark_digest_ = 0;
  uint64_t final_digest_ = 0;
};

TEST_F(TallyWal, VerifyACleanStoreExitsZero) {
  Fill(root_ + "/s", 51, 130, 0);
  ToolRun run = RunTool("verify " + root_ + "/s");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("MANIFEST"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("clean"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("DAMAGED"), std::string::npos) << run.out;
}

TEST_F(TallyWal, VerifyNamesADamagedRecordAndExitsOne) {
  Fill(root_ + "/s", 52, 130, 0);
  // A byte inside the first record of the newest archived segment.
  std::vector<std::pair<uint64_t, std::string>> archived;
  for (const auto& e : std::filesystem::directory_iterator(root_ + "/s/archive")) {
    if (auto lsn = ParseSegmentFileName(e.path().filename().string())) {
      archived.emplace_back(*lsn, e.path().string());
    }
  }
  ASSERT_FALSE(archived.empty());
  std::sort(archived.begin(), archived.end());
  const std::string path = archived.back().second;
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(kSegmentHeaderBytes + kRecordHeaderBytes + 1);
    f.put('\x5a');
  }
  ToolRun run = RunTool("verify " + root_ + "/s");
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_NE(run.out.find("DAMAGED " + path + ": damaged record at offset " +
                         std::to_string(kSegmentHeaderBytes)),
            std::string::npos)
      << run.out;
}

TEST_F(TallyWal, VerifyCatchesADamagedManifest) {
  Fill(root_ + "/s", 53, 50, 0);
  {
    std::fstream f(root_ + "/s/MANIFEST", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(3);
    f.put('X');
  }
  ToolRun run = RunTool("verify " + root_ + "/s");
  EXPECT_EQ(run.exit_code, 1) << run.out;
  EXPECT_NE(run.out.find("MANIFEST"), std::string::npos) << run.out;
}

TEST_F(TallyWal, UsageErrorsExitTwo) {
  EXPECT_EQ(RunTool("").exit_code, 2);
  EXPECT_EQ(RunTool("frobnicate " + root_).exit_code, 2);
  EXPECT_EQ(RunTool("verify " + root_ + "/missing").exit_code, 2);
  EXPECT_EQ(RunTool("replay " + root_ + " --until yesterday --to " + root_ + "/x").exit_code, 2);
  EXPECT_EQ(RunTool("dump " + root_ + " --yaml").exit_code, 2);
}

TEST_F(TallyWal, DumpPrintsOneLinePerRecord) {
  Fill(root_ + "/s", 54, 90, 0);
  ToolRun run = RunTool("dump " + root_ + "/s --json");
  ASSERT_EQ(run.exit_code, 0) << run.out.substr(0, 2000);
  std::vector<std::string> lines;
  size_t at = 0;
  while (at < run.out.size()) {
    size_t nl = run.out.find('\n', at);
    lines.push_back(run.out.substr(at, nl - at));
    at = nl + 1;
  }
  ASSERT_EQ(lines.size(), 90u) << "archived and live records, every one";
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_NE(lines[i].find("\"lsn\":" + std::to_string(i + 1) + ","), std::string::npos)
        << lines[i];
    EXPECT_EQ(lines[i].front(), '{');
    EXPECT_EQ(lines[i].back(), '}');
  }
  ToolRun text = RunTool("dump " + root_ + "/s");
  ASSERT_EQ(text.exit_code, 0);
  EXPECT_EQ(text.out.substr(0, 2), "1 ");
  EXPECT_NE(text.out.find(" commands: "), std::string::npos);
}

TEST_F(TallyWal, ReplayRebuildsTheStateAtATimeIntoAStoreThatOpens) {
  Fill(root_ + "/s", 55, 200, 97);  // snapshots at 40, 80, ...: from archive/ and the log
  ToolRun run = RunTool("replay " + root_ + "/s --until " + std::to_string(mark_time_us_) + " --to " +
                    root_ + "/new");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("lsn 97 "), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("digest " + Hex(mark_digest_)), std::string::npos) << run.out;
  PosixFileSystem fs;
  StoreOptions options = Options();
  auto rebuilt = Store::Open(&fs, root_ + "/new", options);
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status();
  EXPECT_EQ((*rebuilt)->ledger().Digest(), mark_digest_);
  EXPECT_EQ((*rebuilt)->last_lsn(), 97u);
  // Up to the end: the live digest.
  run = RunTool("replay " + root_ + "/s --until 2100-01-01T00:00:00Z --to " + root_ + "/all");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("digest " + Hex(final_digest_)), std::string::npos) << run.out;
  // Refuses to write over something.
  EXPECT_EQ(RunTool("replay " + root_ + "/s --until 1 --to " + root_ + "/all").exit_code, 2);
}

TEST_F(TallyWal, ADataDirectoryMeansEveryShard) {
  std::filesystem::create_directories(root_ + "/data");
  std::ofstream(root_ + "/data/shards") << "2\n";
  Fill(root_ + "/data/shard-0", 56, 60, 0);
  const uint64_t digest0 = final_digest_;
  Fill(root_ + "/data/shard-1", 57, 70, 0);
  const uint64_t digest1 = final_digest_;
  ToolRun run = RunTool("verify " + root_ + "/data");
  EXPECT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("shard-1/MANIFEST"), std::string::npos) << run.out;
  run = RunTool("replay " + root_ + "/data --until 2100-01-01T00:00:00Z --to " + root_ + "/new");
  ASSERT_EQ(run.exit_code, 0) << run.out;
  EXPECT_NE(run.out.find("shard-0: lsn 60 "), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("digest " + Hex(digest0)), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("digest " + Hex(digest1)), std::string::npos) << run.out;
  EXPECT_TRUE(std::filesystem::exists(root_ + "/new/shards"));
  run = RunTool("dump " + root_ + "/data");
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_EQ(std::count(run.out.begin(), run.out.end(), '\n'), 130);
}

}  // namespace
}  // namespace tally::wal
