#include "engine/parallel/in_process_handoff.h"

#include "absl/strings/str_cat.h"

namespace moegraph {

class InProcessHandoff::Rank final : public ResidualHandoff {
 public:
  Rank(InProcessHandoff* owner, int rank) : owner_(owner), rank_(rank) {}

  int rank() const override { return rank_; }
  int num_ranks() const override { return owner_->num_ranks(); }
  int capacity() const override { return owner_->options_.capacity; }
  absl::Status Bind(Backend* backend) override {
    if (backend_ != nullptr) return absl::FailedPreconditionError("layer handoff: bound twice");
    backend_ = backend;
    return absl::OkStatus();
  }

  absl::Status Receive(const Tensor& streams) override {
    if (rank_ == 0) return Fail(absl::FailedPreconditionError("handoff: rank 0 receives nothing"));
    if (absl::Status s = CheckStreams(streams); !s.ok()) return Fail(s);
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
    // The upload reads the buffer until it completes; the sender rewrites it
    // only in a later step.
    absl::Status s =
        backend_->Upload(streams.data, owner_->buffers_[rank_ - 1].data(), streams.bytes());
    if (s.ok()) s = backend_->Synchronize();
    return s.ok() ? s : Fail(s);
  }

  absl::Status Send(const Tensor& streams) override {
    const int R = num_ranks();
    if (rank_ == R - 1) {
      return Fail(absl::FailedPreconditionError("handoff: the last rank sends nothing"));
    }
    if (absl::Status s = CheckStreams(streams); !s.ok()) return Fail(s);
    if (absl::Status s =
            backend_->Download(owner_->buffers_[rank_].data(), streams.data, streams.bytes());
        !s.ok()) {
      return Fail(s);
    }
    owner_->rows_[rank_] = streams.dim(0);
    for (int b = rank_; b < R - 1; ++b) {
      absl::Status s = owner_->barrier_.Arrive(rank_, owner_->phases_[b].c_str());
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  void Abort(const absl::Status& why) override {
    owner_->barrier_.Fail(absl::AbortedError(
        absl::StrCat("layer handoff: rank ", rank_, " failed: ", why.message())));
  }

 private:
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
  for (int r = 0; r < o.num_ranks; ++r) h->ranks_.push_back(std::make_unique<Rank>(h.get(), r));
  return h;
}

ResidualHandoff* InProcessHandoff::rank(int r) { return ranks_[r].get(); }

}  // namespace moegraph
