// An NCCL group spread over processes (docs/multi-node.md, steps 2-3): the
// bootstrap leader makes the group id (ncclGetUniqueId), every process
// receives it and creates its communicators with ncclCommInitRank, one a
// local GPU, global ranks node * GPUs per node + local index. This is the
// bring-up a multi-process run exercises; the engine's steps still run
// within one process (ExpertParallelEngine).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/cuda/nccl_exchange.h"

namespace moegraph {

// ncclGetUniqueId's bytes (128): the group id the leader hands every node.
// Refused while NCCL_NVLS_ENABLE is unset, like every NCCL start.
absl::StatusOr<std::string> NewNcclGroupId();

// This process's communicators in a group of `world` ranks: one for each of
// `devices` (CUDA ordinals), global ranks first_rank, first_rank + 1, ...
// Blocks until every rank of the group has joined (NCCL's own bootstrap).
absl::StatusOr<std::unique_ptr<NcclComms>> JoinNcclGroup(const std::string& group_id, int world,
                                                         int first_rank,
                                                         const std::vector<int>& devices);

// An all-reduce over the group: each local rank contributes global rank + 1,
// and every local result must be world * (world + 1) / 2. OK, or an error
// naming the rank and the sum it got.
absl::Status CheckNcclGroup(const NcclComms& comms, const std::vector<int>& devices, int world,
                            int first_rank);

}  // namespace moegraph
