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
#include "absl/strings/str_cat.h"

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

// The step's status from `outcome`. A stuck rank breaks the engine for good
// (`*broken`; it may still write into `transport`'s buffers); a failure
// resets `transport` (every rank has returned, none is inside it) and returns
// the root cause: the transport's own failure as it is (it names its ranks),
// else `from_rank(rank, error)`.
template <typename Transport, typename FromRank>
absl::Status StepStatus(const RanksOutcome& outcome, std::chrono::milliseconds timeout,
                        Transport& transport, FromRank from_rank, absl::Status* broken) {
  if (outcome.stuck >= 0) {
    const absl::Status why = transport.status();
    *broken = absl::FailedPreconditionError(
        absl::StrCat("rank ", outcome.stuck, " did not finish a step within ", timeout.count(),
                     " ms; the engine cannot step again (restart it)",
                     why.ok() ? "" : absl::StrCat("; ", why.message())));
    return *broken;
  }
  if (outcome.error.ok()) return outcome.error;
  const absl::Status why = transport.status();
  transport.Reset();
  if (outcome.error == why) return outcome.error;
  return from_rank(outcome.error_rank, outcome.error);
}

}  // namespace moegraph
