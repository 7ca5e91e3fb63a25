#include "engine/parallel/expert_parallel_moe.h"

#include "engine/common/status_macros.h"

namespace moegraph {

absl::Status ExpertParallelRouted(Backend& backend, ExpertExchange& exchange, const Tensor& h,
                                  const Tensor& idx, const Tensor& w, const ExpertWeights& local,
                                  float swiglu_limit, Tensor out) {
  RETURN_IF_ERROR(exchange.Dispatch(h, idx));
  const DispatchedRows& in = exchange.received();
  const CombineSend& send = exchange.combine_send();
  const int first = exchange.partition().first(exchange.rank());
  absl::Status experts =
      backend.MoeExpertPairs(in.x, in.experts, in.counts, first, local, swiglu_limit, send.out,
                             send.pair_dst, send.pair_count);
  if (!experts.ok()) {
    exchange.Abort(experts);
    return experts;
  }
  RETURN_IF_ERROR(exchange.Combine());
  const int64_t T = h.dim(0);
  if (T == 0) return absl::OkStatus();
  return backend.MoeWeightedSum(exchange.combined().rows(0, T), idx, w, out);
}

}  // namespace moegraph
