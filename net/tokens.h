// tokens.h: who may talk to tallyd, read from the token file.
//
// The file is text, one token a line:
//
//   <token> <role> <name> [<org>,<org>,...]
//
// role is admin, service or read (proto::Role); without an org list the
// token may act on every org.  Lines starting with '#' and blank lines are
// ignored.  A bad line stops the start with its number named: a server that
// silently dropped a token line would lock out its operator, or worse, widen
// a token's reach.
//
// On a first start with no token file, tallyd writes <data>/tokens (mode
// 0600) holding one admin token named "admin": 32 random lowercase hex chars.
//
// Example:
//   absl::StatusOr<Tokens> tokens = LoadTokens("/data/tokens");
//   const Token* t = tokens->Find(presented);  // nullptr: unauthenticated
//   if (t && t->MayUseOrg(org_id)) ...
#ifndef TALLY_NET_TOKENS_H_
#define TALLY_NET_TOKENS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tally/protocol.h"

namespace tally::net {

// Token is one line of the token file.
struct Token {
  std::string secret;
  proto::Role role = proto::Role::read;
  std::string name;
  bool all_orgs = true;
  absl::flat_hash_set<uint64_t> orgs;  // when !all_orgs

  bool MayUseOrg(uint64_t org_id) const { return all_orgs || orgs.contains(org_id); }
};

// Tokens is the parsed file.
class Tokens {
 public:
  // Find is the token with this secret, or nullptr.
  const Token* Find(std::string_view secret) const;
  size_t size() const { return by_secret_.size(); }

  // Parse reads the file's text; InvalidArgument names the line.
  static absl::StatusOr<Tokens> Parse(std::string_view text);

 private:
  absl::flat_hash_map<std::string, Token> by_secret_;
};

// LoadTokens reads and parses `path`.
absl::StatusOr<Tokens> LoadTokens(const std::string& path);

// CreateAdminTokenFile writes `path` (mode 0600, must not exist) with one
// fresh admin token named "admin" and returns the token.
absl::StatusOr<std::string> CreateAdminTokenFile(const std::string& path);

}  // namespace tally::net

#endif  // TALLY_NET_TOKENS_H_
