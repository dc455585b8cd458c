// parse.cc: strict argument parsers.  Dates are converted with the civil
// calendar arithmetic (days from 1970-01-01) so that no locale, time zone
// database or libc TZ state can change what a timestamp means.
#include "tools/cli/parse.h"

#include <cinttypes>
#include <fstream>
#include <random>

#include "tally/limits.h"
#include "tools/cli/strings.h"

namespace tally::cli {
namespace {

absl::Status Bad(std::string_view what, std::string_view text, std::string_view why) {
  return absl::InvalidArgumentError(Cat(what, ": \"", text, "\" ", why));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// ParseDigits reads a nonempty run of decimal digits into *out, refusing
// values above `max`.  False on anything else.
bool ParseDigits(std::string_view text, uint64_t max, uint64_t* out) {
  if (text.empty()) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (!IsDigit(c)) return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

absl::StatusOr<int64_t> ParseInt64(std::string_view text, std::string_view what, bool allow_sign) {
  bool negative = false;
  std::string_view digits = text;
  if (allow_sign && !digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  if (digits.empty()) return Bad(what, text, "is not a number");
  if (!allow_sign && (digits[0] == '-' || digits[0] == '+')) {
    return Bad(what, text, "must be a plain number, no sign");
  }
  for (char c : digits) {
    if (c == '.' || c == ',') return Bad(what, text, "must be a whole number (minor units)");
    if (!IsDigit(c)) return Bad(what, text, "is not a number");
  }
  uint64_t v = 0;
  if (!ParseDigits(digits, static_cast<uint64_t>(INT64_MAX), &v)) {
    return Bad(what, text, "is out of range (at most 9223372036854775807)");
  }
  int64_t signed_v = static_cast<int64_t>(v);
  return negative ? -signed_v : signed_v;
}

// DaysFromCivil: days since 1970-01-01 of a proleptic Gregorian date.
int64_t DaysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, int64_t* m, int64_t* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp + (mp < 10 ? 3 : -9);
  *y = yoe + era * 400 + (*m <= 2 ? 1 : 0);
}

int64_t DaysInMonth(int64_t y, int64_t m) {
  static constexpr int64_t days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : days[m - 1];
}

// Fixed reads exactly `n` digits at text[at].
bool Fixed(std::string_view text, size_t at, size_t n, int64_t* out) {
  if (at + n > text.size()) return false;
  uint64_t v = 0;
  if (!ParseDigits(text.substr(at, n), UINT64_MAX, &v)) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

constexpr int64_t us_per_s = 1000000;

}  // namespace

absl::StatusOr<int64_t> ParseAmount(std::string_view text, std::string_view what) {
  absl::StatusOr<int64_t> v = ParseInt64(text, what, /*allow_sign=*/false);
  if (v.ok() && *v == 0) return Bad(what, text, "must be greater than 0");
  return v;
}

absl::StatusOr<int64_t> ParseNonNegative(std::string_view text, std::string_view what) {
  return ParseInt64(text, what, /*allow_sign=*/false);
}

absl::StatusOr<int64_t> ParseSignedAmount(std::string_view text, std::string_view what) {
  absl::StatusOr<int64_t> v = ParseInt64(text, what, /*allow_sign=*/true);
  if (v.ok() && *v == 0) return Bad(what, text, "must not be 0");
  return v;
}

absl::StatusOr<uint64_t> ParseId(std::string_view text, std::string_view what) {
  uint64_t v = 0;
  if (!ParseDigits(text, UINT64_MAX, &v)) {
    bool digits_only = !text.empty();
    for (char c : text) digits_only = digits_only && IsDigit(c);
    return Bad(what, text, digits_only ? "is out of range (64-bit id)" : "is not an id (0-9 only)");
  }
  return v;
}

absl::StatusOr<uint64_t> ParseNonzeroId(std::string_view text, std::string_view what) {
  absl::StatusOr<uint64_t> v = ParseId(text, what);
  if (v.ok() && *v == 0) return Bad(what, text, "must not be 0");
  return v;
}

absl::StatusOr<uint64_t> ParseWallet(std::string_view text, std::string_view what) {
  if (text == "pool") return uint64_t{0};
  return ParseId(text, what);
}

absl::StatusOr<uint64_t> ParseUserWallet(std::string_view text, std::string_view what) {
  absl::StatusOr<uint64_t> v = ParseWallet(text, what);
  if (v.ok() && *v == 0) return Bad(what, text, "must be a user wallet, not the pool (0)");
  return v;
}

absl::StatusOr<int64_t> ParseTime(std::string_view text, std::string_view what) {
  constexpr std::string_view expect = "is not a time (RFC 3339, e.g. 2026-12-02T11:34:09Z)";
  int64_t year, month, day;
  if (!Fixed(text, 0, 4, &year) || text.size() < 10 || text[4] != '-' ||
      !Fixed(text, 5, 2, &month) || text[7] != '-' || !Fixed(text, 8, 2, &day)) {
    return Bad(what, text, expect);
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month)) {
    return Bad(what, text, "is not a calendar date");
  }
  int64_t seconds = DaysFromCivil(year, month, day) * 86400;
  if (text.size() == 10) return seconds * us_per_s;

  int64_t hour, minute, second;
  if (text.size() < 19 || (text[10] != 'T' && text[10] != 't' && text[10] != ' ') ||
      !Fixed(text, 11, 2, &hour) || text[13] != ':' || !Fixed(text, 14, 2, &minute) ||
      text[16] != ':' || !Fixed(text, 17, 2, &second)) {
    return Bad(what, text, expect);
  }
  if (hour > 23 || minute > 59 || second > 59)
    return Bad(what, text, "has an impossible time of day");
  seconds += hour * 3600 + minute * 60 + second;
  size_t at = 19;
  int64_t fraction_us = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    size_t digits = 0;
    int64_t scale = 100000;
    while (at < text.size() && IsDigit(text[at])) {
      if (digits < 6) fraction_us += (text[at] - '0') * scale;
      scale /= 10;
      ++digits;
      ++at;
    }
    if (digits == 0 || digits > 9) return Bad(what, text, "has a bad fraction of a second");
  }
  if (at >= text.size()) return Bad(what, text, "needs a zone: Z or +HH:MM");
  if (text[at] == 'Z' || text[at] == 'z') {
    ++at;
  } else if (text[at] == '+' || text[at] == '-') {
    int64_t off_h, off_m;
    if (!Fixed(text, at + 1, 2, &off_h) || at + 3 >= text.size() || text[at + 3] != ':' ||
        !Fixed(text, at + 4, 2, &off_m) || off_h > 23 || off_m > 59) {
      return Bad(what, text, "has a bad zone offset (+HH:MM)");
    }
    int64_t offset_s = off_h * 3600 + off_m * 60;
    seconds -= text[at] == '+' ? offset_s : -offset_s;
    at += 6;
  } else {
    return Bad(what, text, expect);
  }
  if (at != text.size()) return Bad(what, text, expect);
  if (seconds < 0) return Bad(what, text, "is before 1970");
  return seconds * us_per_s + fraction_us;
}

absl::StatusOr<int64_t> ParseDuration(std::string_view text, std::string_view what) {
  constexpr std::string_view expect = "is not a duration (e.g. 90d, 12h, 30m, 45s, 1h30m)";
  if (text.empty()) return Bad(what, text, expect);
  // A century: far beyond any expiry, far below int64 microseconds.
  constexpr uint64_t seconds_max = uint64_t{100} * 366 * 86400;
  uint64_t total_s = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t start = at;
    while (at < text.size() && IsDigit(text[at])) ++at;
    uint64_t n = 0;
    if (at == start || at == text.size() ||
        !ParseDigits(text.substr(start, at - start), seconds_max, &n)) {
      return Bad(what, text, expect);
    }
    uint64_t unit_s = 0;
    switch (text[at]) {
      case 'w':
        unit_s = 7 * 86400;
        break;
      case 'd':
        unit_s = 86400;
        break;
      case 'h':
        unit_s = 3600;
        break;
      case 'm':
        unit_s = 60;
        break;
      case 's':
        unit_s = 1;
        break;
      default:
        return Bad(what, text, expect);
    }
    ++at;
    if (n > (seconds_max - total_s) / unit_s) return Bad(what, text, "is longer than 100 years");
    total_s += n * unit_s;
  }
  if (total_s == 0) return Bad(what, text, "must be longer than 0");
  return static_cast<int64_t>(total_s) * us_per_s;
}

absl::StatusOr<std::vector<WalletAmount>> ParseTargets(std::string_view text) {
  std::vector<WalletAmount> targets;
  if (text.empty()) return Bad("--to", text, "needs WALLET=AMOUNT[,WALLET=AMOUNT...]");
  for (std::string_view item : Split(text, ',')) {
    size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return Bad("--to", item, "needs WALLET=AMOUNT");
    }
    absl::StatusOr<uint64_t> wallet = ParseUserWallet(item.substr(0, eq), "--to wallet");
    if (!wallet.ok()) return wallet.status();
    absl::StatusOr<int64_t> amount = ParseAmount(item.substr(eq + 1), "--to amount");
    if (!amount.ok()) return amount.status();
    if (targets.size() == allocate_targets_max) {
      return absl::InvalidArgumentError(Cat("--to: more than ", allocate_targets_max, " wallets"));
    }
    targets.push_back({*wallet, *amount});
  }
  return targets;
}

