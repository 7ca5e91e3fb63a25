// The CUDA backend's quantized weights: FP8 (e4m3, one f32 scale per 128x128
// block, expanded from E8M0 at load) and FP4 (packed e2m1; its 1x32 E8M0
// scales re-laid out at load as [ceil(K/64)][N][2], so that a 64x64 tile's
// scales are 128 contiguous bytes: kernels/cuda/quant_tile.cuh) stay as
// stored; the dense products over them run kernels/cuda/quant_gemm.
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/logging.h"
#include "engine/common/status_macros.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/act_quant.h"
#include "kernels/cuda/quant_gemm.h"

namespace moegraph::cuda_impl {
namespace {

int64_t Fp4Planes(int64_t cols) { return (cols + 63) / 64; }

struct Layout {
  int64_t data_bytes = 0, scale_bytes = 0;
};

Layout LayoutOf(const HostWeight& h) {
  Layout l;
  const int64_t b = quant::kFp8Block;
  if (h.format == WeightFormat::kFp8) {
    l.data_bytes = h.rows * h.cols;
    l.scale_bytes = ((h.rows + b - 1) / b) * ((h.cols + b - 1) / b) * 4;
  } else {
    l.data_bytes = h.rows * h.cols / 2;
    l.scale_bytes = Fp4Planes(h.cols) * h.rows * 2;
  }
  return l;
}

Weight DeviceWeight(const HostWeight& h, void* data, void* scale, int64_t experts) {
  Weight w;
  w.format = h.format;
  w.source = h.format;
  w.pow2_act_scales = h.pow2_act_scales;
  const int64_t b = quant::kFp8Block;
  if (h.format == WeightFormat::kFp8) {
    w.data = experts ? Tensor(data, DType::kF8E4M3, {experts, h.rows, h.cols})
                     : Tensor(data, DType::kF8E4M3, {h.rows, h.cols});
    const int64_t nb = (h.rows + b - 1) / b, kb = (h.cols + b - 1) / b;
    w.scale = experts ? Tensor(scale, DType::kF32, {experts, nb, kb})
                      : Tensor(scale, DType::kF32, {nb, kb});
  } else {
    w.data = experts ? Tensor(data, DType::kU8, {experts, h.rows, h.cols / 2})
                     : Tensor(data, DType::kU8, {h.rows, h.cols / 2});
    const int64_t planes = Fp4Planes(h.cols);
    w.scale = experts ? Tensor(scale, DType::kE8M0, {experts, planes, h.rows, 2})
                      : Tensor(scale, DType::kE8M0, {planes, h.rows, 2});
  }
  return w;
}

}  // namespace

absl::Status CudaBackendImpl::UploadQuantized(const HostWeight& h, char* data, char* scale) {
  const Layout l = LayoutOf(h);
  RETURN_IF_ERROR(Upload(data, h.data.data, l.data_bytes));
  if (h.format == WeightFormat::kFp8) {
    // One f32 per block whichever way the checkpoint stored it.
    std::vector<float> s(static_cast<size_t>(l.scale_bytes / 4));
    for (size_t i = 0; i < s.size(); ++i) {
      s[i] = h.scale.dtype == DType::kF32 ? h.scale.as<const float>()[i]
                                          : quant::E8M0ToFloat(h.scale.as<const uint8_t>()[i]);
    }
    RETURN_IF_ERROR(Upload(scale, s.data(), l.scale_bytes));
    return Synchronize();  // `s` dies here
  }
  // FP4: [N, K/32] -> [ceil(K/64)][N][2] (group g of row n at plane g/2, byte g%2).
  const int64_t groups = h.cols / quant::kFp4Group;
  std::vector<uint8_t> planes(static_cast<size_t>(l.scale_bytes), 0);
  const auto* src = h.scale.as<const uint8_t>();
  for (int64_t n = 0; n < h.rows; ++n) {
    for (int64_t g = 0; g < groups; ++g)
      planes[((g / 2) * h.rows + n) * 2 + g % 2] = src[n * groups + g];
  }
  RETURN_IF_ERROR(Upload(scale, planes.data(), l.scale_bytes));
  return Synchronize();  // `planes` dies here
}

absl::StatusOr<Weight> CudaBackendImpl::UploadMatrix(const HostWeight& host,
                                                     std::vector<Buffer>* owner) {
  if (host.format == WeightFormat::kDense) {
    ASSIGN_OR_RETURN(Tensor t, UploadWeight(host.data, true, owner));
    return Weight(t);
  }
  RETURN_IF_ERROR(Activate());
  const Layout l = LayoutOf(host);
  ASSIGN_OR_RETURN(Buffer data, Allocate(l.data_bytes));
  ASSIGN_OR_RETURN(Buffer scale, Allocate(l.scale_bytes));
  RETURN_IF_ERROR(
      UploadQuantized(host, static_cast<char*>(data.data()), static_cast<char*>(scale.data())));
  RETURN_IF_ERROR(Synchronize());  // the host views may go away
  Weight w = DeviceWeight(host, data.data(), scale.data(), 0);
  owner->push_back(std::move(data));
  owner->push_back(std::move(scale));
  return w;
}

absl::StatusOr<Weight> CudaBackendImpl::UploadStackedMatrices(const std::vector<HostWeight>& host,
                                                              std::vector<Buffer>* owner) {
  if (host.empty()) return Invalid("UploadStackedMatrices", "no matrices");
  const HostWeight& first = host[0];
  for (const HostWeight& h : host) {
    if (h.format != first.format || h.rows != first.rows || h.cols != first.cols) {
      return Invalid(
          "UploadStackedMatrices",
          absl::StrCat(h.name, " (", WeightFormatName(h.format), " [", h.rows, ", ", h.cols,
                       "]) differs from ", first.name, " (", WeightFormatName(first.format), " [",
                       first.rows, ", ", first.cols, "])"));
    }
  }
  if (first.format == WeightFormat::kDense) {
    std::vector<Tensor> views;
    for (const HostWeight& h : host) views.push_back(h.data);
    ASSIGN_OR_RETURN(Tensor t, UploadStacked(views, owner));
    return Weight(t);
  }
  RETURN_IF_ERROR(Activate());
  const Layout l = LayoutOf(first);
  const int64_t E = static_cast<int64_t>(host.size());
  ASSIGN_OR_RETURN(Buffer data, Allocate(l.data_bytes * E));
  ASSIGN_OR_RETURN(Buffer scale, Allocate(l.scale_bytes * E));
  for (int64_t e = 0; e < E; ++e) {
    RETURN_IF_ERROR(UploadQuantized(host[e], static_cast<char*>(data.data()) + e * l.data_bytes,
                                    static_cast<char*>(scale.data()) + e * l.scale_bytes));
  }
  RETURN_IF_ERROR(Synchronize());
  Weight w = DeviceWeight(first, data.data(), scale.data(), E);
  owner->push_back(std::move(data));
  owner->push_back(std::move(scale));
  return w;
}

int64_t CudaBackendImpl::W8A8Rows(const Weight& w, int64_t rows, int64_t n, int64_t k) const {
  const int64_t b = quant::kFp8Block;
  // cuBLASLt reads the 128x128 scales with their K-block count padded to 4;
  // ours are unpadded, so only shapes where the two agree qualify.
  if (w.format != WeightFormat::kFp8 || w8a8_min_rows_ <= 0 || k % b != 0 ||
      (w.cols() / b) % 4 != 0 || w.cols() != k)
    return 0;
  const int64_t head = rows - rows % kFp8BlockScaledRows;
  if (head == 0 || head < w8a8_min_rows_ || w8a8_refused_.contains({head, n, k})) return 0;
  return head;
}

// W8A8: the first `rows` rows of x quantized to e4m3 in 1x128 groups into
// scratch, then cuBLASLt's block-scaled FP8 product.
absl::Status CudaBackendImpl::W8A8Gemm(const char* op, const Tensor& x, const Weight& w,
                                       int64_t row0, int64_t rows_of_w, int64_t k, int64_t ldx,
                                       int64_t rows, Tensor y, int64_t y_offset, int64_t ldy) {
  const int64_t b = quant::kFp8Block;
  const size_t q_bytes = (static_cast<size_t>(rows * k) + 255) & ~size_t{255};
  ASSIGN_OR_RETURN(void* ws, Scratch(q_bytes + static_cast<size_t>(rows * (k / b)) * 4));
  cuda::ActQuantParams q;
  q.x = x.as<bf16>();
  q.q = static_cast<uint8_t*>(ws);
  q.scale = reinterpret_cast<float*>(static_cast<char*>(ws) + q_bytes);
  q.rows = static_cast<int>(rows);
  q.k = static_cast<int>(k);
  q.ldx = static_cast<int>(ldx);
  q.pow2_scales = w.pow2_act_scales;
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(q)));
  RETURN_IF_ERROR(LaunchStatus(op, cuda::LaunchActQuant(q, stream())));
  GemmProblem p;
  p.rows = q.rows;
  p.n = static_cast<int>(rows_of_w);
  p.k = q.k;
  p.ldx = k;
  p.ldw = w.cols();
  p.ldy = ldy;
  p.out_f32 = y.dtype == DType::kF32;
  p.fp8_block_scaled = true;
  GemmScales scales;
  scales.x = q.scale;
  scales.w = w.scale.as<float>() + (row0 / b) * (w.cols() / b);
  return gemm_->Run(p, q.q, w.data.as<uint8_t>() + row0 * w.cols(),
                    static_cast<char*>(y.data) + y_offset * DTypeSize(y.dtype),
                    lane_gemm_workspace().data(), lane_gemm_workspace().bytes(), stream(), scales);
}

