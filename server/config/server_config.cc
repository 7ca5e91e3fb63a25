// Reads moegraphd's YAML config and flags through one table of fields, so that
// the file, the flags, the validation messages and --help always agree.
#include "server/config/server_config.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "engine/common/logging.h"
#include "engine/engine.h"
#include "server/config/host_port.h"

namespace moegraph {
namespace {

// Refused before yaml-cpp sees it: a config is a few hundred bytes, and the
// parser's cost grows with nesting depth.
constexpr size_t kMaxConfigBytes = 1 << 20;

template <typename T>
using FieldRef = T& (*)(ServerConfig&);

// One key of the config. `parse` reads a scalar's text into the config and
// returns an error without the key (the caller names the key or flag);
// `format` prints the current value for --help.
struct Field {
  std::string key;         // "sampling.top_p"
  std::string expected;    // for type errors: "an integer", "a number", "a string"
  std::string value_name;  // for --help: "N", "X", "HOST:PORT"
  std::string allowed;     // for --help: ">= 1", "in (0, 1]", ...
  std::string help;
  std::function<absl::Status(absl::string_view text, ServerConfig* config)> parse;
  std::function<std::string(const ServerConfig& config)> format;
};

// The text from_chars should read: YAML and flags may say "+5", from_chars not.
absl::string_view NumberText(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t.size() > 1 && t[0] == '+' && (absl::ascii_isdigit(t[1]) || t[1] == '.')) t.remove_prefix(1);
  return t;
}

absl::Status Invalid(absl::string_view allowed, absl::string_view text) {
  return absl::InvalidArgumentError(absl::StrCat("must be ", allowed, ", got ", text));
}

Field IntField(std::string key, FieldRef<int> ref, int lo, int hi, std::string help) {
  const std::string allowed = hi == std::numeric_limits<int>::max()
                                  ? absl::StrCat(">= ", lo)
                                  : absl::StrCat("in [", lo, ", ", hi, "]");
  Field f{std::move(key), "an integer", "N", allowed, std::move(help), nullptr, nullptr};
  f.parse = [ref, lo, hi](absl::string_view text, ServerConfig* config) -> absl::Status {
    const absl::string_view digits = NumberText(text);
    int64_t value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || end != digits.data() + digits.size() ||
        ec == std::errc::invalid_argument) {
      return absl::InvalidArgumentError(absl::StrCat("expected an integer, got \"", text, "\""));
    }
    if (ec == std::errc::result_out_of_range) {  // beyond int64: out of any range below
      value = absl::StartsWith(digits, "-") ? std::numeric_limits<int64_t>::min()
                                            : std::numeric_limits<int64_t>::max();
    }
    if (value < lo) return Invalid(absl::StrCat(">= ", lo), text);
    if (value > hi) return Invalid(absl::StrCat("<= ", hi), text);
    ref(*config) = static_cast<int>(value);
    return absl::OkStatus();
  };
  f.format = [ref](const ServerConfig& config) {
    ServerConfig copy = config;
    return absl::StrCat(ref(copy));
  };
  return f;
}

// A closed or open interval of finite numbers; an infinite bound means none.
struct Interval {
  double lo;
  bool lo_open;
  double hi;
  bool hi_open;

  bool Contains(double v) const {
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
  std::string Text() const {
    if (std::isinf(hi)) return absl::StrCat(lo_open ? "> " : ">= ", lo);
    return absl::StrCat("in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]");
  }
};

Field NumberField(std::string key, FieldRef<double> ref, Interval range, std::string help) {
  Field f{std::move(key), "a number", "X", range.Text(), std::move(help), nullptr, nullptr};
  f.parse = [ref, range](absl::string_view text, ServerConfig* config) -> absl::Status {
    const absl::string_view digits = NumberText(text);
    double value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
        !std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat("expected a number, got \"", text, "\""));
    }
    if (!range.Contains(value)) return Invalid(range.Text(), text);
    ref(*config) = value;
    return absl::OkStatus();
  };
  f.format = [ref](const ServerConfig& config) {
    ServerConfig copy = config;
    return absl::StrCat(ref(copy));
  };
  return f;
}

