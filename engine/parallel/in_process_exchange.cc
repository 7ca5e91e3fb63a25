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
  const DispatchedRows& received() const override { return received_; }
  const CombineSend& combine_send() const override { return send_view_; }
  const Tensor& combined() const override { return combined_view_; }

  absl::Status Bind(Backend* backend) override {
    if (backend_ != nullptr) return absl::FailedPreconditionError("expert exchange: bound twice");
    const InProcessExchangeOptions& o = owner_->options_;
    const int64_t R = o.num_ranks, cap = o.capacity, k = o.experts_per_token, D = o.hidden;
    const int64_t pairs =
        std::max<int64_t>(R * cap * std::min<int64_t>(k, partition().count(rank_)), 1);
    const DType act = backend->activation_dtype();
    // Every peer bound so far and this rank must reach each other's memory.
    for (const auto& peer : owner_->ranks_) {
      if (peer.get() == this || peer->backend_ == nullptr) continue;
      RETURN_IF_ERROR(backend->EnablePeerAccess(*peer->backend_));
      RETURN_IF_ERROR(peer->backend_->EnablePeerAccess(*backend));
    }
    auto alloc = [&](DType t, std::initializer_list<int64_t> dims, float fill) {
      return AllocateFilled(*backend, t, dims, fill, &buffers_);
    };
    ASSIGN_OR_RETURN(received_.x, alloc(act, {R * cap, D}, 0.0f));
    ASSIGN_OR_RETURN(received_.experts, alloc(DType::kI32, {R * cap, k}, -1.0f));
    ASSIGN_OR_RETURN(received_.src_token, alloc(DType::kI32, {R * cap}, 0.0f));
    ASSIGN_OR_RETURN(received_.counts, alloc(DType::kI32, {R}, 0.0f));
    received_.capacity = o.capacity;
    ASSIGN_OR_RETURN(send_view_.out, alloc(act, {pairs, D}, 0.0f));
    ASSIGN_OR_RETURN(send_view_.pair_dst, alloc(DType::kI32, {pairs}, 0.0f));
    ASSIGN_OR_RETURN(send_view_.pair_count, alloc(DType::kI32, {1}, 0.0f));
    ASSIGN_OR_RETURN(combined_view_, alloc(act, {cap, k, D}, 0.0f));
    ASSIGN_OR_RETURN(rows_scratch_, alloc(DType::kI32, {R * cap}, 0.0f));
    const int64_t E = static_cast<int64_t>(owner_->owner_.size());
    ASSIGN_OR_RETURN(owner_table_, alloc(DType::kI32, {E}, 0.0f));
    RETURN_IF_ERROR(
        backend->Upload(owner_table_.data, owner_->owner_.data(), owner_table_.bytes()));
    RETURN_IF_ERROR(backend->Synchronize());
    backend_ = backend;
    return absl::OkStatus();
  }

  absl::Status Dispatch(const Tensor& x, const Tensor& idx) override {
    absl::Status s = Send(x, idx);
    if (!s.ok()) {
      Abort(s);
      return s;
    }
    return owner_->barrier_.Arrive(rank_, "dispatch");
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
      const DispatchedRows& in = peer.received_;
      to_.push_back({in.x.rows(rank_ * cap, cap), in.experts.rows(rank_ * cap, cap),
                     in.src_token.rows(rank_ * cap, cap), in.counts.rows(rank_, 1)});
      combined_to_.push_back(peer.combined_view_);
    }
    return absl::OkStatus();
  }

  // Writes this rank's rows into every peer's region for it; the rows have
  // landed when this returns.
  absl::Status Send(const Tensor& x, const Tensor& idx) {
    RETURN_IF_ERROR(Peers());
    RETURN_IF_ERROR(backend_->ExchangeDispatch(x, idx, owner_table_, to_, rows_scratch_));
    return backend_->Synchronize();
  }

  // Writes every pair of this rank's send buffer into its token's rank.
  absl::Status Return() {
    RETURN_IF_ERROR(Peers());
    RETURN_IF_ERROR(backend_->ExchangeCombine(send_view_.out, send_view_.pair_dst,
                                              send_view_.pair_count, received_.src_token,
                                              received_.counts, combined_to_));
    return backend_->Synchronize();
  }

  InProcessExchange* owner_;
  const int rank_;
  Backend* backend_ = nullptr;
  std::vector<Buffer> buffers_;
  // What peers write into (received rows) and what this rank's ops write.
  DispatchedRows received_;
  CombineSend send_view_;
  Tensor combined_view_;
  Tensor rows_scratch_, owner_table_;
  std::vector<ExchangeRegion> to_;
  std::vector<Tensor> combined_to_;
};

InProcessExchange::InProcessExchange(const InProcessExchangeOptions& options)
    : options_(options),
      partition_{options.num_experts, options.num_ranks},
      barrier_(options.num_ranks, options.timeout) {}

InProcessExchange::~InProcessExchange() = default;

absl::StatusOr<std::unique_ptr<InProcessExchange>> InProcessExchange::Create(
    const InProcessExchangeOptions& o) {
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
  ex->owner_.resize(o.num_experts);
  for (int e = 0; e < o.num_experts; ++e) ex->owner_[e] = ex->partition_.owner(e);
  for (int r = 0; r < o.num_ranks; ++r) ex->ranks_.push_back(std::make_unique<Rank>(ex.get(), r));
  return ex;
}

ExpertExchange* InProcessExchange::rank(int r) { return ranks_[r].get(); }

}  // namespace moegraph
