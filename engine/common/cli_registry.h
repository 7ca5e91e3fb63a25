// Subcommands of the `moegraph` tool register themselves here. Each lives in
// a file named *_command.cc, compiled straight into the executable (so the
// static registration is never dropped by the linker).
#pragma once

#include <vector>

namespace moegraph {

struct CliCommand {
  const char* name;     // "check-golden"
  const char* usage;    // one line: "check-golden MODEL_DIR [--golden FILE] [--device cpu|cuda]"
  const char* summary;  // one line of what it does
  int (*run)(int argc, char** argv);  // argv[0] is the subcommand name
};

bool RegisterCliCommand(const CliCommand& command);
const std::vector<CliCommand>& CliCommands();

}  // namespace moegraph

#define MOEGRAPH_CLI_COMMAND(ident, ...) \
  static const bool moegraph_cli_registered_##ident = ::moegraph::RegisterCliCommand({__VA_ARGS__})
