// Element-wise activation arithmetic: add, scale, clamped SwiGLU.
#pragma once

#include <cstdint>

namespace moegraph::cpu {

// out[i] = a[i] + b[i]; out may alias a or b.
void Add(const float* a, const float* b, float* out, int64_t n);

// out[i] = x[i] * alpha; out may alias x.
void Scale(const float* x, float alpha, float* out, int64_t n);

// out[i] = silu(min(a[i], limit)) * clamp(b[i], -limit, limit), silu(v) = v * sigmoid(v).
// out may alias a or b.
void SwiGlu(const float* a, const float* b, float limit, float* out, int64_t n);

}  // namespace moegraph::cpu