// A W8A8 product covers the rows in whole multiples of kFp8BlockScaledRows;
// the few left over (and every row of a product too small for W8A8) run
// W8A16.
absl::Status CudaBackendImpl::QuantGemm(const char* op, const Tensor& x, const Weight& w,
                                        int64_t row0, int64_t rows_of_w, int64_t k, int64_t ldx,
                                        Tensor y, int64_t y_offset, int64_t ldy) {
  if (w.format == WeightFormat::kFp8 && row0 % quant::kFp8Block != 0)
    return Invalid(op, "fp8 weight row blocks must start at a multiple of 128");
  const int64_t rows = x.numel() / ldx;
  int64_t head = W8A8Rows(w, rows, rows_of_w, k);
  if (head > 0) {
    const absl::Status s = W8A8Gemm(op, x, w, row0, rows_of_w, k, ldx, head, y, y_offset, ldy);
    if (!absl::IsUnimplemented(s)) RETURN_IF_ERROR(s);
    if (!s.ok()) {
      // cuBLASLt has no block-scaled algorithm for this shape: W8A16 from now on.
      LOG_WARN << name_ << " " << op << ": " << s.message() << "; this shape runs W8A16";
      w8a8_refused_.insert({head, rows_of_w, k});
      head = 0;
    }
  }
  if (head == rows) return absl::OkStatus();
  const Tensor tail(static_cast<char*>(x.data) + head * ldx * DTypeSize(x.dtype), x.dtype,
                    {(rows - head) * ldx});
  return QuantGemmW8A16(op, tail, w, row0, rows_of_w, k, ldx, y, y_offset + head * ldy, ldy);
}

