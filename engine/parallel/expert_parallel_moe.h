// The routed experts of one MoE layer when they are split over ranks
// (docs/expert-parallel.md): dispatch, this rank's experts into the combine
// send buffer, combine, and the weighted sum on the token's own rank.
#pragma once

#include "absl/status/status.h"
#include "engine/backend/backend.h"
#include "engine/parallel/expert_exchange.h"

namespace moegraph {

// out[t] = sum_i w[t,i] * expert_{idx[t,i]}(h[t]) for this rank's T tokens
// (h act [T, D], idx i32 / w f32 [T, k], out act [T, D]); T may be 0 (an
// idle rank still serves its experts to the others). `local` holds this
// rank's experts (empty when it holds none). Collective: every rank calls it
// for the same layer. On a local failure the exchange is aborted, so the
// other ranks fail too instead of waiting.
absl::Status ExpertParallelRouted(Backend& backend, ExpertExchange& exchange, const Tensor& h,
                                  const Tensor& idx, const Tensor& w, const ExpertWeights& local,
                                  float swiglu_limit, Tensor out);

}  // namespace moegraph
