// GPU sampler (see sampling.h). One block of 1024 threads per row: an argmax
// pass, then (non-greedy) radix selects on order-preserving logit keys for
// the top-k cut (by count) and the top-p cut (by probability mass, 8 bits a
// pass), ties at each cut kept in id order as far as the cut needs (the
// host's order: logit, then id), and an inverse-CDF draw over the kept tokens
// in id order (per-thread contiguous chunks, a block scan, one thread
// finishes in its chunk).
#include "kernels/cuda/sampling.h"

#include <cub/block/block_scan.cuh>

#include "kernels/cuda/device_common.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kThreads = 1024;

__device__ __forceinline__ uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// The host sampler's SeededUniform, bit for bit.
__device__ __forceinline__ double SeededUniform(uint64_t seed, uint64_t index) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ (index * 0xD1B54A32D192ED03ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

__device__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = scratch[0];
  for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, scratch[w]);
  return m;
}

struct Row {
  const float* l;
  SampleRowParams prm;
  __device__ bool banned(int i) const {
#pragma unroll
    for (int b = 0; b < kSampleMaxBanned; ++b)
      if (prm.banned[b] == i) return true;
    return false;
  }
};

// Finds, 8 bits a pass from the top, the largest key thr such that the
// weight of candidates with key >= thr reaches `target`. weight(i) < 0 marks
// a non-candidate. Every thread returns thr.
template <typename Weight>
__device__ uint32_t SelectKey(int vocab, const Row& r, float target, Weight weight, float* hist,
                              uint32_t* s_prefix, float* s_remaining) {
  uint32_t prefix = 0, mask = 0;
  float remaining = target;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += kThreads) hist[i] = 0.0f;
    __syncthreads();
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const float w = weight(i);
      if (w < 0.0f) continue;
      const uint32_t key = OrderedKey(r.l[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], w);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float above = 0.0f;
      int d = 255;
      for (; d > 0; --d) {
        if (above + hist[d] >= remaining) break;
        above += hist[d];
      }
      *s_prefix = prefix | (uint32_t(d) << shift);
      *s_remaining = remaining - above;
    }
    __syncthreads();
    prefix = *s_prefix;
    remaining = *s_remaining;
    mask |= 255u << shift;
  }
  return prefix;
}

// The block's largest (value, id) pair, lower id on ties: every thread
// passes its own best and gets the block's. Two __syncthreads().
__device__ void BlockArgmax(float* bv, int* bi, float* red_v, int* red_i) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  float v = *bv;
  int i = *bi;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, i, o);
    if (ov > v || (ov == v && oi < i)) v = ov, i = oi;
  }
  __syncthreads();
  if (lane == 0) red_v[warp] = v, red_i[warp] = i;
  __syncthreads();
  v = red_v[0];
  i = red_i[0];
  for (int w = 1; w < kThreads / 32; ++w)
    if (red_v[w] > v || (red_v[w] == v && red_i[w] < i)) v = red_v[w], i = red_i[w];
  *bv = v;
  *bi = i;
}

// The host sampler's log-probabilities of row `l` (raw logits, every id):
// the chosen id's, and the `n` most likely (ties: lower id first) by n
// block argmax passes. Every thread of the block calls it.
__device__ void WriteLogprobs(const float* l, int V, int chosen, int n, float* red_v, int* red_i,
                              int* picked, SampleLogprobs* out) {
  float m = -INFINITY;
  for (int i = threadIdx.x; i < V; i += kThreads) m = fmaxf(m, l[i]);
  m = BlockMax(m, red_v);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < V; i += kThreads) sum += __expf(l[i] - m);
  __syncthreads();
  sum = BlockSum(sum, red_v);
  const float log_z = m + logf(sum);
  n = min(n, min(V, kSampleMaxTopLogprobs));
  for (int j = 0; j < n; ++j) {
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < V; i += kThreads) {
      bool taken = false;
      for (int q = 0; q < j; ++q) taken |= picked[q] == i;
      const float v = l[i];
      if (!taken && (v > bv || (v == bv && i < bi))) bv = v, bi = i;
    }
    BlockArgmax(&bv, &bi, red_v, red_i);
    if (threadIdx.x == 0) {
      picked[j] = bi;
      out->ids[j] = bi;
      out->values[j] = bv - log_z;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    out->count = n;
    out->chosen = l[chosen] - log_z;
  }
}

