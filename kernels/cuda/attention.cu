// Attention kernels (see attention.h).
#include "kernels/cuda/attention.h"

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/device_common.cuh"
#include "kernels/cuda/dispatch.h"
#include "kernels/cuda/launch_util.h"
#include "kernels/cuda/mma.cuh"

namespace moegraph::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// A query token's key list: `nwin` window keys from position `lo`, then
// `ncomp` compressed keys.
struct KeyList {
  int pos, seq, slot, start, begin;
  int lo, nwin, ncomp;
};

__device__ __forceinline__ KeyList MakeKeyList(const AttentionParams& p, int t) {
  KeyList k;
  k.pos = p.meta.token_pos[t];
  k.seq = p.meta.token_seq[t];
  k.slot = p.meta.seq_slot[k.seq];
  k.start = p.meta.seq_start_pos[k.seq];
  k.begin = p.meta.seq_begin[k.seq];
  k.lo = max(0, k.pos - p.window + 1);
  k.nwin = k.pos - k.lo + 1;
  if (!p.entries.pool) {
    k.ncomp = 0;
  } else if (p.selected) {
    k.ncomp = p.selected_k;
  } else {
    k.ncomp = (k.pos + 1) / p.rate;
  }
  return k;
}

// Address of key j of token t, or null when the slot is empty (-1 selection).
__device__ __forceinline__ const __nv_bfloat16* KeyRow(const AttentionParams& p, const KeyList& k,
                                                       int t, int j) {
  const int d = p.head_dim;
  if (j < k.nwin) {
    const int pos = k.lo + j;
    if (pos >= k.start) return p.kv + (int64_t{k.begin} + (pos - k.start)) * d;
    return p.window_ring + (int64_t{k.slot} * p.window + pos % p.window) * d;
  }
  int e = j - k.nwin;
  if (p.selected) {
    e = p.selected[int64_t{t} * p.selected_k + e];
    if (e < 0) return nullptr;
  }
  const EntryPagesView& E = p.entries;
  const int page = E.table[int64_t{k.slot} * E.max_pages + e / E.page_size];
  return E.pool + ((int64_t{page} * E.page_size + e % E.page_size) * E.layers + E.layer) * d;
}

// ---------------------------------------------------------------------------
// Generic kernel: one block per (head, token), online softmax over the keys.
constexpr int kGenericThreads = 128;
constexpr int kGenericMaxPerThread = 8;  // head_dim <= 1024

