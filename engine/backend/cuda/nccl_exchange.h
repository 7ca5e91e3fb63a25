// The NCCL transport of the expert exchange (docs/expert-parallel.md): one
// communicator, one rank a GPU. Message sizes come from the call's rows,
// which every rank pads alike (equal_rows: the engine pads every rank's step
// to one token count), the counts inside; all enqueued on the rank's op
// stream: no host sync, so a step with this exchange can be captured into a
// graph (one per bucket, holding that bucket's sizes).
//   Dispatch: the rows packed into one send region per peer
//     (ExchangeDispatch), then a grouped send/receive of each region.
//   Combine: the pairs placed by (token, choice) into one [cap, k, D] region
//     per source rank (ExchangeCombine), a grouped send/receive, then each
//     choice taken from the rank that holds its expert (the merge kernel).
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/parallel/expert_exchange.h"

namespace moegraph {

// One communicator over `devices` (CUDA ordinals, one rank each, in this
// process: ncclCommInitAll). Refused while NCCL_NVLS_ENABLE is unset
// (engine/parallel/nccl_environment.h).
class NcclComms final : public ExchangeGroup {
 public:
  static absl::StatusOr<std::unique_ptr<NcclComms>> Create(const std::vector<int>& devices);
  // Communicators made elsewhere (nccl_group.h), owned from here on: this
  // process's ranks first_rank, first_rank + 1, ... of `world`.
  static std::unique_ptr<NcclComms> Adopt(std::vector<void*> comms, int world, int first_rank);
  ~NcclComms() override;
  // This process's communicators (ranks first_rank() ... of world()).
  int size() const { return static_cast<int>(comms_.size()); }
  int world() const { return world_; }
  int first_rank() const { return first_rank_; }
  void* comm(int rank) const { return comms_[rank]; }
  // Aborts every communicator (ncclCommAbort): ranks blocked in an NCCL
  // operation, waiting for a peer that will not come, return with an error.
  // The communicators are unusable afterwards. Any thread, once.
  void Abort() override;

 private:
  std::vector<void*> comms_;  // ncclComm_t
  int world_ = 0, first_rank_ = 0;
  bool aborted_ = false;
};

// Rank `rank` of `comms` (options.num_ranks must be comms.size()); Bind
// takes this rank's CUDA backend, on the communicator's device.
absl::StatusOr<std::unique_ptr<ExpertExchange>> CreateNcclExchange(const ExchangeOptions& options,
                                                                   const NcclComms& comms,
                                                                   int rank);

}  // namespace moegraph
