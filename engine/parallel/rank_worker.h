// One rank's worker thread: runs the jobs an engine posts to it, one at a
// time, so that the ranks of a step run side by side (they meet at the
// expert exchange and would deadlock on one thread).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace moegraph {

class RankWorker {
 public:
  RankWorker();
  ~RankWorker();  // waits for the running job, then stops the thread
  RankWorker(const RankWorker&) = delete;
  RankWorker& operator=(const RankWorker&) = delete;

  // Starts `job` on the worker thread. The previous job must have finished.
  void Post(std::function<absl::Status()> job);
  // The posted job's status once it returns, or nullopt when it is still
  // running after `timeout`.
  std::optional<absl::Status> Wait(std::chrono::milliseconds timeout);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::function<absl::Status()> job_;  // set by Post, cleared when taken
  bool busy_ = false;                  // a job was posted and has not finished
  bool stop_ = false;
  absl::Status result_;
  std::thread thread_;  // last: starts after the fields above exist
};

// How the jobs of one step, one per rank, ended.
struct RanksOutcome {
  int stuck = -1;  // a rank still running after the timeout (then the rest is unset)
  // The root cause: the first error that is not ABORTED (a transport's "a
  // peer failed"), else the first error; OK when every rank succeeded.
  absl::Status error;
  int error_rank = -1;
};
// Waits for every worker's posted job, each up to `timeout`.
RanksOutcome WaitForRanks(const std::vector<std::unique_ptr<RankWorker>>& workers,
                          std::chrono::milliseconds timeout);

}  // namespace moegraph