absl::StatusOr<uint32_t> ParseKinds(std::string_view text) {
  uint32_t mask = 0;
  for (std::string_view name : Split(text, ',')) {
    bool found = false;
    for (uint8_t k = 1; k <= history_kind_max; ++k) {
      if (HistoryKindName(static_cast<HistoryKind>(k)) == name) {
        mask |= uint32_t{1} << k;
        found = true;
      }
    }
    if (!found) {
      std::string names;
      for (uint8_t k = 1; k <= history_kind_max; ++k) {
        Append(&names, k == 1 ? "" : ", ", HistoryKindName(static_cast<HistoryKind>(k)));
      }
      return Bad("--kind", name, Cat("is not a history kind (", names, ")"));
    }
  }
  return mask;
}

absl::StatusOr<bool> ParseOnOff(std::string_view text, std::string_view what) {
  if (text == "on" || text == "true" || text == "yes" || text == "1") return true;
  if (text == "off" || text == "false" || text == "no" || text == "0") return false;
  return Bad(what, text, "must be on or off");
}

absl::StatusOr<Asset> ParseAsset(std::string_view text) {
  std::optional<Asset> asset = Asset::Parse(text);
  if (!asset) return Bad("--asset", text, "is not an asset code (1-16 of A-Z a-z 0-9 _)");
  return *asset;
}