absl::Status CudaBackendImpl::QuantGemmW8A16(const char* op, const Tensor& x, const Weight& w,
                                             int64_t row0, int64_t rows_of_w, int64_t k,
                                             int64_t ldx, Tensor y, int64_t y_offset, int64_t ldy,
                                             int groups) {
  cuda::QuantLinearParams p;
  p.x = x.as<bf16>();
  p.groups = groups;
  p.rows = static_cast<int>(x.numel() / ldx);
  p.n = static_cast<int>(rows_of_w);
  p.k = static_cast<int>(k);
  p.ldx = static_cast<int>(ldx);
  p.ldy = static_cast<int>(ldy);
  p.num_sms = num_sms_;
  p.y_f32 = y.dtype == DType::kF32;
  p.y = static_cast<char*>(y.data) + y_offset * DTypeSize(y.dtype);
  const int64_t cols = w.cols(), b = quant::kFp8Block;
  if (w.format == WeightFormat::kFp8) {
    p.fmt = cuda::WeightFmt::kFp8;
    p.w.data = w.data.as<uint8_t>() + row0 * cols;
    p.w.scale_f32 = w.scale.as<float>() + (row0 / b) * ((cols + b - 1) / b);
  } else {
    p.fmt = cuda::WeightFmt::kFp4;
    p.w.data = w.data.as<uint8_t>() + row0 * (cols / 2);
    p.w.scale_e8m0 = w.scale.as<uint8_t>() + row0 * 2;  // planes of all w.rows() rows
    p.scale_rows = static_cast<int>(w.rows());
  }
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  void* ws = nullptr;
  if (const size_t bytes = cuda::QuantLinearWorkspaceBytes(p); bytes > 0) {
    ASSIGN_OR_RETURN(ws, Scratch(bytes));
  }
  return LaunchStatus(op, cuda::LaunchQuantLinear(p, ws, stream()));
}

}  // namespace moegraph::cuda_impl