// A string field whose value `check` accepts (nullptr: any value).
Field StringField(std::string key, FieldRef<std::string> ref, std::string value_name,
                  std::string allowed, std::string help,
                  absl::Status (*check)(absl::string_view text)) {
  Field f{std::move(key), "a string", std::move(value_name), std::move(allowed), std::move(help),
          nullptr,        nullptr};
  f.parse = [ref, check](absl::string_view text, ServerConfig* config) -> absl::Status {
    if (check != nullptr) {
      if (absl::Status s = check(text); !s.ok()) return s;
    }
    ref(*config) = std::string(text);
    return absl::OkStatus();
  };
  f.format = [ref](const ServerConfig& config) {
    ServerConfig copy = config;
    const std::string& value = ref(copy);
    return value.empty() ? std::string("\"\"") : value;
  };
  return f;
}

absl::Status CheckAddress(absl::string_view text) { return ParseHostPort(text).status(); }

absl::Status CheckOptionalAddress(absl::string_view text) {
  return text.empty() ? absl::OkStatus() : CheckAddress(text);
}

absl::Status CheckNotEmpty(absl::string_view text) {
  return text.empty() ? absl::InvalidArgumentError("must not be empty") : absl::OkStatus();
}

absl::Status CheckDevice(absl::string_view text) {
  if (text == "auto" || text == "cpu" || text == "cuda") return absl::OkStatus();
  if (absl::StartsWith(text, "cuda:")) {
    const absl::string_view index = text.substr(5);
    int n = -1;
    const auto [end, ec] = std::from_chars(index.data(), index.data() + index.size(), n);
    if (!index.empty() && absl::ascii_isdigit(index[0]) && ec == std::errc() &&
        end == index.data() + index.size()) {
      return absl::OkStatus();
    }
  }
  return Invalid("auto, cpu, cuda or cuda:N (N = a GPU index)", absl::StrCat("\"", text, "\""));
}

