// Operand checks shared by the CUDA backend's op families (cuda_backend_impl.h).
#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/cuda_check.h"
#include "engine/common/status_macros.h"

namespace moegraph::cuda_impl {

// ---- operand checks ---------------------------------------------------------

absl::Status LaunchStatus(const char* op, cudaError_t e) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrFormat("cuda %s: launch failed: %s (%s)", op,
                                             cudaGetErrorString(e), cudaGetErrorName(e)));
}

// Kernel-side validation message -> InvalidArgument.
absl::Status KernelCheck(const char* op, const char* msg) {
  return msg ? Invalid(op, msg) : absl::OkStatus();
}

cuda::StepMetaView MetaView(const StepMeta& m) {
  cuda::StepMetaView v;
  v.token_pos = m.token_pos.as<int32_t>();
  v.token_seq = m.token_seq.as<int32_t>();
  v.seq_begin = m.seq_begin.as<int32_t>();
  v.seq_slot = m.seq_slot.as<int32_t>();
  v.seq_start_pos = m.seq_start_pos.as<int32_t>();
  v.tokens = m.num_tokens;
  v.seqs = m.num_seqs;
  return v;
}

absl::Status CheckMeta(const char* op, const StepMeta& m) {
  RETURN_IF_ERROR(ExpectType(op, "meta.token_pos", m.token_pos, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "meta.token_seq", m.token_seq, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "meta.seq_begin", m.seq_begin, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "meta.seq_slot", m.seq_slot, DType::kI32));
  RETURN_IF_ERROR(ExpectType(op, "meta.seq_start_pos", m.seq_start_pos, DType::kI32));
  if (m.token_pos.numel() < m.num_tokens || m.seq_begin.numel() < m.num_seqs + 1 ||
      m.seq_slot.numel() < m.num_seqs || m.seq_start_pos.numel() < m.num_seqs)
    return Invalid(op, "meta tensors shorter than num_tokens / num_seqs");
  return absl::OkStatus();
}

absl::StatusOr<cuda::EntryPagesView> PagesView(const char* op, const EntryPages& e) {
  RETURN_IF_ERROR(ExpectType(op, "entries.pool", e.pool, DType::kBF16));
  RETURN_IF_ERROR(ExpectRank(op, "entries.pool", e.pool, 4));
  RETURN_IF_ERROR(ExpectType(op, "entries.table", e.table, DType::kI32));
  RETURN_IF_ERROR(ExpectRank(op, "entries.table", e.table, 2));
  if (e.page_size != e.pool.dim(1))
    return Invalid(
        op, absl::StrCat("entries.page_size ", e.page_size, " != pool dim 1 ", e.pool.dim(1)));
  if (e.layer < 0 || e.layer >= e.pool.dim(2))
    return Invalid(op, absl::StrCat("entries.layer ", e.layer, " outside the pool's ",
                                    e.pool.dim(2), " layers"));
  cuda::EntryPagesView v;
  v.pool = e.pool.as<bf16>();
  v.table = e.table.as<int32_t>();
  v.max_pages = static_cast<int>(e.table.dim(1));
  v.page_size = e.page_size;
  v.layers = static_cast<int>(e.pool.dim(2));
  v.layer = e.layer;
  v.width = static_cast<int>(e.pool.dim(3));
  return v;
}

absl::StatusOr<cuda::ElemType> ElemTypeOf(const char* op, DType t) {
  switch (t) {
    case DType::kF32:
      return cuda::ElemType::kF32;
    case DType::kBF16:
      return cuda::ElemType::kBF16;
    case DType::kI32:
      return cuda::ElemType::kI32;
    default:
      return Invalid(op, absl::StrCat("dtype ", DTypeName(t), " is not supported"));
  }
}

absl::StatusOr<int> MaxPositionOf(const char* op, const StepMeta& m) {
  int max_pos = m.max_position;
  if (m.host_seq_begin && m.host_seq_start_pos) {
    for (int s = 0; s < m.num_seqs; ++s) {
      const int len = m.host_seq_begin[s + 1] - m.host_seq_begin[s];
      if (len > 0) max_pos = std::max(max_pos, m.host_seq_start_pos[s] + len - 1);
    }
  } else if (m.max_position < 0 && m.num_tokens > 0) {
    return Invalid(op, "meta has neither max_position nor host copies of the batch");
  }
  return std::max(max_pos, 0);
}

}  // namespace moegraph::cuda_impl
