// codec_test.cc: a batch survives encoding exactly, and bad bytes are refused.
#include "tally/codec.h"

#include <random>
#include <string>
#include <vector>

#include "engine/ledger.h"
#include "gtest/gtest.h"
#include "tally/commands.h"

namespace tally {
namespace {

constexpr int64_t kT0 = int64_t{1'700'000'000} * 1'000'000;

void ExpectSameCommand(const Command& a, const Command& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.settings_mask, b.settings_mask);
  EXPECT_EQ(a.priority, b.priority);
  EXPECT_EQ(a.op_id, b.op_id);
  EXPECT_EQ(a.org_id, b.org_id);
  EXPECT_EQ(a.wallet_id, b.wallet_id);
  EXPECT_EQ(a.target_id, b.target_id);
  EXPECT_EQ(a.asset, b.asset);
  EXPECT_EQ(a.amount, b.amount);
  EXPECT_EQ(a.expires_at_us, b.expires_at_us);
  if (a.settings_mask != 0) {
    EXPECT_EQ(a.settings.credit_payments, b.settings.credit_payments);
    EXPECT_EQ(a.settings.low_balance_threshold, b.settings.low_balance_threshold);
    EXPECT_EQ(a.settings.expiring_soon_window_us, b.settings.expiring_soon_window_us);
    EXPECT_EQ(a.settings.deduct_rollup_interval_us, b.settings.deduct_rollup_interval_us);
  }
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.actor, b.actor);
  ASSERT_EQ(a.targets.size(), b.targets.size());
  for (size_t i = 0; i < a.targets.size(); ++i) {
    EXPECT_EQ(a.targets[i].wallet_id, b.targets[i].wallet_id);
    EXPECT_EQ(a.targets[i].amount, b.targets[i].amount);
  }
}

// RandomCommands covers every field with values from the whole range.
struct RandomCommands {
  std::vector<Command> commands;
  std::vector<std::string> texts;
  std::vector<std::vector<WalletAmount>> targets;

  explicit RandomCommands(uint64_t seed, size_t n) {
    std::mt19937_64 rng(seed);
    texts.reserve(2 * n);
    targets.reserve(n);
    const Asset assets[] = {Asset::Credits(), *Asset::Parse("USD"), *Asset::Parse("api_calls"),
                            *Asset::Parse("sixteen_chars_ab")};
    for (size_t i = 0; i < n; ++i) {
      Command c;
      c.kind = static_cast<CommandKind>(1 + rng() % command_kind_max);
      c.flags = static_cast<uint8_t>(rng() % 8);
      c.priority = static_cast<int32_t>(rng());
      c.op_id = rng();
      c.org_id = rng() % 4 == 0 ? rng() : rng() % 10;
      c.wallet_id = rng() % 3 == 0 ? 0 : rng();
      c.target_id = rng() % 2 == 0 ? 0 : rng();
      c.asset = assets[rng() % 4];
      c.amount = static_cast<int64_t>(rng());
      c.expires_at_us = rng() % 2 == 0 ? 0 : static_cast<int64_t>(rng());
      if (rng() % 4 == 0) {
        c.settings_mask = static_cast<uint8_t>(1 + rng() % settings_all);
        c.settings.credit_payments = rng() % 2 == 0;
        c.settings.low_balance_threshold = static_cast<int64_t>(rng());
        c.settings.expiring_soon_window_us = static_cast<int64_t>(rng());
        c.settings.deduct_rollup_interval_us = static_cast<int64_t>(rng());
      }
      texts.push_back(std::string(rng() % (text_bytes_max + 1), 'a' + static_cast<char>(i % 26)));
      texts.push_back(rng() % 2 == 0 ? std::string() : "token:" + std::to_string(rng()));
      c.text = texts[texts.size() - 2];
      c.actor = texts.back();
      targets.emplace_back(rng() % 3 == 0 ? 1 + rng() % 50 : 0);
      for (WalletAmount& t : targets.back()) t = {rng(), static_cast<int64_t>(rng())};
      c.targets = targets.back();
      commands.push_back(c);
    }
  }
};

TEST(Codec, EveryFieldRoundTrips) {
  RandomCommands in(1, 2000);
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, in.commands, &bytes).ok());
  DecodedBatch out;
  ASSERT_TRUE(DecodeBatch(bytes, &out).ok());
  EXPECT_EQ(out.time_us, kT0);
  ASSERT_EQ(out.commands.size(), in.commands.size());
  for (size_t i = 0; i < in.commands.size(); ++i) {
    SCOPED_TRACE(i);
    ExpectSameCommand(in.commands[i], out.commands[i]);
  }
  // Encoding what was decoded gives the same bytes: one encoding per batch.
  std::string again;
  ASSERT_TRUE(EncodeBatch(out.time_us, out.commands, &again).ok());
  EXPECT_EQ(again, bytes);
}

