// moegraphd's YAML config and flags: defaults, every key, every error message.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "server/config/host_port.h"
#include "server/config/server_config.h"

namespace moegraph {
namespace {

// The error message of parsing `yaml` ("" if it parsed).
std::string ParseError(const std::string& yaml) {
  absl::StatusOr<ServerConfig> config = ParseServerConfig(yaml);
  return config.ok() ? "" : std::string(config.status().message());
}

std::string FlagError(const std::vector<std::string>& args) {
  ServerConfig config;
  absl::Status status = ApplyServerFlags(args, &config);
  return status.ok() ? "" : std::string(status.message());
}

ServerConfig MustParse(const std::string& yaml) {
  absl::StatusOr<ServerConfig> config = ParseServerConfig(yaml);
  INFO(config.status().ToString());
  REQUIRE(config.ok());
  return *config;
}

const std::vector<std::string> kAllKeys = {
    "listen_address",
    "metrics_address",
    "metrics_basic_auth_file",
    "metrics_tls_cert_file",
    "model_dir",
    "device",
    "graphs",
    "devices",
    "layout",
    "layer_blocks",
    "transport",
    "slots",
    "queue_size",
    "max_step_tokens",
    "context_limit",
    "state_pool_tokens",
    "sampling.temperature",
    "sampling.top_k",
    "sampling.top_p",
    "sampling.min_p",
    "sampling.max_tokens",
    "drain_grace_seconds",
    "log_level",
    "max_stop_strings",
    "max_stop_string_length",
    "max_logprobs",
    "max_prompt_bytes",
    "max_stop_token_ids",
    "max_message_bytes",
    "max_stream_backlog_bytes",
    "stall_timeout_seconds",
    "max_streams_per_connection",
    "keepalive_time_seconds",
    "keepalive_timeout_seconds",
    "max_waiting_per_identity",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "tls_reload_seconds",
    "api_keys_file",
};

TEST_CASE("config: an empty file gives the defaults", "[config]") {
  CHECK(MustParse("") == ServerConfig{});
  CHECK(MustParse("# only a comment\n") == ServerConfig{});
  CHECK(MustParse("sampling:\n") == ServerConfig{});
  const ServerConfig d;
  CHECK(d.listen_address == "127.0.0.1:50051");
  CHECK(d.metrics_address == "127.0.0.1:9464");
  CHECK(d.model_dir == "tests/fixtures/dsv4-tiny");
  CHECK(d.device == "auto");
  CHECK(d.slots == 8);
  CHECK(d.log_level == "info");
}

TEST_CASE("config: config/moegraphd.yaml is the defaults, written out", "[config]") {
  absl::StatusOr<ServerConfig> config =
      LoadServerConfig(std::string(MOEGRAPH_SOURCE_DIR) + "/config/moegraphd.yaml");
  INFO(config.status().ToString());
  REQUIRE(config.ok());
  CHECK(*config == ServerConfig{});
  // ...and names every key, so that it documents them all.
  std::ifstream in(std::string(MOEGRAPH_SOURCE_DIR) + "/config/moegraphd.yaml");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const std::string& key : kAllKeys) {
    const std::string leaf = key.substr(key.find('.') + 1);
    INFO(key);
    CHECK(text.find("\n" + std::string(key.find('.') == std::string::npos ? "" : "  ") + leaf +
                    ":") != std::string::npos);
  }
}

TEST_CASE("config: every key is read", "[config]") {
  const ServerConfig c = MustParse(R"(
listen_address: "[::1]:6000"
metrics_address: ""
metrics_basic_auth_file: /etc/moegraph/metrics-users
model_dir: /models/dsv4
device: cuda:3
graphs: full
devices: "cpu:0,cpu:1"
layout: ep
transport: nccl
slots: 32
queue_size: 0
max_step_tokens: 4096
context_limit: 65536
state_pool_tokens: 1000000
sampling:
  temperature: 0.7
  top_k: 50
  top_p: 0.95
  min_p: 0.05
  max_tokens: 1024
drain_grace_seconds: 2.5
log_level: verbose
max_stop_strings: 4
max_stop_string_length: 64
max_logprobs: 5
max_prompt_bytes: 4096
max_stop_token_ids: 3
max_message_bytes: 2048
max_stream_backlog_bytes: 8192
stall_timeout_seconds: 1.5
max_streams_per_connection: 7
keepalive_time_seconds: 30
keepalive_timeout_seconds: 5
max_waiting_per_identity: 4
)");
  CHECK(c.listen_address == "[::1]:6000");
  CHECK(c.metrics_address.empty());
  CHECK(c.metrics_basic_auth_file == "/etc/moegraph/metrics-users");
  CHECK(c.model_dir == "/models/dsv4");
  CHECK(c.device == "cuda:3");
  CHECK(c.graphs == "full");
  CHECK(c.devices == "cpu:0,cpu:1");
  CHECK(c.layout == "ep");
  CHECK(c.transport == "nccl");
  CHECK(c.slots == 32);
  CHECK(c.queue_size == 0);
  CHECK(c.max_step_tokens == 4096);
  CHECK(c.context_limit == 65536);
  CHECK(c.state_pool_tokens == 1000000);
  CHECK(c.sampling.temperature == 0.7);
  CHECK(c.sampling.top_k == 50);
  CHECK(c.sampling.top_p == 0.95);
  CHECK(c.sampling.min_p == 0.05);
  CHECK(c.sampling.max_tokens == 1024);
  CHECK(c.drain_grace_seconds == 2.5);
  CHECK(c.log_level == "verbose");
  CHECK(c.max_stop_strings == 4);
  CHECK(c.max_stop_string_length == 64);
  CHECK(c.max_logprobs == 5);
  CHECK(c.max_prompt_bytes == 4096);
  CHECK(c.max_stop_token_ids == 3);
  CHECK(c.max_message_bytes == 2048);
  CHECK(c.max_stream_backlog_bytes == 8192);
  CHECK(c.stall_timeout_seconds == 1.5);
  CHECK(c.max_streams_per_connection == 7);
  CHECK(c.keepalive_time_seconds == 30);
  CHECK(c.keepalive_timeout_seconds == 5);
  CHECK(c.max_waiting_per_identity == 4);

  CHECK(MustParse("device: cpu").device == "cpu");
  CHECK(MustParse("device: cuda").device == "cuda");
  CHECK(MustParse("listen_address: localhost:0").listen_address == "localhost:0");
  CHECK(MustParse("slots: +4").slots == 4);
  CHECK(MustParse("sampling: {top_p: 1}").sampling.top_p == 1);
}

TEST_CASE("config: each invalid value names the key, the range and the value", "[config]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"slots: 0", "slots: must be >= 1, got 0 (line 1)"},
      {"slots: 70000", "slots: must be <= 65536, got 70000 (line 1)"},
      {"slots: 99999999999999999999999",
       "slots: must be <= 65536, got 99999999999999999999999 (line 1)"},
      {"queue_size: -1", "queue_size: must be >= 0, got -1 (line 1)"},
      {"max_step_tokens: 0", "max_step_tokens: must be >= 1, got 0 (line 1)"},
      {"context_limit: -5", "context_limit: must be >= 0, got -5 (line 1)"},
      {"state_pool_tokens: -1", "state_pool_tokens: must be >= 0, got -1 (line 1)"},
      {"state_pool_tokens: 1.5", "state_pool_tokens: expected an integer, got \"1.5\" (line 1)"},
      {"context_limit: 3000000000",
       "context_limit: must be <= 2147483647, got 3000000000 (line 1)"},
      {"sampling:\n  temperature: -0.5", "sampling.temperature: must be >= 0, got -0.5 (line 2)"},
      {"sampling:\n  top_k: -1", "sampling.top_k: must be >= 0, got -1 (line 2)"},
      {"sampling:\n  top_p: 1.5", "sampling.top_p: must be in (0, 1], got 1.5 (line 2)"},
      {"sampling:\n  top_p: 0", "sampling.top_p: must be in (0, 1], got 0 (line 2)"},
      {"sampling:\n  min_p: 1", "sampling.min_p: must be in [0, 1), got 1 (line 2)"},
      {"sampling:\n  max_tokens: 0", "sampling.max_tokens: must be >= 1, got 0 (line 2)"},
      {"drain_grace_seconds: -1", "drain_grace_seconds: must be in [0, 3600], got -1 (line 1)"},
      {"drain_grace_seconds: .inf",
       "drain_grace_seconds: expected a number, got \".inf\" (line 1)"},
      {"max_stop_strings: 2000", "max_stop_strings: must be <= 1024, got 2000 (line 1)"},
      {"max_stop_string_length: 0", "max_stop_string_length: must be >= 1, got 0 (line 1)"},
      {"max_logprobs: -1", "max_logprobs: must be >= 0, got -1 (line 1)"},
      {"device: gpu",
       "device: must be auto, cpu, cuda or cuda:N (N = a GPU index), got \"gpu\" (line 1)"},
      {"device: cuda:-1",
       "device: must be auto, cpu, cuda or cuda:N (N = a GPU index), got \"cuda:-1\" (line 1)"},
      {"device: \"cuda:\"",
       "device: must be auto, cpu, cuda or cuda:N (N = a GPU index), got \"cuda:\" (line 1)"},
      {"devices: \"cpu:0,,cpu:1\"",
       "devices: must be \"\" or a comma-separated list of cpu:N or cuda:N, got "
       "\"cpu:0,,cpu:1\" (line 1)"},
      {"devices: gpu:0",
       "devices: must be \"\" or a comma-separated list of cpu:N or cuda:N, got \"gpu:0\" "
       "(line 1)"},
      {"layout: layers+ep",
       "layout: must be one of ep, layers, ep+layers, got \"layers+ep\" (line 1)"},
      {"transport: carrier",
       "transport: must be one of auto, in-process, nccl, got \"carrier\" (line 1)"},
      {"graphs: partial",
       "graphs: must be one of auto, off, piecewise, full, got \"partial\" (line 1)"},
      {"log_level: debug",
       "log_level: must be one of error, warn, info, verbose, got \"debug\" (line 1)"},
      {"model_dir: \"\"", "model_dir: must not be empty (line 1)"},
      {"listen_address: localhost",
       "listen_address: expected host:port, got \"localhost\" (no port) (line 1)"},
      {"listen_address: \"::1:80\"",
       "listen_address: expected host:port, got \"::1:80\" (an IPv6 host must be in brackets) "
       "(line 1)"},
      {"metrics_address: \"127.0.0.1:99999\"",
       "metrics_address: expected host:port, got \"127.0.0.1:99999\" (port must be an integer "
       "in [0, 65535]) (line 1)"},
      {"metrics_address: \":9464\"",
       "metrics_address: expected host:port, got \":9464\" (empty host) (line 1)"},
  };
  for (const auto& [yaml, message] : cases) {
    INFO(yaml);
    CHECK(ParseError(yaml) == message);
  }
}