__global__ void __launch_bounds__(kGenericThreads) GenericAttentionKernel(AttentionParams p) {
  __shared__ float scratch[32];
  const int h = blockIdx.x, t = blockIdx.y;
  const int d = p.head_dim;
  const KeyList kl = MakeKeyList(p, t);
  const __nv_bfloat16* q = p.q + (int64_t{t} * p.heads + h) * d;
  float qv[kGenericMaxPerThread], o[kGenericMaxPerThread];
#pragma unroll
  for (int i = 0; i < kGenericMaxPerThread; ++i) {
    const int c = threadIdx.x + i * kGenericThreads;
    qv[i] = c < d ? __bfloat162float(q[c]) * p.scale : 0.0f;
    o[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int nk = kl.nwin + kl.ncomp;
  for (int j = 0; j < nk; ++j) {
    const __nv_bfloat16* key = KeyRow(p, kl, t, j);
    if (!key) continue;
    float kv[kGenericMaxPerThread];
    float part = 0.0f;
#pragma unroll
    for (int i = 0; i < kGenericMaxPerThread; ++i) {
      const int c = threadIdx.x + i * kGenericThreads;
      kv[i] = c < d ? __bfloat162float(key[c]) : 0.0f;
      part += qv[i] * kv[i];
    }
    const float s = BlockSum(part, scratch);
    const float mn = fmaxf(m, s);
    const float alpha = expf(m - mn), pj = expf(s - mn);
    l = l * alpha + pj;
#pragma unroll
    for (int i = 0; i < kGenericMaxPerThread; ++i) o[i] = o[i] * alpha + pj * kv[i];
    m = mn;
  }
  const float denom = l + expf(p.sinks[h] - m);
  __nv_bfloat16* out = p.out + (int64_t{t} * p.heads + h) * d;
#pragma unroll
  for (int i = 0; i < kGenericMaxPerThread; ++i) {
    const int c = threadIdx.x + i * kGenericThreads;
    if (c < d) out[c] = __float2bfloat16(o[i] / denom);
  }
}

// ---------------------------------------------------------------------------
// Tensor-core kernel. Block = (split, head group of 64, token); 8 warps: warp w
// owns heads 16*(w%4) .. +15 and output dims half = w/4 of head_dim. S = Q K^T
// for a chunk of 32 keys is computed as two half-depth products (one per warp
// of a pair) summed through shared memory; then each warp runs the online
// softmax for its 16 heads and accumulates P V on its half of the dims.
constexpr int kTcHeads = 64;
constexpr int kTcKeys = 32;  // keys per chunk
constexpr int kTcThreads = 256;
constexpr int kTcSPad = 4;

template <int HD>
struct TcLayout {
  static constexpr int kStride = HD + 8;  // bf16 per smem row: 16 B pad against bank conflicts
  static constexpr size_t kQBytes = size_t{kTcHeads} * kStride * 2;
  static constexpr size_t kKBytes = size_t{kTcKeys} * kStride * 2;  // one buffer
  static constexpr size_t kSBytes = size_t{2} * kTcHeads * (kTcKeys + kTcSPad) * 4;
  static constexpr size_t kValidBytes = 2 * kTcKeys * 4;
  static constexpr size_t kTotal = kQBytes + 2 * kKBytes + kSBytes + kValidBytes;
};

template <int HD>
__global__ void __launch_bounds__(kTcThreads, 1)
    TcAttentionKernel(AttentionParams p, int splits, float* part_o, float* part_ml) {
  using L = TcLayout<HD>;
  constexpr int kStride = L::kStride;
  constexpr int kHalf = HD / 2;
  constexpr int kONT = kHalf / 8;  // output n-tiles per warp
  extern __shared__ __align__(16) unsigned char smem[];
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smem);
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem + L::kQBytes);
  float* Sx = reinterpret_cast<float*>(smem + L::kQBytes + 2 * L::kKBytes);
  int* kvalid = reinterpret_cast<int*>(smem + L::kQBytes + 2 * L::kKBytes + L::kSBytes);

  const int sp = blockIdx.x, hg = blockIdx.y, t = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int mt = warp & 3, half = warp >> 2;
  const int g = lane >> 2, q4 = lane & 3;
  const KeyList kl = MakeKeyList(p, t);
  const int nk = kl.nwin + kl.ncomp;
  const int nchunks = (nk + kTcKeys - 1) / kTcKeys;
  const int per = (nchunks + splits - 1) / splits;
  const int c_begin = sp * per, c_end = min(nchunks, c_begin + per);

  // Q for 64 heads.
  const __nv_bfloat16* qg = p.q + (int64_t{t} * p.heads + hg * kTcHeads) * HD;
  for (int idx = tid; idx < kTcHeads * (HD / 8); idx += kTcThreads) {
    const int r = idx / (HD / 8), ch = idx % (HD / 8);
    CpAsync16(Qs + r * kStride + ch * 8, qg + int64_t{r} * HD + ch * 8, true);
  }
  auto load_chunk = [&](int c, int buf) {
    const int r = tid >> 3, sub = tid & 7;
    const int j = c * kTcKeys + r;
    const __nv_bfloat16* row = j < nk ? KeyRow(p, kl, t, j) : nullptr;
    __nv_bfloat16* dst = Ks + (buf * kTcKeys + r) * kStride;
#pragma unroll
    for (int i = 0; i < HD / 64; ++i) {
      const int ch = sub + 8 * i;
      CpAsync16(dst + ch * 8, row ? row + ch * 8 : p.q, row != nullptr);
    }
    if (sub == 0) kvalid[buf * kTcKeys + r] = row != nullptr;
  };

  float o[kONT][4];
#pragma unroll
  for (int i = 0; i < kONT; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  const float scale2 = p.scale * kLog2e;

  if (c_begin < c_end) load_chunk(c_begin, 0);
  CpAsyncCommit();
  for (int c = c_begin; c < c_end; ++c) {
    const int buf = (c - c_begin) & 1;
    if (c + 1 < c_end) {
      load_chunk(c + 1, buf ^ 1);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    const __nv_bfloat16* Kb = Ks + buf * kTcKeys * kStride;

    // Partial S over this warp's half of the depth.
    float s[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll 4
    for (int ks = 0; ks < kHalf / 16; ++ks) {
      const int kcol = half * kHalf + ks * 16;
      uint32_t a[4];
      LdMatrixX4(a, Qs + (mt * 16 + (lane & 15)) * kStride + kcol + (lane >> 4) * 8);
#pragma unroll
      for (int np = 0; np < 2; ++np) {
        uint32_t b[4];
        LdMatrixX4(b, Kb + (np * 16 + ((lane >> 4) << 3) + (lane & 7)) * kStride + kcol +
                          (((lane >> 3) & 1) << 3));
        Mma16816(s[2 * np], a, b[0], b[1]);
        Mma16816(s[2 * np + 1], a, b[2], b[3]);
      }
    }
    float* Sh = Sx + half * kTcHeads * (kTcKeys + kTcSPad);
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      const int col = nt * 8 + 2 * q4;
      *reinterpret_cast<float2*>(Sh + (mt * 16 + g) * (kTcKeys + kTcSPad) + col) =
          make_float2(s[nt][0], s[nt][1]);
      *reinterpret_cast<float2*>(Sh + (mt * 16 + g + 8) * (kTcKeys + kTcSPad) + col) =
          make_float2(s[nt][2], s[nt][3]);
    }
    __syncthreads();

    // Full S, masked and scaled into the log2 domain.
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int row = mt * 16 + g + (i >= 2 ? 8 : 0);
        const int col = nt * 8 + 2 * q4 + (i & 1);
        const int j = c * kTcKeys + col;
        const float v =
            Sx[row * (kTcKeys + kTcSPad) + col] + Sx[(kTcHeads + row) * (kTcKeys + kTcSPad) + col];
        const bool ok = j < nk && kvalid[buf * kTcKeys + col];
        s[nt][i] = ok ? v * scale2 : -INFINITY;
      }
      mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
      mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
    const float al0 = n0 == -INFINITY ? 1.0f : exp2f(m0 - n0);
    const float al1 = n1 == -INFINITY ? 1.0f : exp2f(m1 - n1);
    m0 = n0;
    m1 = n1;
    float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 4; ++nt) {
      s[nt][0] = n0 == -INFINITY ? 0.0f : exp2f(s[nt][0] - n0);
      s[nt][1] = n0 == -INFINITY ? 0.0f : exp2f(s[nt][1] - n0);
      s[nt][2] = n1 == -INFINITY ? 0.0f : exp2f(s[nt][2] - n1);
      s[nt][3] = n1 == -INFINITY ? 0.0f : exp2f(s[nt][3] - n1);
      rs0 += s[nt][0] + s[nt][1];
      rs1 += s[nt][2] + s[nt][3];
    }
    l0 = l0 * al0 + rs0;
    l1 = l1 * al1 + rs1;
#pragma unroll
    for (int i = 0; i < kONT; ++i) {
      o[i][0] *= al0;
      o[i][1] *= al0;
      o[i][2] *= al1;
      o[i][3] *= al1;
    }

    // O += P V on this warp's half of the dims.
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) {
      uint32_t a[4];
      a[0] = PackBf16(s[2 * kk][0], s[2 * kk][1]);
      a[1] = PackBf16(s[2 * kk][2], s[2 * kk][3]);
      a[2] = PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      a[3] = PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      const int key = kk * 16 + (((lane >> 3) & 1) << 3) + (lane & 7);
#pragma unroll
      for (int np = 0; np < kONT / 2; ++np) {
        uint32_t b[4];
        LdMatrixX4Trans(b, Kb + key * kStride + half * kHalf + np * 16 + ((lane >> 4) << 3));
        Mma16816(o[2 * np], a, b[0], b[1]);
        Mma16816(o[2 * np + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();
  }
  CpAsyncWait<0>();  // an empty split still issued the Q copies

  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const int h0 = hg * kTcHeads + mt * 16 + g, h1 = h0 + 8;
  if (splits == 1) {
    const float d0 = l0 + exp2f(p.sinks[h0] * kLog2e - m0);
    const float d1 = l1 + exp2f(p.sinks[h1] * kLog2e - m1);
    __nv_bfloat16* out0 = p.out + (int64_t{t} * p.heads + h0) * HD + half * kHalf;
    __nv_bfloat16* out1 = p.out + (int64_t{t} * p.heads + h1) * HD + half * kHalf;
#pragma unroll
    for (int nt = 0; nt < kONT; ++nt) {
      const int col = nt * 8 + 2 * q4;
      *reinterpret_cast<__nv_bfloat162*>(out0 + col) =
          __floats2bfloat162_rn(o[nt][0] / d0, o[nt][1] / d0);
      *reinterpret_cast<__nv_bfloat162*>(out1 + col) =
          __floats2bfloat162_rn(o[nt][2] / d1, o[nt][3] / d1);
    }
  } else {
    const int64_t base = int64_t{t} * splits + sp;
    float* po0 = part_o + (base * p.heads + h0) * HD + half * kHalf;
    float* po1 = part_o + (base * p.heads + h1) * HD + half * kHalf;
#pragma unroll
    for (int nt = 0; nt < kONT; ++nt) {
      const int col = nt * 8 + 2 * q4;
      *reinterpret_cast<float2*>(po0 + col) = make_float2(o[nt][0], o[nt][1]);
      *reinterpret_cast<float2*>(po1 + col) = make_float2(o[nt][2], o[nt][3]);
    }
    if (half == 0 && q4 == 0) {
      part_ml[(base * p.heads + h0) * 2] = m0;
      part_ml[(base * p.heads + h0) * 2 + 1] = l0;
      part_ml[(base * p.heads + h1) * 2] = m1;
      part_ml[(base * p.heads + h1) * 2 + 1] = l1;
    }
  }
}

// Merges the per-split partial softmaxes (log2 domain) and the sink.
__global__ void CombineKernel(AttentionParams p, int splits, const float* part_o,
                              const float* part_ml) {
  const int h = blockIdx.x, t = blockIdx.y;
  const int d = p.head_dim;
  const float sink = p.sinks[h] * kLog2e;
  float M = sink;
  for (int s = 0; s < splits; ++s)
    M = fmaxf(M, part_ml[((int64_t{t} * splits + s) * p.heads + h) * 2]);
  float L = exp2f(sink - M);
  for (int s = 0; s < splits; ++s) {
    const float* ml = part_ml + ((int64_t{t} * splits + s) * p.heads + h) * 2;
    if (ml[0] != -INFINITY) L += ml[1] * exp2f(ml[0] - M);
  }
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const int64_t row = (int64_t{t} * splits + s) * p.heads + h;
      const float m = part_ml[row * 2];
      if (m != -INFINITY) acc += exp2f(m - M) * part_o[row * d + c];
    }
    p.out[(int64_t{t} * p.heads + h) * d + c] = __float2bfloat16(acc / L);
  }
}

constexpr int kTargetBlocks = 2 * 132;
constexpr size_t kMaxPartialBytes = size_t{64} << 20;

// Splits of the key set per (token, head group) for the tensor-core kernel.
int PlanSplits(const AttentionParams& p) {
  const int max_pos = p.max_position;
  int max_keys = std::min(p.window, max_pos + 1);
  if (p.entries.pool) max_keys += p.selected ? p.selected_k : (max_pos + 1) / p.rate;
  const int chunks = (max_keys + kTcKeys - 1) / kTcKeys;
  const int base = p.tokens * (p.heads / kTcHeads);
  if (base >= kTargetBlocks || chunks <= 1) return 1;
  int splits = std::min(chunks, (kTargetBlocks + base - 1) / base);
  const size_t per_split = size_t{4} * p.tokens * p.heads * (p.head_dim + 2);
  while (splits > 1 && per_split * splits > kMaxPartialBytes) --splits;
  return splits;
}

__global__ void WindowUpdateKernel(WindowUpdateParams p) {
  const int t = blockIdx.x;
  const int s = p.meta.token_seq[t];
  const int begin = p.meta.seq_begin[s];
  const int len = p.meta.seq_begin[s + 1] - begin;
  if (t - begin < len - p.window) return;
  const int pos = p.meta.token_pos[t];
  __nv_bfloat16* dst =
      p.ring + (int64_t{p.meta.seq_slot[s]} * p.window + pos % p.window) * p.head_dim;
  const __nv_bfloat16* src = p.kv + int64_t{t} * p.head_dim;
  for (int c = threadIdx.x; c < p.head_dim; c += blockDim.x) dst[c] = src[c];
}

}  // namespace

