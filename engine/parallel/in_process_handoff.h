// The in-process transport of the layer-placement handoff: ranks are threads
// of one process, each on its own backend (docs/expert-parallel.md). On the
// host: a rank copies its residual streams into the host buffer of the
// boundary after its block (a device download on a GPU), the next rank
// copies them out, and every rank meets the others at one barrier per
// boundary. With `device_meetings` (CUDA ranks, once a rank's workspaces
// are frozen): the sender writes its streams straight into the receiver's
// device buffer, the two meet on the device (Backend::ExchangeMeet, two
// parties a boundary), and nothing waits for the host, so the handoff sits
// inside the ranks' captured graphs. Owns the buffers.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/tensor.h"
#include "engine/parallel/rank_barrier.h"
#include "engine/parallel/residual_handoff.h"

namespace moegraph {

struct InProcessHandoffOptions {
  int num_ranks = 2;
  int capacity = 0;                          // most tokens a step hands over (max_step_tokens)
  int streams = 0;                           // n (hc_mult)
  int hidden = 0;                            // D
  std::chrono::milliseconds timeout{60000};  // per barrier or device meeting
  bool device_meetings = false;              // CUDA ranks: meet on the device
};

class InProcessHandoff {
 public:
  static absl::StatusOr<std::unique_ptr<InProcessHandoff>> Create(
      const InProcessHandoffOptions& options);
  ~InProcessHandoff();

  int num_ranks() const { return static_cast<int>(ranks_.size()); }
  // Rank r's view, owned by this object; use it from rank r's thread only.
  ResidualHandoff* rank(int r);
  // Why the handoff failed (OK when it has not).
  absl::Status status() const { return barrier_.status(); }
  // Clears a failure; only while no rank is inside a call. With device
  // meetings it also waits for every rank's device work (releasing any
  // still waiting) and zeroes the meeting counters.
  void Reset();

 private:
  class Rank;
  explicit InProcessHandoff(const InProcessHandoffOptions& options);
  // Boundary b's control words for device meetings (RankMeeting::control:
  // stop, then the sender's and the receiver's give-up words).
  int32_t* control(int b) const { return static_cast<int32_t*>(control_.get()) + 3 * b; }
  absl::Status ResetMeetings();

  InProcessHandoffOptions options_;
  RankBarrier barrier_;
  // Per boundary b (after rank b's block): the streams, the rows sent, and
  // the barrier's phase name; then the phase every rank passes once every
  // buffer of the step is read.
  std::vector<std::vector<char>> buffers_;
  std::vector<int64_t> rows_;
  std::vector<std::string> phases_;
  std::vector<std::unique_ptr<Rank>> ranks_;
  HostMemory control_{nullptr, [](void*) {}};  // pinned, freed before the ranks' backends
};

}  // namespace moegraph
