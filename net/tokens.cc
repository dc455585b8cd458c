// tokens.cc: the token file.  See tokens.h.
#include "net/tokens.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/numbers.h"
#include "tally/limits.h"

namespace tally::net {
namespace {

template <typename... Parts>
std::string Cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

absl::Status LineError(size_t line, std::string_view what) {
  return absl::InvalidArgumentError(Cat("token file line ", line, ": ", what));
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Split cuts `text` at each `separator`; with skip_empty, runs of
// separators count as one.
std::vector<std::string_view> Split(std::string_view text, bool (*separator)(char),
                                    bool skip_empty) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || separator(text[i])) {
      if (!skip_empty || i > start) parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}

std::string_view Strip(std::string_view text) {
  while (!text.empty() && (IsSpace(text.front()) || text.front() == '\n')) text.remove_prefix(1);
  while (!text.empty() && (IsSpace(text.back()) || text.back() == '\n')) text.remove_suffix(1);
  return text;
}

}  // namespace

const Token* Tokens::Find(std::string_view secret) const {
  auto it = by_secret_.find(absl::string_view(secret.data(), secret.size()));
  return it == by_secret_.end() ? nullptr : &it->second;
}

absl::StatusOr<Tokens> Tokens::Parse(std::string_view text) {
  Tokens tokens;
  size_t line_number = 0;
  for (std::string_view line : Split(
           text, [](char c) { return c == '\n'; }, false)) {
    ++line_number;
    line = Strip(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string_view> fields = Split(
        line, [](char c) { return c == ' ' || c == '\t'; }, true);
    if (fields.size() < 3 || fields.size() > 4) {
      return LineError(line_number, "want <token> <role> <name> [<org>,<org>,...]");
    }
    Token token;
    token.secret = std::string(fields[0]);
    if (token.secret.size() > token_bytes_max) {
      return LineError(line_number, Cat("token longer than ", token_bytes_max, " bytes"));
    }
    for (char c : token.secret) {
      if (IsSpace(c) || static_cast<unsigned char>(c) < 0x21) {
        return LineError(line_number, "token has a control character");
      }
    }
    if (!proto::ParseRole(fields[1], &token.role)) {
      return LineError(line_number, Cat("role '", fields[1], "' is not admin, service or read"));
    }
    token.name = std::string(fields[2]);
    if (token.name.size() > text_bytes_max) {
      return LineError(line_number, Cat("name longer than ", text_bytes_max, " bytes"));
    }
    if (fields.size() == 4) {
      token.all_orgs = false;
      for (std::string_view org : Split(
               fields[3], [](char c) { return c == ','; }, false)) {
        uint64_t org_id = 0;
        if (!absl::SimpleAtoi(absl::string_view(org.data(), org.size()), &org_id) || org_id == 0) {
          return LineError(line_number, Cat("org '", org, "' is not a nonzero number"));
        }
        token.orgs.insert(org_id);
      }
    }
    std::string key = token.secret;
    if (!tokens.by_secret_.emplace(std::move(key), std::move(token)).second) {
      return LineError(line_number, "the same token appears twice");
    }
  }
  return tokens;
}

absl::StatusOr<Tokens> LoadTokens(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(Cat("cannot read token file ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<Tokens> tokens = Tokens::Parse(text.str());
  if (!tokens.ok()) {
    return absl::InvalidArgumentError(Cat(path, ": ", tokens.status().message()));
  }
  return tokens;
}

absl::StatusOr<std::string> CreateAdminTokenFile(const std::string& path) {
  std::random_device random;  // the kernel's generator
  std::string token;
  static constexpr char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) token.push_back(hex[random() & 15]);
  std::string text =
      Cat("# tallyd tokens: <token> <role admin|service|read> <name> [<org>,<org>,...]\n", token,
          " admin admin\n");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(Cat("create ", path, ": ", std::strerror(errno)));
  }
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      return absl::InternalError(Cat("write ", path, ": ", std::strerror(err)));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return absl::InternalError(Cat("sync ", path, ": ", std::strerror(errno)));
  }
  return token;
}

}  // namespace tally::net
