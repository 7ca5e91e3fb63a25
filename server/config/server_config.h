// moegraphd's configuration: a YAML file (config/moegraphd.yaml) with every
// field validated and unknown keys refused by name, then command-line flags
// (--key=value or --key value, same names as the YAML keys with '_' or '-')
// overriding it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace moegraph {

struct SamplingDefaults {
  double temperature = 0.0;  // 0 = greedy
  int top_k = 0;             // 0 = off
  double top_p = 1.0;        // (0, 1]
  double min_p = 0.0;        // [0, 1)
  int max_tokens = 256;

  bool operator==(const SamplingDefaults&) const = default;
};

struct ServerConfig {
  std::string listen_address = "127.0.0.1:50051";  // gRPC
  std::string metrics_address = "127.0.0.1:9464";  // HTTP /metrics ("" = off)
  // "USER SHA256" lines ("" = none): scrapes must send one user's basic auth.
  std::string metrics_basic_auth_file;
  // Refused when set: Debian 12's civetweb cannot serve TLS (ValidateServerConfig).
  std::string metrics_tls_cert_file;
  std::string model_dir = "tests/fixtures/dsv4-tiny";
  std::string device = "auto";  // auto | cpu | cuda | cuda:N  (auto: cuda if a GPU is present)
  std::string graphs = "auto";  // auto | off | full (EngineOptions::graphs)
  // Several ranks (EngineOptions::devices): "" = `device` alone; "cpu:0,cpu:1"
  // two in-process CPU ranks, "cuda:0,cuda:1" one a GPU (docs/expert-parallel.md).
  std::string devices;
  std::string layout = "ep";       // how the model is split over `devices` (EngineOptions::layout)
  int layer_blocks = 0;            // ep+layers: blocks of layers (EngineOptions::layer_blocks)
  std::string transport = "auto";  // the ep exchange (EngineOptions::transport)
  int slots = 8;                   // sequence slots, >= 1
  int queue_size = 64;             // waiting requests beyond running ones, >= 0
  int max_step_tokens = 256;       // token budget per step (prefill chunking), >= 1
  int context_limit = 0;           // 0 = the model's max_position_embeddings
  // Tokens of compressed state the state pool holds over all slots, >= 0;
  // 0 = slots * context limit, capped at 262144.
  int state_pool_tokens = 0;
  int w8a8_min_rows = kDefaultW8A8MinRows;  // EngineOptions::w8a8_min_rows
  SamplingDefaults sampling;
  double drain_grace_seconds = 30;  // SIGTERM: time for running requests to finish, >= 0
  std::string log_level = "info";   // error | warn | info | verbose
  int max_stop_strings = 8;
  int max_stop_string_length = 256;
  int max_logprobs = 20;
  int max_prompt_bytes = 1 << 20;  // a text prompt's bytes, checked before tokenizing
  int max_stop_token_ids = 64;     // stop_token_ids per request
  // Streams: no message larger than this (a catch-up is split into several).
  int max_message_bytes = 64 << 10;
  // Undelivered output a stream may hold before its sequence is paused (slot
  // kept, no tokens generated) until the client reads.
  int max_stream_backlog_bytes = 1 << 20;
  // A sequence paused this long for a client that does not read is ended.
  double stall_timeout_seconds = 30;
  int max_streams_per_connection = 100;   // concurrent HTTP/2 streams per connection
  double keepalive_time_seconds = 60;     // server pings an idle connection this often
  double keepalive_timeout_seconds = 20;  // ...and closes it when no answer comes in this time
  // Requests one caller identity (API key name or client certificate name;
  // the client's IP address for anonymous callers) may have waiting in the
  // queue; 0 = no limit.
  int max_waiting_per_identity = 0;
  // Transport security of the gRPC listener ("" = off). Cert and key turn on
  // TLS; a client CA as well makes client certificates required (mTLS).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
  int tls_reload_seconds = 10;  // the files are re-read this often
  // "NAME SHA256" lines: every call must send "authorization: Bearer KEY".
  std::string api_keys_file;

  bool operator==(const ServerConfig&) const = default;
};

// Parses YAML text (errors name the key path, e.g. "sampling.top_p: must be in (0, 1], got 1.5").
absl::StatusOr<ServerConfig> ParseServerConfig(const std::string& yaml_text);
absl::StatusOr<ServerConfig> LoadServerConfig(const std::string& path);
// Applies flags on top of `config`. `--config PATH` is handled by the caller
// before this. Unknown flags and bad values are errors naming the flag.
// Nested keys are flags with a dot: --sampling.top_p=0.9. There are no
// shortcuts (no bare --temperature): one name per key, as in the YAML.
absl::Status ApplyServerFlags(const std::vector<std::string>& args, ServerConfig* config);
std::string ServerConfigHelp();
// Checks what no single key can: limits that depend on each other
// (max_step_tokens must cover one decode token per slot). Runs before
// anything is allocated, so a bad value costs nothing.
absl::Status ValidateServerConfig(
    const ServerConfig& config);  // the --help text listing every key, its default and range

}  // namespace moegraph
