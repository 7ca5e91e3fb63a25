// The CUDA backend's dense ops and hyper-connections: operand checks against
// backend.h, then the launch parameters of kernels/cuda (matrices through
// cuBLASLt).
#include <algorithm>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/status_macros.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/hyper_connection.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/rope.h"
#include "kernels/cuda/sampling.h"

namespace moegraph::cuda_impl {

// ---- dense ops ------------------------------------------------------------------

absl::Status CudaBackendImpl::Embed(const Tensor& ids, const Tensor& table, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("Embed", "ids", ids, DType::kI32));
  RETURN_IF_ERROR(ExpectType("Embed", "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("Embed", "table", table, 2));
  RETURN_IF_ERROR(ExpectRank("Embed", "out", out, 3));
  cuda::EmbedParams p;
  p.ids = ids.as<int32_t>();
  p.table = table.data;
  ASSIGN_OR_RETURN(p.table_type, ElemTypeOf("Embed", table.dtype));
  p.out = out.as<bf16>();
  p.vocab = table.dim(0);
  p.tokens = static_cast<int>(ids.numel());
  p.streams = static_cast<int>(out.dim(1));
  p.dim = static_cast<int>(table.dim(1));
  if (out.dim(0) != p.tokens || out.dim(2) != p.dim)
    return Invalid("Embed", absl::StrCat("out ", out.ShapeString(), " does not match ids ",
                                         ids.ShapeString(), " and table ", table.ShapeString()));
  RETURN_IF_ERROR(KernelCheck("Embed", cuda::Validate(p)));
  return LaunchStatus("Embed", cuda::LaunchEmbed(p, stream()));
}

absl::Status CudaBackendImpl::Linear(const Tensor& x, const Weight& weight, Tensor y) {
  OpScope scope(this, OpKind::kMatmul);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("Linear", "x", x, DType::kBF16));
  if (weight.quantized()) {
    if (y.dtype != DType::kBF16 && y.dtype != DType::kF32)
      return Invalid("Linear", "y must be BF16 or F32");
    const int64_t n = weight.rows(), k = weight.cols();
    if (x.rank < 1 || x.dim(x.rank - 1) != k)
      return Invalid("Linear", absl::StrCat("x ", x.ShapeString(), " does not end in w's ", k));
    RETURN_IF_ERROR(ExpectNumel("Linear", "y", y, x.numel() / k * n));
    return QuantGemm("Linear", x, weight, 0, n, k, k, y, 0, n);
  }
  const Tensor& w = weight.data;
  RETURN_IF_ERROR(ExpectType("Linear", "w", w, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("Linear", "w", w, 2));
  if (y.dtype != DType::kBF16 && y.dtype != DType::kF32)
    return Invalid("Linear", "y must be BF16 or F32");
  const int64_t n = w.dim(0), k = w.dim(1);
  if (x.rank < 1 || x.dim(x.rank - 1) != k)
    return Invalid("Linear", absl::StrCat("x ", x.ShapeString(), " does not end in w's ", k));
  const int64_t rows = x.numel() / k;
  RETURN_IF_ERROR(ExpectNumel("Linear", "y", y, rows * n));
  GemmProblem p;
  p.rows = static_cast<int>(rows);
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.ldx = k;
  p.ldw = k;
  p.ldy = n;
  p.out_f32 = y.dtype == DType::kF32;
  return Gemm(p, x.data, w.data, y.data);
}

absl::Status CudaBackendImpl::GroupedLinear(const Tensor& x, const Weight& weight, int groups,
                                            Tensor y) {
  OpScope scope(this, OpKind::kMatmul);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("GroupedLinear", "x", x, DType::kBF16));
  if (weight.quantized()) {
    RETURN_IF_ERROR(ExpectType("GroupedLinear", "y", y, DType::kBF16));
    const int64_t rows_w = weight.rows(), kg = weight.cols();
    if (groups < 1 || rows_w % groups != 0)
      return Invalid("GroupedLinear",
                     absl::StrCat("w rows ", rows_w, " not divisible by groups ", groups));
    const int64_t ng = rows_w / groups;
    if (x.numel() % (groups * kg) != 0)
      return Invalid("GroupedLinear",
                     absl::StrCat("x ", x.ShapeString(), " is not [R, ", groups * kg, "]"));
    RETURN_IF_ERROR(ExpectNumel("GroupedLinear", "y", y, x.numel() / (groups * kg) * rows_w));
    // All groups in one launch (8 launches of a 4 MB product cost 5x their
    // bytes at decode sizes), unless W8A8 takes some rows of each.
    // MOEGRAPH_GROUPED_ONE_LAUNCH=0: a launch a group, for same-run comparisons.
    static const bool one_launch = [] {
      const char* v = std::getenv("MOEGRAPH_GROUPED_ONE_LAUNCH");
      return !v || std::atoi(v) != 0;
    }();
    const int64_t rows = x.numel() / (groups * kg);
    if (one_launch && W8A8Rows(weight, rows, ng, kg) == 0)
      return QuantGemmW8A16("GroupedLinear", x, weight, 0, ng, kg, groups * kg, y, 0, rows_w,
                            groups);
    for (int g = 0; g < groups; ++g) {
      Tensor xg = x;
      xg.data = x.as<bf16>() + g * kg;
      RETURN_IF_ERROR(
          QuantGemm("GroupedLinear", xg, weight, g * ng, ng, kg, groups * kg, y, g * ng, rows_w));
    }
    return absl::OkStatus();
  }
  const Tensor& w = weight.data;
  RETURN_IF_ERROR(ExpectType("GroupedLinear", "w", w, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("GroupedLinear", "y", y, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("GroupedLinear", "w", w, 2));
  if (groups < 1 || w.dim(0) % groups != 0)
    return Invalid("GroupedLinear",
                   absl::StrCat("w rows ", w.dim(0), " not divisible by groups ", groups));
  const int64_t kg = w.dim(1), ng = w.dim(0) / groups;
  if (x.numel() % (groups * kg) != 0)
    return Invalid("GroupedLinear",
                   absl::StrCat("x ", x.ShapeString(), " is not [R, ", groups * kg, "]"));
  const int64_t rows = x.numel() / (groups * kg);
  RETURN_IF_ERROR(ExpectNumel("GroupedLinear", "y", y, rows * groups * ng));
  GemmProblem p;
  p.rows = static_cast<int>(rows);
  p.n = static_cast<int>(ng);
  p.k = static_cast<int>(kg);
  p.ldx = groups * kg;
  p.ldw = kg;
  p.ldy = groups * ng;
  if (grouped_batched_ok_) {
    GemmProblem b = p;
    b.batch = groups;
    b.batch_stride_x = kg;
    b.batch_stride_w = ng * kg;
    b.batch_stride_y = ng;
    const absl::Status s = Gemm(b, x.data, w.data, y.data);
    if (s.ok()) return s;
    LOG_WARN << "cuda GroupedLinear: strided batch refused (" << s.message()
             << "); using one product per group";
    grouped_batched_ok_ = false;
  }
  for (int g = 0; g < groups; ++g) {
    RETURN_IF_ERROR(
        Gemm(p, x.as<bf16>() + g * kg, w.as<bf16>() + g * ng * kg, y.as<bf16>() + g * ng));
  }
  return absl::OkStatus();
}

absl::Status CudaBackendImpl::RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor y) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("RmsNorm", "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("RmsNorm", "y", y, DType::kBF16));
  if (x.rank < 1) return Invalid("RmsNorm", "x has rank 0");
  const int64_t cols = x.dim(x.rank - 1);
  RETURN_IF_ERROR(ExpectNumel("RmsNorm", "y", y, x.numel()));
  if (!weight.empty()) {
    RETURN_IF_ERROR(ExpectType("RmsNorm", "weight", weight, DType::kF32));
    RETURN_IF_ERROR(ExpectNumel("RmsNorm", "weight", weight, cols));
  }
  cuda::RmsNormParams p;
  p.x = x.as<bf16>();
  p.weight = weight.empty() ? nullptr : weight.as<float>();
  p.y = y.as<bf16>();
  p.rows = static_cast<int>(x.numel() / cols);
  p.cols = static_cast<int>(cols);
  p.eps = eps;
  RETURN_IF_ERROR(KernelCheck("RmsNorm", cuda::Validate(p)));
  return LaunchStatus("RmsNorm", cuda::LaunchRmsNorm(p, stream()));
}

absl::Status CudaBackendImpl::Rope(Tensor x, const Tensor& pos, const Tensor& inv_freq,
                                   int rope_dim, bool inverse) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("Rope", "x", x, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("Rope", "pos", pos, DType::kI32));
  RETURN_IF_ERROR(ExpectType("Rope", "inv_freq", inv_freq, DType::kF32));
  if (x.rank != 2 && x.rank != 3)
    return Invalid("Rope", "x must be [T, heads, width] or [T, width]");
  cuda::RopeParams p;
  p.x = x.as<bf16>();
  p.pos = pos.as<int32_t>();
  p.inv_freq = inv_freq.as<float>();
  p.tokens = static_cast<int>(x.dim(0));
  p.heads = x.rank == 3 ? static_cast<int>(x.dim(1)) : 1;
  p.width = static_cast<int>(x.dim(x.rank - 1));
  p.rope_dim = rope_dim;
  p.inverse = inverse;
  RETURN_IF_ERROR(ExpectNumel("Rope", "pos", pos, p.tokens));
  if (inv_freq.numel() < rope_dim / 2) return Invalid("Rope", "inv_freq shorter than rope_dim/2");
  RETURN_IF_ERROR(KernelCheck("Rope", cuda::Validate(p)));
  return LaunchStatus("Rope", cuda::LaunchRope(p, stream()));
}

absl::Status CudaBackendImpl::Add(const Tensor& a, const Tensor& b, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("Add", "a", a, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("Add", "b", b, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("Add", "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectNumel("Add", "b", b, a.numel()));
  RETURN_IF_ERROR(ExpectNumel("Add", "out", out, a.numel()));
  return LaunchStatus(
      "Add", cuda::LaunchAdd(a.as<bf16>(), b.as<bf16>(), out.as<bf16>(), a.numel(), stream()));
}

absl::Status CudaBackendImpl::Scale(const Tensor& x, float alpha, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  if (x.empty() || out.empty()) return Invalid("Scale", "x or out is empty");
  if (x.dtype != out.dtype || (x.dtype != DType::kBF16 && x.dtype != DType::kF32))
    return Invalid("Scale", "x and out must both be BF16 or both F32");
  RETURN_IF_ERROR(ExpectNumel("Scale", "out", out, x.numel()));
  ASSIGN_OR_RETURN(cuda::ElemType type, ElemTypeOf("Scale", x.dtype));
  return LaunchStatus("Scale",
                      cuda::LaunchScale(x.data, alpha, out.data, type, x.numel(), stream()));
}

absl::Status CudaBackendImpl::SwiGlu(const Tensor& a, const Tensor& b, float limit, Tensor out) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("SwiGlu", "a", a, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("SwiGlu", "b", b, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("SwiGlu", "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectNumel("SwiGlu", "b", b, a.numel()));
  RETURN_IF_ERROR(ExpectNumel("SwiGlu", "out", out, a.numel()));
  return LaunchStatus("SwiGlu", cuda::LaunchSwiGlu(a.as<bf16>(), b.as<bf16>(), limit,
                                                   out.as<bf16>(), a.numel(), stream()));
}

absl::Status CudaBackendImpl::GatherRows(const Tensor& x, const Tensor& rows, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("GatherRows", "rows", rows, DType::kI32));
  if (x.empty() || out.empty()) return Invalid("GatherRows", "x or out is empty");
  if (x.dtype != out.dtype) return Invalid("GatherRows", "x and out dtypes differ");
  if (DTypeSize(x.dtype) % 2 != 0) return Invalid("GatherRows", "unsupported dtype");
  if (x.rank < 1) return Invalid("GatherRows", "x has rank 0");
  const int64_t num_rows = x.dim(0);
  const int64_t row_elems = num_rows ? x.numel() / num_rows : 0;
  const int64_t n = rows.numel();
  RETURN_IF_ERROR(ExpectNumel("GatherRows", "out", out, n * row_elems));
  return LaunchStatus(
      "GatherRows", cuda::LaunchGatherRows(
                        x.data, num_rows, rows.as<int32_t>(), static_cast<int>(n),
                        row_elems * static_cast<int64_t>(DTypeSize(x.dtype)), out.data, stream()));
}

absl::Status CudaBackendImpl::TakeSampledIds(Tensor ids, const Tensor& from,
                                             const Tensor& sampled) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  for (auto [name, t] : {std::pair<const char*, const Tensor*>{"ids", &ids},
                         {"from", &from},
                         {"sampled", &sampled}}) {
    RETURN_IF_ERROR(ExpectType("TakeSampledIds", name, *t, DType::kI32));
  }
  RETURN_IF_ERROR(ExpectNumel("TakeSampledIds", "from", from, ids.numel()));
  return LaunchStatus("TakeSampledIds",
                      cuda::LaunchTakeSampledIds(
                          ids.as<int32_t>(), from.as<int32_t>(), static_cast<int>(ids.numel()),
                          sampled.as<int32_t>(), static_cast<int>(sampled.numel()), stream()));
}

absl::Status CudaBackendImpl::Convert(const Tensor& x, Tensor out) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectNumel("Convert", "out", out, x.numel()));
  ASSIGN_OR_RETURN(cuda::ElemType from, ElemTypeOf("Convert", x.dtype));
  ASSIGN_OR_RETURN(cuda::ElemType to, ElemTypeOf("Convert", out.dtype));
  if ((from == cuda::ElemType::kI32) != (to == cuda::ElemType::kI32))
    return Invalid("Convert", "between integer and float");
  return LaunchStatus("Convert",
                      cuda::LaunchConvert(x.data, from, out.data, to, x.numel(), stream()));
}

absl::Status CudaBackendImpl::ScatterPairs(Tensor dst, const Tensor& pairs, const Tensor& count) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  const char* op = "ScatterPairs";
  RETURN_IF_ERROR(ExpectType(op, "dst", dst, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "pairs", pairs, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "count", count, DType::kI32));
  return LaunchStatus(
      op, cuda::LaunchScatterPairs(dst.as<int32_t>(), pairs.as<int32_t>(), count.as<int32_t>(),
                                   static_cast<int>(pairs.numel() / 2), stream()));
}

absl::Status CudaBackendImpl::Sample(const Tensor& logits, const Tensor& params, Tensor ids) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  const char* op = "Sample";
  RETURN_IF_ERROR(ExpectType(op, "logits", logits, DType::kF32));
  RETURN_IF_ERROR(ExpectRank(op, "logits", logits, 2));
  RETURN_IF_ERROR(ExpectType(op, "params", params, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "ids", ids, DType::kI32));
  cuda::SampleParams p;
  p.rows = static_cast<int>(logits.dim(0));
  p.vocab = static_cast<int>(logits.dim(1));
  constexpr int64_t kWords = cuda::kSampleRowWords;
  RETURN_IF_ERROR(ExpectNumel(op, "params", params, p.rows * kWords));
  if (ids.numel() != p.rows && ids.numel() != cuda::SampleOutputWords(p.rows)) {
    return Invalid(op,
                   absl::StrCat("ids: expected ", p.rows, " or ", cuda::SampleOutputWords(p.rows),
                                " values (with logprobs), found ", ids.ShapeString()));
  }
  p.logits = logits.as<float>();
  p.params = static_cast<const cuda::SampleRowParams*>(params.data);
  p.ids = ids.as<int32_t>();
  if (ids.numel() > p.rows) p.logprobs = reinterpret_cast<cuda::SampleLogprobs*>(p.ids + p.rows);
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  return LaunchStatus(op, cuda::LaunchSample(p, stream()));
}

