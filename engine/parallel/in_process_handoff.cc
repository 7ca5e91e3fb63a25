#include "engine/parallel/in_process_handoff.h"

#include <atomic>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace moegraph {

class InProcessHandoff::Rank final : public ResidualHandoff {
 public:
  Rank(InProcessHandoff* owner, int rank) : owner_(owner), rank_(rank) {}

  int rank() const override { return rank_; }
  int num_ranks() const override { return owner_->num_ranks(); }
  int capacity() const override { return owner_->options_.capacity; }
  absl::Status Bind(Backend* backend) override {
    if (backend_ != nullptr) return absl::FailedPreconditionError("layer handoff: bound twice");
    if (owner_->options_.device_meetings) RETURN_IF_ERROR(BindDevice(*backend));
    backend_ = backend;
    return absl::OkStatus();
  }

  absl::Status Receive(const Tensor& streams) override {
    if (rank_ == 0) return Fail(absl::FailedPreconditionError("handoff: rank 0 receives nothing"));
    if (absl::Status s = CheckStreams(streams); !s.ok()) return Fail(s);
    if (on_device()) {
      // After the first meeting the sender may write the buffer (this
      // rank's last step has read it); after the second it has.
      absl::Status s = Wire();
      if (s.ok()) s = backend_->ExchangeMeet(in_meet_);
      if (s.ok()) s = backend_->ExchangeMeet(in_meet_);
      if (s.ok()) s = backend_->Convert(in_buffer_.rows(0, streams.dim(0)), streams);
      return s.ok() ? s : Fail(s);
    }
    // The boundaries before this rank's block: the last one is its input.
    for (int b = 0; b < rank_; ++b) {
      absl::Status s = owner_->barrier_.Arrive(rank_, owner_->phases_[b].c_str());
      if (!s.ok()) return s;
    }
    const int64_t sent = owner_->rows_[rank_ - 1];
    if (sent != streams.dim(0)) {
      return Fail(
          absl::InternalError(absl::StrCat("handoff: rank ", rank_ - 1, " sent ", sent,
                                           " tokens, rank ", rank_, " expects ", streams.dim(0))));
    }
    absl::Status s =
        backend_->Upload(streams.data, owner_->buffers_[rank_ - 1].data(), streams.bytes());
    if (s.ok()) s = backend_->Synchronize();
    if (!s.ok()) return Fail(s);
    // The last rank has read; the others arrive here from Send, after
    // their own reads: no rank starts its next step (and rewrites a
    // buffer) before every buffer of this one is read. Ranks warming up
    // together run step after step with no engine between them.
    if (rank_ == num_ranks() - 1)
      return owner_->barrier_.Arrive(rank_, owner_->phases_.back().c_str());
    return absl::OkStatus();
  }

