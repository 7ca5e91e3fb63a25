// Hyper-connection kernels (see hyper_connection.h).
#include "kernels/cuda/hyper_connection.h"

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/dispatch.h"

namespace moegraph::cuda {
namespace {

constexpr int kMixThreads = 256;
constexpr int kMaxRows = 80;  // (2+n)n for n = 8

// Columns per thread of the mix kernel: small batches are latency-bound and
// want many short blocks (1 column each: 64 blocks at n*D = 16384); larger
// ones re-read fn per token tile and want fewer partial sums (4 columns).
// Measured on H100: 1 column saves ~1 us per call at T <= 8, 4 columns
// save ~10 us at T = 64.
int ColsPerThread(int tokens) { return tokens < 16 ? 1 : 4; }
int MixChunk(int tokens) { return kMixThreads * ColsPerThread(tokens); }

int NumChunks(int n, int dim, int tokens) {
  return (n * dim + MixChunk(tokens) - 1) / MixChunk(tokens);
}

// Tokens per block of the mix kernel: keeps rows * tokens accumulators in
// registers (about 100) while reading fn once for all of them.
template <int kRows>
constexpr int TokensPerBlock() {
  return kRows >= 48 ? 1 : (kRows >= 20 ? 4 : 8);
}

// partial[chunk][t][r] = sum over the chunk's columns c of fn[r][c] * X[t][c]
// for r < kRows, and partial[chunk][t][kRows] = sum X[t][c]^2.
template <int kRows, int kTB, int kCols>
__global__ void __launch_bounds__(kMixThreads)
    HcMixKernel(const __nv_bfloat16* X, const float* fn, int tokens, int width, float* partial) {
  constexpr int kVals = kTB * (kRows + 1);
  __shared__ float red[kMixThreads / 32][kVals];
  const int chunk = blockIdx.x;
  const int t0 = blockIdx.y * kTB;
  float acc[kTB][kRows + 1];
#pragma unroll
  for (int b = 0; b < kTB; ++b)
#pragma unroll
    for (int r = 0; r <= kRows; ++r) acc[b][r] = 0.0f;

#pragma unroll
  for (int i = 0; i < kCols; ++i) {
    const int c = chunk * kMixThreads * kCols + i * kMixThreads + threadIdx.x;
    if (c >= width) break;
    float x[kTB];
#pragma unroll
    for (int b = 0; b < kTB; ++b) {
      const int t = t0 + b;
      x[b] = t < tokens ? __bfloat162float(X[int64_t{t} * width + c]) : 0.0f;
      acc[b][kRows] += x[b] * x[b];
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      const float f = fn[int64_t{r} * width + c];
#pragma unroll
      for (int b = 0; b < kTB; ++b) acc[b][r] += f * x[b];
    }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int b = 0; b < kTB; ++b)
#pragma unroll
    for (int r = 0; r <= kRows; ++r) {
      const float v = WarpSum(acc[b][r]);
      if (lane == 0) red[warp][b * (kRows + 1) + r] = v;
    }
  __syncthreads();
  for (int v = threadIdx.x; v < kVals; v += kMixThreads) {
    float s = 0.0f;
#pragma unroll
    for (int w = 0; w < kMixThreads / 32; ++w) s += red[w][v];
    const int b = v / (kRows + 1), r = v % (kRows + 1);
    const int t = t0 + b;
    if (t < tokens) partial[(int64_t{chunk} * tokens + t) * (kRows + 1) + r] = s;
  }
}

template <int kRows>
cudaError_t LaunchMix(const __nv_bfloat16* X, const float* fn, int tokens, int width,
                      float* partial, cudaStream_t stream) {
  constexpr int kTB = TokensPerBlock<kRows>();
  const int chunk = MixChunk(tokens);
  const dim3 grid((width + chunk - 1) / chunk, (tokens + kTB - 1) / kTB);
  if (ColsPerThread(tokens) == 1) {
    HcMixKernel<kRows, kTB, 1><<<grid, kMixThreads, 0, stream>>>(X, fn, tokens, width, partial);
  } else {
    HcMixKernel<kRows, kTB, 4><<<grid, kMixThreads, 0, stream>>>(X, fn, tokens, width, partial);
  }
  return cudaGetLastError();
}

// Sums a token's partials over chunks into mix[0..rows) (already multiplied by
// the stream norm's 1/rms). A warp a value, its lanes over the chunks (one
// thread a value walked the 64 chunks of a decode row one L2 load after
// another: kernels/cuda/NOTES.md).
__device__ void ReduceMix(const float* partial, int chunks, int tokens, int t, int rows, int width,
                          float norm_eps, float* mix /* smem [rows + 1] */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  for (int r = warp; r <= rows; r += warps) {
    float s = 0.0f;
    for (int c = lane; c < chunks; c += 32)
      s += partial[(int64_t{c} * tokens + t) * (rows + 1) + r];
    s = WarpSum(s);
    if (lane == 0) mix[r] = s;
  }
  __syncthreads();
  const float inv = rsqrtf(mix[rows] / width + norm_eps);
  __syncthreads();
  for (int r = threadIdx.x; r < rows; r += blockDim.x) mix[r] *= inv;
  __syncthreads();
}

// out[c] = sum_i pre[i] * X[i][c]: the weighted collapse of one token's kN
// streams (X [kN, dim]), shared by the mHC sites and the head. Returns this
// thread's sum of the rounded outputs' squares, in the order RmsNorm's block
// kernel sums them.
template <int kN>
__device__ float CollapseStreams(const float* pre, const __nv_bfloat16* X, int dim,
                                 __nv_bfloat16* out) {
  float ss = 0.0f;
  for (int c = threadIdx.x; c < dim; c += blockDim.x) {
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < kN; ++i) s += pre[i] * __bfloat162float(X[int64_t{i} * dim + c]);
    const __nv_bfloat16 r = __float2bfloat16(s);
    out[c] = r;
    const float v = __bfloat162float(r);
    ss += v * v;
  }
  return ss;
}

template <int kN>
__global__ void HcPreFinishKernel(HcPreParams p, const float* partial, int chunks) {
  constexpr int kRows = (2 + kN) * kN;
  __shared__ float mix[kRows + 1];
  __shared__ float pre[kN];
  const int t = blockIdx.x;
  const int width = kN * p.dim;
  ReduceMix(partial, chunks, p.tokens, t, kRows, width, p.norm_eps, mix);
  // The warp form reduces over xor offsets: power-of-two stream counts only.
  if constexpr (kN * kN <= 32 && (kN & (kN - 1)) == 0) {
    // One warp: lane i * kN + j holds C[i][j]; rows reduce over xor offsets
    // below kN, columns over offsets kN .. kN*kN/2 (lanes past kN*kN only
    // ever meet each other).
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      const bool live = lane < kN * kN;
      const float eps = p.hc_eps;
      if (lane < kN) {
        pre[lane] = Sigmoid(mix[lane] * p.scale[0] + p.base[lane]) + eps;
        p.post[int64_t{t} * kN + lane] =
            2.0f * Sigmoid(mix[kN + lane] * p.scale[1] + p.base[kN + lane]);
      }
      const int r = 2 * kN + (live ? lane : 0);
      const float logit = mix[r] * p.scale[2] + p.base[r];
      float mx = logit;
#pragma unroll
      for (int o = 1; o < kN; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      const float e = expf(logit - mx);
      float sum = e;
#pragma unroll
      for (int o = 1; o < kN; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      float c = live ? e / sum + eps : 0.0f;
      auto normalize = [&](int lo, int hi) {
        float s = c;
#pragma unroll
        for (int o = lo; o < hi; o <<= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        c = live ? c / (s + eps) : 0.0f;
      };
      normalize(kN, kN * kN);  // columns
      for (int it = 1; it < p.sinkhorn_iters; ++it) {
        normalize(1, kN);        // rows
        normalize(kN, kN * kN);  // columns
      }
      if (live) p.comb[int64_t{t} * kN * kN + lane] = c;
    }
  } else {
    if (threadIdx.x == 0) {
      const float eps = p.hc_eps;
      float C[kN][kN];
#pragma unroll
      for (int i = 0; i < kN; ++i) {
        pre[i] = Sigmoid(mix[i] * p.scale[0] + p.base[i]) + eps;
        p.post[int64_t{t} * kN + i] = 2.0f * Sigmoid(mix[kN + i] * p.scale[1] + p.base[kN + i]);
      }
#pragma unroll
      for (int i = 0; i < kN; ++i) {
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          const int r = 2 * kN + i * kN + j;
          C[i][j] = mix[r] * p.scale[2] + p.base[r];
          mx = fmaxf(mx, C[i][j]);
        }
        float sum = 0.0f;
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          C[i][j] = expf(C[i][j] - mx);
          sum += C[i][j];
        }
#pragma unroll
        for (int j = 0; j < kN; ++j) C[i][j] = C[i][j] / sum + eps;
      }
      auto normalize_cols = [&]() {
#pragma unroll
        for (int j = 0; j < kN; ++j) {
          float s = 0.0f;
#pragma unroll
          for (int i = 0; i < kN; ++i) s += C[i][j];
#pragma unroll
          for (int i = 0; i < kN; ++i) C[i][j] /= s + eps;
        }
      };
      normalize_cols();
      for (int it = 1; it < p.sinkhorn_iters; ++it) {
#pragma unroll
        for (int i = 0; i < kN; ++i) {
          float s = 0.0f;
#pragma unroll
          for (int j = 0; j < kN; ++j) s += C[i][j];
#pragma unroll
          for (int j = 0; j < kN; ++j) C[i][j] /= s + eps;
        }
        normalize_cols();
      }
#pragma unroll
      for (int i = 0; i < kN; ++i)
#pragma unroll
        for (int j = 0; j < kN; ++j) p.comb[(int64_t{t} * kN + i) * kN + j] = C[i][j];
    }
  }
  __syncthreads();
  __nv_bfloat16* x_in = p.x_in + int64_t{t} * p.dim;
  const float ss = CollapseStreams<kN>(pre, p.X + int64_t{t} * kN * p.dim, p.dim, x_in);
  if (p.normed == nullptr) return;
  // The sub-layer's RmsNorm on the row this block just wrote (each thread
  // reads back its own columns), as RmsNormBlockKernel computes it.
  __shared__ float scratch[32];
  const float inv = rsqrtf(BlockSum(ss, scratch) / p.dim + p.norm_eps);
  __nv_bfloat16* h = p.normed + int64_t{t} * p.dim;
  for (int c = threadIdx.x; c < p.dim; c += blockDim.x) {
    float v = __bfloat162float(x_in[c]) * inv;
    if (p.norm_weight) v *= p.norm_weight[c];
    h[c] = __float2bfloat16(v);
  }
}

template <int kN>
__global__ void HcHeadFinishKernel(HcHeadParams p, const float* partial, int chunks) {
  __shared__ float mix[kN + 1];
  __shared__ float pre[kN];
  const int t = blockIdx.x;
  ReduceMix(partial, chunks, p.tokens, t, kN, kN * p.dim, p.norm_eps, mix);
  if (threadIdx.x < kN) {
    const int i = threadIdx.x;
    pre[i] = Sigmoid(mix[i] * p.scale[0] + p.base[i]) + p.hc_eps;
  }
  __syncthreads();
  CollapseStreams<kN>(pre, p.X + int64_t{t} * kN * p.dim, p.dim, p.y + int64_t{t} * p.dim);
}

template <int kN>
__global__ void HcPostKernel(HcPostParams p) {
  const int64_t total = int64_t{p.tokens} * p.dim;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / p.dim, c = i % p.dim;
    float x[kN];
#pragma unroll
    for (int s = 0; s < kN; ++s) x[s] = __bfloat162float(p.X[(t * kN + s) * p.dim + c]);
    const float y = __bfloat162float(p.y[i]);
#pragma unroll
    for (int j = 0; j < kN; ++j) {
      float v = p.post[t * kN + j] * y;
#pragma unroll
      for (int s = 0; s < kN; ++s) v += p.comb[(t * kN + s) * kN + j] * x[s];
      p.Xout[(t * kN + j) * p.dim + c] = __float2bfloat16(v);
    }
  }
}

