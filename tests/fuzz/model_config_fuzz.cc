// libFuzzer target: config.json text -> ParseModelConfig, then the invariants
// a parsed config promises and the rope tables it describes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace moegraph;
  auto config = ParseModelConfig(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!config.ok()) return 0;
  const ModelConfig& c = *config;
  const size_t layers = static_cast<size_t>(c.num_layers);
  if (c.model_type != "deepseek_v4" || c.layer_types.size() != layers ||
      c.mlp_types.size() != layers || c.rope_dim <= 0 || c.rope_dim % 2 != 0 ||
      c.rope_dim > c.head_dim || c.num_heads % c.o_groups != 0) {
    __builtin_trap();
  }
  int per_kind = 0;
  for (AttnKind k : {AttnKind::kSliding, AttnKind::kCsa, AttnKind::kHca})
    per_kind += c.num_layers_of(k);
  if (per_kind != c.num_layers) __builtin_trap();
  for (int l = 0; l < c.num_layers; ++l) {
    if (c.index_within_kind(l) < 0 || c.index_within_kind(l) >= c.num_layers_of(c.layer_types[l])) {
      __builtin_trap();
    }
  }
  // Real tables are at most a few hundred entries; skip absurd widths rather
  // than allocate gigabytes (a model load would fail on the weights anyway).
  if (c.rope_dim <= (1 << 16)) {
    if (RopeInvFreq(c.rope_main, c.rope_dim).size() != static_cast<size_t>(c.rope_dim / 2))
      __builtin_trap();
    if (RopeInvFreq(c.rope_compress, c.rope_dim).size() != static_cast<size_t>(c.rope_dim / 2)) {
      __builtin_trap();
    }
  }
  return 0;
}
