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

absl::Status CudaBackendImpl::MoeExperts(const Tensor& x, const Tensor& idx, const Tensor& w,
                                         const ExpertWeights& experts, float swiglu_limit,
                                         Tensor out) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "MoeExperts";
  RETURN_IF_ERROR(ExpectType(op, "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "x", x, 2));
  RETURN_IF_ERROR(ExpectType(op, "idx", idx, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "w", w, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "out", out, DType::kBF16));
  const WeightFormat fmt = experts.w1.format;
  for (auto [name, e] : {std::pair{"experts.w1", &experts.w1}, std::pair{"experts.w2", &experts.w2},
                         std::pair{"experts.w3", &experts.w3}}) {
    if (e->format != fmt)
      return Invalid(op, absl::StrCat(name, " is ", WeightFormatName(e->format), ", experts.w1 is ",
                                      WeightFormatName(fmt)));
    if (fmt == WeightFormat::kDense) RETURN_IF_ERROR(ExpectType(op, name, e->data, DType::kBF16));
    RETURN_IF_ERROR(ExpectRank(op, name, e->data, 3));
  }
  cuda::MoeParams p;
  p.num_sms = num_sms_;
  p.tokens = static_cast<int>(x.dim(0));
  p.dim = static_cast<int>(x.dim(1));
  p.k = p.tokens ? static_cast<int>(idx.numel() / p.tokens) : 1;
  p.experts = static_cast<int>(experts.w1.data.dim(0));
  p.inter = static_cast<int>(experts.w1.rows());
  if (experts.w1.cols() != p.dim) return Invalid(op, "experts.w1 is not [E, F, D]");
  if (experts.w3.rows() != p.inter || experts.w3.cols() != p.dim ||
      experts.w3.data.dim(0) != p.experts)
    return Invalid(op, "experts.w3 is not [E, F, D]");
  if (experts.w2.rows() != p.dim || experts.w2.cols() != p.inter ||
      experts.w2.data.dim(0) != p.experts)
    return Invalid(op, "experts.w2 is not [E, D, F]");
  RETURN_IF_ERROR(ExpectNumel(op, "idx", idx, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "w", w, int64_t{p.tokens} * p.k));
  RETURN_IF_ERROR(ExpectNumel(op, "out", out, x.numel()));
  p.x = x.as<bf16>();
  p.idx = idx.as<int32_t>();
  p.w = w.as<float>();
  p.fmt = fmt == WeightFormat::kFp8   ? cuda::WeightFmt::kFp8
          : fmt == WeightFormat::kFp4 ? cuda::WeightFmt::kFp4
                                      : cuda::WeightFmt::kBf16;
  for (auto [dst, src] : {std::pair{&p.w1, &experts.w1}, std::pair{&p.w2, &experts.w2},
                          std::pair{&p.w3, &experts.w3}}) {
    dst->data = src->data.data;
    if (fmt == WeightFormat::kFp8) dst->scale_f32 = src->scale.as<float>();
    if (fmt == WeightFormat::kFp4) dst->scale_e8m0 = src->scale.as<uint8_t>();
  }
  p.out = out.as<bf16>();
  p.swiglu_limit = swiglu_limit;
  if (p.tokens == 0) return absl::OkStatus();
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::MoeWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchMoe(p, ws, stream()));
}

}  // namespace moegraph::cuda_impl
