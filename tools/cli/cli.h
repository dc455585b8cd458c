// cli.h: the `tally` command line as a library (the main in tools/tally.cc
// and the tests in tests/tools/ both use it).
//
// A run has two halves.  ParseInvocation turns argv into a Plan: every
// argument checked strictly, the Command or query built, nothing sent; bad
// input stops here with exit 2.  Run then connects (tally::Client), sends the
// plan, and prints the answer as a Doc (output.h) in the format asked for.
// Keeping the halves apart is what lets the tests check every command's bytes
// without a server, and the end-to-end tests check the same commands against
// a real tallyd.
//
// Exit codes (docs/CLI.md): 0 ok, 1 refused by the server (stderr: one line
// `tally: <result code>: <detail>`), 2 usage error, 3 cannot connect or
// authenticate, 4 cannot write the output.
//
// Example:
//   tally::cli::Env env = tally::cli::EnvFromProcess();
//   return tally::cli::Run({"deduct", "7", "42", "3", "--json"}, env, stdout, stderr);
#ifndef TALLY_TOOLS_CLI_CLI_H_
#define TALLY_TOOLS_CLI_CLI_H_

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "tally/command.h"
#include "tally/protocol.h"
#include "tally/query.h"

namespace tally::cli {

inline constexpr int exit_ok = 0;
inline constexpr int exit_refused = 1;
inline constexpr int exit_usage = 2;
inline constexpr int exit_connect = 3;
inline constexpr int exit_output = 4;

inline constexpr char server_default[] = "127.0.0.1:7411";
inline constexpr char tokens_path_default[] = "./tally-data/tokens";
// History entries one `tally history` prints unless --limit says otherwise,
// and the most it fetches (page by page) in one run.
inline constexpr uint32_t history_limit_default = 100;
inline constexpr uint32_t history_limit_max = 1000000;

// Env is what a run takes from outside argv: the environment variables, the
// clock and the op-id source, so that tests can fix them.
struct Env {
  std::optional<std::string> server;  // TALLY_SERVER
  std::optional<std::string> token;   // TALLY_TOKEN
  std::string tokens_path = tokens_path_default;
  int64_t now_us = 0;                 // for --expires-in and --timeout
  uint64_t (*new_op_id)() = nullptr;  // NewOpId unless a test sets one
};
Env EnvFromProcess();

enum class Format { text, json, csv, xlsx };

// Globals are the options every command takes.
struct Globals {
  std::optional<std::string> server;
  std::optional<std::string> token;
  Format format = Format::text;
  std::string xlsx_path;
};

// ApplyPlan is one changing command.  The Command's text and targets point
// into the plan's own strings once Bind() is called (right before sending:
// a moved plan would leave them dangling).
struct ApplyPlan {
  std::string name;  // the CLI command, e.g. "allocate"
  Command command;
  std::string text;
  std::vector<WalletAmount> targets;
  bool op_id_generated = false;

  void Bind() {
    command.text = text;
    command.targets = targets;
  }
};

// QueryPlan is one read.  Only the fields of its kind are used.
struct QueryPlan {
  enum class Kind { balance, summary, history, requests, usage, settings, totals, events };
  Kind kind{};
  proto::BalanceRequest balance;
  HistoryQuery history;
  uint32_t history_limit = history_limit_default;
  uint64_t org_id = 0;
  Asset asset = Asset::Credits();
  RequestStatus status = RequestStatus::pending;
  int64_t from_us = 0;
  int64_t to_us = 0;
  uint64_t events_max = 0;    // stop after this many events; 0 = never
  int64_t events_for_us = 0;  // stop after this long; 0 = never
};

// HelpPlan prints help and sends nothing.
struct HelpPlan {
  std::string text;
};

struct Invocation {
  Globals globals;
  std::variant<HelpPlan, ApplyPlan, QueryPlan> plan;
};

// ParseInvocation checks argv (without the program name) completely.
// InvalidArgument (exit 2) says what is wrong.
absl::StatusOr<Invocation> ParseInvocation(const std::vector<std::string>& argv, const Env& env);

// Run is the whole command: parse, connect, send, print.  Returns the exit code.
int Run(const std::vector<std::string>& argv, const Env& env, std::FILE* out, std::FILE* err);

// Overview is `tally help`; CommandHelp is `tally help COMMAND` (nullopt for
// an unknown command).
std::string Overview();
std::optional<std::string> CommandHelp(const std::string& command);

}  // namespace tally::cli

#endif  // TALLY_TOOLS_CLI_CLI_H_