// RmsNorm's block kernel's count (kernels/cuda/norm.cu): the fused norm
// then sums in its order.
int FinishThreads(int dim) { return dim >= 2048 ? 512 : (dim >= 512 ? 256 : 128); }

}  // namespace

const char* Validate(const HcPreParams& p) {
  if (!p.X || !p.fn || !p.base || !p.scale || !p.x_in || !p.post || !p.comb)
    return "hc_pre: null pointer";
  if (p.tokens < 0 || p.n < 1 || p.dim < 1 || p.sinkhorn_iters < 1) return "hc_pre: bad sizes";
  if ((2 + p.n) * p.n > kMaxRows) return "hc_pre: n too large";
  return nullptr;
}

size_t HcPreWorkspaceBytes(const HcPreParams& p) {
  return sizeof(float) * NumChunks(p.n, p.dim, p.tokens) * size_t(p.tokens) * ((2 + p.n) * p.n + 1);
}

cudaError_t LaunchHcPre(const HcPreParams& p, void* workspace, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  float* partial = static_cast<float*>(workspace);
  const int chunks = NumChunks(p.n, p.dim, p.tokens);
  MG_DISPATCH_HC_MULT(p.n, kN, {
    cudaError_t e = LaunchMix<(2 + kN) * kN>(p.X, p.fn, p.tokens, kN * p.dim, partial, stream);
    if (e != cudaSuccess) return e;
    HcPreFinishKernel<kN><<<p.tokens, FinishThreads(p.dim), 0, stream>>>(p, partial, chunks);
  });
  return cudaGetLastError();
}

