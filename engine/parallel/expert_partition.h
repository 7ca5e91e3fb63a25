// Which rank holds which routed experts under expert parallelism
// (docs/expert-parallel.md): contiguous, as even as integer division allows.
#pragma once

namespace moegraph {

struct ExpertPartition {
  int num_experts = 0;
  int num_ranks = 1;

  // Rank r holds experts [first(r), first(r + 1)); counts differ by at most
  // one, and a rank holds none when num_experts < num_ranks.
  int first(int rank) const {
    return static_cast<int>(static_cast<long long>(rank) * num_experts / num_ranks);
  }
  int count(int rank) const { return first(rank + 1) - first(rank); }
  // The rank holding expert e (0 <= e < num_experts).
  int owner(int expert) const {
    int r = static_cast<int>(static_cast<long long>(expert) * num_ranks / num_experts);
    while (r + 1 < num_ranks && first(r + 1) <= expert) ++r;
    while (r > 0 && first(r) > expert) --r;
    return r;
  }
};

}  // namespace moegraph
