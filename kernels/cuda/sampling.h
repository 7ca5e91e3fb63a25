// Token sampling on the GPU, one block per row of f32 logits, with per-row
// parameters read from device memory (so one captured launch serves any mix
// of requests): greedy (argmax, lowest id on ties), or temperature with
// top-k, min-p and top-p truncation and a draw keyed by (seed, index).
//
// Truncation, as the host sampler (engine/sampling/sampler.cc) defines it:
// top-k keeps the k largest logits, min-p drops tokens with p < min_p *
// p_max, top-p keeps the most likely tokens whose mass first reaches top_p;
// ties at a cut are taken by ascending id, as the host's sort orders them.
// The draw u = SeededUniform(seed, index) is the host sampler's; the kept
// tokens are walked in id order (the host walks them by likelihood), so a
// seeded request draws from the same distribution, not the same token.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/cuda/sample_row.h"

namespace moegraph::cuda {

// SampleRowParams: sample_row.h.

struct SampleParams {
  const float* logits = nullptr;            // [rows, vocab]
  const SampleRowParams* params = nullptr;  // [rows]
  int32_t* ids = nullptr;                   // [rows] out
  // [rows] out, written for rows whose params ask for logprobs (may be null
  // when none does).
  SampleLogprobs* logprobs = nullptr;
  int rows = 0;
  int vocab = 0;
};
const char* Validate(const SampleParams& p);
cudaError_t LaunchSample(const SampleParams& p, cudaStream_t stream);

}  // namespace moegraph::cuda
