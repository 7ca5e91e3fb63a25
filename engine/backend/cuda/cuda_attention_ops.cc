// The CUDA backend's attention-state ops: compressor, indexer, attention and
// the window ring. Grids and workspaces that depend on lengths are sized from
// StepMeta::max_position (a capacity inside graphs); kernels read the real
// lengths on the device.
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/compressor.h"
#include "kernels/cuda/indexer.h"

namespace moegraph::cuda_impl {

// ---- attention and its state -----------------------------------------------------

absl::Status CudaBackendImpl::CompressorUpdate(const Tensor& c, const Tensor& z,
                                               const CompressorParams& params,
                                               const StepMeta& meta) {
  OpScope scope(this, OpKind::kCompressor);
  RETURN_IF_ERROR(Activate());
  const char* op = "CompressorUpdate";
  RETURN_IF_ERROR(CheckMeta(op, meta));
  cuda::CompressorParams p;
  p.rate = params.rate;
  p.overlap = params.overlap;
  p.width = params.width;
  p.rope_dim = params.rope_dim;
  p.eps = params.eps;
  const int64_t cw = p.cw(), ring_len = p.ring_len();
  RETURN_IF_ERROR(ExpectType(op, "c", c, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "z", z, DType::kBF16));
  RETURN_IF_ERROR(ExpectNumel(op, "c", c, int64_t{meta.num_tokens} * cw));
  RETURN_IF_ERROR(ExpectNumel(op, "z", z, int64_t{meta.num_tokens} * cw));
  RETURN_IF_ERROR(ExpectType(op, "ape", params.ape, DType::kF32));
  RETURN_IF_ERROR(ExpectNumel(op, "ape", params.ape, int64_t{p.rate} * cw));
  RETURN_IF_ERROR(ExpectType(op, "norm_weight", params.norm_weight, DType::kF32));
  RETURN_IF_ERROR(ExpectNumel(op, "norm_weight", params.norm_weight, p.width));
  if (p.rope_dim > 0) RETURN_IF_ERROR(ExpectType(op, "inv_freq", params.inv_freq, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "ring", params.ring, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "ring", params.ring, 3));
  if (params.ring.dim(1) != ring_len || params.ring.dim(2) != 2 * cw)
    return Invalid(op, absl::StrCat("ring ", params.ring.ShapeString(), " is not [slots, ",
                                    ring_len, ", ", 2 * cw, "]"));
  ASSIGN_OR_RETURN(p.entries, PagesView(op, params.entries));
  p.c = c.as<bf16>();
  p.z = z.as<bf16>();
  p.ape = params.ape.as<float>();
  p.norm_weight = params.norm_weight.as<float>();
  p.inv_freq = params.inv_freq.empty() ? nullptr : params.inv_freq.as<float>();
  p.ring = params.ring.as<bf16>();
  p.meta = MetaView(meta);
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  return LaunchStatus(op, cuda::LaunchCompressorUpdate(p, stream()));
}

absl::Status CudaBackendImpl::IndexerTopK(const Tensor& q, const Tensor& weights,
                                          const EntryPages& keys, int rate, float softmax_scale,
                                          const StepMeta& meta, Tensor selected) {
  OpScope scope(this, OpKind::kIndexer);
  RETURN_IF_ERROR(Activate());
  const char* op = "IndexerTopK";
  RETURN_IF_ERROR(CheckMeta(op, meta));
  RETURN_IF_ERROR(ExpectType(op, "q", q, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "q", q, 3));
  RETURN_IF_ERROR(ExpectType(op, "weights", weights, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "selected", selected, DType::kI32));
  RETURN_IF_ERROR(ExpectRank(op, "selected", selected, 2));
  cuda::IndexerTopKParams p;
  p.tokens = meta.num_tokens;
  p.heads = static_cast<int>(q.dim(1));
  p.head_dim = static_cast<int>(q.dim(2));
  p.k = static_cast<int>(selected.dim(1));
  if (q.dim(0) != p.tokens || selected.dim(0) != p.tokens)
    return Invalid(op, "q and selected must have num_tokens rows");
  RETURN_IF_ERROR(ExpectNumel(op, "weights", weights, int64_t{p.tokens} * p.heads));
  if (rate < 1) return Invalid(op, "rate must be positive");
  ASSIGN_OR_RETURN(p.keys, PagesView(op, keys));
  p.q = q.as<bf16>();
  p.weights = weights.as<float>();
  p.token_pos = meta.token_pos.as<int32_t>();
  p.token_seq = meta.token_seq.as<int32_t>();
  p.seq_slot = meta.seq_slot.as<int32_t>();
  p.selected = selected.as<int32_t>();
  p.rate = rate;
  p.softmax_scale = softmax_scale;
  ASSIGN_OR_RETURN(const int max_pos, MaxPositionOf(op, meta));
  p.max_entries = std::min<int64_t>((max_pos + 1) / rate, keys.table.dim(1) * keys.page_size);
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::IndexerTopKWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchIndexerTopK(p, ws, stream()));
}

