#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace moegraph::cpu {
namespace {
// Below this many multiply-adds a thread start costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 20;
}  // namespace

int MaxWorkers() {
  static const int workers = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  return workers;
}

void ParallelFor(int64_t n, int64_t cost_per_item,
                 const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  int workers = MaxWorkers();
  if (workers == 1 || n == 1 || n * cost_per_item < kMinParallelWork) {
    fn(0, n, 0);
    return;
  }
  workers = static_cast<int>(std::min<int64_t>(workers, n));
  std::vector<std::thread> threads;
  threads.reserve(workers - 1);
  int64_t per = (n + workers - 1) / workers;
  for (int w = 1; w < workers; ++w) {
    int64_t b = w * per, e = std::min(n, b + per);
    if (b >= e) break;
    threads.emplace_back(fn, b, e, w);
  }
  fn(0, std::min(n, per), 0);
  for (auto& t : threads) t.join();
}

}  // namespace moegraph::cpu
