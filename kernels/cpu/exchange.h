// The expert exchange's data movement on the CPU (engine/parallel/
// in_process_exchange.h): dispatch writes each token's row once into every
// destination rank's receive region that holds one of its experts; combine
// writes every expert output pair back into its token's rank.
#pragma once

#include <cstdint>
#include <vector>

namespace moegraph::cpu {

// One destination's region for this source's rows.
struct ExchangeRegionPtrs {
  float* x = nullptr;            // [capacity, dim]
  int32_t* experts = nullptr;    // [capacity, k]
  int32_t* src_token = nullptr;  // [capacity]
  int32_t* count = nullptr;      // [1]
};

struct ExchangeDispatchParams {
  const float* x = nullptr;        // [tokens, dim]
  const int32_t* idx = nullptr;    // [tokens, k] global expert ids
  const int32_t* owner = nullptr;  // [num_experts] rank of each expert
  int64_t tokens = 0, dim = 0;
  int k = 0, num_experts = 0;
  std::vector<ExchangeRegionPtrs> to;  // one per rank
};

// Row t goes to to[r] (rows in increasing t) for every rank r owning any of
// idx[t, :], with its ids (-1 where r does not hold the choice) and t;
// *to[r].count = rows sent to r. Returns the flat index into idx of the
// first id that is not an expert (nothing written), or -1.
int64_t ExchangeDispatch(const ExchangeDispatchParams& p);

struct ExchangeCombineParams {
  const float* out = nullptr;         // [pairs, dim]
  const int32_t* pair_dst = nullptr;  // [pairs] received row * k + choice
  int64_t pairs = 0, dim = 0;
  const int32_t* src_token = nullptr;  // [num_ranks * capacity] of the received rows
  const int32_t* counts = nullptr;     // [num_ranks] rows received from each source
  int capacity = 0, k = 0;
  std::vector<float*> combined;  // per source rank: [capacity, k, dim]
};

// combined[row / capacity][src_token[row] * k + choice] = out[p]. Returns the
// first pair naming a row that did not arrive (what came before it is
// written), or -1.
int64_t ExchangeCombine(const ExchangeCombineParams& p);

}  // namespace moegraph::cpu