// "" or a comma-separated list of cpu, cpu:N, cuda, cuda:N (the engine
// refuses what it cannot run yet, naming the entry).
absl::Status CheckDevices(absl::string_view text) {
  if (text.empty()) return absl::OkStatus();
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    absl::string_view index;
    if (entry == "cpu" || entry == "cuda") continue;
    if (absl::StartsWith(entry, "cpu:")) index = entry.substr(4);
    if (absl::StartsWith(entry, "cuda:")) index = entry.substr(5);
    int n = -1;
    const auto [end, ec] = std::from_chars(index.data(), index.data() + index.size(), n);
    if (index.empty() || !absl::ascii_isdigit(index[0]) || ec != std::errc() ||
        end != index.data() + index.size()) {
      return Invalid("\"\" or a comma-separated list of cpu:N or cuda:N",
                     absl::StrCat("\"", text, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckTransport(absl::string_view text) {
  for (const char* t : kTransports) {
    if (text == t) return absl::OkStatus();
  }
  return Invalid(absl::StrCat("one of ", absl::StrJoin(kTransports, ", ")),
                 absl::StrCat("\"", text, "\""));
}

absl::Status CheckLayout(absl::string_view text) {
  for (const char* layout : kLayouts) {
    if (text == layout) return absl::OkStatus();
  }
  return Invalid(absl::StrCat("one of ", absl::StrJoin(kLayouts, ", ")),
                 absl::StrCat("\"", text, "\""));
}

absl::Status CheckLogLevel(absl::string_view text) {
  LogLevel level;
  if (ParseLogLevel(std::string_view(text.data(), text.size()), &level)) return absl::OkStatus();
  return Invalid("one of error, warn, info, verbose", absl::StrCat("\"", text, "\""));
}

absl::Status CheckGraphs(absl::string_view text) {
  for (const char* mode : kGraphModes) {
    if (text == mode) return absl::OkStatus();
  }
  return Invalid("one of auto, off, piecewise, full", absl::StrCat("\"", text, "\""));
}

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr int kIntMax = std::numeric_limits<int>::max();

const std::vector<Field>& Fields() {
  static const std::vector<Field>* fields = new std::vector<Field>{
      StringField(
          "listen_address", [](ServerConfig& c) -> std::string& { return c.listen_address; },
          "HOST:PORT", "host:port, IPv6 in brackets",
          "gRPC listen address (port 0 picks a free port).", CheckAddress),
      StringField(
          "metrics_address", [](ServerConfig& c) -> std::string& { return c.metrics_address; },
          "HOST:PORT", "host:port, or \"\" for no metrics server",
          "Prometheus /metrics HTTP address (plain HTTP; keep it on loopback or a private "
          "network).",
          CheckOptionalAddress),
      StringField(
          "metrics_basic_auth_file",
          [](ServerConfig& c) -> std::string& { return c.metrics_basic_auth_file; }, "FILE",
          "a file path, or \"\" for no authentication",
          "Lines of \"USER SHA256\" (the hex SHA-256 of each user's password; use random "
          "passwords); set, every scrape must send one user's HTTP basic auth, others get 401.",
          nullptr),
      StringField(
          "metrics_tls_cert_file",
          [](ServerConfig& c) -> std::string& { return c.metrics_tls_cert_file; }, "FILE",
          "\"\" only (TLS on /metrics is not available in this build)",
          "Reserved: set, start-up fails with the reason (Debian 12's civetweb cannot serve "
          "TLS); put a TLS-terminating proxy in front of a loopback metrics_address instead.",
          nullptr),
      StringField(
          "model_dir", [](ServerConfig& c) -> std::string& { return c.model_dir; }, "DIR",
          "a directory path", "Model directory (config.json, *.safetensors, tokenizer.json).",
          CheckNotEmpty),
      StringField(
          "device", [](ServerConfig& c) -> std::string& { return c.device; }, "DEVICE",
          "auto, cpu, cuda or cuda:N", "Where the model runs; auto = cuda if a GPU is present.",
          CheckDevice),
      StringField(
          "graphs", [](ServerConfig& c) -> std::string& { return c.graphs; }, "MODE",
          "auto, off, piecewise or full",
          "Decode steps: off = every op eager; full = one CUDA graph per batch bucket (all "
          "layers, head and sampling), captured at start-up; piecewise = graphs between the "
          "indexer and attention ops, which run eagerly sized by the real positions; auto = full "
          "on a GPU, off on the CPU.",
          CheckGraphs),
      StringField(
          "devices", [](ServerConfig& c) -> std::string& { return c.devices; }, "LIST",
          "\"\" or a comma-separated list of cpu:N or cuda:N",
          "Several ranks in one daemon; \"\" = device alone. cpu:0,cpu:1,... runs that many "
          "in-process CPU ranks (expert parallelism without GPUs); cuda:0,cuda:1,... one rank "
          "a GPU (a repeated cuda:N puts several ranks on one GPU); CUDA ranks warm up together "
          "and run decode graphs in every layout (their exchange and handoff meet on the "
          "device).",
          CheckDevices),
      StringField(
          "layout", [](ServerConfig& c) -> std::string& { return c.layout; }, "LAYOUT", "ep",
          "How the model is split over devices: ep = routed experts split evenly, attention "
          "and shared expert replicated, slots shared out; layers = contiguous blocks of "
          "layers, one a device (2 to the model's layer count), every slot on each; "
          "ep+layers = layer_blocks blocks of layers over as many devices each, ep within "
          "each block.",
          CheckLayout),
      IntField(
          "layer_blocks", [](ServerConfig& c) -> int& { return c.layer_blocks; }, 0, 4096,
          "With layout ep+layers: how many blocks of layers (2 to the model's layer count, "
          "dividing devices into blocks of 2 or more); 0 otherwise."),
      StringField(
          "transport", [](ServerConfig& c) -> std::string& { return c.transport; }, "TRANSPORT",
          "auto",
          "How ep ranks exchange tokens: in-process (CPU ranks meet at host barriers, CUDA "
          "ranks sharing a GPU on the device; decode graphs may hold it), nccl (CUDA ranks on "
          "distinct GPUs; decode graphs may hold it), auto = in-process.",
          CheckTransport),
      IntField(
          "slots", [](ServerConfig& c) -> int& { return c.slots; }, 1, 65536,
          "Sequence slots: requests running at once."),
      IntField(
          "queue_size", [](ServerConfig& c) -> int& { return c.queue_size; }, 0, 1000000,
          "Requests waiting for a slot before new ones are refused (RESOURCE_EXHAUSTED)."),
      IntField(
          "max_step_tokens", [](ServerConfig& c) -> int& { return c.max_step_tokens; }, 1, 1 << 20,
          "Token budget of one step (long prompts are prefilled in chunks)."),
      IntField(
          "context_limit", [](ServerConfig& c) -> int& { return c.context_limit; }, 0, kIntMax,
          "Longest prompt + output in tokens; 0 = the model's max_position_embeddings."),
      IntField(
          "state_pool_tokens", [](ServerConfig& c) -> int& { return c.state_pool_tokens; }, 0,
          kIntMax,
          "Tokens of compressed state the pool holds over all slots; 0 = slots x context "
          "limit, capped at 262144. A request one sequence's share can never hold is "
          "refused (RESOURCE_EXHAUSTED)."),
      IntField(
          "w8a8_min_rows", [](ServerConfig& c) -> int& { return c.w8a8_min_rows; }, 0, kIntMax,
          "FP8 checkpoints on a GPU: products of at least this many rows (prefill chunks) "
          "quantize their activations to e4m3 in 1x128 groups, as the released reference "
          "does, and run cuBLASLt's block-scaled FP8 GEMM; smaller ones keep bf16 "
          "activations. 0 = never."),
      NumberField(
          "sampling.temperature", [](ServerConfig& c) -> double& { return c.sampling.temperature; },
          {0, false, kInf, false}, "Default temperature of requests that set none; 0 = greedy."),
      IntField(
          "sampling.top_k", [](ServerConfig& c) -> int& { return c.sampling.top_k; }, 0, kIntMax,
          "Default top-k; 0 = off."),
      NumberField(
          "sampling.top_p", [](ServerConfig& c) -> double& { return c.sampling.top_p; },
          {0, true, 1, false}, "Default top-p; 1 = off."),
      NumberField(
          "sampling.min_p", [](ServerConfig& c) -> double& { return c.sampling.min_p; },
          {0, false, 1, true}, "Default min-p; 0 = off."),
      IntField(
          "sampling.max_tokens", [](ServerConfig& c) -> int& { return c.sampling.max_tokens; }, 1,
          kIntMax, "Default limit of generated tokens per request."),
      NumberField(
          "drain_grace_seconds", [](ServerConfig& c) -> double& { return c.drain_grace_seconds; },
          {0, false, 3600, false},
          "On SIGTERM: seconds running requests get to finish before they are cancelled."),
      StringField(
          "log_level", [](ServerConfig& c) -> std::string& { return c.log_level; }, "LEVEL",
          "error, warn, info or verbose", "Log level (verbose traces GPU resources).",
          CheckLogLevel),
      IntField(
          "max_stop_strings", [](ServerConfig& c) -> int& { return c.max_stop_strings; }, 0, 1024,
          "Most stop strings one request may give."),
      IntField(
          "max_stop_string_length",
          [](ServerConfig& c) -> int& { return c.max_stop_string_length; }, 1, 65536,
          "Longest stop string in bytes."),
      IntField(
          "max_logprobs", [](ServerConfig& c) -> int& { return c.max_logprobs; }, 0, 1024,
          "Most top logprobs one request may ask for per token."),
      IntField(
          "max_prompt_bytes", [](ServerConfig& c) -> int& { return c.max_prompt_bytes; }, 1,
          64 << 20,
          "Longest text prompt (Generate and Tokenize) in bytes, refused before it is "
          "tokenized; tokenizing also stops at the context limit."),
      IntField(
          "max_stop_token_ids", [](ServerConfig& c) -> int& { return c.max_stop_token_ids; }, 0,
          65536, "Most stop token ids one request may give."),
      IntField(
          "max_message_bytes", [](ServerConfig& c) -> int& { return c.max_message_bytes; }, 1024,
          4 << 20, "Largest streamed message in bytes; output that piled up is sent in several."),
      IntField(
          "max_stream_backlog_bytes",
          [](ServerConfig& c) -> int& { return c.max_stream_backlog_bytes; }, 1024, 1 << 30,
          "Undelivered output a stream may hold; past it the sequence is paused (slot kept, "
          "no tokens generated) until the client reads."),
      NumberField(
          "stall_timeout_seconds",
          [](ServerConfig& c) -> double& { return c.stall_timeout_seconds; },
          {0, true, 86400, false},
          "A sequence paused this long for a client that does not read ends with "
          "RESOURCE_EXHAUSTED."),
      IntField(
          "max_streams_per_connection",
          [](ServerConfig& c) -> int& { return c.max_streams_per_connection; }, 1, 1 << 20,
          "Concurrent calls one HTTP/2 connection may hold."),
      NumberField(
          "keepalive_time_seconds",
          [](ServerConfig& c) -> double& { return c.keepalive_time_seconds; },
          {1, false, 86400, false},
          "The server pings a connection this often; clients may ping (with or without calls) "
          "every 10 s at most."),
      NumberField(
          "keepalive_timeout_seconds",
          [](ServerConfig& c) -> double& { return c.keepalive_timeout_seconds; },
          {1, false, 3600, false},
          "A connection that leaves a ping unanswered this long is closed."),
      IntField(
          "max_waiting_per_identity",
          [](ServerConfig& c) -> int& { return c.max_waiting_per_identity; }, 0, 1000000,
          "Requests one caller may have waiting in the queue (RESOURCE_EXHAUSTED beyond it); "
          "the caller is its API key's name, else its client certificate's name, else (no "
          "identity) its IP address. 0 = no limit."),
      StringField(
          "tls_cert_file", [](ServerConfig& c) -> std::string& { return c.tls_cert_file; }, "FILE",
          "a PEM file, or \"\" for no TLS",
          "Server certificate chain (PEM) of the gRPC listener; with tls_key_file turns on TLS.",
          nullptr),
      StringField(
          "tls_key_file", [](ServerConfig& c) -> std::string& { return c.tls_key_file; }, "FILE",
          "a PEM file, or \"\"", "Private key (PEM) of tls_cert_file.", nullptr),
      StringField(
          "tls_client_ca_file",
          [](ServerConfig& c) -> std::string& { return c.tls_client_ca_file; }, "FILE",
          "a PEM file, or \"\" for no client certificates",
          "CA certificates (PEM) that sign client certificates; set, every client must present "
          "one (mutual TLS), and its common name is the caller's identity.",
          nullptr),
      IntField(
          "tls_reload_seconds", [](ServerConfig& c) -> int& { return c.tls_reload_seconds; }, 1,
          86400,
          "The TLS files are re-read this often; replaced certificates apply to new "
          "connections."),
      StringField(
          "api_keys_file", [](ServerConfig& c) -> std::string& { return c.api_keys_file; }, "FILE",
          "a file path, or \"\" for no keys",
          "Lines of \"NAME SHA256\" (the hex SHA-256 of each key); set, every call must send "
          "\"authorization: Bearer KEY\" and the key's name is the caller's identity.",
          nullptr),
  };
  return *fields;
}

const Field* FindField(absl::string_view key) {
  for (const Field& f : Fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

// True if some key lies under "`group`.".
bool IsGroup(absl::string_view group) {
  for (const Field& f : Fields()) {
    if (absl::StartsWith(f.key, group) && f.key.size() > group.size() &&
        f.key[group.size()] == '.') {
      return true;
    }
  }
  return false;
}

std::string LineOf(const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  return mark.is_null() ? "" : absl::StrCat(" (line ", mark.line + 1, ")");
}

const char* KindOf(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing (null)";
    default:
      return "a scalar";
  }
}

// Keys that were renamed: the old name is refused, pointing to the new one.
const char* RenamedTo(absl::string_view key) {
  if (key == "max_waiting_per_peer") return "max_waiting_per_identity";
  return nullptr;
}

absl::Status UnknownKey(const std::string& path, const YAML::Node& at) {
  std::string hint;
  const std::string underscored = absl::StrReplaceAll(path, {{"-", "_"}});
  if (const char* renamed = RenamedTo(underscored); renamed != nullptr) {
    hint = absl::StrCat(" (renamed ", renamed, ")");
  } else if (underscored != path && (FindField(underscored) != nullptr || IsGroup(underscored))) {
    hint = absl::StrCat(" (did you mean ", underscored, "?)");
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown key \"", path, "\"", hint, LineOf(at)));
}

// Applies the keys of `map` (a YAML map at `prefix`, "" or "sampling.").
absl::Status ApplyMap(const YAML::Node& map, const std::string& prefix, ServerConfig* config) {
  std::set<std::string> seen;
  for (const auto& entry : map) {
    const YAML::Node& key_node = entry.first;
    const YAML::Node& value = entry.second;
    if (!key_node.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix.empty() ? "top level" : prefix.substr(0, prefix.size() - 1),
                       ": keys must be names, got ", KindOf(key_node), LineOf(key_node)));
    }
    const std::string path = prefix + key_node.Scalar();
    if (!seen.insert(path).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": given twice", LineOf(key_node)));
    }
    if (IsGroup(path)) {
      if (value.IsNull()) continue;  // "sampling:" with nothing under it
      if (!value.IsMap()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": expected a map, got ", KindOf(value), LineOf(key_node)));
      }
      if (absl::Status s = ApplyMap(value, path + ".", config); !s.ok()) return s;
      continue;
    }
    const Field* field = FindField(path);
    if (field == nullptr) return UnknownKey(path, key_node);
    if (!value.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected ", field->expected, ", got ",
                                                     KindOf(value), LineOf(key_node)));
    }
    if (absl::Status s = field->parse(value.Scalar(), config); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message(), LineOf(key_node)));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerConfig> ParseServerConfig(const std::string& yaml_text) {
  if (yaml_text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config is ", yaml_text.size(), " bytes, more than the limit of ", kMaxConfigBytes));
  }
  ServerConfig config;
  try {
    const YAML::Node root = YAML::Load(yaml_text);
    if (root.IsNull()) return config;  // an empty file: all defaults
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat("top level: expected a map of keys, got ", KindOf(root), LineOf(root)));
    }
    if (absl::Status s = ApplyMap(root, "", &config); !s.ok()) return s;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("YAML syntax error at line ", e.mark.line + 1,
                                                   ", column ", e.mark.column + 1, ": ", e.msg));
  }
  return config;
}

