#include "engine/parallel/in_process_exchange.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>

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
    if (owner_->options_.device_meetings) {
      if (owner_->control_ == nullptr) {
        const size_t bytes = sizeof(int32_t) * (1 + owner_->ranks_.size());
        ASSIGN_OR_RETURN(owner_->control_, backend->AllocateHost(bytes));
        std::memset(owner_->control_.get(), 0, bytes);
      }
      const int R = owner_->num_ranks();
      ASSIGN_OR_RETURN(meeting_.calls, AllocateFilled(*backend, DType::kI32, {1}, 0, &buf_.memory));
      ASSIGN_OR_RETURN(meeting_.inbox, AllocateFilled(*backend, DType::kI32, {R}, 0, &buf_.memory));
      RETURN_IF_ERROR(backend->Synchronize());
      meeting_.rank = rank_;
      meeting_.control = owner_->control();
      meeting_.timeout_ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(owner_->options_.timeout).count();
    }
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
    if (on_device()) return absl::OkStatus();
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
    if (on_device()) return absl::OkStatus();
    return owner_->barrier_.Arrive(rank_, "combine");
  }

  absl::Status Finish() override {
    if (!device_meetings() || backend_ == nullptr) return absl::OkStatus();
    RETURN_IF_ERROR(backend_->Synchronize());
    RETURN_IF_ERROR(owner_->barrier_.status());  // an abort, with its cause
    // A rank that gives up also sets the stop word, which ends its peers'
    // waits early: their step failed too, with that rank's timeout as cause.
    int32_t* control = owner_->control();
    if (std::atomic_ref<int32_t>(control[0]).load() == 0) return absl::OkStatus();
    std::string who;
    for (int r = 0; r < owner_->num_ranks(); ++r) {
      const int32_t call = std::atomic_ref<int32_t>(control[1 + r]).load();
      if (call == 0) continue;
      absl::StrAppend(&who, who.empty() ? "" : "; ", "rank ", r, " waited on the device more than ",
                      owner_->options_.timeout.count(), " ms for its peers at meeting ", call);
    }
    if (who.empty()) who = "the device meetings were stopped";
    const absl::Status s = absl::DeadlineExceededError(
        absl::StrCat("expert exchange: ", who, " (a rank did not reach the same exchange call)"));
    owner_->barrier_.Fail(s);
    return s;
  }

  void Abort(const absl::Status& why) override {
    owner_->barrier_.Fail(absl::AbortedError(
        absl::StrCat("expert exchange: rank ", rank_, " failed: ", why.message())));
    // Peers waiting on the device for this rank stop (their step's results
    // are garbage; Finish reports the abort).
    if (device_meetings() && owner_->control() != nullptr) {
      std::atomic_ref<int32_t>(owner_->control()[0]).store(1);
    }
  }

  bool device_meetings() const { return owner_->options_.device_meetings; }
  // Device meetings start once the rank's workspaces are frozen (after its
  // load-time warm-up, at the same call on every rank, as every rank walks
  // the same buckets): before, a rank frees and grows buffers, and a free
  // synchronizes the whole device, which would wait for a peer that waits on
  // the device for this rank. Until then the ranks meet on the host.
  bool on_device() const { return device_meetings() && backend_->workspaces_frozen(); }
  Backend* backend() const { return backend_; }
  // Zeroes this rank's meeting counters (no meeting may be in flight).
  absl::Status ZeroMeetings() {
    if (backend_ == nullptr || !device_meetings()) return absl::OkStatus();
    RETURN_IF_ERROR(backend_->Fill(meeting_.calls, 0));
    RETURN_IF_ERROR(backend_->Fill(meeting_.inbox, 0));
    return backend_->Synchronize();
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
      if (device_meetings()) meeting_.mailbox.push_back(peer.meeting_.inbox.rows(rank_, 1));
    }
    return absl::OkStatus();
  }

  // Writes this rank's rows into every peer's region for it; the rows have
  // landed when this returns.
  absl::Status Send(const Tensor& x, const Tensor& idx) {
    RETURN_IF_ERROR(Peers());
    RETURN_IF_ERROR(backend_->ExchangeDispatch(x, idx, buf_.owner, to_, buf_.rows_scratch));
    return Meet();
  }

  // The rows have landed, on every rank, once this rank's ops pass the
  // meeting (device) or when this returns (host: the barrier follows).
  absl::Status Meet() {
    return on_device() ? backend_->ExchangeMeet(meeting_) : backend_->Synchronize();
  }

  // Writes every pair of this rank's send buffer into its token's rank.
  absl::Status Return() {
    RETURN_IF_ERROR(Peers());
    RETURN_IF_ERROR(backend_->ExchangeCombine(buf_.send.out, buf_.send.pair_dst,
                                              buf_.send.pair_count, buf_.received.src_token,
                                              buf_.received.counts, combined_to_));
    return Meet();
  }

  InProcessExchange* owner_;
  const int rank_;
  Backend* backend_ = nullptr;
  RankBuffers buf_;  // what peers write into (received, combined) and this rank's ops write
  std::vector<ExchangeRegion> to_;
  std::vector<Tensor> combined_to_;
  RankMeeting meeting_;  // device meetings: this rank's counters, its peers' inboxes
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

void InProcessExchange::Reset() {
  if (const absl::Status s = ResetMeetings(); !s.ok()) {
    barrier_.Fail(s);  // the counters may disagree: every later step fails
    return;
  }
  barrier_.Reset();
}

absl::Status InProcessExchange::ResetMeetings() {
  if (!options_.device_meetings || control() == nullptr) return absl::OkStatus();
  // Every rank's device work ends (a wait still pending gives up), then the
  // counters start again from zero on every rank.
  std::atomic_ref<int32_t>(control()[0]).store(1);
  for (const auto& r : ranks_) {
    if (r->backend() != nullptr) RETURN_IF_ERROR(r->backend()->Synchronize());
  }
  for (const auto& r : ranks_) RETURN_IF_ERROR(r->ZeroMeetings());
  for (int i = 0; i <= num_ranks(); ++i) std::atomic_ref<int32_t>(control()[i]).store(0);
  return absl::OkStatus();
}

}  // namespace moegraph
