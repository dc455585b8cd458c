// tally-bench's command line: defaults, every kind of bad flag named, mixes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tools/bench/options.h"
#include "tools/bench/spawn.h"

namespace tally::bench {
namespace {

absl::StatusOr<Options> Parse(std::vector<std::string_view> args) { return ParseOptions(args); }

void ExpectRefused(std::vector<std::string_view> args, std::string_view mentions) {
  absl::StatusOr<Options> o = ParseOptions(args);
  ASSERT_FALSE(o.ok()) << "accepted: " << args.front();
  EXPECT_TRUE(absl::IsInvalidArgument(o.status())) << o.status();
  EXPECT_NE(std::string(o.status().message()).find(mentions), std::string::npos) << o.status();
}

TEST(BenchOptions, DefaultsAreTheDeductWorkloadAtFiftyConnections) {
  absl::StatusOr<Options> o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->workload, WorkloadKind::deduct);
  EXPECT_EQ(o->connections, 50u);
  EXPECT_EQ(o->depth, 1u);
  EXPECT_EQ(o->ops_per_frame, 1u);
  EXPECT_EQ(o->wallets, 100000u);
  EXPECT_EQ(o->dist, Distribution::uniform);
  EXPECT_EQ(MixString(o->mix), "deduct=100");
  EXPECT_TRUE(o->verify);
  EXPECT_EQ(o->rate_per_s, 0);
}

TEST(BenchOptions, EveryFlagIsRead) {
  absl::StatusOr<Options> o = Parse({"--spawn",
                                     "--shards",
                                     "4",
                                     "--io-threads=2",
                                     "--workload",
                                     "mixed",
                                     "--wallets",
                                     "10000000",
                                     "--orgs",
                                     "64",
                                     "--dist",
                                     "zipf",
                                     "--zipf-s",
                                     "0.9",
                                     "--connections",
                                     "8",
                                     "--depth",
                                     "32",
                                     "--ops-per-frame",
                                     "1000",
                                     "--threads",
                                     "2",
                                     "--rate",
                                     "50000/s",
                                     "--duration-s",
                                     "2.5",
                                     "--warmup-s",
                                     "0.5",
                                     "--json",
                                     "--quiet",
                                     "--verify-wallets",
                                     "1000",
                                     "--seed",
                                     "7",
                                     "--amount",
                                     "3",
                                     "--balance",
                                     "500"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->spawn);
  EXPECT_EQ(o->spawn_shards, 4u);
  EXPECT_EQ(o->spawn_io_threads, 2u);
  EXPECT_EQ(o->workload, WorkloadKind::mixed);
  EXPECT_EQ(o->wallets, 10000000u);
  EXPECT_EQ(o->orgs, 64u);
  EXPECT_EQ(o->dist, Distribution::zipf);
  EXPECT_DOUBLE_EQ(o->zipf_s, 0.9);
  EXPECT_EQ(o->connections, 8u);
  EXPECT_EQ(o->depth, 32u);
  EXPECT_EQ(o->ops_per_frame, 1000u);
  EXPECT_EQ(o->threads, 2u);
  EXPECT_DOUBLE_EQ(o->rate_per_s, 50000);
  EXPECT_DOUBLE_EQ(o->duration_s, 2.5);
  EXPECT_DOUBLE_EQ(o->warmup_s, 0.5);
  EXPECT_TRUE(o->json);
  EXPECT_FALSE(o->live);
  EXPECT_EQ(o->verify_wallets_max, 1000u);
  EXPECT_EQ(o->seed, 7u);
  EXPECT_EQ(o->amount, 3);
  EXPECT_EQ(o->balance, 500);
  EXPECT_EQ(MixString(o->mix), "deduct=70,hold=10,capture=8,balance=7,grant=5");
}

TEST(BenchOptions, WorkloadsBringTheirOwnDefaults) {
  absl::StatusOr<Options> invoice = Parse({"--workload", "invoice-run"});
  ASSERT_TRUE(invoice.ok());
  EXPECT_EQ(invoice->ops_per_frame, 1000u);
  EXPECT_EQ(MixString(invoice->mix), "invoice=100");
  EXPECT_EQ(invoice->balance, 1000);
  absl::StatusOr<Options> allocate = Parse({"--workload", "allocate"});
  ASSERT_TRUE(allocate.ok());
  EXPECT_EQ(MixString(allocate->mix), "allocate=40,request=30,approve=30");
  // A flag given wins over the workload's default.
  absl::StatusOr<Options> small = Parse({"--workload", "invoice-run", "--ops-per-frame", "10"});
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(small->ops_per_frame, 10u);
}

TEST(BenchOptions, MixIsParsedAndChecked) {
  absl::StatusOr<Mix> mix = ParseMix("deduct=70,hold=10,capture=8,balance=7,grant=5");
  ASSERT_TRUE(mix.ok());
  EXPECT_EQ((*mix)[static_cast<size_t>(OpKind::deduct)], 70u);
  EXPECT_EQ((*mix)[static_cast<size_t>(OpKind::grant)], 5u);
  EXPECT_EQ((*mix)[static_cast<size_t>(OpKind::release)], 0u);
  EXPECT_FALSE(ParseMix("deduct=70,steal=5").ok());
  EXPECT_FALSE(ParseMix("deduct=x").ok());
  EXPECT_FALSE(ParseMix("deduct=0").ok());
  EXPECT_FALSE(ParseMix("").ok());
  ExpectRefused({"--mix", "allocate=5"}, "not part of the deduct workload");
  ExpectRefused({"--workload", "allocate", "--mix", "deduct=5"}, "not part of the allocate");
}

TEST(BenchOptions, BadFlagsAreNamed) {
  ExpectRefused({"--bogus"}, "--bogus: unknown flag");
  ExpectRefused({"--bogus", "1"}, "--bogus: unknown flag");
  ExpectRefused({"connections"}, "not a flag");
  ExpectRefused({"--connections"}, "--connections: needs a value");
  ExpectRefused({"--connections", "0"}, "--connections: 0 is outside");
  ExpectRefused({"--connections", "5000"}, "--connections");
  ExpectRefused({"--wallets", "10000001"}, "--wallets");
  ExpectRefused({"--wallets", "ten"}, "not a number");
  ExpectRefused({"--depth", "4097"}, "--depth");
  ExpectRefused({"--ops-per-frame", "16385"}, "--ops-per-frame");
  ExpectRefused({"--zipf-s", "1"}, "--zipf-s");
  ExpectRefused({"--zipf-s", "0"}, "--zipf-s");
  ExpectRefused({"--dist", "pareto"}, "unknown distribution");
  ExpectRefused({"--workload", "dance"}, "unknown workload");
  ExpectRefused({"--rate", "-5"}, "--rate");
  ExpectRefused({"--duration-s", "nan"}, "--duration-s");
  ExpectRefused({"--duration-s", "1", "--warmup-s", "2"}, "--warmup-s");
  ExpectRefused({"--spawn", "--server", "127.0.0.1:1"}, "either --spawn or --server");
  ExpectRefused({"--shards", "4"}, "only go with --spawn");
  ExpectRefused({"--wallets", "10", "--orgs", "11"}, "more orgs than wallets");
  ExpectRefused({"--balance", "1099511627776", "--wallets", "10000000"}, "--balance");
}

TEST(BenchOptions, HelpIsAskedForNotAnError) {
  absl::StatusOr<Options> o = Parse({"--help"});
  EXPECT_TRUE(absl::IsNotFound(o.status()));
  EXPECT_NE(Usage().find("--ops-per-frame"), std::string::npos);
}

TEST(BenchTokens, TheFirstAdminTokenIsFoundPastCommentsAndOtherRoles) {
  std::string path = ::testing::TempDir() + "/bench_tokens";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  std::fputs("# tokens\n\nsvc1 service meter 1,2\n  abc123 admin ops\nzzz admin second\n", f);
  std::fclose(f);
  absl::StatusOr<std::string> token = FirstAdminToken(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "abc123");
  f = std::fopen(path.c_str(), "w");
  std::fputs("svc1 service meter\n", f);
  std::fclose(f);
  EXPECT_TRUE(absl::IsNotFound(FirstAdminToken(path).status()));
  EXPECT_TRUE(absl::IsNotFound(FirstAdminToken(path + ".missing").status()));
}

}  // namespace
}  // namespace tally::bench
