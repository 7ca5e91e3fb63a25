// One rank's view of the layer-placement handoff (docs/expert-parallel.md):
// the residual streams leave a rank's block of layers and enter the next
// rank's. Buffers have a fixed capacity sized at creation, so a transport can
// sit inside a captured step. Every rank makes its calls once a step, in
// rank order of the blocks: rank 0 only sends, the last rank only receives.
#pragma once

#include "absl/status/status.h"
#include "engine/backend/backend.h"
#include "engine/backend/tensor.h"

namespace moegraph {

class ResidualHandoff {
 public:
  virtual ~ResidualHandoff() = default;

  virtual int rank() const = 0;
  virtual int num_ranks() const = 0;
  // Most tokens one step may hand over.
  virtual int capacity() const = 0;
  // The backend whose memory the rank's streams live in (the rank's
  // model's); once, before any other call.
  virtual absl::Status Bind(Backend* backend) = 0;

  // Rank > 0: waits until the previous rank has sent this step's streams,
  // then writes them into `streams` (act [T, n, D], T that rank's count).
  virtual absl::Status Receive(const Tensor& streams) = 0;
  // Rank < last: hands `streams` (act [T, n, D], T <= capacity) to the next
  // rank; returns once the step's later handoffs are done too.
  virtual absl::Status Send(const Tensor& streams) = 0;

  // After the rank's step (or load-time warm-up): with device meetings,
  // waits for the rank's device work and reports a meeting that timed out
  // or was stopped; otherwise OK at once.
  virtual absl::Status Finish() { return absl::OkStatus(); }

  // Marks the handoff failed (this rank cannot take part in the step): the
  // other ranks' pending and later calls return an error naming this rank.
  virtual void Abort(const absl::Status& why) = 0;
};

}  // namespace moegraph