absl::Status CudaBackendImpl::Attention(const Tensor& q, const Tensor& kv,
                                        const AttentionParams& params, const StepMeta& meta,
                                        Tensor out) {
  OpScope scope(this, OpKind::kAttention);
  RETURN_IF_ERROR(Activate());
  const char* op = "Attention";
  RETURN_IF_ERROR(CheckMeta(op, meta));
  RETURN_IF_ERROR(ExpectType(op, "q", q, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "q", q, 3));
  RETURN_IF_ERROR(ExpectType(op, "kv", kv, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "out", out, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "sinks", params.sinks, DType::kF32));
  RETURN_IF_ERROR(ExpectType(op, "window_ring", params.window_ring, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "window_ring", params.window_ring, 3));
  cuda::AttentionParams p;
  p.tokens = meta.num_tokens;
  p.heads = static_cast<int>(q.dim(1));
  p.head_dim = static_cast<int>(q.dim(2));
  p.window = params.window;
  p.scale = params.scale;
  if (q.dim(0) != p.tokens) return Invalid(op, "q must have num_tokens rows");
  RETURN_IF_ERROR(ExpectNumel(op, "kv", kv, int64_t{p.tokens} * p.head_dim));
  RETURN_IF_ERROR(ExpectNumel(op, "out", out, q.numel()));
  RETURN_IF_ERROR(ExpectNumel(op, "sinks", params.sinks, p.heads));
  if (params.window_ring.dim(1) != p.window || params.window_ring.dim(2) != p.head_dim)
    return Invalid(op, absl::StrCat("window_ring ", params.window_ring.ShapeString(),
                                    " is not [slots, ", p.window, ", ", p.head_dim, "]"));
  if (!params.entries.pool.empty()) {
    ASSIGN_OR_RETURN(p.entries, PagesView(op, params.entries));
    p.rate = params.rate;
    if (!params.selected.empty()) {
      RETURN_IF_ERROR(ExpectType(op, "selected", params.selected, DType::kI32));
      RETURN_IF_ERROR(ExpectRank(op, "selected", params.selected, 2));
      if (params.selected.dim(0) != p.tokens) return Invalid(op, "selected must have T rows");
      p.selected = params.selected.as<int32_t>();
      p.selected_k = static_cast<int>(params.selected.dim(1));
    }
  }
  p.q = q.as<bf16>();
  p.kv = kv.as<bf16>();
  p.window_ring = params.window_ring.as<bf16>();
  p.sinks = params.sinks.as<float>();
  p.out = out.as<bf16>();
  p.meta = MetaView(meta);
  ASSIGN_OR_RETURN(p.max_position, MaxPositionOf(op, meta));
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  ASSIGN_OR_RETURN(void* ws, Scratch(cuda::AttentionWorkspaceBytes(p)));
  return LaunchStatus(op, cuda::LaunchAttention(p, ws, stream()));
}

absl::Status CudaBackendImpl::WindowUpdate(const Tensor& kv, Tensor ring, const StepMeta& meta) {
  OpScope scope(this, OpKind::kAttention);
  RETURN_IF_ERROR(Activate());
  const char* op = "WindowUpdate";
  RETURN_IF_ERROR(CheckMeta(op, meta));
  RETURN_IF_ERROR(ExpectType(op, "kv", kv, DType::kBF16));
  RETURN_IF_ERROR(ExpectType(op, "ring", ring, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "ring", ring, 3));
  cuda::WindowUpdateParams p;
  p.head_dim = static_cast<int>(ring.dim(2));
  p.window = static_cast<int>(ring.dim(1));
  RETURN_IF_ERROR(ExpectNumel(op, "kv", kv, int64_t{meta.num_tokens} * p.head_dim));
  p.kv = kv.as<bf16>();
  p.ring = ring.as<bf16>();
  p.meta = MetaView(meta);
  RETURN_IF_ERROR(KernelCheck(op, cuda::Validate(p)));
  return LaunchStatus(op, cuda::LaunchWindowUpdate(p, stream()));
}

}  // namespace moegraph::cuda_impl
