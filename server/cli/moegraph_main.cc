// `moegraph`: the command-line tool. Subcommands register themselves
// (engine/common/cli_registry.h); this file only dispatches and prints help.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/common/cli_registry.h"
#include "engine/parallel/nccl_environment.h"

namespace {
void PrintHelp(FILE* out) {
  std::vector<moegraph::CliCommand> cmds = moegraph::CliCommands();
  std::sort(cmds.begin(), cmds.end(),
            [](const auto& a, const auto& b) { return std::strcmp(a.name, b.name) < 0; });
  std::fprintf(out, "usage: moegraph COMMAND [ARGS...]\n\ncommands:\n");
  for (const auto& c : cmds) std::fprintf(out, "  %-14s %s\n", c.name, c.summary);
  std::fprintf(out, "\n'moegraph COMMAND --help' shows a command's arguments.\n");
}
}  // namespace

int main(int argc, char** argv) {
  moegraph::ApplyNcclDefaults();  // before any thread starts
  if (argc < 2) {
    PrintHelp(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    PrintHelp(stdout);
    return 0;
  }
  for (const auto& c : moegraph::CliCommands()) {
    if (cmd == c.name) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "moegraph: unknown command '%s'\n\n", cmd.c_str());
  PrintHelp(stderr);
  return 2;
}
