// The per-step batch description the attention-state kernels read, as device
// pointers (the launch-level twin of engine's StepMeta): sequences are runs of
// consecutive tokens on the token axis.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

// Marks small helpers of the params structs usable on both sides.
#if defined(__CUDACC__)
#define MG_HOST_DEVICE __host__ __device__
#else
#define MG_HOST_DEVICE
#endif

namespace moegraph::cuda {

struct StepMetaView {
  const int32_t* token_pos = nullptr;      // [tokens] absolute position
  const int32_t* token_seq = nullptr;      // [tokens] sequence index
  const int32_t* seq_begin = nullptr;      // [seqs + 1] token offsets
  const int32_t* seq_slot = nullptr;       // [seqs] state slot
  const int32_t* seq_start_pos = nullptr;  // [seqs] position of the first token
  int tokens = 0, seqs = 0;
};

// Compressed entries in fixed-size pages: entry e of slot s, layer l is
// pool[table[s * max_pages + e / page_size]][e % page_size][l][0..width).
struct EntryPagesView {
  __nv_bfloat16* pool = nullptr;
  const int32_t* table = nullptr;
  int max_pages = 0;  // table row length
  int page_size = 0;
  int layers = 0;  // layers of this kind in the pool
  int layer = 0;
  int width = 0;
};

}  // namespace moegraph::cuda
