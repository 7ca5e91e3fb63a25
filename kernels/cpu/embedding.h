// Token embedding lookup, replicated into the n hyper-connection streams.
#pragma once

#include <cstdint>

#include "kernels/cpu/cpu_types.h"

namespace moegraph::cpu {

struct EmbeddingParams {
  const int32_t* ids = nullptr;  // [tokens]
  const void* table = nullptr;   // [vocab, dim], table_type
  WeightType table_type = WeightType::kF32;
  float* out = nullptr;  // [tokens, streams, dim]
  int64_t tokens = 0, vocab = 0, dim = 0;
  int streams = 1;
};

// Returns false (leaving `out` partly written) when an id is outside [0, vocab).
bool Embedding(const EmbeddingParams& p);

}  // namespace moegraph::cpu
