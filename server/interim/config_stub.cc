// Interim: a minimal YAML/flag reader until server/config lands.
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "server/config/server_config.h"
#include "yaml-cpp/yaml.h"

namespace moegraph {
namespace {

using Setter = std::function<void(ServerConfig*, const std::string&)>;

const std::map<std::string, Setter>& Setters() {
  static const auto* setters = new std::map<std::string, Setter>{
      {"listen_address", [](ServerConfig* c, const std::string& v) { c->listen_address = v; }},
      {"metrics_address", [](ServerConfig* c, const std::string& v) { c->metrics_address = v; }},
      {"model_dir", [](ServerConfig* c, const std::string& v) { c->model_dir = v; }},
      {"device", [](ServerConfig* c, const std::string& v) { c->device = v; }},
      {"slots", [](ServerConfig* c, const std::string& v) { c->slots = std::stoi(v); }},
      {"queue_size", [](ServerConfig* c, const std::string& v) { c->queue_size = std::stoi(v); }},
      {"max_step_tokens",
       [](ServerConfig* c, const std::string& v) { c->max_step_tokens = std::stoi(v); }},
      {"context_limit",
       [](ServerConfig* c, const std::string& v) { c->context_limit = std::stoi(v); }},
      {"drain_grace_seconds",
       [](ServerConfig* c, const std::string& v) { c->drain_grace_seconds = std::stod(v); }},
      {"log_level", [](ServerConfig* c, const std::string& v) { c->log_level = v; }},
      {"max_stop_strings",
       [](ServerConfig* c, const std::string& v) { c->max_stop_strings = std::stoi(v); }},
      {"max_stop_string_length",
       [](ServerConfig* c, const std::string& v) { c->max_stop_string_length = std::stoi(v); }},
      {"max_logprobs",
       [](ServerConfig* c, const std::string& v) { c->max_logprobs = std::stoi(v); }},
      {"sampling.temperature",
       [](ServerConfig* c, const std::string& v) { c->sampling.temperature = std::stod(v); }},
      {"sampling.top_k",
       [](ServerConfig* c, const std::string& v) { c->sampling.top_k = std::stoi(v); }},
      {"sampling.top_p",
       [](ServerConfig* c, const std::string& v) { c->sampling.top_p = std::stod(v); }},
      {"sampling.min_p",
       [](ServerConfig* c, const std::string& v) { c->sampling.min_p = std::stod(v); }},
      {"sampling.max_tokens",
       [](ServerConfig* c, const std::string& v) { c->sampling.max_tokens = std::stoi(v); }},
  };
  return *setters;
}

absl::Status Set(const std::string& key, const std::string& value, ServerConfig* config) {
  auto it = Setters().find(key);
  if (it == Setters().end()) return absl::InvalidArgumentError("unknown key " + key);
  try {
    it->second(config, value);
  } catch (const std::exception&) {
    return absl::InvalidArgumentError(key + ": bad value '" + value + "'");
  }
  return absl::OkStatus();
}

absl::Status Walk(const YAML::Node& node, const std::string& prefix, ServerConfig* config) {
  for (const auto& kv : node) {
    const std::string key = prefix + kv.first.as<std::string>();
    if (kv.second.IsMap()) {
      absl::Status s = Walk(kv.second, key + ".", config);
      if (!s.ok()) return s;
    } else {
      absl::Status s = Set(key, kv.second.as<std::string>(), config);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerConfig> ParseServerConfig(const std::string& yaml_text) {
  ServerConfig config;
  try {
    YAML::Node root = YAML::Load(yaml_text);
    if (root.IsMap()) {
      absl::Status s = Walk(root, "", &config);
      if (!s.ok()) return s;
    }
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return config;
}

absl::StatusOr<ServerConfig> LoadServerConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseServerConfig(ss.str());
}

absl::Status ApplyServerFlags(const std::vector<std::string>& args, ServerConfig* config) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (a.rfind("--", 0) != 0) return absl::InvalidArgumentError("unexpected argument " + a);
    a = a.substr(2);
    std::string value;
    size_t eq = a.find('=');
    if (eq != std::string::npos) {
      value = a.substr(eq + 1);
      a = a.substr(0, eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError("--" + a + " needs a value");
    }
    for (char& c : a) c = c == '-' ? '_' : c;
    absl::Status s = Set(a, value, config);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::string ServerConfigHelp() {
  std::string help = "keys (interim reader):\n";
  for (const auto& [key, setter] : Setters()) help += "  --" + key + "\n";
  return help;
}

}  // namespace moegraph
