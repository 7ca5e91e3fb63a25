// The expert exchange's data movement (Backend::ExchangeDispatch,
// ExchangeCombine) and peer access between ranks of one process.
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/common/status_macros.h"
#include "kernels/cuda/exchange.h"

namespace moegraph::cuda_impl {

namespace {

absl::Status CheckRanks(const char* op, size_t ranks) {
  if (ranks > static_cast<size_t>(cuda::kMaxExchangeRanks)) {
    return Invalid(op, absl::StrCat(ranks, " ranks; the CUDA exchange takes at most ",
                                    cuda::kMaxExchangeRanks));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CudaBackendImpl::ExchangeDispatch(const Tensor& x, const Tensor& idx,
                                               const Tensor& owner,
                                               const std::vector<ExchangeRegion>& to,
                                               Tensor rows_scratch) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "ExchangeDispatch";
  RETURN_IF_ERROR(CheckExchangeDispatch(x, idx, owner, to, rows_scratch, DType::kBF16));
  RETURN_IF_ERROR(CheckRanks(op, to.size()));
  cuda::ExchangeDispatchArgs a;
  a.x = x.data;
  a.idx = idx.as<const int32_t>();
  a.owner = owner.as<const int32_t>();
  a.tokens = static_cast<int>(x.dim(0));
  a.dim = static_cast<int>(x.dim(1));
  a.k = static_cast<int>(to[0].experts.dim(1));
  a.num_experts = static_cast<int>(owner.dim(0));
  a.num_ranks = static_cast<int>(to.size());
  a.elem_bytes = static_cast<int>(DTypeSize(DType::kBF16));
  a.rows = rows_scratch.as<int32_t>();
  for (size_t r = 0; r < to.size(); ++r) {
    a.x_to[r] = to[r].x.data;
    a.experts_to[r] = to[r].experts.as<int32_t>();
    a.src_to[r] = to[r].src_token.as<int32_t>();
    a.count_to[r] = to[r].count.as<int32_t>();
  }
  return LaunchStatus(op, cuda::LaunchExchangeDispatch(a, stream()));
}

absl::Status CudaBackendImpl::ExchangeCombine(const Tensor& out, const Tensor& pair_dst,
                                              const Tensor& pair_count, const Tensor& src_token,
                                              const Tensor& counts,
                                              const std::vector<Tensor>& combined) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "ExchangeCombine";
  RETURN_IF_ERROR(
      CheckExchangeCombine(out, pair_dst, pair_count, src_token, counts, combined, DType::kBF16));
  RETURN_IF_ERROR(CheckRanks(op, combined.size()));
  cuda::ExchangeCombineArgs a;
  a.out = out.data;
  a.pair_dst = pair_dst.as<const int32_t>();
  a.pair_count = pair_count.as<const int32_t>();
  a.src_token = src_token.as<const int32_t>();
  a.counts = counts.as<const int32_t>();
  a.max_pairs = static_cast<int>(out.dim(0));
  a.dim = static_cast<int>(out.dim(1));
  a.capacity = static_cast<int>(combined[0].dim(0));
  a.k = static_cast<int>(combined[0].dim(1));
  a.num_ranks = static_cast<int>(combined.size());
  a.elem_bytes = static_cast<int>(DTypeSize(DType::kBF16));
  for (size_t r = 0; r < combined.size(); ++r) a.combined[r] = combined[r].data;
  return LaunchStatus(op, cuda::LaunchExchangeCombine(a, stream()));
}

absl::Status CudaBackendImpl::ExchangeMeet(const RankMeeting& m) {
  OpScope scope(this, OpKind::kMoe);
  RETURN_IF_ERROR(Activate());
  const char* op = "ExchangeMeet";
  const size_t R = m.mailbox.size();
  RETURN_IF_ERROR(CheckRanks(op, R));
  auto one_i32 = [](const Tensor& t, int64_t n) {
    return t.data != nullptr && t.dtype == DType::kI32 && t.numel() == n;
  };
  if (R == 0 || m.rank < 0 || m.rank >= static_cast<int>(R) || !one_i32(m.calls, 1) ||
      !one_i32(m.inbox, static_cast<int64_t>(R)) || m.control == nullptr || m.timeout_ns <= 0) {
    return Invalid(op, absl::StrCat("rank ", m.rank, " of ", R,
                                    ": calls i32 [1], inbox i32 [ranks], the control words and a "
                                    "positive timeout are required"));
  }
  cuda::ExchangeMeetArgs a;
  a.rank = m.rank;
  a.num_ranks = static_cast<int>(R);
  a.calls = m.calls.as<int32_t>();
  a.inbox = m.inbox.as<const int32_t>();
  for (size_t r = 0; r < R; ++r) {
    if (!one_i32(m.mailbox[r], 1))
      return Invalid(op, absl::StrCat("mailbox ", r, " is not i32 [1]"));
    a.mailbox[r] = m.mailbox[r].as<int32_t>();
  }
  a.stop = m.control;
  a.gave_up = m.control + 1 + m.rank;
  a.timeout_ns = m.timeout_ns;
  return LaunchStatus(op, cuda::LaunchExchangeMeet(a, stream()));
}

absl::Status CudaBackendImpl::EnablePeerAccess(const Backend& peer) {
  const std::string other_id = peer.id();
  int other = -1;
  if (!absl::StartsWith(other_id, "cuda:") || !absl::SimpleAtoi(other_id.substr(5), &other)) {
    return absl::UnimplementedError(
        absl::StrCat(name_, " cannot reach ", peer.name(), "'s memory (not a CUDA device)"));
  }
  if (other == device_) return absl::OkStatus();
  int can = 0;
  CUDA_RETURN_IF_ERROR(cudaDeviceCanAccessPeer(&can, device_, other));
  if (can == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cuda:", device_, " cannot access cuda:", other,
        "'s memory (no peer access); ranks in one process need NVLink or PCIe peer access"));
  }
  RETURN_IF_ERROR(Activate());
  const cudaError_t e = cudaDeviceEnablePeerAccess(other, 0);
  if (e == cudaErrorPeerAccessAlreadyEnabled) {
    (void)cudaGetLastError();
    return absl::OkStatus();
  }
  CUDA_RETURN_IF_ERROR(e);
  return absl::OkStatus();
}

}  // namespace moegraph::cuda_impl
