// strings.h: concatenation and splitting over std::string_view.
//
// Debian 12's Abseil has its own absl::string_view (not std::string_view), so
// absl::StrCat and absl::StrSplit do not take std::string_view; the CLI works
// in std::string_view throughout and uses these few helpers instead.
#ifndef TALLY_TOOLS_CLI_STRINGS_H_
#define TALLY_TOOLS_CLI_STRINGS_H_

#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"

namespace tally::cli {

template <typename T>
void AppendOne(std::string* out, const T& part) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, char> && !std::is_same_v<T, bool>) {
    *out += std::to_string(part);
  } else {
    *out += std::string_view(part);
  }
}

// Append appends every part (text or integer) to *out.
template <typename... T>
void Append(std::string* out, const T&... parts) {
  (AppendOne(out, parts), ...);
}

// Cat concatenates every part (text or integer).
template <typename... T>
std::string Cat(const T&... parts) {
  std::string out;
  Append(&out, parts...);
  return out;
}

// Split splits at every `sep`, keeping empty pieces.
inline std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> pieces;
  size_t start = 0;
  for (;;) {
    size_t at = text.find(sep, start);
    pieces.push_back(text.substr(start, at == std::string_view::npos ? at : at - start));
    if (at == std::string_view::npos) return pieces;
    start = at + 1;
  }
}

// Words splits at runs of spaces, tabs and carriage returns.
inline std::vector<std::string_view> Words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t at = 0;
  while (at < text.size()) {
    at = text.find_first_not_of(" \t\r", at);
    if (at == std::string_view::npos) break;
    size_t end = text.find_first_of(" \t\r", at);
    if (end == std::string_view::npos) end = text.size();
    words.push_back(text.substr(at, end - at));
    at = end;
  }
  return words;
}

// Message is a Status's message as a std::string.
inline std::string Message(const absl::Status& status) { return std::string(status.message()); }

}  // namespace tally::cli

#endif  // TALLY_TOOLS_CLI_STRINGS_H_
