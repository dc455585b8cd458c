// parse.h: the strict parsers behind every `tally` argument.
//
// The command line is where people type money, so nothing here guesses: an
// amount is a plain decimal integer (no sign unless the caller allows one, no
// spaces, no decimal point, checked against int64), an id is an unsigned
// decimal, a time is RFC 3339 (or a bare date, midnight UTC), a duration is
// `90d`, `12h`, `30m`, `45s`, `2w` or a sum like `1h30m`.  Every parser
// returns InvalidArgument with a message naming the value, which the CLI
// prints before exiting 2 with nothing sent.
//
// Example:
//   int64_t amount = tally::cli::ParseAmount("250", "AMOUNT").value();
//   int64_t expires_us = now_us + tally::cli::ParseDuration("90d", "--expires-in").value();
#ifndef TALLY_TOOLS_CLI_PARSE_H_
#define TALLY_TOOLS_CLI_PARSE_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tally/asset.h"
#include "tally/command.h"
#include "tally/query.h"

namespace tally::cli {

// ParseAmount reads a positive amount (> 0).  `what` names the argument in
// the error message ("AMOUNT", "--all").
absl::StatusOr<int64_t> ParseAmount(std::string_view text, std::string_view what);
// ParseNonNegative reads an amount ≥ 0 (adjust --to, thresholds).
absl::StatusOr<int64_t> ParseNonNegative(std::string_view text, std::string_view what);
// ParseSignedAmount reads a nonzero signed amount (adjust --by).
absl::StatusOr<int64_t> ParseSignedAmount(std::string_view text, std::string_view what);
// ParseId reads an unsigned 64-bit id (org, wallet, grant ...).
absl::StatusOr<uint64_t> ParseId(std::string_view text, std::string_view what);
// ParseNonzeroId is ParseId refusing 0 (orgs, op ids, grant/hold/request ids).
absl::StatusOr<uint64_t> ParseNonzeroId(std::string_view text, std::string_view what);
// ParseWallet reads a wallet id; `pool` is wallet 0.
absl::StatusOr<uint64_t> ParseWallet(std::string_view text, std::string_view what);
// ParseUserWallet is ParseWallet refusing the pool.
absl::StatusOr<uint64_t> ParseUserWallet(std::string_view text, std::string_view what);

// ParseTime reads RFC 3339 (`2026-12-02T11:34:09Z`, `…T11:34:09.250+01:00`,
// a space instead of the T, lower-case t/z) or a bare date `2026-12-02`
// (midnight UTC), and returns microseconds since the Unix epoch.
absl::StatusOr<int64_t> ParseTime(std::string_view text, std::string_view what);
// ParseDuration reads `<n><unit>` terms, units w d h m s (`90d`, `1h30m`),
// > 0, and returns microseconds.
absl::StatusOr<int64_t> ParseDuration(std::string_view text, std::string_view what);
// ParseTargets reads `W1=50,W2=20` (user wallets, amounts > 0; at most
// allocate_targets_max entries).
absl::StatusOr<std::vector<WalletAmount>> ParseTargets(std::string_view text);
// ParseKinds reads `deduct,topup` into a history kind mask.
absl::StatusOr<uint32_t> ParseKinds(std::string_view text);
// ParseOnOff reads on/off, true/false, yes/no, 1/0.
absl::StatusOr<bool> ParseOnOff(std::string_view text, std::string_view what);
absl::StatusOr<Asset> ParseAsset(std::string_view text);
absl::StatusOr<RequestStatus> ParseRequestStatus(std::string_view text);

// ParseServer checks `HOST:PORT` (HOST a name, an IPv4 address or `[v6]`,
// PORT 1-65535); `what` names where it came from (--server, TALLY_SERVER).
absl::Status ParseServer(std::string_view text, std::string_view what);

// FormatTime prints microseconds since the epoch as RFC 3339 UTC with
// milliseconds (`2026-12-02T11:34:09.250Z`), the resolution history keeps.
std::string FormatTime(int64_t time_us);
// FormatDuration prints microseconds as the largest exact unit (`30d`, `90m`,
// `1500ms` → `1500ms`); 0 prints `0`.
std::string FormatDuration(int64_t duration_us);

// Args is a command line split into positionals and options.  Options are
// `--name value`, `--name=value` or (for switches) `--name`; `--` ends the
// options.  Which names exist and which take a value is the caller's table.
struct OptionSpec {
  std::string_view name;  // without the dashes
  bool takes_value = true;
};

struct Args {
  std::vector<std::string> positionals;
  std::map<std::string, std::string, std::less<>> options;  // switch → ""

  bool Has(std::string_view name) const { return options.find(name) != options.end(); }
  // Get returns the value, or nullptr when the option is absent.
  const std::string* Get(std::string_view name) const {
    auto it = options.find(name);
    return it == options.end() ? nullptr : &it->second;
  }
};

// SplitArgs splits `argv` by `specs`.  An unknown option, a missing value
// or an option given twice is InvalidArgument.
absl::StatusOr<Args> SplitArgs(const std::vector<std::string>& argv,
                               const std::vector<OptionSpec>& specs);

// TokenFromFile returns the first admin token in a token file (the format of
// tallyd's `--tokens`: `<token> <role> <name> [orgs]` per line, `#` comments
// and blank lines ignored).  NotFound when the file has none; the error names
// the path.
absl::StatusOr<std::string> TokenFromFile(const std::string& path);

// NewOpId returns a random nonzero 53-bit operation id (53 bits: exact in a
// JSON number, so a script can read it back and retry with it).
uint64_t NewOpId();

}  // namespace tally::cli

#endif  // TALLY_TOOLS_CLI_PARSE_H_
