// Fuzzes moegraphd's config readers with outside input: the bytes as a YAML
// config, and their lines as command-line flags. Whatever they accept must
// lie in the documented ranges. Seed: config/moegraphd.yaml.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "server/config/host_port.h"
#include "server/config/server_config.h"

namespace {

// The ranges ServerConfigHelp() documents; a config outside them got past validation.
bool InRange(const moegraph::ServerConfig& c) {
  const auto& s = c.sampling;
  const bool addresses =
      moegraph::ParseHostPort(c.listen_address).ok() &&
      (c.metrics_address.empty() || moegraph::ParseHostPort(c.metrics_address).ok());
  return addresses && !c.model_dir.empty() && c.slots >= 1 && c.slots <= 65536 &&
         c.queue_size >= 0 && c.max_step_tokens >= 1 && c.context_limit >= 0 &&
         s.temperature >= 0 && s.top_k >= 0 && s.top_p > 0 && s.top_p <= 1 && s.min_p >= 0 &&
         s.min_p < 1 && s.max_tokens >= 1 && c.drain_grace_seconds >= 0 &&
         c.drain_grace_seconds <= 3600 && c.max_stop_strings >= 0 &&
         c.max_stop_string_length >= 1 && c.max_logprobs >= 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<moegraph::ServerConfig> parsed = moegraph::ParseServerConfig(text);
  if (parsed.ok() && !InRange(*parsed)) __builtin_trap();

  const std::vector<std::string> args = absl::StrSplit(text, '\n');
  moegraph::ServerConfig flagged;
  if (moegraph::ApplyServerFlags(args, &flagged).ok() && !InRange(flagged)) __builtin_trap();
  return 0;
}