absl::StatusOr<ServerConfig> LoadServerConfig(const std::string& path) {
  // A directory opens and reads as empty: it would silently give the defaults.
  std::error_code ec;
  const std::filesystem::file_status st = std::filesystem::status(path, ec);
  if (!ec && std::filesystem::is_directory(st)) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": is a directory, not a YAML file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("config file ", path, ": cannot open: ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad() || (in.fail() && !in.eof())) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": cannot read: ", std::strerror(errno)));
  }
  absl::StatusOr<ServerConfig> config = ParseServerConfig(text.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat("config file ", path, ": ", config.status().message()));
  }
  return config;
}

absl::Status ApplyServerFlags(const std::vector<std::string>& args, ServerConfig* config) {
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!absl::StartsWith(arg, "--") || arg.size() == 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected argument \"", arg, "\" (flags are --key=value or --key value)"));
    }
    const size_t eq = arg.find('=');
    const std::string flag = arg.substr(0, eq);  // "--sampling.top-p"
    const std::string key = absl::StrReplaceAll(flag.substr(2), {{"-", "_"}});
    const Field* field = FindField(key);
    if (field == nullptr) {
      const char* renamed = RenamedTo(key);
      return absl::InvalidArgumentError(
          renamed != nullptr ? absl::StrCat("unknown flag ", flag, " (renamed --", renamed, ")")
                             : absl::StrCat("unknown flag ", flag, " (--help lists the flags)"));
    }
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < args.size() && !absl::StartsWith(args[i + 1], "--")) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag ", flag, " needs a value"));
    }
    if (absl::Status s = field->parse(value, config); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("flag ", flag, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateServerConfig(const ServerConfig& config) {
  if (config.max_step_tokens < config.slots) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_step_tokens: must be >= slots (one decode token per slot each step), got ",
        config.max_step_tokens, " with slots ", config.slots));
  }
  if (config.tls_cert_file.empty() != config.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_cert_file, tls_key_file: give both (TLS) or neither (plaintext)");
  }
  if (!config.tls_client_ca_file.empty() && config.tls_cert_file.empty()) {
    return absl::InvalidArgumentError(
        "tls_client_ca_file: needs tls_cert_file and tls_key_file (client certificates are "
        "checked over TLS)");
  }
  if (!config.metrics_tls_cert_file.empty()) {
    // Debian 12's libcivetweb1 (1.15, under prometheus-cpp's Exposer) opens
    // OpenSSL with dlopen and looks its functions up by name; OpenSSL 3 has
    // SSL_get_peer_certificate only as a macro, so the pointer stays null and
    // civetweb calls it on every HTTPS connection: the process dies with
    // SIGSEGV (seen with curl; upstream civetweb issue 1334 reports the
    // missing function). tests/unit/metrics_test.cc notices when the
    // libraries change.
    return absl::InvalidArgumentError(
        "metrics_tls_cert_file: TLS on /metrics is not available: Debian 12's civetweb 1.15 "
        "looks up SSL_get_peer_certificate, which OpenSSL 3 does not export, and would crash "
        "the daemon on the first HTTPS connection; leave it \"\", keep metrics_address on "
        "loopback and put a TLS-terminating proxy in front (README, \"Security\")");
  }
  if (config.max_message_bytes > config.max_stream_backlog_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_stream_backlog_bytes: must be >= max_message_bytes (",
                     config.max_message_bytes, "), got ", config.max_stream_backlog_bytes));
  }
  return absl::OkStatus();
}

std::string ServerConfigHelp() {
  const ServerConfig defaults;
  std::string out =
      "Configuration: a YAML file (--config PATH; see config/moegraphd.yaml) with the keys\n"
      "below, each of which is also a flag: --key=value or --key value, with '-' or '_',\n"
      "nested keys with a dot (--sampling.top_p=0.9). Flags override the file.\n";
  for (const Field& f : Fields()) {
    absl::StrAppend(&out, "\n  --", f.key, " ", f.value_name, "\n      ", f.help,
                    "\n      Default: ", f.format(defaults), ". Allowed: ", f.allowed, ".\n");
  }
  return out;
}

}  // namespace moegraph
