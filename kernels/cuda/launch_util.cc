// Host-side launch helpers (see launch_util.h).
#include "kernels/cuda/launch_util.h"

#include <map>
#include <mutex>
#include <utility>

namespace moegraph::cuda {

cudaError_t EnsureDynamicSmem(const void* kernel, int bytes) {
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, int> raised;  // (kernel, device) -> bytes
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  std::lock_guard<std::mutex> lock(mu);
  auto it = raised.find({kernel, device});
  if (it != raised.end() && it->second >= bytes) return cudaSuccess;
  e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (e == cudaSuccess) raised[{kernel, device}] = bytes;
  return e;
}

}  // namespace moegraph::cuda