// ---- hyper-connections ---------------------------------------------------------

absl::Status CudaBackendImpl::HcPre(const Tensor& X, const Tensor& fn, const Tensor& base,
                                    const Tensor& scale, int sinkhorn_iters, float hc_eps,
                                    float norm_eps, Tensor x_in, Tensor post, Tensor comb) {
  return HcPreSite("HcPre", X, fn, base, scale, sinkhorn_iters, hc_eps, norm_eps, Tensor(), x_in,
                   post, comb, Tensor());
}

absl::Status CudaBackendImpl::HcPreNorm(const Tensor& X, const Tensor& fn, const Tensor& base,
                                        const Tensor& scale, int sinkhorn_iters, float hc_eps,
                                        float norm_eps, const Tensor& norm_weight, Tensor x_in,
                                        Tensor post, Tensor comb, Tensor h) {
  if (h.empty()) return Invalid("HcPreNorm", "h is null");
  return HcPreSite("HcPreNorm", X, fn, base, scale, sinkhorn_iters, hc_eps, norm_eps, norm_weight,
                   x_in, post, comb, h);
}

absl::Status CudaBackendImpl::HcPreSite(const char* op, const Tensor& X, const Tensor& fn,
                                        const Tensor& base, const Tensor& scale, int sinkhorn_iters,
                                        float hc_eps, float norm_eps, const Tensor& norm_weight,
                                        Tensor x_in, Tensor post, Tensor comb, Tensor h) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType(op, "X", X, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "X", X, 3));
  RETURN_IF_ERROR(ExpectType(op, "fn", fn, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "base", base, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "scale", scale, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "x_in", x_in, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "post", post, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "comb", comb, DType::kF32));
  cuda::HcPreParams p;
  p.tokens = static_cast<int>(X.dim(0));
  p.n = static_cast<int>(X.dim(1));
  p.dim = static_cast<int>(X.dim(2));
  const int64_t rows = (2 + p.n) * p.n;
  RETURN_IF_ERROR(ExpectNumel(op, "fn", fn, rows * p.n * p.dim));
  RETURN_IF_ERROR(ExpectNumel(op, "base", base, rows));
  RETURN_IF_ERROR(ExpectNumel(op, "scale", scale, 3));
  RETURN_IF_ERROR(ExpectNumel(op, "x_in", x_in, int64_t{p.tokens} * p.dim));
  RETURN_IF_ERROR(ExpectNumel(op, "post", post, int64_t{p.tokens} * p.n));
  RETURN_IF_ERROR(ExpectNumel(op, "comb", comb, int64_t{p.tokens} * p.n * p.n));
  if (!h.empty()) {
    RETURN_IF_ERROR(ExpectType(op, "h", h, DType::kBF16));
    RETURN_IF_ERROR(ExpectNumel(op, "h", h, int64_t{p.tokens} * p.dim));
    if (!norm_weight.empty()) {
      RETURN_IF_ERROR(ExpectType(op, "norm_weight", norm_weight, DType::kF32));
      RETURN_IF_ERROR(ExpectNumel(op, "norm_weight", norm_weight, p.dim));
      p.norm_weight = norm_weight.as<float>();
    }
    p.normed = h.as<bf16>();
  }
  p.X = X.as<bf16>();
  p.fn = fn.as<float>();
  p.base = base.as<float>();
  p.scale = scale.as<float>();
  p.x_in = x_in.as<bf16>();
  p.post = post.as<float>();
  p.comb = comb.as<float>();
  p.sinkhorn_iters = sinkhorn_iters;
  p.hc_eps = hc_eps;
  p.norm_eps = norm_eps;
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::HcPreWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchHcPre(p, ws, stream()));
}

