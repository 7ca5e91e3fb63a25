#include "engine/parallel/rank_barrier.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moegraph {

RankBarrier::RankBarrier(int num_ranks, std::chrono::milliseconds timeout, std::string what)
    : num_ranks_(num_ranks),
      timeout_(timeout),
      what_(std::move(what)),
      arrived_(num_ranks, false) {}

absl::Status RankBarrier::Arrive(int rank, const char* phase) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!failed_.ok()) return failed_;
  if (arrived_[rank]) {
    return absl::InternalError(absl::StrCat("rank ", rank, " arrived twice at ", phase));
  }
  arrived_[rank] = true;
  if (++waiting_ == num_ranks_) {
    waiting_ = 0;
    arrived_.assign(num_ranks_, false);
    ++generation_;
    cv_.notify_all();
    return absl::OkStatus();
  }
  const long long generation = generation_;
  const bool passed =
      cv_.wait_for(lock, timeout_, [&] { return generation_ != generation || !failed_.ok(); });
  if (generation_ != generation) return absl::OkStatus();
  if (!passed) {
    std::vector<int> missing;
    for (int r = 0; r < num_ranks_; ++r) {
      if (!arrived_[r]) missing.push_back(r);
    }
    failed_ = absl::DeadlineExceededError(absl::StrCat(
        what_, ": rank", missing.size() > 1 ? "s " : " ", absl::StrJoin(missing, ", "),
        " did not reach ", phase, " within ", timeout_.count(), " ms (rank ", rank, " waited)"));
    cv_.notify_all();
  }
  return failed_;
}

void RankBarrier::Fail(const absl::Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_.ok()) failed_ = why;
  cv_.notify_all();
}

void RankBarrier::Reset() {
  std::lock_guard<std::mutex> lock(mu_);
  failed_ = absl::OkStatus();
  waiting_ = 0;
  arrived_.assign(num_ranks_, false);
  ++generation_;
}

absl::Status RankBarrier::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failed_;
}

}  // namespace moegraph
