// The CUDA backend's MoE ops: routing and the fused grouped expert GEMMs.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/status_macros.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/router.h"

namespace moegraph::cuda_impl {

// ---- MoE -------------------------------------------------------------------------

absl::Status CudaBackendImpl::Route(const Tensor& logits, const Tensor& bias, const Tensor& tid2eid,
                                    const Tensor& token_ids, float routed_scaling, Tensor idx,
                                    Tensor w) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "Route";
  RETURN_IF_ERROR(ExpectType(op, "logits", logits, DType::kF32));
  RETURN_IF_ERROR(ExpectRank(op, "logits", logits, 2));
  RETURN_IF_ERROR(ExpectType(op, "idx", idx, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "w", w, DType::kF32));
  cuda::RouteParams p;
  p.tokens = static_cast<int>(logits.dim(0));
  p.experts = static_cast<int>(logits.dim(1));
  p.k = idx.rank == 2 ? static_cast<int>(idx.dim(1)) : 0;
  RETURN_IF_ERROR(ExpectNumel(op, "idx", idx, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "w", w, int64_t{p.tokens} * p.k));
  if (!tid2eid.empty()) {
    RETURN_IF_ERROR(ExpectType(op, "tid2eid", tid2eid, DType::kI32));
    RETURN_IF_ERROR(ExpectRank(op, "tid2eid", tid2eid, 2));
    if (tid2eid.dim(1) != p.k) return Invalid(op, "tid2eid rows must hold k experts");
    RETURN_IF_ERROR(ExpectType(op, "token_ids", token_ids, DType::kI32));
    RETURN_IF_ERROR(ExpectNumel(op, "token_ids", token_ids, p.tokens));
    p.tid2eid = tid2eid.as<int32_t>();
    p.token_ids = token_ids.as<int32_t>();
    p.vocab = tid2eid.dim(0);
  } else if (!bias.empty()) {
    RETURN_IF_ERROR(ExpectType(op, "bias", bias, DType::kF32));
    RETURN_IF_ERROR(ExpectNumel(op, "bias", bias, p.experts));
    p.bias = bias.as<float>();
  }
  p.logits = logits.as<float>();
  p.idx = idx.as<int32_t>();
  p.w = w.as<float>();
  p.routed_scaling = routed_scaling;
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  return LaunchStatus(op, cuda::LaunchRoute(p, stream()));
}

