// A minimal fork-join loop for the CPU kernels: splits [0, n) into contiguous
// ranges over std::threads when the work is large enough to pay for them.
#pragma once

#include <cstdint>
#include <functional>

namespace moegraph::cpu {

// Upper bound on the `worker` ids ParallelFor passes (size workspaces by it).
int MaxWorkers();

// Calls fn(begin, end, worker) over disjoint ranges covering [0, n), in
// parallel when n * cost_per_item exceeds a threshold. Each output element
// must depend only on its own index, so results never depend on the split.
void ParallelFor(int64_t n, int64_t cost_per_item,
                 const std::function<void(int64_t, int64_t, int)>& fn);

}  // namespace moegraph::cpu
