#include "engine/parallel/in_process_exchange.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace moegraph {

class InProcessExchange::Rank final : public ExpertExchange {
 public:
  Rank(InProcessExchange* owner, int rank) : owner_(owner), rank_(rank) {}

  int rank() const override { return rank_; }
  const ExpertPartition& partition() const override { return owner_->partition_; }
  int capacity() const override { return owner_->options_.capacity; }
  bool equal_rows() const override { return owner_->options_.equal_rows; }
  const DispatchedRows& received() const override { return buf_.received; }
  const CombineSend& combine_send() const override { return buf_.send; }
  const Tensor& combined() const override { return buf_.combined; }

  absl::Status Bind(Backend* backend) override {
    if (backend_ != nullptr) return absl::FailedPreconditionError("expert exchange: bound twice");
    // Every peer bound so far and this rank must reach each other's memory.
    for (const auto& peer : owner_->ranks_) {
      if (peer.get() == this || peer->backend_ == nullptr) continue;
      RETURN_IF_ERROR(backend->EnablePeerAccess(*peer->backend_));
      RETURN_IF_ERROR(peer->backend_->EnablePeerAccess(*backend));
    }
    RETURN_IF_ERROR(AllocateRankBuffers(*backend, owner_->options_, rank_, &buf_));
    backend_ = backend;
    return absl::OkStatus();
  }

  absl::Status Dispatch(const Tensor& x, const Tensor& idx) override {
    // Read by the peers after the barrier, rewritten only after the next
    // one (combine), which they reach after reading.
    owner_->rows_[rank_] = x.dim(0);
    absl::Status s = Send(x, idx);
    if (!s.ok()) {
      Abort(s);
      return s;
    }
    RETURN_IF_ERROR(owner_->barrier_.Arrive(rank_, "dispatch"));
    if (!equal_rows()) return absl::OkStatus();
    for (int r = 0; r < owner_->num_ranks(); ++r) {
      if (owner_->rows_[r] != x.dim(0)) {
        return absl::InternalError(absl::StrCat(
            "expert exchange: rank ", rank_, " dispatched ", x.dim(0), " rows and rank ", r, " ",
            owner_->rows_[r], "; the exchange wants every rank's step padded alike"));
      }
    }
    return absl::OkStatus();
  }

  absl::Status Combine() override {
    absl::Status s = Return();
    if (!s.ok()) {
      Abort(s);
      return s;
    }
    return owner_->barrier_.Arrive(rank_, "combine");
  }

  void Abort(const absl::Status& why) override {
    owner_->barrier_.Fail(absl::AbortedError(
        absl::StrCat("expert exchange: rank ", rank_, " failed: ", why.message())));
  }

 private:
  // Each peer's region for this rank's rows, and each peer's combined
  // buffer: set on first use, when every rank is bound.
  absl::Status Peers() {
    if (!to_.empty()) return absl::OkStatus();
    const int64_t cap = owner_->options_.capacity;
    for (const auto& peer_ptr : owner_->ranks_) {
      const Rank& peer = *peer_ptr;
      if (peer.backend_ == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat("expert exchange: rank ", peer.rank_, " is not bound to a backend"));
      }
      const DispatchedRows& in = peer.buf_.received;
      to_.push_back({in.x.rows(rank_ * cap, cap), in.experts.rows(rank_ * cap, cap),
                     in.src_token.rows(rank_ * cap, cap), in.counts.rows(rank_, 1)});
      combined_to_.push_back(peer.buf_.combined);
    }
    return absl::OkStatus();
  }

  // Writes this rank's rows into every peer's region for it; the rows have
  // landed when this returns.
  absl::Status Send(const Tensor& x, const Tensor& idx) {
    RETURN_IF_ERROR(Peers());
    RETURN_IF_ERROR(backend_->ExchangeDispatch(x, idx, buf_.owner, to_, buf_.rows_scratch));
    return backend_->Synchronize();
  }

  // Writes every pair of this rank's send buffer into its token's rank.
  absl::Status Return() {
    RETURN_IF_ERROR(Peers());
    RETURN_IF_ERROR(backend_->ExchangeCombine(buf_.send.out, buf_.send.pair_dst,
                                              buf_.send.pair_count, buf_.received.src_token,
                                              buf_.received.counts, combined_to_));
    return backend_->Synchronize();
  }

  InProcessExchange* owner_;
  const int rank_;
  Backend* backend_ = nullptr;
  RankBuffers buf_;  // what peers write into (received, combined) and this rank's ops write
  std::vector<ExchangeRegion> to_;
  std::vector<Tensor> combined_to_;
};

InProcessExchange::InProcessExchange(const ExchangeOptions& options)
    : options_(options),
      partition_{options.num_experts, options.num_ranks},
      barrier_(options.num_ranks, options.timeout),
      rows_(static_cast<size_t>(options.num_ranks), 0) {}

InProcessExchange::~InProcessExchange() = default;

absl::StatusOr<std::unique_ptr<InProcessExchange>> InProcessExchange::Create(
    const ExchangeOptions& o) {
  if (o.num_ranks < 1 || o.num_experts < 1 || o.experts_per_token < 1 ||
      o.experts_per_token > o.num_experts || o.hidden < 1 || o.capacity < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "in-process exchange: num_ranks, num_experts, experts_per_token (<= num_experts), hidden "
        "and capacity must be positive (got ",
        o.num_ranks, ", ", o.num_experts, ", ", o.experts_per_token, ", ", o.hidden, ", ",
        o.capacity, ")"));
  }
  if (o.timeout.count() <= 0) {
    return absl::InvalidArgumentError("in-process exchange: timeout must be positive");
  }
  std::unique_ptr<InProcessExchange> ex(new InProcessExchange(o));
  for (int r = 0; r < o.num_ranks; ++r) ex->ranks_.push_back(std::make_unique<Rank>(ex.get(), r));
  return ex;
}

ExpertExchange* InProcessExchange::rank(int r) { return ranks_[r].get(); }

}  // namespace moegraph
