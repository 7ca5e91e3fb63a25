// Compressor window emission (dsv4.md "Compressors", CSA and HCA) and the
// open-window ring update. No workspace.
//
// Per token, in position order: when (pos + 1) % rate == 0 the token closes
// window w = (pos + 1) / rate - 1 and one entry is emitted:
//   entry[ch] = rms(sum_j softmax_j(zape_j[ch]) * c_j[ch]; norm), roped at w * rate
// where j runs over the window's tokens (HCA) or over the previous window's
// first halves and this window's second halves (CSA, overlap). A token's
// (c, z + ape) come from this step's inputs when it is in the step and from
// the ring otherwise. After emission each sequence's last ring_len tokens
// are stored in the ring.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include "kernels/cuda/step_meta.h"

namespace moegraph::cuda {

struct CompressorParams {
  const __nv_bfloat16* c = nullptr;    // [tokens, cw]
  const __nv_bfloat16* z = nullptr;    // [tokens, cw]
  const float* ape = nullptr;          // [rate, cw]
  const float* norm_weight = nullptr;  // [width]
  const float* inv_freq = nullptr;     // [rope_dim / 2]
  __nv_bfloat16* ring = nullptr;       // [num_slots, ring_len, 2 * cw]
  EntryPagesView entries;              // width = entry width
  int rate = 0;
  bool overlap = false;  // CSA: cw = 2 * width, ring_len = 2 * rate
  int width = 0;
  int rope_dim = 0;
  float eps = 1e-6f;
  StepMetaView meta;

  MG_HOST_DEVICE int cw() const { return overlap ? 2 * width : width; }
  MG_HOST_DEVICE int ring_len() const { return overlap ? 2 * rate : rate; }
};
const char* Validate(const CompressorParams& p);
cudaError_t LaunchCompressorUpdate(const CompressorParams& p, cudaStream_t stream);

}  // namespace moegraph::cuda