absl::Status CudaBackendImpl::ExpertOperands(const char* op, const Tensor& x,
                                             const ExpertWeights& experts, float swiglu_limit,
                                             cuda::MoeParams* out) const {
  RETURN_IF_ERROR(ExpectType(op, "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "x", x, 2));
  const WeightFormat fmt = experts.w1.format;
  for (auto [name, e] : {std::pair{"experts.w1", &experts.w1}, std::pair{"experts.w2", &experts.w2},
                         std::pair{"experts.w3", &experts.w3}}) {
    if (e->format != fmt)
      return Invalid(op, absl::StrCat(name, " is ", WeightFormatName(e->format), ", experts.w1 is ",
                                      WeightFormatName(fmt)));
    if (fmt == WeightFormat::kDense) RETURN_IF_ERROR(ExpectType(op, name, e->data, DType::kBF16));
    RETURN_IF_ERROR(ExpectRank(op, name, e->data, 3));
  }
  cuda::MoeParams& p = *out;
  p.num_sms = num_sms_;
  p.tokens = static_cast<int>(x.dim(0));
  p.dim = static_cast<int>(x.dim(1));
  p.experts = static_cast<int>(experts.w1.data.dim(0));
  p.inter = static_cast<int>(experts.w1.rows());
  if (experts.w1.cols() != p.dim) return Invalid(op, "experts.w1 is not [E, F, D]");
  if (experts.w3.rows() != p.inter || experts.w3.cols() != p.dim ||
      experts.w3.data.dim(0) != p.experts)
    return Invalid(op, "experts.w3 is not [E, F, D]");
  if (experts.w2.rows() != p.dim || experts.w2.cols() != p.inter ||
      experts.w2.data.dim(0) != p.experts)
    return Invalid(op, "experts.w2 is not [E, D, F]");
  p.x = x.as<bf16>();
  p.fmt = fmt == WeightFormat::kFp8   ? cuda::WeightFmt::kFp8
          : fmt == WeightFormat::kFp4 ? cuda::WeightFmt::kFp4
                                      : cuda::WeightFmt::kBf16;
  for (auto [dst, src] : {std::pair{&p.w1, &experts.w1}, std::pair{&p.w2, &experts.w2},
                          std::pair{&p.w3, &experts.w3}}) {
    dst->data = src->data.data;
    if (fmt == WeightFormat::kFp8) dst->scale_f32 = src->scale.as<float>();
    if (fmt == WeightFormat::kFp4) dst->scale_e8m0 = src->scale.as<uint8_t>();
  }
  p.swiglu_limit = swiglu_limit;
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::MoeExperts(const Tensor& x, const Tensor& idx, const Tensor& w,
                                         const ExpertWeights& experts, float swiglu_limit,
                                         Tensor out) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "MoeExperts";
  RETURN_IF_ERROR(ExpectType(op, "idx", idx, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "w", w, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "out", out, DType::kBF16));
  cuda::MoeParams p;
  RETURN_IF_ERROR(ExpertOperands(op, x, experts, swiglu_limit, &p));
  p.k = p.tokens ? static_cast<int>(idx.numel() / p.tokens) : 1;
  RETURN_IF_ERROR(ExpectNumel(op, "idx", idx, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "w", w, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "out", out, x.numel()));
  p.idx = idx.as<int32_t>();
  p.w = w.as<float>();
  p.out = out.as<bf16>();
  if (p.tokens == 0) return absl::OkStatus();
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::MoeWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchMoe(p, ws, stream()));
}

absl::Status CudaBackendImpl::MoeExpertPairs(const Tensor& x, const Tensor& experts,
                                             const Tensor& counts, int first_expert,
                                             const ExpertWeights& local, float swiglu_limit,
                                             Tensor out, Tensor pair_dst, Tensor pair_count) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "MoeExpertPairs";
  RETURN_IF_ERROR(ExpectType(op, "experts", experts, DType::kI32));
  RETURN_IF_ERROR(ExpectRank(op, "experts", experts, 2));
  RETURN_IF_ERROR(ExpectType(op, "counts", counts, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "pair_dst", pair_dst, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "pair_count", pair_count, DType::kI32));
  RETURN_IF_ERROR(ExpectNumel(op, "pair_count", pair_count, 1));
  RETURN_IF_ERROR(ExpectType(op, "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "out", out, 2));
  const int64_t R = counts.numel(), N = x.rank == 2 ? x.dim(0) : 0;
  if (R < 1 || N % R != 0) return Invalid(op, "x: rows must be a multiple of counts' length");
  if (experts.dim(0) != N) return Invalid(op, "experts: one row per row of x");
  cuda::MoePairsParams p;
  if (local.w1.empty()) {  // a rank without routed experts: nothing to compute
    return LaunchStatus(op, cudaMemsetAsync(pair_count.data, 0, sizeof(int32_t), stream()));
  }
  RETURN_IF_ERROR(ExpertOperands(op, x, local, swiglu_limit, &p.moe));
  if (out.dim(1) != p.moe.dim) return Invalid(op, "out: rows of the model width");
  RETURN_IF_ERROR(ExpectNumel(op, "pair_dst", pair_dst, out.dim(0)));
  p.moe.k = static_cast<int>(experts.dim(1));
  p.experts = experts.as<int32_t>();
  p.counts = counts.as<int32_t>();
  p.sources = static_cast<int>(R);
  p.capacity = static_cast<int>(N / R);
  p.first_expert = first_expert;
  p.out = out.as<bf16>();
  p.pair_dst = pair_dst.as<int32_t>();
  p.pair_count = pair_count.as<int32_t>();
  p.pair_capacity = static_cast<int>(out.dim(0));
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::MoePairsWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchMoePairs(p, ws, stream()));
}

absl::Status CudaBackendImpl::MoeWeightedSum(const Tensor& y, const Tensor& idx, const Tensor& w,
                                             Tensor out) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "MoeWeightedSum";
  RETURN_IF_ERROR(ExpectType(op, "y", y, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "y", y, 3));
  RETURN_IF_ERROR(ExpectType(op, "idx", idx, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "w", w, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "out", out, DType::kBF16));
  cuda::MoeWeightedSumParams p;
  p.tokens = static_cast<int>(y.dim(0));
  p.k = static_cast<int>(y.dim(1));
  p.dim = static_cast<int>(y.dim(2));
  RETURN_IF_ERROR(ExpectNumel(op, "idx", idx, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "w", w, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "out", out, int64_t{p.tokens} * p.dim));
  p.y = y.as<bf16>();
  p.idx = idx.as<int32_t>();
  p.w = w.as<float>();
  p.out = out.as<bf16>();
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  return LaunchStatus(op, cuda::LaunchMoeWeightedSum(p, stream()));
}

}  // namespace moegraph::cuda_impl
