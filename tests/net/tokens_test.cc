// tokens_test.cc: the token file (net/tokens.h).
#include "net/tokens.h"

#include <sys/stat.h>

#include <string>

#include "gtest/gtest.h"
#include "tests/net/tallyd_process.h"

namespace tally::net {
namespace {

TEST(TokensTest, ParsesRolesNamesAndOrgLists) {
  auto tokens = Tokens::Parse(
      "# comment\n"
      "\n"
      "abc admin boss\n"
      "  def\tservice  meter 7,9  \r\n"
      "ghi read viewer\n");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 3u);
  const Token* boss = tokens->Find("abc");
  ASSERT_NE(boss, nullptr);
  EXPECT_EQ(boss->role, proto::Role::admin);
  EXPECT_EQ(boss->name, "boss");
  EXPECT_TRUE(boss->MayUseOrg(12345));
  const Token* meter = tokens->Find("def");
  ASSERT_NE(meter, nullptr);
  EXPECT_EQ(meter->role, proto::Role::service);
  EXPECT_TRUE(meter->MayUseOrg(7));
  EXPECT_TRUE(meter->MayUseOrg(9));
  EXPECT_FALSE(meter->MayUseOrg(8));
  EXPECT_EQ(tokens->Find("nope"), nullptr);
  EXPECT_EQ(tokens->Find("ab"), nullptr);
}

TEST(TokensTest, ABadLineIsRefusedWithItsNumber) {
  struct Case {
    std::string text;
    std::string says;
  } cases[] = {
      {"abc admin\n", "line 1"},
      {"# x\nabc superuser boss\n", "line 2"},
      {"abc read viewer 7,x\n", "org 'x'"},
      {"abc read viewer 0\n", "org '0'"},
      {"abc read viewer 7,\n", "org ''"},
      {"abc read a b c\n", "line 1"},
      {"abc read a\nabc admin b\n", "twice"},
      {std::string(129, 't') + " read a\n", "longer"},
  };
  for (const Case& c : cases) {
    auto tokens = Tokens::Parse(c.text);
    ASSERT_FALSE(tokens.ok()) << c.text;
    EXPECT_NE(std::string(tokens.status().message()).find(c.says), std::string::npos)
        << tokens.status();
  }
}

TEST(TokensTest, CreatedFileHoldsOneFreshAdminTokenReadableByItsOwnerOnly) {
  testing::TempDir dir;
  std::string path = dir.path() + "/tokens";
  auto token = CreateAdminTokenFile(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->size(), 32u);
  EXPECT_EQ(token->find_first_not_of("0123456789abcdef"), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  auto tokens = LoadTokens(path);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  const Token* admin = tokens->Find(*token);
  ASSERT_NE(admin, nullptr);
  EXPECT_EQ(admin->role, proto::Role::admin);
  EXPECT_EQ(admin->name, "admin");
  // Never overwrites an existing file.
  EXPECT_FALSE(CreateAdminTokenFile(path).ok());
  auto other = testing::TempDir();
  auto second = CreateAdminTokenFile(other.path() + "/tokens");
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, *token);
}

}  // namespace
}  // namespace tally::net