const char* Validate(const AttentionParams& p) {
  if (!p.q || !p.kv || !p.window_ring || !p.sinks || !p.out || !p.meta.token_pos ||
      !p.meta.token_seq || !p.meta.seq_begin || !p.meta.seq_slot || !p.meta.seq_start_pos)
    return "attention: null pointer";
  if (p.tokens < 0 || p.heads < 1 || p.head_dim < 1 || p.window < 1) return "attention: bad sizes";
  if (p.head_dim > kGenericThreads * kGenericMaxPerThread) return "attention: head_dim > 1024";
  if (p.entries.pool) {
    if (!p.entries.table || p.entries.page_size < 1 || p.entries.width != p.head_dim ||
        p.entries.layer < 0 || p.entries.layer >= p.entries.layers)
      return "attention: bad entry pages";
    if (!p.selected && p.rate < 1) return "attention: rate must be positive";
    if (p.selected && p.selected_k < 1) return "attention: selected_k must be positive";
  }
  return nullptr;
}

bool AttentionUsesTensorCores(const AttentionParams& p) {
  return p.head_dim == 512 && p.heads % kTcHeads == 0;
}

size_t AttentionWorkspaceBytes(const AttentionParams& p) {
  if (!AttentionUsesTensorCores(p)) return 0;
  const int splits = PlanSplits(p);
  if (splits == 1) return 0;
  return size_t{4} * p.tokens * splits * p.heads * (p.head_dim + 2);
}

