// Argument parsing shared by the client subcommands of `moegraph` (generate,
// health, info): --name=value or --name value, repeatable flags, bare
// positionals, and the server address (--server, else $MOEGRAPH_SERVER, else
// 127.0.0.1:50051).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moegraph {

struct CliArgs {
  std::vector<std::string> positionals;
  std::multimap<std::string, std::string> values;  // "--max-tokens" -> "16"
  std::set<std::string> switches;                  // "--ignore-eos"

  bool has(const std::string& name) const {
    return switches.contains(name) || values.contains(name);
  }
  // The last value given for `name`, or `fallback`.
  std::string get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> all(const std::string& name) const;
};

// `value_flags` take a value; `switch_flags` do not. argv[0] is the
// subcommand's name. Unknown flags are errors.
absl::StatusOr<CliArgs> ParseCliArgs(int argc, char** argv,
                                     const std::set<std::string>& value_flags,
                                     const std::set<std::string>& switch_flags);

std::string ServerAddress(const CliArgs& args);

// The common start of every client subcommand: on a parse error (or a
// positional argument where `allow_positionals` is false) prints the error and
// `usage` to stderr and returns 2; on --help prints `usage` to stdout and
// returns 0; otherwise returns nullopt and the command goes on.
std::optional<int> HandleUsage(const absl::StatusOr<CliArgs>& args, const char* command,
                               const char* usage, bool allow_positionals);

// Numbers with the flag's name in the error.
absl::StatusOr<double> ParseDoubleFlag(const std::string& name, const std::string& value);
absl::StatusOr<long long> ParseIntFlag(const std::string& name, const std::string& value);

}  // namespace moegraph
