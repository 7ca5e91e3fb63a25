#include "engine/backend/cuda/nccl_exchange.h"

#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/backend/cuda/cuda_backend_impl.h"
#include "engine/backend/cuda/nccl_check.h"
#include "engine/common/status_macros.h"
#include "kernels/cuda/exchange.h"

namespace moegraph {
namespace {

class NcclExchange final : public ExpertExchange {
 public:
  NcclExchange(const ExchangeOptions& o, ncclComm_t comm, int rank)
      : o_(o), partition_{o.num_experts, o.num_ranks}, comm_(comm), rank_(rank) {}

  int rank() const override { return rank_; }
  const ExpertPartition& partition() const override { return partition_; }
  int capacity() const override { return o_.capacity; }
  // Each call moves the call's rows, which the receiver takes to be its own.
  bool equal_rows() const override { return true; }
  const DispatchedRows& received() const override { return buf_.received; }
  const CombineSend& combine_send() const override { return buf_.send; }
  const Tensor& combined() const override { return buf_.combined; }

  absl::Status Bind(Backend* backend) override {
    if (backend_ != nullptr) return absl::FailedPreconditionError("expert exchange: bound twice");
    auto* cuda = dynamic_cast<cuda_impl::CudaBackendImpl*>(backend);
    if (cuda == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "NCCL exchange: rank ", rank_, " needs a CUDA backend, not ", backend->name()));
    }
    int device = -1;
    NCCL_RETURN_IF_ERROR(ncclCommCuDevice(comm_, &device));
    if (device != cuda->device()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "NCCL exchange: rank ", rank_, " is on cuda:", device, ", its backend on ", cuda->id()));
    }
    RETURN_IF_ERROR(AllocateRankBuffers(*backend, o_, rank_, &buf_));
    // The send side: one region a peer of dispatched rows, and one of
    // returned pairs by (token, choice); and where the peers' pairs arrive.
    ASSIGN_OR_RETURN(sent_, AllocateDispatchedRows(*backend, o_, &buf_.memory));
    const int64_t R = o_.num_ranks, cap = o_.capacity, k = o_.experts_per_token, D = o_.hidden;
    const DType act = backend->activation_dtype();
    ASSIGN_OR_RETURN(returned_, AllocateFilled(*backend, act, {R * cap, k, D}, 0.0f, &buf_.memory));
    ASSIGN_OR_RETURN(returning_,
                     AllocateFilled(*backend, act, {R * cap, k, D}, 0.0f, &buf_.memory));
    for (int64_t r = 0; r < R; ++r) {
      regions_.push_back({sent_.x.rows(r * cap, cap), sent_.experts.rows(r * cap, cap),
                          sent_.src_token.rows(r * cap, cap), sent_.counts.rows(r, 1)});
      returning_to_.push_back(returning_.rows(r * cap, cap));
    }
    backend_ = cuda;
    return absl::OkStatus();
  }

  absl::Status Dispatch(const Tensor& x, const Tensor& idx) override {
    RETURN_IF_ERROR(Ready());
    RETURN_IF_ERROR(backend_->ExchangeDispatch(x, idx, buf_.owner, regions_, buf_.rows_scratch));
    idx_ = idx;
    tokens_ = static_cast<int>(x.dim(0));
    // The first `tokens_` rows of every region, to and from every rank: a
    // rank sends a peer at most one row a token, and every rank's step
    // carries the same (padded) tokens (equal_rows), so sender and receiver
    // agree on the sizes without a count on the host. Each graph holds its
    // bucket's sizes.
    const size_t cap = static_cast<size_t>(o_.capacity);
    const size_t m = static_cast<size_t>(tokens_);
    const size_t k = static_cast<size_t>(o_.experts_per_token);
    const size_t row = static_cast<size_t>(o_.hidden) * DTypeSize(buf_.received.x.dtype);
    return Exchange([&](int peer, bool send) -> ncclResult_t {
      const DispatchedRows& d = send ? sent_ : buf_.received;
      char* x_at = static_cast<char*>(d.x.data) + peer * cap * row;
      int32_t* e_at = d.experts.as<int32_t>() + peer * cap * k;
      int32_t* s_at = d.src_token.as<int32_t>() + peer * cap;
      int32_t* c_at = d.counts.as<int32_t>() + peer;
      ncclResult_t r = Move(send, x_at, m * row, ncclUint8, peer);
      if (r == ncclSuccess) r = Move(send, e_at, m * k, ncclInt32, peer);
      if (r == ncclSuccess) r = Move(send, s_at, m, ncclInt32, peer);
      if (r == ncclSuccess) r = Move(send, c_at, 1, ncclInt32, peer);
      return r;
    });
  }

  absl::Status Combine() override {
    RETURN_IF_ERROR(Ready());
    RETURN_IF_ERROR(backend_->ExchangeCombine(buf_.send.out, buf_.send.pair_dst,
                                              buf_.send.pair_count, buf_.received.src_token,
                                              buf_.received.counts, returning_to_));
    // A region holds (token, choice) pairs of its source rank's tokens: the
    // first tokens_ * k of them are all there can be (equal rows again).
    const size_t pair = static_cast<size_t>(o_.hidden) * DTypeSize(buf_.combined.dtype);
    const size_t region = static_cast<size_t>(o_.capacity) * o_.experts_per_token * pair;
    const size_t used = static_cast<size_t>(tokens_) * o_.experts_per_token * pair;
    RETURN_IF_ERROR(Exchange([&](int peer, bool send) {
      const Tensor& t = send ? returning_ : returned_;
      return Move(send, static_cast<char*>(t.data) + peer * region, used, ncclUint8, peer);
    }));
    cuda::ExchangeMergeArgs a;
    a.idx = idx_.as<const int32_t>();
    a.owner = buf_.owner.as<const int32_t>();
    a.tokens = tokens_;
    a.k = o_.experts_per_token;
    a.dim = o_.hidden;
    a.num_experts = o_.num_experts;
    a.num_ranks = o_.num_ranks;
    a.elem_bytes = static_cast<int>(DTypeSize(buf_.combined.dtype));
    for (int r = 0; r < o_.num_ranks; ++r) {
      a.from[r] = static_cast<const char*>(returned_.data) + r * region;
    }
    a.combined = buf_.combined.data;
    const cudaError_t e = cuda::LaunchExchangeMerge(a, backend_->op_stream());
    if (e != cudaSuccess) {
      return absl::InternalError(absl::StrCat("NCCL exchange merge: ", cudaGetErrorString(e)));
    }
    return absl::OkStatus();
  }

  void Abort(const absl::Status& why) override {
    if (failed_.ok()) {
      failed_ = absl::AbortedError(
          absl::StrCat("expert exchange: rank ", rank_, " failed: ", why.message()));
    }
  }

 private:
  absl::Status Ready() const {
    if (backend_ == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("NCCL exchange: rank ", rank_, " is not bound to a backend"));
    }
    return failed_;
  }

  ncclResult_t Move(bool send, void* at, size_t count, ncclDataType_t type, int peer) {
    return send ? ncclSend(at, count, type, peer, comm_, backend_->op_stream())
                : ncclRecv(at, count, type, peer, comm_, backend_->op_stream());
  }

  // fn(peer, send) for every peer, both ways, as one NCCL group.
  template <typename Fn>
  absl::Status Exchange(Fn fn) {
    NCCL_RETURN_IF_ERROR(ncclGroupStart());
    ncclResult_t r = ncclSuccess;
    for (int peer = 0; peer < o_.num_ranks && r == ncclSuccess; ++peer) {
      r = fn(peer, true);
      if (r == ncclSuccess) r = fn(peer, false);
    }
    const ncclResult_t end = ncclGroupEnd();
    NCCL_RETURN_IF_ERROR(r);
    NCCL_RETURN_IF_ERROR(end);
    return absl::OkStatus();
  }

  ExchangeOptions o_;
  ExpertPartition partition_;
  ncclComm_t comm_;
  const int rank_;
  cuda_impl::CudaBackendImpl* backend_ = nullptr;
  RankBuffers buf_;              // owns every buffer below too
  DispatchedRows sent_;          // per peer: a region of `capacity` rows
  Tensor returned_, returning_;  // per peer: a [capacity, k, D] region
  std::vector<ExchangeRegion> regions_;
  std::vector<Tensor> returning_to_;
  Tensor idx_;
  int tokens_ = 0;
  absl::Status failed_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<NcclComms>> NcclComms::Create(const std::vector<int>& devices) {
  if (devices.empty()) return absl::InvalidArgumentError("NCCL: no devices");
  RETURN_IF_ERROR(NvlsChosen());
  std::unique_ptr<NcclComms> c(new NcclComms());
  std::vector<ncclComm_t> comms(devices.size());
  NCCL_RETURN_IF_ERROR(
      ncclCommInitAll(comms.data(), static_cast<int>(devices.size()), devices.data()));
  for (ncclComm_t comm : comms) c->comms_.push_back(comm);
  c->world_ = c->size();
  return c;
}

