// tally: the command line for tallyd (docs/CLI.md).  Everything lives in the
// tally_cli library (tools/cli/), which the tests drive too; this is argv in,
// exit code out.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "tools/cli/cli.h"

int main(int argc, char** argv) {
  // A reader that went away (`tally history ... | head`) is a write error
  // that Run reports as exit 4, not a silent death by SIGPIPE.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  return tally::cli::Run(args, tally::cli::EnvFromProcess(), stdout, stderr);
}
