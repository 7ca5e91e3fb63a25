// Compressor state update and entry emission (dsv4.md "Compressors"): buffers
// each token's projections in a per-slot ring and, when a token closes a
// window, pools the window into one normalised, roped entry.
#pragma once

#include <cstdint>

#include "kernels/cpu/batch_layout.h"

namespace moegraph::cpu {

struct CompressorParams {
  // cw = 2 * width when overlapping (CSA: Ca = [:width], Cb = [width:]), else width.
  const float* c = nullptr;            // [tokens, cw]  wkv projection
  const float* z = nullptr;            // [tokens, cw]  wgate projection
  const float* ape = nullptr;          // [rate, cw]    added to z by position in window
  const float* norm_weight = nullptr;  // [width]
  const float* inv_freq = nullptr;     // [rope_dim / 2]
  float* ring = nullptr;               // [num_slots, ring_len, 2 * cw], token p at p % ring_len
  int num_slots = 0;
  int rate = 0;
  bool overlap = false;
  int width = 0;
  int rope_dim = 0;
  float eps = 1e-6f;
  EntryPagesView entries;  // width = `width`
  BatchLayout batch;

  int cw() const { return overlap ? 2 * width : width; }
  int ring_len() const { return overlap ? 2 * rate : rate; }
};

// Processes each sequence's tokens in position order: stores (c, z + ape[p %
// rate]) and, when (p + 1) % rate == 0, emits entry w = p / rate:
//   HCA: softmax over the window's rate tokens (per channel) of z, weights c;
//   CSA: softmax over 2*rate slots, window w-1 through its Ca/za halves (absent
//        for w = 0) and window w through its Cb/zb halves;
// then rms(.; norm_weight) and rope at position w * rate.
// Returns false when an emitted entry has no page (nothing after it is done).
bool CompressorUpdate(const CompressorParams& p);

}  // namespace moegraph::cpu
