#include "engine/parallel/rank_worker.h"

#include <utility>

namespace moegraph {

RankWorker::RankWorker() : thread_([this] { Loop(); }) {}

RankWorker::~RankWorker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void RankWorker::Post(std::function<absl::Status()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = std::move(job);
    busy_ = true;
  }
  cv_.notify_all();
}

std::optional<absl::Status> RankWorker::Wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !busy_; })) return std::nullopt;
  return result_;
}

void RankWorker::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return job_ != nullptr || stop_; });
    if (job_ == nullptr) return;  // stopping, nothing left to run
    std::function<absl::Status()> job = std::move(job_);
    job_ = nullptr;
    lock.unlock();
    absl::Status result = job();
    lock.lock();
    result_ = std::move(result);
    busy_ = false;
    cv_.notify_all();
  }
}

RanksOutcome WaitForRanks(const std::vector<std::unique_ptr<RankWorker>>& workers,
                          std::chrono::milliseconds timeout) {
  RanksOutcome out;
  absl::Status first;
  int first_rank = -1;
  for (size_t r = 0; r < workers.size(); ++r) {
    std::optional<absl::Status> s = workers[r]->Wait(timeout);
    if (!s.has_value()) {
      out.stuck = static_cast<int>(r);
      return out;
    }
    if (s->ok()) continue;
    if (first.ok()) {
      first = *s;
      first_rank = static_cast<int>(r);
    }
    if (out.error.ok() && !absl::IsAborted(*s)) {
      out.error = *s;
      out.error_rank = static_cast<int>(r);
    }
  }
  if (out.error.ok() && !first.ok()) {
    out.error = first;
    out.error_rank = first_rank;
  }
  return out;
}

}  // namespace moegraph
