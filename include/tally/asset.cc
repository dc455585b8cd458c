#include "tally/asset.h"

namespace tally {
namespace {

bool IsCodeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_';
}

}  // namespace

char Asset::CharAt(uint32_t i) const {
  uint64_t word = i < 8 ? lo_ : hi_;
  return static_cast<char>((word >> (8 * (i % 8))) & 0xff);
}

std::optional<Asset> Asset::Parse(std::string_view name) {
  if (name.empty() || name.size() > name_bytes_max) return std::nullopt;
  uint64_t words[2] = {0, 0};
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsCodeChar(name[i])) return std::nullopt;
    words[i / 8] |= uint64_t{static_cast<unsigned char>(name[i])} << (8 * (i % 8));
  }
  return Asset(words[0], words[1]);
}

std::string Asset::name() const {
  std::string out;
  for (uint32_t i = 0; i < name_bytes_max; ++i) {
    char c = CharAt(i);
    if (c == 0) break;
    out.push_back(c);
  }
  return out;
}

bool Asset::Valid() const {
  if (empty()) return false;
  bool ended = false;
  for (uint32_t i = 0; i < name_bytes_max; ++i) {
    char c = CharAt(i);
    if (c == 0) {
      ended = true;
    } else if (ended || !IsCodeChar(c)) {
      return false;  // a hole in the middle, or a character Parse refuses
    }
  }
  return true;
}

}  // namespace tally