  absl::Status Send(const Tensor& streams) override {
    const int R = num_ranks();
    if (rank_ == R - 1) {
      return Fail(absl::FailedPreconditionError("handoff: the last rank sends nothing"));
    }
    if (absl::Status s = CheckStreams(streams); !s.ok()) return Fail(s);
    if (on_device()) {
      Rank& next = *owner_->ranks_[rank_ + 1];
      absl::Status s = Wire();
      if (s.ok()) s = backend_->ExchangeMeet(out_meet_);
      if (s.ok()) s = backend_->Convert(streams, next.in_buffer_.rows(0, streams.dim(0)));
      if (s.ok()) s = backend_->ExchangeMeet(out_meet_);
      return s.ok() ? s : Fail(s);
    }
    if (absl::Status s =
            backend_->Download(owner_->buffers_[rank_].data(), streams.data, streams.bytes());
        !s.ok()) {
      return Fail(s);
    }
    owner_->rows_[rank_] = streams.dim(0);
    for (int b = rank_; b < R; ++b) {  // the boundaries after this rank, then "read"
      absl::Status s = owner_->barrier_.Arrive(rank_, owner_->phases_[b].c_str());
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Finish() override {
    if (!owner_->options_.device_meetings || backend_ == nullptr) return absl::OkStatus();
    RETURN_IF_ERROR(backend_->Synchronize());
    RETURN_IF_ERROR(owner_->barrier_.status());  // an abort, with its cause
    // A party that gives up sets its boundary's stop word, which ends the
    // other's wait early; every rank waiting behind it fails its step too.
    std::string who;
    bool stopped = false;
    for (int b = 0; b + 1 < num_ranks(); ++b) {
      int32_t* c = owner_->control(b);
      stopped = stopped || std::atomic_ref<int32_t>(c[0]).load() != 0;
      for (int p = 0; p < 2; ++p) {
        const int32_t call = std::atomic_ref<int32_t>(c[1 + p]).load();
        if (call == 0) continue;
        absl::StrAppend(&who, who.empty() ? "" : "; ", "rank ", b + p,
                        " waited on the device more than ", owner_->options_.timeout.count(),
                        " ms at handoff ", b, "->", b + 1, " (meeting ", call, ")");
      }
    }
    if (!stopped) return absl::OkStatus();
    if (who.empty()) who = "the device meetings were stopped";
    const absl::Status s = absl::DeadlineExceededError(
        absl::StrCat("layer handoff: ", who, " (a rank did not reach the same handoff in time)"));
    owner_->barrier_.Fail(s);
    return s;
  }

  void Abort(const absl::Status& why) override {
    owner_->barrier_.Fail(absl::AbortedError(
        absl::StrCat("layer handoff: rank ", rank_, " failed: ", why.message())));
    // Peers waiting on the device for this rank stop (Finish reports the abort).
    if (owner_->control_ != nullptr) {
      for (int b = 0; b + 1 < num_ranks(); ++b) {
        std::atomic_ref<int32_t>(owner_->control(b)[0]).store(1);
      }
    }
  }

  Backend* backend() const { return backend_; }
  // Zeroes this rank's meeting counters (no meeting may be in flight).
  absl::Status ZeroMeetings() {
    if (backend_ == nullptr || !owner_->options_.device_meetings) return absl::OkStatus();
    for (RankMeeting* m : {&in_meet_, &out_meet_}) {
      if (m->calls.data == nullptr) continue;
      RETURN_IF_ERROR(backend_->Fill(m->calls, 0));
      RETURN_IF_ERROR(backend_->Fill(m->inbox, 0));
    }
    return backend_->Synchronize();
  }

 private:
  // Device meetings start once the rank's workspaces are frozen (after its
  // load-time warm-up, at the same step on every rank): before, a rank
  // frees and grows buffers, and a free waits for the whole device, which
  // would wait for a peer waiting on the device for this rank.
  bool on_device() const {
    return owner_->options_.device_meetings && backend_->workspaces_frozen();
  }

  // This rank's side of its boundaries: the receive buffer and the
  // receiver's counters of the boundary before it, the sender's of the one
  // after. Ranks bind in order, so the rank before is bound already.
  absl::Status BindDevice(Backend& backend) {
    const InProcessHandoffOptions& o = owner_->options_;
    const int R = num_ranks();
    if (owner_->control_ == nullptr) {
      const size_t bytes = sizeof(int32_t) * 3 * (R - 1);
      ASSIGN_OR_RETURN(owner_->control_, backend.AllocateHost(bytes));
      std::memset(owner_->control_.get(), 0, bytes);
    }
    auto counters = [&](int b, int party, RankMeeting* m) -> absl::Status {
      ASSIGN_OR_RETURN(m->calls, AllocateFilled(backend, DType::kI32, {1}, 0, &memory_));
      ASSIGN_OR_RETURN(m->inbox, AllocateFilled(backend, DType::kI32, {2}, 0, &memory_));
      m->rank = party;
      m->control = owner_->control(b);
      m->timeout_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(o.timeout).count();
      return absl::OkStatus();
    };
    if (rank_ > 0) {
      const Backend* prev = owner_->ranks_[rank_ - 1]->backend_;
      if (prev == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat("layer handoff: rank ", rank_ - 1, " must be bound before rank ", rank_));
      }
      RETURN_IF_ERROR(backend.EnablePeerAccess(*prev));
      RETURN_IF_ERROR(owner_->ranks_[rank_ - 1]->backend_->EnablePeerAccess(backend));
      Tensor buf(nullptr, backend.activation_dtype(), {o.capacity, o.streams, o.hidden});
      ASSIGN_OR_RETURN(Buffer b, backend.Allocate(buf.bytes()));
      buf.data = b.data();
      memory_.push_back(std::move(b));
      in_buffer_ = buf;
      RETURN_IF_ERROR(counters(rank_ - 1, 1, &in_meet_));
    }
    if (rank_ + 1 < R) RETURN_IF_ERROR(counters(rank_, 0, &out_meet_));
    return backend.Synchronize();
  }

  // Each meeting's mailboxes (its party's entry in both parties' inboxes),
  // on first use, when every rank is bound.
  absl::Status Wire() {
    if (wired_) return absl::OkStatus();
    const int R = num_ranks();
    if (rank_ > 0) {
      const Rank& prev = *owner_->ranks_[rank_ - 1];
      if (prev.out_meet_.inbox.data == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat("handoff: rank ", rank_ - 1, " is not bound to a backend"));
      }
      in_meet_.mailbox = {prev.out_meet_.inbox.rows(1, 1), in_meet_.inbox.rows(1, 1)};
    }
    if (rank_ + 1 < R) {
      const Rank& next = *owner_->ranks_[rank_ + 1];
      if (next.in_meet_.inbox.data == nullptr) {
        return absl::FailedPreconditionError(
            absl::StrCat("handoff: rank ", rank_ + 1, " is not bound to a backend"));
      }
      out_meet_.mailbox = {out_meet_.inbox.rows(0, 1), next.in_meet_.inbox.rows(0, 1)};
    }
    wired_ = true;
    return absl::OkStatus();
  }