const char* Validate(const HcPostParams& p) {
  if (!p.X || !p.y || !p.post || !p.comb || !p.Xout) return "hc_post: null pointer";
  if (p.tokens < 0 || p.n < 1 || p.dim < 1) return "hc_post: bad sizes";
  if (p.X == p.Xout) return "hc_post: Xout aliases X";
  return nullptr;
}

cudaError_t LaunchHcPost(const HcPostParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  int64_t blocks = (int64_t{p.tokens} * p.dim + 255) / 256;
  if (blocks > 65535 * 8) blocks = 65535 * 8;
  MG_DISPATCH_HC_MULT(p.n, kN, { HcPostKernel<kN><<<int(blocks), 256, 0, stream>>>(p); });
  return cudaGetLastError();
}

const char* Validate(const HcHeadParams& p) {
  if (!p.X || !p.fn || !p.base || !p.scale || !p.y) return "hc_head: null pointer";
  if (p.tokens < 0 || p.n < 1 || p.dim < 1) return "hc_head: bad sizes";
  return nullptr;
}

size_t HcHeadWorkspaceBytes(const HcHeadParams& p) {
  return sizeof(float) * NumChunks(p.n, p.dim, p.tokens) * size_t(p.tokens) * (p.n + 1);
}

cudaError_t LaunchHcHead(const HcHeadParams& p, void* workspace, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  float* partial = static_cast<float*>(workspace);
  const int chunks = NumChunks(p.n, p.dim, p.tokens);
  MG_DISPATCH_HC_MULT(p.n, kN, {
    cudaError_t e = LaunchMix<kN>(p.X, p.fn, p.tokens, kN * p.dim, partial, stream);
    if (e != cudaSuccess) return e;
    HcHeadFinishKernel<kN><<<p.tokens, FinishThreads(p.dim), 0, stream>>>(p, partial, chunks);
  });
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
