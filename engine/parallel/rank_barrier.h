// A barrier for ranks running as threads of one process, with a timeout and
// a failed state: a rank that never arrives, or one that aborts, makes the
// others return an error naming it instead of waiting forever.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace moegraph {

class RankBarrier {
 public:
  // `what` starts its timeout errors ("expert exchange", "layer handoff").
  RankBarrier(int num_ranks, std::chrono::milliseconds timeout,
              std::string what = "expert exchange");

  // Blocks until every rank has arrived at this generation. Errors: the
  // barrier has failed (an Abort, or an earlier timeout: the same status
  // again), or `timeout` passed first: DEADLINE_EXCEEDED naming the ranks
  // missing and `phase`, and the barrier stays failed.
  absl::Status Arrive(int rank, const char* phase);
  // Fails the barrier with `why` (waiting ranks wake and return it).
  void Fail(const absl::Status& why);
  // Clears a failure once no rank is inside Arrive (between steps).
  void Reset();
  absl::Status status() const;

 private:
  const int num_ranks_;
  const std::chrono::milliseconds timeout_;
  const std::string what_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> arrived_;  // in the current generation
  int waiting_ = 0;
  long long generation_ = 0;
  absl::Status failed_;
};

}  // namespace moegraph
