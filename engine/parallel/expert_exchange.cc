#include "engine/parallel/expert_exchange.h"

#include <algorithm>

#include "engine/common/status_macros.h"

namespace moegraph {

absl::StatusOr<DispatchedRows> AllocateDispatchedRows(Backend& backend, const ExchangeOptions& o,
                                                      std::vector<Buffer>* memory) {
  const int64_t R = o.num_ranks, cap = o.capacity, k = o.experts_per_token, D = o.hidden;
  DispatchedRows d;
  d.capacity = o.capacity;
  ASSIGN_OR_RETURN(d.x,
                   AllocateFilled(backend, backend.activation_dtype(), {R * cap, D}, 0.0f, memory));
  ASSIGN_OR_RETURN(d.experts, AllocateFilled(backend, DType::kI32, {R * cap, k}, -1.0f, memory));
  ASSIGN_OR_RETURN(d.src_token, AllocateFilled(backend, DType::kI32, {R * cap}, 0.0f, memory));
  ASSIGN_OR_RETURN(d.counts, AllocateFilled(backend, DType::kI32, {R}, 0.0f, memory));
  return d;
}

absl::Status AllocateRankBuffers(Backend& backend, const ExchangeOptions& o, int rank,
                                 RankBuffers* out) {
  const ExpertPartition partition{o.num_experts, o.num_ranks};
  const int64_t R = o.num_ranks, cap = o.capacity, k = o.experts_per_token, D = o.hidden;
  const int64_t pairs = std::max<int64_t>(R * cap * std::min<int64_t>(k, partition.count(rank)), 1);
  const DType act = backend.activation_dtype();
  std::vector<Buffer>* m = &out->memory;
  ASSIGN_OR_RETURN(out->received, AllocateDispatchedRows(backend, o, m));
  ASSIGN_OR_RETURN(out->send.out, AllocateFilled(backend, act, {pairs, D}, 0.0f, m));
  ASSIGN_OR_RETURN(out->send.pair_dst, AllocateFilled(backend, DType::kI32, {pairs}, 0.0f, m));
  ASSIGN_OR_RETURN(out->send.pair_count, AllocateFilled(backend, DType::kI32, {1}, 0.0f, m));
  ASSIGN_OR_RETURN(out->combined, AllocateFilled(backend, act, {cap, k, D}, 0.0f, m));
  ASSIGN_OR_RETURN(out->rows_scratch, AllocateFilled(backend, DType::kI32, {R * cap}, 0.0f, m));
  ASSIGN_OR_RETURN(out->owner, AllocateFilled(backend, DType::kI32, {o.num_experts}, 0.0f, m));
  std::vector<int32_t> owner(o.num_experts);
  for (int e = 0; e < o.num_experts; ++e) owner[e] = partition.owner(e);
  RETURN_IF_ERROR(backend.Upload(out->owner.data, owner.data(), out->owner.bytes()));
  return backend.Synchronize();
}

}  // namespace moegraph