// command_ends cut a batch into its commands' encodings: each slice is what
// encoding that command alone gives (tallyd logs such slices of frames).
TEST(Codec, CommandEndsSliceTheBatchIntoEachCommandsEncoding) {
  RandomCommands in(3, 300);
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, in.commands, &bytes).ok());
  DecodedBatch out;
  ASSERT_TRUE(DecodeBatch(bytes, &out).ok());
  ASSERT_EQ(out.command_ends.size(), in.commands.size());
  EXPECT_EQ(out.command_ends.back(), bytes.size());
  for (size_t i = 0; i < in.commands.size(); ++i) {
    SCOPED_TRACE(i);
    std::string alone;
    ASSERT_TRUE(EncodeBatch(kT0, std::span(&in.commands[i], 1), &alone).ok());
    uint32_t begin = i == 0 ? batch_header_bytes : out.command_ends[i - 1];
    EXPECT_EQ(bytes.substr(begin, out.command_ends[i] - begin), alone.substr(batch_header_bytes));
  }
  // A batch that does not decode leaves none.
  DecodedBatch bad;
  EXPECT_FALSE(DecodeBatch(std::string_view(bytes).substr(0, bytes.size() - 1), &bad).ok());
  EXPECT_TRUE(bad.command_ends.empty());
}

TEST(Codec, AnEmptyBatchRoundTrips) {
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, {}, &bytes).ok());
  EXPECT_EQ(bytes.size(), batch_header_bytes);
  DecodedBatch out;
  ASSERT_TRUE(DecodeBatch(bytes, &out).ok());
  EXPECT_TRUE(out.commands.empty());
}

TEST(Codec, AMeteredDeductIsFortyBytes) {
  Command d = cmd::Deduct(7, 42, 3);
  d.op_id = 99;
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, std::span(&d, 1), &bytes).ok());
  EXPECT_EQ(bytes.size(), batch_header_bytes + command_core_bytes);
}

TEST(Codec, TruncationAtEveryByteIsRefused) {
  RandomCommands in(2, 20);
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, in.commands, &bytes).ok());
  for (size_t size = 0; size < bytes.size(); ++size) {
    DecodedBatch out;
    absl::Status s = DecodeBatch(std::string_view(bytes).substr(0, size), &out);
    ASSERT_FALSE(s.ok()) << "accepted a batch cut at byte " << size;
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
    EXPECT_TRUE(out.commands.empty());
  }
}

TEST(Codec, TrailingBytesAreRefused) {
  Command d = cmd::Deduct(1, 2, 3);
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, std::span(&d, 1), &bytes).ok());
  bytes.push_back('\0');
  DecodedBatch out;
  absl::Status s = DecodeBatch(bytes, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("trailing"), std::string_view::npos) << s;
}

TEST(Codec, UnknownSectionBitsAndNonZeroReservedAreRefused) {
  Command d = cmd::Deduct(1, 2, 3);
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, std::span(&d, 1), &bytes).ok());
  DecodedBatch out;
  std::string bad = bytes;
  bad[batch_header_bytes + 3] = static_cast<char>(0x80);  // the section bitmask
  EXPECT_FALSE(DecodeBatch(bad, &out).ok());
  bad = bytes;
  bad[12] = 1;  // reserved
  EXPECT_FALSE(DecodeBatch(bad, &out).ok());
}