absl::StatusOr<RequestStatus> ParseRequestStatus(std::string_view text) {
  for (RequestStatus s :
       {RequestStatus::pending, RequestStatus::approved, RequestStatus::rejected}) {
    if (RequestStatusName(s) == text) return s;
  }
  return Bad("--status", text, "must be pending, approved or rejected");
}

absl::Status ParseServer(std::string_view text, std::string_view what) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return Bad(what, text, "must be HOST:PORT, e.g. 127.0.0.1:7411");
  }
  std::string_view host = text.substr(0, colon);
  if (host.find(':') != std::string_view::npos && (host.front() != '[' || host.back() != ']')) {
    return Bad(what, text, "needs brackets around an IPv6 address: [::1]:7411");
  }
  uint64_t port = 0;
  if (!ParseDigits(text.substr(colon + 1), 65535, &port) || port == 0) {
    return Bad(what, text, "has no port 1-65535");
  }
  return absl::OkStatus();
}

std::string FormatTime(int64_t time_us) {
  int64_t seconds = time_us / us_per_s;
  int64_t rem_us = time_us % us_per_s;
  if (rem_us < 0) {
    rem_us += us_per_s;
    --seconds;
  }
  int64_t days = seconds / 86400;
  int64_t sod = seconds % 86400;
  if (sod < 0) {
    sod += 86400;
    --days;
  }
  int64_t y, m, d;
  CivilFromDays(days, &y, &m, &d);
  char buf[64];
  std::snprintf(buf, sizeof buf,
                "%04" PRId64 "-%02" PRId64 "-%02" PRId64 "T%02" PRId64 ":%02" PRId64 ":%02" PRId64
                ".%03" PRId64 "Z",
                y, m, d, sod / 3600, sod / 60 % 60, sod % 60, rem_us / 1000);
  return buf;
}

std::string FormatDuration(int64_t duration_us) {
  if (duration_us == 0) return "0";
  struct Unit {
    int64_t us;
    const char* name;
  };
  static constexpr Unit units[] = {{7 * 86400 * us_per_s, "w"},
                                   {86400 * us_per_s, "d"},
                                   {3600 * us_per_s, "h"},
                                   {60 * us_per_s, "m"},
                                   {us_per_s, "s"},
                                   {1000, "ms"},
                                   {1, "us"}};
  for (const Unit& u : units) {
    if (duration_us % u.us == 0) return Cat(duration_us / u.us, u.name);
  }
  return Cat(duration_us, "us");
}

absl::StatusOr<Args> SplitArgs(const std::vector<std::string>& argv,
                               const std::vector<OptionSpec>& specs) {
  Args args;
  bool options_done = false;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (options_done || a.size() < 3 || a[0] != '-' || a[1] != '-') {
      if (!options_done && a.size() > 1 && a[0] == '-' && !IsDigit(a[1]) && a != "--") {
        return absl::InvalidArgumentError(Cat("unknown option ", a));
      }
      if (!options_done && a == "--") {
        options_done = true;
        continue;
      }
      args.positionals.push_back(a);
      continue;
    }
    std::string_view body = std::string_view(a).substr(2);
    std::string_view name = body;
    std::optional<std::string> value;
    if (size_t eq = body.find('='); eq != std::string_view::npos) {
      name = body.substr(0, eq);
      value = std::string(body.substr(eq + 1));
    }
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) return absl::InvalidArgumentError(Cat("unknown option --", name));
    if (args.Has(name)) return absl::InvalidArgumentError(Cat("--", name, " given twice"));
    if (spec->takes_value && !value) {
      if (i + 1 == argv.size()) {
        return absl::InvalidArgumentError(Cat("--", name, " needs a value"));
      }
      value = argv[++i];
    } else if (!spec->takes_value && value) {
      return absl::InvalidArgumentError(Cat("--", name, " takes no value"));
    }
    args.options.emplace(std::string(name), value.value_or(""));
  }
  return args;
}

absl::StatusOr<std::string> TokenFromFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(Cat("no token file at ", path));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string_view> fields = Words(line);
    if (fields.empty() || fields[0][0] == '#') continue;
    if (fields.size() >= 3 && fields[1] == "admin") return std::string(fields[0]);
  }
  return absl::NotFoundError(Cat("no admin token in ", path));
}

uint64_t NewOpId() {
  std::random_device rd;
  uint64_t v = 0;
  while (v == 0) {
    v = ((uint64_t{rd()} << 32) ^ uint64_t{rd()}) & ((uint64_t{1} << 53) - 1);
  }
  return v;
}

}  // namespace tally::cli