__global__ void __launch_bounds__(kThreads) SampleKernel(SampleParams p) {
  using Scan = cub::BlockScan<float, kThreads>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ float red_v[32];
  __shared__ int red_i[32];
  __shared__ float hist[256];
  __shared__ uint32_t s_prefix;
  __shared__ float s_remaining;
  __shared__ int s_choice;
  __shared__ int s_picked[kSampleMaxTopLogprobs];

  Row r;
  r.l = p.logits + int64_t{blockIdx.x} * p.vocab;
  r.prm = p.params[blockIdx.x];
  const int V = p.vocab;

  // Argmax over the allowed ids (lowest id on ties); all banned: the raw argmax.
  auto argmax = [&](bool skip_banned, float* out_max) {
    float bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < V; i += kThreads) {
      if (skip_banned && r.banned(i)) continue;
      const float v = r.l[i];
      if (v > bv || (v == bv && i < bi)) bv = v, bi = i;
    }
    BlockArgmax(&bv, &bi, red_v, red_i);
    *out_max = bv;
    return bi;
  };
  float max_logit;
  int best = argmax(true, &max_logit);
  if (max_logit == -INFINITY) best = argmax(false, &max_logit), max_logit = -INFINITY;
  auto finish = [&](int id) {
    if (threadIdx.x == 0) p.ids[blockIdx.x] = id;
    if (r.prm.logprobs >= 0 && p.logprobs != nullptr) {
      WriteLogprobs(r.l, V, id, r.prm.logprobs, red_v, red_i, s_picked, p.logprobs + blockIdx.x);
    }
  };
  if (r.prm.temperature == 0.0f || r.prm.top_k == 1 || max_logit == -INFINITY) {
    finish(best);
    return;
  }
  const float inv_t = 1.0f / r.prm.temperature;
  const float min_p = r.prm.min_p;
  // Unnormalised probability relative to the most likely token; -1 = dropped.
  auto prob = [&](int i) -> float {
    if (r.banned(i)) return -1.0f;
    const float q = __expf((r.l[i] - max_logit) * inv_t);
    return q < min_p ? -1.0f : q;
  };
  // Thread t owns ids [t*chunk, (t+1)*chunk): the tie cuts and the draw walk
  // ids in this order.
  const int chunk = (V + kThreads - 1) / kThreads;
  const int lo = threadIdx.x * chunk, hi = min(V, lo + chunk);
  // The id of the n-th (1-based) candidate, in id order, whose key is `key`.
  auto nth_tie = [&](uint32_t key, int n, auto candidate) {
    float mine = 0.0f;
    for (int i = lo; i < hi; ++i) mine += (OrderedKey(r.l[i]) == key && candidate(i)) ? 1.0f : 0.0f;
    float before = 0.0f, total = 0.0f;
    __syncthreads();  // the scan storage may still be in use
    Scan(scan).ExclusiveSum(mine, before, total);
    if (threadIdx.x == 0) s_choice = V - 1;
    __syncthreads();
    if (before < n && before + mine >= n) {
      float seen = before;
      for (int i = lo; i < hi; ++i) {
        if (OrderedKey(r.l[i]) == key && candidate(i) && ++seen >= n) {
          s_choice = i;
          break;
        }
      }
    }
    __syncthreads();
    const int id = s_choice;
    __syncthreads();
    return id;
  };
  // Kept: key above the cut, or at it with an id up to the cut's id (the
  // host sorts by logit, then id, and keeps a prefix).
  uint32_t thr_k = 0, thr_p = 0;
  int cut_k = V - 1, cut_p = V - 1;
  auto kept_k = [&](int i) -> bool {
    const uint32_t key = OrderedKey(r.l[i]);
    return !r.banned(i) && (key > thr_k || (key == thr_k && i <= cut_k));
  };
  if (r.prm.top_k > 0 && r.prm.top_k < V) {
    thr_k = SelectKey(
        V, r, static_cast<float>(r.prm.top_k), [&](int i) { return r.banned(i) ? -1.0f : 1.0f; },
        hist, &s_prefix, &s_remaining);
    const int need = static_cast<int>(s_remaining + 0.5f);  // ties of the k-th value to keep
    __syncthreads();
    cut_k = nth_tie(thr_k, max(1, need), [&](int i) { return !r.banned(i); });
  }
  auto candidate = [&](int i) -> float { return kept_k(i) ? prob(i) : -1.0f; };
  auto kept = [&](int i) -> float {
    const float w = candidate(i);
    if (w < 0.0f) return -1.0f;
    const uint32_t key = OrderedKey(r.l[i]);
    return key > thr_p || (key == thr_p && i <= cut_p) ? w : -1.0f;
  };
  if (r.prm.top_p < 1.0f) {
    float mass = 0.0f;
    for (int i = threadIdx.x; i < V; i += kThreads) mass += fmaxf(candidate(i), 0.0f);
    mass = BlockSum(mass, red_v);
    thr_p = SelectKey(V, r, r.prm.top_p * mass, candidate, hist, &s_prefix, &s_remaining);
    // Ties at the cut share one probability: keep as many as the mass needs.
    float w_tie = 0.0f;
    for (int i = threadIdx.x; i < V; i += kThreads) {
      if (OrderedKey(r.l[i]) == thr_p && candidate(i) >= 0.0f) w_tie = candidate(i);
    }
    w_tie = BlockMax(w_tie, red_v);
    const float remaining = s_remaining;
    __syncthreads();
    const int need =
        w_tie > 0.0f ? max(1, static_cast<int>(ceilf(remaining / w_tie * 0.99999f))) : 1;
    cut_p = nth_tie(thr_p, need, [&](int i) { return candidate(i) >= 0.0f; });
  }

  // Inverse CDF in id order over the kept tokens.
  float mine = 0.0f;
  int last_kept = -1;
  for (int i = lo; i < hi; ++i) {
    const float w = kept(i);
    if (w >= 0.0f) mine += w, last_kept = i;
  }
  float before = 0.0f, total = 0.0f;
  __syncthreads();
  Scan(scan).ExclusiveSum(mine, before, total);
  const uint64_t seed = (uint64_t{r.prm.seed_hi} << 32) | r.prm.seed_lo;
  const uint64_t index = (uint64_t{r.prm.index_hi} << 32) | r.prm.index_lo;
  const float target = static_cast<float>(SeededUniform(seed, index)) * total;
  if (threadIdx.x == 0) s_choice = -1;
  __syncthreads();
  if (mine > 0.0f && target >= before && target < before + mine) {
    float cum = before;
    int pick = last_kept;
    for (int i = lo; i < hi; ++i) {
      const float w = kept(i);
      if (w < 0.0f) continue;
      cum += w;
      if (target < cum) {
        pick = i;
        break;
      }
    }
    s_choice = pick;
  }
  __syncthreads();
  // Rounding can put the target past the last boundary: the last kept id.
  if (s_choice < 0 && last_kept >= 0) atomicMax(&s_choice, last_kept);
  __syncthreads();
  finish(s_choice >= 0 ? s_choice : best);
}

}  // namespace

const char* Validate(const SampleParams& p) {
  if (!p.logits || !p.params || !p.ids) return "sample: null pointer";
  if (p.rows < 0 || p.vocab < 1) return "sample: bad sizes";
  return nullptr;
}

cudaError_t LaunchSample(const SampleParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.rows == 0) return cudaSuccess;
  SampleKernel<<<p.rows, kThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
