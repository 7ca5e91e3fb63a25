#include "engine/common/cli_registry.h"

namespace moegraph {
namespace {
std::vector<CliCommand>& Registry() {
  static std::vector<CliCommand> commands;
  return commands;
}
}  // namespace

bool RegisterCliCommand(const CliCommand& command) {
  Registry().push_back(command);
  return true;
}
const std::vector<CliCommand>& CliCommands() { return Registry(); }

}  // namespace moegraph