TEST_CASE("config: wrong types name the key and the expected type", "[config]") {
  CHECK(ParseError("slots: many") == "slots: expected an integer, got \"many\" (line 1)");
  CHECK(ParseError("slots: 1.5") == "slots: expected an integer, got \"1.5\" (line 1)");
  CHECK(ParseError("slots: [1, 2]") == "slots: expected an integer, got a list (line 1)");
  CHECK(ParseError("slots:\n  a: 1") == "slots: expected an integer, got a map (line 1)");
  CHECK(ParseError("slots:") == "slots: expected an integer, got nothing (null) (line 1)");
  CHECK(ParseError("sampling:\n  top_p: high") ==
        "sampling.top_p: expected a number, got \"high\" (line 2)");
  CHECK(ParseError("sampling: 3") == "sampling: expected a map, got a scalar (line 1)");
  CHECK(ParseError("model_dir: [a]") == "model_dir: expected a string, got a list (line 1)");
  CHECK(ParseError("- slots") == "top level: expected a map of keys, got a list (line 1)");
  CHECK(ParseError("just text") == "top level: expected a map of keys, got a scalar (line 1)");
  CHECK(ParseError("[a]: 1") == "top level: keys must be names, got a list (line 1)");
}

TEST_CASE("config: unknown and repeated keys are refused by name", "[config]") {
  CHECK(ParseError("slots: 4\nslot: 4") == "unknown key \"slot\" (line 2)");
  CHECK(ParseError("sampling:\n  top_q: 0.5") == "unknown key \"sampling.top_q\" (line 2)");
  CHECK(ParseError("queue-size: 3") ==
        "unknown key \"queue-size\" (did you mean queue_size?) (line 1)");
  CHECK(ParseError("top_p: 0.5") == "unknown key \"top_p\" (line 1)");  // belongs under sampling
  CHECK(ParseError("slots: 4\nslots: 5") == "slots: given twice (line 2)");
  CHECK(ParseError("max_waiting_per_peer: 2") ==
        "unknown key \"max_waiting_per_peer\" (renamed max_waiting_per_identity) (line 1)");
}

