// json.h: a small strict JSON reader for tests, so that what `tally --json`
// prints is parsed back the way a script would (not matched as text).
// Numbers keep their text, so 64-bit integers stay exact.
//
// Example:
//   tally::testing::Json j = tally::testing::ParseJson(R"({"applied": 50})").value();
//   EXPECT_EQ(j["applied"].Int(), 50);
#ifndef TALLY_TESTS_TOOLS_JSON_H_
#define TALLY_TESTS_TOOLS_JSON_H_

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tally::testing {

struct Json {
  enum class Type { null, boolean, number, string, array, object };
  Type type = Type::null;
  bool boolean = false;
  std::string text;  // a number's digits or a string's value
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  bool IsNull() const { return type == Type::null; }
  bool Has(std::string_view key) const {
    for (const auto& m : members) {
      if (m.first == key) return true;
    }
    return false;
  }
  // operator[] returns the member, or a null Json when absent.
  const Json& operator[](std::string_view key) const {
    static const Json null_value;
    for (const auto& m : members) {
      if (m.first == key) return m.second;
    }
    return null_value;
  }
  const Json& operator[](size_t i) const { return items.at(i); }
  size_t size() const { return type == Type::array ? items.size() : members.size(); }
  int64_t Int() const { return type == Type::number ? std::strtoll(text.c_str(), nullptr, 10) : 0; }
  uint64_t Uint() const {
    return type == Type::number ? std::strtoull(text.c_str(), nullptr, 10) : 0;
  }
  const std::string& Str() const { return text; }
  bool Bool() const { return type == Type::boolean && boolean; }
};

namespace json_internal {

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  bool Document(Json* out) {
    if (!Value(out, 0)) return false;
    Space();
    return at_ == in_.size();
  }

 private:
  static constexpr int depth_max = 64;

  void Space() {
    while (at_ < in_.size() &&
           (in_[at_] == ' ' || in_[at_] == '\n' || in_[at_] == '\r' || in_[at_] == '\t')) {
      ++at_;
    }
  }
  bool Eat(char c) {
    Space();
    if (at_ < in_.size() && in_[at_] == c) {
      ++at_;
      return true;
    }
    return false;
  }
  bool Word(std::string_view w) {
    if (in_.substr(at_, w.size()) != w) return false;
    at_ += w.size();
    return true;
  }
  bool String(std::string* out) {
    if (!Eat('"')) return false;
    while (at_ < in_.size()) {
      char c = in_[at_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (at_ >= in_.size()) return false;
      char e = in_[at_++];
      switch (e) {
        case '"':
          *out += '"';
          break;
        case '\\':
          *out += '\\';
          break;
        case '/':
          *out += '/';
          break;
        case 'n':
          *out += '\n';
          break;
        case 'r':
          *out += '\r';
          break;
        case 't':
          *out += '\t';
          break;
        case 'b':
          *out += '\b';
          break;
        case 'f':
          *out += '\f';
          break;
        case 'u': {
          if (at_ + 4 > in_.size()) return false;
          unsigned v = static_cast<unsigned>(
              std::strtoul(std::string(in_.substr(at_, 4)).c_str(), nullptr, 16));
          at_ += 4;
          if (v < 0x80) {
            *out += static_cast<char>(v);
          } else if (v < 0x800) {
            *out += static_cast<char>(0xc0 | (v >> 6));
            *out += static_cast<char>(0x80 | (v & 0x3f));
          } else {
            *out += static_cast<char>(0xe0 | (v >> 12));
            *out += static_cast<char>(0x80 | ((v >> 6) & 0x3f));
            *out += static_cast<char>(0x80 | (v & 0x3f));
          }
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool Value(Json* out, int depth) {
    if (depth > depth_max) return false;
    Space();
    if (at_ >= in_.size()) return false;
    char c = in_[at_];
    if (c == '{') {
      ++at_;
      out->type = Json::Type::object;
      if (Eat('}')) return true;
      do {
        std::string key;
        Json value;
        if (!String(&key) || !Eat(':') || !Value(&value, depth + 1)) return false;
        out->members.emplace_back(std::move(key), std::move(value));
      } while (Eat(','));
      return Eat('}');
    }
    if (c == '[') {
      ++at_;
      out->type = Json::Type::array;
      if (Eat(']')) return true;
      do {
        Json value;
        if (!Value(&value, depth + 1)) return false;
        out->items.push_back(std::move(value));
      } while (Eat(','));
      return Eat(']');
    }
    if (c == '"') {
      out->type = Json::Type::string;
      return String(&out->text);
    }
    if (Word("true") || Word("false")) {
      out->type = Json::Type::boolean;
      out->boolean = in_[at_ - 1] == 'e' && in_.substr(at_ - 4, 4) == "true";
      return true;
    }
    if (Word("null")) return true;
    size_t start = at_;
    if (at_ < in_.size() && in_[at_] == '-') ++at_;
    while (at_ < in_.size() && ((in_[at_] >= '0' && in_[at_] <= '9') || in_[at_] == '.' ||
                                in_[at_] == 'e' || in_[at_] == 'E' || in_[at_] == '+')) {
      ++at_;
    }
    if (at_ == start || (at_ == start + 1 && in_[start] == '-')) return false;
    out->type = Json::Type::number;
    out->text = std::string(in_.substr(start, at_ - start));
    return true;
  }

  std::string_view in_;
  size_t at_ = 0;
};

}  // namespace json_internal

// ParseJson reads one JSON document; nullopt when it is not valid JSON.
inline std::optional<Json> ParseJson(std::string_view text) {
  Json out;
  if (!json_internal::Reader(text).Document(&out)) return std::nullopt;
  return out;
}

}  // namespace tally::testing

#endif  // TALLY_TESTS_TOOLS_JSON_H_
