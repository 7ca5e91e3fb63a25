#include "server/client/cli_args.h"

#include <cstdio>
#include <cstdlib>

namespace moegraph {

std::string CliArgs::get(const std::string& name, const std::string& fallback) const {
  auto range = values.equal_range(name);
  if (range.first == range.second) return fallback;
  return std::prev(range.second)->second;
}

std::vector<std::string> CliArgs::all(const std::string& name) const {
  std::vector<std::string> out;
  auto range = values.equal_range(name);
  for (auto it = range.first; it != range.second; ++it) out.push_back(it->second);
  return out;
}

absl::StatusOr<CliArgs> ParseCliArgs(int argc, char** argv,
                                     const std::set<std::string>& value_flags,
                                     const std::set<std::string>& switch_flags) {
  CliArgs args;
  bool only_positionals = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (only_positionals || arg.size() < 2 || arg.rfind("--", 0) != 0) {
      args.positionals.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positionals = true;
      continue;
    }
    std::string name = arg;
    std::string value;
    bool has_value = false;
    if (size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (switch_flags.contains(name) && !has_value) {
      args.switches.insert(name);
    } else if (value_flags.contains(name)) {
      if (!has_value) {
        if (i + 1 >= argc) return absl::InvalidArgumentError(name + ": needs a value");
        value = argv[++i];
      }
      args.values.emplace(name, value);
    } else {
      return absl::InvalidArgumentError("unknown flag " + name);
    }
  }
  return args;
}

std::string ServerAddress(const CliArgs& args) {
  if (args.values.contains("--server")) return args.get("--server");
  if (const char* env = std::getenv("MOEGRAPH_SERVER"); env != nullptr && *env != '\0') return env;
  return "127.0.0.1:50051";
}

absl::StatusOr<double> ParseDoubleFlag(const std::string& name, const std::string& value) {
  char* end = nullptr;
  double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0') {
    return absl::InvalidArgumentError(name + ": not a number: '" + value + "'");
  }
  return v;
}

absl::StatusOr<long long> ParseIntFlag(const std::string& name, const std::string& value) {
  char* end = nullptr;
  long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0') {
    return absl::InvalidArgumentError(name + ": not an integer: '" + value + "'");
  }
  return v;
}

std::optional<int> HandleUsage(const absl::StatusOr<CliArgs>& args, const char* command,
                               const char* usage, bool allow_positionals) {
  if (!args.ok() || (!allow_positionals && !args->positionals.empty())) {
    std::fprintf(stderr, "moegraph %s: %s\n\n%s", command,
                 args.ok() ? "unexpected argument" : std::string(args.status().message()).c_str(),
                 usage);
    return 2;
  }
  if (args->has("--help")) {
    std::fputs(usage, stdout);
    return 0;
  }
  return std::nullopt;
}

}  // namespace moegraph