TEST_CASE("config: YAML syntax errors say where", "[config]") {
  CHECK(ParseError("slots: [1, 2") ==
        "YAML syntax error at line 1, column 1: end of sequence flow not found");
  CHECK(ParseError("a: b: c").rfind("YAML syntax error at line 1", 0) == 0);
}

TEST_CASE("config: flags override the file, in every spelling", "[config]") {
  ServerConfig config = MustParse("slots: 4\nsampling:\n  top_p: 0.5\n");
  REQUIRE(ApplyServerFlags({"--slots=16", "--queue-size", "3", "--sampling.top_p=0.9",
                            "--sampling.max-tokens", "12", "--metrics_address=", "--device",
                            "cuda:1", "--sampling.temperature", "-0", "--log-level=warn"},
                           &config)
              .ok());
  CHECK(config.slots == 16);
  CHECK(config.queue_size == 3);
  CHECK(config.sampling.top_p == 0.9);
  CHECK(config.sampling.max_tokens == 12);
  CHECK(config.metrics_address.empty());
  CHECK(config.device == "cuda:1");
  CHECK(config.sampling.temperature == 0);
  CHECK(config.log_level == "warn");
}

TEST_CASE("config: bad flags are errors naming the flag", "[config]") {
  CHECK(FlagError({"--slotz=3"}) == "unknown flag --slotz (--help lists the flags)");
  CHECK(FlagError({"--temperature=0.5"}) == "unknown flag --temperature (--help lists the flags)");
  CHECK(FlagError({"--slots=0"}) == "flag --slots: must be >= 1, got 0");
  CHECK(FlagError({"--sampling.top-p", "2"}) == "flag --sampling.top-p: must be in (0, 1], got 2");
  CHECK(FlagError({"--slots"}) == "flag --slots needs a value");
  CHECK(FlagError({"--slots", "--device=cpu"}) == "flag --slots needs a value");
  CHECK(FlagError({"--slots", "x"}) == "flag --slots: expected an integer, got \"x\"");
  CHECK(FlagError({"serve"}) ==
        "unexpected argument \"serve\" (flags are --key=value or --key value)");
  CHECK(FlagError({"-v"}) == "unexpected argument \"-v\" (flags are --key=value or --key value)");
  CHECK(FlagError({"--config=x.yaml"}) == "unknown flag --config (--help lists the flags)");
  CHECK(FlagError({"--max-waiting-per-peer=2"}) ==
        "unknown flag --max-waiting-per-peer (renamed --max_waiting_per_identity)");
}