cudaError_t LaunchAttention(const AttentionParams& p, void* workspace, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.tokens == 0) return cudaSuccess;
  if (!AttentionUsesTensorCores(p)) {
    GenericAttentionKernel<<<dim3(p.heads, p.tokens), kGenericThreads, 0, stream>>>(p);
    return cudaGetLastError();
  }
  const int splits = PlanSplits(p);
  float* part_o = static_cast<float*>(workspace);
  float* part_ml = splits > 1 ? part_o + size_t(p.tokens) * splits * p.heads * p.head_dim : nullptr;
  if (splits > 1 && !workspace) return cudaErrorInvalidValue;
  MG_DISPATCH_ATTN_HEAD_DIM(p.head_dim, HD, {
    const size_t smem = TcLayout<HD>::kTotal;
    cudaError_t e = EnsureDynamicSmem(reinterpret_cast<const void*>(TcAttentionKernel<HD>),
                                      static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    const dim3 grid(splits, p.heads / kTcHeads, p.tokens);
    TcAttentionKernel<HD><<<grid, kTcThreads, smem, stream>>>(p, splits, part_o, part_ml);
  });
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || splits == 1) return e;
  CombineKernel<<<dim3(p.heads, p.tokens), 128, 0, stream>>>(p, splits, part_o, part_ml);
  return cudaGetLastError();
}

const char* Validate(const WindowUpdateParams& p) {
  if (!p.kv || !p.ring || !p.meta.token_pos || !p.meta.token_seq || !p.meta.seq_begin ||
      !p.meta.seq_slot)
    return "window_update: null pointer";
  if (p.head_dim < 1 || p.window < 1) return "window_update: bad sizes";
  return nullptr;
}

cudaError_t LaunchWindowUpdate(const WindowUpdateParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.meta.tokens == 0) return cudaSuccess;
  WindowUpdateKernel<<<p.meta.tokens, 128, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
