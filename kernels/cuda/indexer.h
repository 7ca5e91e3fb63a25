// Lightning-indexer scores and top-k selection (dsv4.md "Indexer"):
//   score[t][w] = softmax_scale * sum_h weights[t][h] * relu(q[t][h] . K[w])
// over the entries visible to token t ((w + 1) * rate <= pos + 1), then the
// top k entry ids by score (ties: lower id first), sorted by score, -1 after
// the last visible entry. Scores go to the caller's workspace.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "kernels/cuda/step_meta.h"

namespace moegraph::cuda {

struct IndexerTopKParams {
  const __nv_bfloat16* q = nullptr;    // [tokens, heads, head_dim], roped
  const float* weights = nullptr;      // [tokens, heads], already scaled by 1/sqrt(heads)
  EntryPagesView keys;                 // indexer entries, width = head_dim
  const int32_t* token_pos = nullptr;  // [tokens]
  const int32_t* token_seq = nullptr;  // [tokens]
  const int32_t* seq_slot = nullptr;   // [seqs]
  int32_t* selected = nullptr;         // [tokens, k]
  int tokens = 0, heads = 0, head_dim = 0;
  int rate = 0, k = 0;
  float softmax_scale = 1.0f;
  // An upper bound of the visible entries of any token (host-known: the
  // step's own bound when eager, the state capacity in captured graphs). It
  // sizes the score workspace; the grid is capped and strides, so a large
  // bound costs memory, not time.
  int max_entries = 0;
};
constexpr int kIndexerMaxK = 1024;
const char* Validate(const IndexerTopKParams& p);
// Whether the tensor-core scorer serves this shape (head_dim 128, 32 or 64
// heads); other shapes use the per-entry CUDA-core scorer.
bool IndexerUsesTensorCores(const IndexerTopKParams& p);
size_t IndexerTopKWorkspaceBytes(const IndexerTopKParams& p);
cudaError_t LaunchIndexerTopK(const IndexerTopKParams& p, void* workspace, cudaStream_t stream);

}  // namespace moegraph::cuda
