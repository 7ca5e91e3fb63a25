#include "engine/parallel/in_process_exchange.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace moegraph {

class InProcessExchange::Rank final : public ExpertExchange {
 public:
  Rank(InProcessExchange* owner, int rank) : owner_(owner), rank_(rank) {
    const InProcessExchangeOptions& o = owner->options_;
    const int64_t R = o.num_ranks, cap = o.capacity, k = o.experts_per_token, D = o.hidden;
    const int64_t local = std::min<int64_t>(k, owner->partition_.count(rank));
    const int64_t pairs = R * cap * local;
    x_.assign(R * cap * D, 0.0f);
    experts_.assign(R * cap * k, -1);
    src_.assign(R * cap, 0);
    counts_.assign(R, 0);
    send_.assign(std::max<int64_t>(pairs, 1) * D, 0.0f);
    pair_dst_.assign(std::max<int64_t>(pairs, 1), 0);
    pair_count_.assign(1, 0);
    combined_.assign(cap * k * D, 0.0f);
    received_.capacity = o.capacity;
    received_.x = Tensor(x_.data(), DType::kF32, {R * cap, D});
    received_.experts = Tensor(experts_.data(), DType::kI32, {R * cap, k});
    received_.src_token = Tensor(src_.data(), DType::kI32, {R * cap});
    received_.counts = Tensor(counts_.data(), DType::kI32, {R});
    send_view_.out = Tensor(send_.data(), DType::kF32, {pairs, D});
    send_view_.pair_dst = Tensor(pair_dst_.data(), DType::kI32, {pairs});
    send_view_.pair_count = Tensor(pair_count_.data(), DType::kI32, {1});
    combined_view_ = Tensor(combined_.data(), DType::kF32, {cap, k, D});
  }

  int rank() const override { return rank_; }
  const ExpertPartition& partition() const override { return owner_->partition_; }
  int capacity() const override { return owner_->options_.capacity; }
  const DispatchedRows& received() const override { return received_; }
  const CombineSend& combine_send() const override { return send_view_; }
  const Tensor& combined() const override { return combined_view_; }

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
  // Writes this rank's rows into every peer's region for it.
  absl::Status Send(const Tensor& x, const Tensor& idx) {
    const InProcessExchangeOptions& o = owner_->options_;
    const int64_t k = o.experts_per_token, D = o.hidden, cap = o.capacity;
    const int64_t T = x.rank == 2 ? x.dim(0) : -1;
    if (x.dtype != DType::kF32 || T < 0 || x.dim(1) != D) {
      return absl::InvalidArgumentError(absl::StrCat("Dispatch: x must be f32 [T, ", D, "], got ",
                                                     DTypeName(x.dtype), " ", x.ShapeString()));
    }
    if (T > cap) {
      return absl::InvalidArgumentError(
          absl::StrCat("Dispatch: ", T, " tokens exceed the capacity ", cap));
    }
    if (T > 0 &&
        (idx.dtype != DType::kI32 || idx.rank != 2 || idx.dim(0) != T || idx.dim(1) != k)) {
      return absl::InvalidArgumentError(absl::StrCat("Dispatch: idx must be i32 [", T, ", ", k,
                                                     "], got ", DTypeName(idx.dtype), " ",
                                                     idx.ShapeString()));
    }
    const float* xs = x.as<const float>();
    const int32_t* ids = T > 0 ? idx.as<const int32_t>() : nullptr;
    for (int64_t i = 0; i < T * k; ++i) {
      if (ids[i] < 0 || ids[i] >= o.num_experts) {
        return absl::InvalidArgumentError(absl::StrCat("Dispatch: idx[", i / k, ", ", i % k,
                                                       "] = ", ids[i], " is not an expert"));
      }
    }
    for (const auto& peer_ptr : owner_->ranks_) {
      Rank& peer = *peer_ptr;
      const int64_t base = rank_ * cap;
      int32_t n = 0;
      for (int64_t t = 0; t < T; ++t) {
        bool wanted = false;
        for (int64_t i = 0; i < k; ++i) wanted |= owner_->owner_[ids[t * k + i]] == peer.rank_;
        if (!wanted) continue;
        const int64_t row = base + n;
        std::memcpy(&peer.x_[row * D], xs + t * D, D * sizeof(float));
        for (int64_t i = 0; i < k; ++i) {
          const int32_t e = ids[t * k + i];
          peer.experts_[row * k + i] = owner_->owner_[e] == peer.rank_ ? e : -1;
        }
        peer.src_[row] = static_cast<int32_t>(t);
        ++n;
      }
      peer.counts_[rank_] = n;
    }
    return absl::OkStatus();
  }

  // Writes every pair of this rank's send buffer into its token's rank.
  absl::Status Return() {
    const InProcessExchangeOptions& o = owner_->options_;
    const int64_t k = o.experts_per_token, D = o.hidden, cap = o.capacity;
    const int64_t pairs = pair_count_[0];
    if (pairs < 0 || pairs > send_view_.out.dim(0)) {
      return absl::InternalError(
          absl::StrCat("Combine: pair count ", pairs, " outside [0, ", send_view_.out.dim(0), "]"));
    }
    for (int64_t p = 0; p < pairs; ++p) {
      const int64_t row = pair_dst_[p] / k, choice = pair_dst_[p] % k;
      const int64_t src_rank = row / cap;
      if (pair_dst_[p] < 0 || src_rank >= o.num_ranks || row % cap >= counts_[src_rank]) {
        return absl::InternalError(
            absl::StrCat("Combine: pair ", p, " names row ", row, ", which did not arrive"));
      }
      Rank& origin = *owner_->ranks_[src_rank];
      std::memcpy(&origin.combined_[(src_[row] * k + choice) * D], &send_[p * D],
                  D * sizeof(float));
    }
    return absl::OkStatus();
  }

  InProcessExchange* owner_;
  const int rank_;
  // What peers write into (received rows) and what this rank's ops write.
  std::vector<float> x_;
  std::vector<int32_t> experts_, src_, counts_;
  std::vector<float> send_;
  std::vector<int32_t> pair_dst_, pair_count_;
  std::vector<float> combined_;
  DispatchedRows received_;
  CombineSend send_view_;
  Tensor combined_view_;
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
  if (o.activation_dtype != DType::kF32) {
    return absl::UnimplementedError(absl::StrCat("in-process exchange: activations are ",
                                                 DTypeName(o.activation_dtype),
                                                 "; only f32 (the CPU backend) is supported"));
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