TEST(Codec, CountsAndLengthsOverTheirLimitsAreRefused) {
  Command d = cmd::Deduct(1, 2, 3);
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, std::span(&d, 1), &bytes).ok());
  DecodedBatch out;
  std::string bad = bytes;
  uint32_t huge = 0xffffffffu;
  std::memcpy(bad.data() + 8, &huge, 4);  // command count
  absl::Status s = DecodeBatch(bad, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("at byte 8"), std::string_view::npos) << s;

  // A text length over text_bytes_max, with the bytes really there.
  std::string text(text_bytes_max, 'x');
  Command t = cmd::Deduct(1, 2, 3);
  t.text = text;
  bytes.clear();
  ASSERT_TRUE(EncodeBatch(kT0, std::span(&t, 1), &bytes).ok());
  bad = bytes;
  uint16_t longer = text_bytes_max + 1;
  std::memcpy(bad.data() + batch_header_bytes + command_core_bytes, &longer, 2);
  bad.push_back('x');
  EXPECT_FALSE(DecodeBatch(bad, &out).ok());
}

TEST(Codec, EncodeRefusesWhatTheFormatCannotHold) {
  std::string text(text_bytes_max + 1, 'x');
  Command c = cmd::Deduct(1, 2, 3);
  c.text = text;
  std::string bytes = "kept";
  EXPECT_FALSE(EncodeBatch(kT0, std::span(&c, 1), &bytes).ok());
  EXPECT_EQ(bytes, "kept");
  std::vector<WalletAmount> targets(allocate_targets_max + 1, WalletAmount{1, 1});
  c = cmd::Allocate(1, targets);
  EXPECT_FALSE(EncodeBatch(kT0, std::span(&c, 1), &bytes).ok());
}

TEST(Codec, RandomAndMutatedBytesNeverCrashOrOverread) {
  RandomCommands in(3, 50);
  std::string valid;
  ASSERT_TRUE(EncodeBatch(kT0, in.commands, &valid).ok());
  std::mt19937_64 rng(4);
  DecodedBatch out;
  int accepted = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bytes = valid;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] ^= static_cast<char>(1 + rng() % 255);
    // An exact-size copy, so that ASan sees any read past the end.
    std::vector<char> exact(bytes.begin(), bytes.end());
    if (DecodeBatch(std::string_view(exact.data(), exact.size()), &out).ok()) ++accepted;
  }
  for (int trial = 0; trial < 20000; ++trial) {
    std::vector<char> junk(rng() % 300);
    for (char& b : junk) b = static_cast<char>(rng());
    (void)DecodeBatch(std::string_view(junk.data(), junk.size()), &out);
  }
  // Flipping a value byte (an amount, an id) gives another valid batch: the
  // codec checks structure; the log's checksum catches damage.
  EXPECT_GT(accepted, 0);
}

TEST(Codec, ADecodedBatchAppliesExactlyLikeTheOriginal) {
  std::vector<WalletAmount> targets = {{1, 100}, {2, 50}};
  std::vector<Command> batch = {
      cmd::OrgCreate(1),          cmd::Topup(1, 1000, kT0 + 86'400'000'000, 2),
      cmd::Allocate(1, targets),  cmd::Deduct(1, 1, 30, /*partial=*/true),
      cmd::Hold(1, 2, 20),        cmd::Request(1, 3, 40, "more please"),
      cmd::Approve(1, 1, 25),     cmd::VoidGrant(1, 1, "chargeback")};
  for (size_t i = 0; i < batch.size(); ++i) batch[i].op_id = 100 + i;
  Ledger direct;
  Ledger replayed;
  BatchOutput a;
  BatchOutput b;
  direct.Apply(kT0, batch, &a);
  std::string bytes;
  ASSERT_TRUE(EncodeBatch(kT0, batch, &bytes).ok());
  DecodedBatch decoded;
  ASSERT_TRUE(DecodeBatch(bytes, &decoded).ok());
  replayed.Apply(decoded.time_us, decoded.commands, &b);
  EXPECT_EQ(direct.Digest(), replayed.Digest());
  ASSERT_EQ(a.results.size(), b.results.size());
  for (size_t i = 0; i < a.results.size(); ++i) {
    EXPECT_EQ(a.results[i].code, b.results[i].code) << i;
    EXPECT_EQ(a.results[i].n[0], b.results[i].n[0]) << i;
  }
}

}  // namespace
}  // namespace tally