std::unique_ptr<NcclComms> NcclComms::Adopt(std::vector<void*> comms, int world, int first_rank) {
  std::unique_ptr<NcclComms> c(new NcclComms());
  c->comms_ = std::move(comms);
  c->world_ = world;
  c->first_rank_ = first_rank;
  return c;
}

NcclComms::~NcclComms() {
  if (aborted_) return;  // ncclCommAbort freed them
  for (void* comm : comms_) ncclCommDestroy(static_cast<ncclComm_t>(comm));
}

void NcclComms::Abort() {
  if (aborted_) return;
  aborted_ = true;
  for (void* comm : comms_) ncclCommAbort(static_cast<ncclComm_t>(comm));
}

absl::StatusOr<std::unique_ptr<ExpertExchange>> CreateNcclExchange(const ExchangeOptions& o,
                                                                   const NcclComms& comms,
                                                                   int rank) {
  if (comms.world() != comms.size()) {
    return absl::UnimplementedError(
        absl::StrCat("NCCL exchange: the communicators span processes (", comms.size(), " of ",
                     comms.world(), " ranks here); the engine steps ranks of one process only"));
  }
  if (o.num_ranks != comms.size() || rank < 0 || rank >= comms.size()) {
    return absl::InvalidArgumentError(absl::StrCat("NCCL exchange: rank ", rank, " of ",
                                                   o.num_ranks, " ranks on a communicator of ",
                                                   comms.size()));
  }
  if (o.num_ranks > cuda::kMaxExchangeRanks || o.num_experts < 1 || o.experts_per_token < 1 ||
      o.hidden < 1 || o.capacity < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("NCCL exchange: 1 to ", cuda::kMaxExchangeRanks,
                     " ranks, and positive experts, experts_per_token, hidden and capacity"));
  }
  return std::unique_ptr<ExpertExchange>(
      new NcclExchange(o, static_cast<ncclComm_t>(comms.comm(rank)), rank));
}

}  // namespace moegraph
