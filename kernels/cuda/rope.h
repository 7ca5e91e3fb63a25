// Interleaved partial rotary embedding, in place: for each head, pairs of
// adjacent channels among the last rope_dim are rotated by pos * inv_freq[i]
// (or by its negative when inverse). No workspace.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace moegraph::cuda {

struct RopeParams {
  __nv_bfloat16* x = nullptr;       // [tokens, heads, width], rotated in place
  const int32_t* pos = nullptr;     // [tokens]
  const float* inv_freq = nullptr;  // [rope_dim / 2]
  int tokens = 0, heads = 0, width = 0, rope_dim = 0;
  bool inverse = false;
};
const char* Validate(const RopeParams& p);
cudaError_t LaunchRope(const RopeParams& p, cudaStream_t stream);

}  // namespace moegraph::cuda