TEST_CASE("config: a config file, then flags on top", "[config]") {
  const std::string path = std::string(MOEGRAPH_BINARY_DIR) + "/server_config_test.yaml";
  {
    std::ofstream out(path);
    out << "slots: 4\nlog_level: warn\n";
  }
  absl::StatusOr<ServerConfig> c = LoadServerConfig(path);
  REQUIRE(c.ok());
  CHECK(c->slots == 4);
  REQUIRE(ApplyServerFlags({"--slots", "6"}, &*c).ok());
  CHECK(c->slots == 6);
  CHECK(c->log_level == "warn");  // untouched by the flags
  {
    std::ofstream out(path);
    out << "slots: 4\nslots_per_gpu: 2\n";
  }
  CHECK(LoadServerConfig(path).status().message() ==
        "config file " + path + ": unknown key \"slots_per_gpu\" (line 2)");
  std::remove(path.c_str());
  absl::StatusOr<ServerConfig> missing = LoadServerConfig(path);
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK(missing.status().message() ==
        "config file " + path + ": cannot open: No such file or directory");
}

TEST_CASE("config: a directory or an unreadable file is an error, not the defaults", "[config]") {
  const std::string dir = std::string(MOEGRAPH_BINARY_DIR);
  absl::StatusOr<ServerConfig> c = LoadServerConfig(dir);
  CHECK(c.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(c.status().message() == "config file " + dir + ": is a directory, not a YAML file");
  c = LoadServerConfig(dir + "/");
  CHECK(c.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("config: limits that depend on each other are checked before anything starts",
          "[config]") {
  ServerConfig c;
  CHECK(ValidateServerConfig(c).ok());
  REQUIRE(ApplyServerFlags({"--slots=65536"}, &c).ok());  // within the key's own range
  CHECK(ValidateServerConfig(c).message() ==
        "max_step_tokens: must be >= slots (one decode token per slot each step), got 256 with "
        "slots 65536");
  c = ServerConfig{};
  c.tls_cert_file = "server.pem";
  CHECK(ValidateServerConfig(c).message() ==
        "tls_cert_file, tls_key_file: give both (TLS) or neither (plaintext)");
  c = ServerConfig{};
  c.tls_client_ca_file = "ca.pem";
  CHECK(ValidateServerConfig(c).message() ==
        "tls_client_ca_file: needs tls_cert_file and tls_key_file (client certificates are "
        "checked over TLS)");
  c = ServerConfig{};
  c.metrics_tls_cert_file = "metrics.pem";
  CHECK(std::string(ValidateServerConfig(c).message())
            .rfind("metrics_tls_cert_file: TLS on /metrics is not available: Debian 12's "
                   "civetweb 1.15 ",
                   0) == 0);
  c = ServerConfig{};
  c.max_message_bytes = 4 << 20;
  CHECK(ValidateServerConfig(c).message() ==
        "max_stream_backlog_bytes: must be >= max_message_bytes (4194304), got 1048576");
}

TEST_CASE("config: oversized input is refused before parsing", "[config]") {
  CHECK(ParseError(std::string(2 << 20, '#')) ==
        "config is 2097152 bytes, more than the limit of 1048576");
}

TEST_CASE("config: --help lists every key with its default and range", "[config]") {
  const std::string help = ServerConfigHelp();
  for (const std::string& key : kAllKeys) {
    INFO(key);
    CHECK(help.find("\n  --" + key + " ") != std::string::npos);
  }
  CHECK(help.find("  --slots N\n      Sequence slots: requests running at once.\n"
                  "      Default: 8. Allowed: in [1, 65536].\n") != std::string::npos);
  CHECK(help.find("  --sampling.top_p X\n      Default top-p; 1 = off.\n"
                  "      Default: 1. Allowed: in (0, 1].\n") != std::string::npos);
  CHECK(help.find("Default: 127.0.0.1:9464. Allowed: host:port, or \"\" for no metrics "
                  "server.") != std::string::npos);
}

TEST_CASE("config: host:port addresses", "[config]") {
  absl::StatusOr<HostPort> v4 = ParseHostPort("10.0.0.1:80");
  REQUIRE(v4.ok());
  CHECK(v4->host == "10.0.0.1");
  CHECK(v4->port == 80);
  absl::StatusOr<HostPort> v6 = ParseHostPort("[::]:0");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::");
  CHECK(v6->port == 0);
  CHECK(ParseHostPort("host:").status().message() ==
        "expected host:port, got \"host:\" (empty port)");
  CHECK(ParseHostPort("host:-1").status().message() ==
        "expected host:port, got \"host:-1\" (port must be an integer in [0, 65535])");
  CHECK(ParseHostPort("[::1:80").status().message() ==
        "expected host:port, got \"[::1:80\" (unbalanced brackets)");
  CHECK(ParseHostPort("[]:80").status().message() ==
        "expected host:port, got \"[]:80\" (empty host)");
  CHECK(ParseHostPort("[x]:80").status().message() ==
        "expected host:port, got \"[x]:80\" (not an IPv6 address inside the brackets)");
  CHECK(ParseHostPort("a b:80").status().message() ==
        "expected host:port, got \"a b:80\" (invalid character in host)");
}

}  // namespace
}  // namespace moegraph