absl::Status CudaBackendImpl::HcPost(const Tensor& X, const Tensor& y, const Tensor& post,
                                     const Tensor& comb, Tensor Xout) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("HcPost", "X", X, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("HcPost", "X", X, 3));
  RETURN_IF_ERROR(ExpectType("HcPost", "y", y, DType::kBF16));
  RETURN_IF_ERROR(ExpectType("HcPost", "post", post, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcPost", "comb", comb, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcPost", "Xout", Xout, DType::kBF16));
  cuda::HcPostParams p;
  p.tokens = static_cast<int>(X.dim(0));
  p.n = static_cast<int>(X.dim(1));
  p.dim = static_cast<int>(X.dim(2));
  RETURN_IF_ERROR(ExpectNumel("HcPost", "y", y, int64_t{p.tokens} * p.dim));
  RETURN_IF_ERROR(ExpectNumel("HcPost", "post", post, int64_t{p.tokens} * p.n));
  RETURN_IF_ERROR(ExpectNumel("HcPost", "comb", comb, int64_t{p.tokens} * p.n * p.n));
  RETURN_IF_ERROR(ExpectNumel("HcPost", "Xout", Xout, X.numel()));
  p.X = X.as<bf16>();
  p.y = y.as<bf16>();
  p.post = post.as<float>();
  p.comb = comb.as<float>();
  p.Xout = Xout.as<bf16>();
  RETURN_IF_ERROR(KernelCheck("HcPost", cuda::Validate(p)));
  return LaunchStatus("HcPost", cuda::LaunchHcPost(p, stream()));
}

