// Shared-KV multi-query attention with sinks (dsv4.md "Attention") and the
// sliding-window ring update.
//
// Query t (position pos, sequence s) attends to:
//   1. the window: positions max(0, pos-W+1) .. pos, from this step's kv when
//      the position is in the step, from window_ring[slot][p % W] otherwise;
//   2. compressed entries: every visible one (HCA, when `selected` is null) or
//      the ids in selected[t] (CSA; -1 = none); none on sliding layers.
// Keys are the values (K = V). p_j = exp(s_j) / (exp(sink_h) + sum exp(s_j)).
//
// Two kernels: a tensor-core one for head_dim 512 and heads a multiple of 64
// (one block per token, 64 heads and a range of keys: every key is loaded once
// for all 64 heads; decode splits the key set over blocks and combines the
// partial softmaxes), and a generic one for any other shape (tiny models).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/cuda/step_meta.h"

namespace moegraph::cuda {

struct AttentionParams {
  const __nv_bfloat16* q = nullptr;            // [tokens, heads, head_dim]
  const __nv_bfloat16* kv = nullptr;           // [tokens, head_dim] this step's keys
  const __nv_bfloat16* window_ring = nullptr;  // [num_slots, window, head_dim]
  const float* sinks = nullptr;                // [heads]
  EntryPagesView entries;                      // pool null on sliding-only layers
  int rate = 0;                                // entry e visible iff (e+1)*rate <= pos+1
  const int32_t* selected = nullptr;           // [tokens, selected_k] (CSA) or null
  int selected_k = 0;
  __nv_bfloat16* out = nullptr;  // [tokens, heads, head_dim]
  int tokens = 0, heads = 0, head_dim = 0, window = 0;
  float scale = 0.0f;
  StepMetaView meta;
  int max_position = 0;  // host-known upper bound of token_pos (plans the key split)
};
const char* Validate(const AttentionParams& p);
// Whether the tensor-core kernel serves this shape.
bool AttentionUsesTensorCores(const AttentionParams& p);
size_t AttentionWorkspaceBytes(const AttentionParams& p);
cudaError_t LaunchAttention(const AttentionParams& p, void* workspace, cudaStream_t stream);

// Each sequence's last min(len, window) kv rows go to ring[slot][pos % window].
struct WindowUpdateParams {
  const __nv_bfloat16* kv = nullptr;  // [tokens, head_dim]
  __nv_bfloat16* ring = nullptr;      // [num_slots, window, head_dim]
  int head_dim = 0, window = 0;
  StepMetaView meta;
};
const char* Validate(const WindowUpdateParams& p);
cudaError_t LaunchWindowUpdate(const WindowUpdateParams& p, cudaStream_t stream);

}  // namespace moegraph::cuda
