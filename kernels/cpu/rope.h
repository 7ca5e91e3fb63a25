// Interleaved rotary embedding on the last rope_dim channels of each head.
#pragma once

#include <cstdint>

namespace moegraph::cpu {

struct RopeParams {
  float* x = nullptr;               // [tokens, heads, width], rotated in place
  const int32_t* pos = nullptr;     // [tokens] absolute positions
  const float* inv_freq = nullptr;  // [rope_dim / 2]
  int64_t tokens = 0, heads = 0, width = 0;
  int rope_dim = 0;      // even, <= width
  bool inverse = false;  // rotate by -pos
};

// For pair i (channels width-rope_dim+2i, +1), a = pos * inv_freq[i] in fp32:
//   out[2i] = x[2i] cos a - x[2i+1] sin a;  out[2i+1] = x[2i+1] cos a + x[2i] sin a.
void Rope(const RopeParams& p);

// Same rotation of one vector of `width` channels at one position.
void RopeVector(float* x, int64_t width, int rope_dim, const float* inv_freq, int32_t pos,
                bool inverse);

}  // namespace moegraph::cpu