absl::Status CudaBackendImpl::HcHead(const Tensor& X, const Tensor& fn, const Tensor& base,
                                     const Tensor& scale, float hc_eps, float norm_eps, Tensor y) {
  OpScope scope(this, OpKind::kOther);
  RETURN_IF_ERROR(Activate());
  RETURN_IF_ERROR(ExpectType("HcHead", "X", X, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank("HcHead", "X", X, 3));
  RETURN_IF_ERROR(ExpectType("HcHead", "fn", fn, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcHead", "base", base, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcHead", "scale", scale, DType::kF32));
  RETURN_IF_ERROR(ExpectType("HcHead", "y", y, DType::kBF16));
  cuda::HcHeadParams p;
  p.tokens = static_cast<int>(X.dim(0));
  p.n = static_cast<int>(X.dim(1));
  p.dim = static_cast<int>(X.dim(2));
  RETURN_IF_ERROR(ExpectNumel("HcHead", "fn", fn, int64_t{p.n} * p.n * p.dim));
  RETURN_IF_ERROR(ExpectNumel("HcHead", "base", base, p.n));
  if (scale.numel() < 1) return Invalid("HcHead", "scale is empty");
  RETURN_IF_ERROR(ExpectNumel("HcHead", "y", y, int64_t{p.tokens} * p.dim));
  p.X = X.as<bf16>();
  p.fn = fn.as<float>();
  p.base = base.as<float>();
  p.scale = scale.as<float>();
  p.y = y.as<bf16>();
  p.hc_eps = hc_eps;
  p.norm_eps = norm_eps;
  RETURN_IF_ERROR(KernelCheck("HcHead", cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::HcHeadWorkspaceBytes(p)));
  return LaunchStatus("HcHead", cuda::LaunchHcHead(p, ws, stream()));
}

}  // namespace moegraph::cuda_impl