  absl::Status Fail(const absl::Status& s) {
    Abort(s);
    return s;
  }

  absl::Status CheckStreams(const Tensor& x) const {
    const InProcessHandoffOptions& o = owner_->options_;
    if (backend_ == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("handoff: rank ", rank_, " is not bound to a backend"));
    }
    const DType act = backend_->activation_dtype();
    if (x.dtype != act || x.rank != 3 || x.dim(1) != o.streams || x.dim(2) != o.hidden) {
      return absl::InvalidArgumentError(absl::StrCat("handoff: streams must be ", DTypeName(act),
                                                     " [T, ", o.streams, ", ", o.hidden, "], got ",
                                                     DTypeName(x.dtype), " ", x.ShapeString()));
    }
    if (x.dim(0) > o.capacity) {
      return absl::InvalidArgumentError(
          absl::StrCat("handoff: ", x.dim(0), " tokens exceed the capacity ", o.capacity));
    }
    return absl::OkStatus();
  }

  InProcessHandoff* owner_;
  const int rank_;
  Backend* backend_ = nullptr;
  // Device meetings: what the rank before writes into (act [capacity, n,
  // D], this rank's memory), the meetings of the boundary before (this rank
  // receives: party 1) and after it (sends: party 0).
  std::vector<Buffer> memory_;
  Tensor in_buffer_;
  RankMeeting in_meet_, out_meet_;
  bool wired_ = false;
};

InProcessHandoff::InProcessHandoff(const InProcessHandoffOptions& options)
    : options_(options), barrier_(options.num_ranks, options.timeout, "layer handoff") {}

InProcessHandoff::~InProcessHandoff() = default;

absl::StatusOr<std::unique_ptr<InProcessHandoff>> InProcessHandoff::Create(
    const InProcessHandoffOptions& o) {
  if (o.num_ranks < 2 || o.capacity < 1 || o.streams < 1 || o.hidden < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "in-process handoff: num_ranks (>= 2), capacity, streams and hidden must be positive "
        "(got ",
        o.num_ranks, ", ", o.capacity, ", ", o.streams, ", ", o.hidden, ")"));
  }
  if (o.timeout.count() <= 0) {
    return absl::InvalidArgumentError("in-process handoff: timeout must be positive");
  }
  std::unique_ptr<InProcessHandoff> h(new InProcessHandoff(o));
  // f32 holds any backend's activations.
  const size_t bytes = Tensor(nullptr, DType::kF32, {o.capacity, o.streams, o.hidden}).bytes();
  for (int b = 0; b + 1 < o.num_ranks; ++b) {
    h->buffers_.emplace_back(bytes);
    h->rows_.push_back(0);
    h->phases_.push_back(absl::StrCat("handoff ", b, "->", b + 1));
  }
  h->phases_.push_back("handoff read");
  for (int r = 0; r < o.num_ranks; ++r) h->ranks_.push_back(std::make_unique<Rank>(h.get(), r));
  return h;
}

ResidualHandoff* InProcessHandoff::rank(int r) { return ranks_[r].get(); }

void InProcessHandoff::Reset() {
  if (const absl::Status s = ResetMeetings(); !s.ok()) {
    barrier_.Fail(s);  // the counters may disagree: every later step fails
    return;
  }
  barrier_.Reset();
}

absl::Status InProcessHandoff::ResetMeetings() {
  if (!options_.device_meetings || control_ == nullptr) return absl::OkStatus();
  // Every rank's device work ends (a wait still pending gives up), then the
  // counters start again from zero on every rank.
  const int boundaries = num_ranks() - 1;
  for (int b = 0; b < boundaries; ++b) std::atomic_ref<int32_t>(control(b)[0]).store(1);
  for (const auto& r : ranks_) {
    if (r->backend() != nullptr) RETURN_IF_ERROR(r->backend()->Synchronize());
  }
  for (const auto& r : ranks_) RETURN_IF_ERROR(r->ZeroMeetings());
  for (int i = 0; i < 3 * boundaries; ++i) {
    std::atomic_ref<int32_t>(static_cast<int32_t*>(control_.get())[i]).store(0);
  }
  return absl::OkStatus();
}

}  // namespace moegraph
