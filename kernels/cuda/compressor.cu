// Compressor kernels (see compressor.h): one block per token for emission
// (blocks of tokens that close no window exit at once), one thread per
// channel with an online softmax over the window's slots.
#include "kernels/cuda/compressor.h"

#include "kernels/cuda/device_common.cuh"

namespace moegraph::cuda {
namespace {

constexpr int kThreads = 256;

// Where token position `pos` of a sequence keeps its (c, z + ape) values: in
// this step's inputs when pos >= start (token begin + pos - start), in the
// ring of `slot` otherwise.
struct SlotSource {
  const __nv_bfloat16* c;  // c row (cw wide) or ring row
  const __nv_bfloat16* z;  // z row, or the ring row's zape half
  bool add_ape;            // z from the step still needs ape[pos % rate]
};

struct SeqInfo {
  int start, begin, slot;
};

__device__ __forceinline__ SlotSource Source(const CompressorParams& p, const SeqInfo& q, int pos) {
  const int cw = p.cw();
  if (pos >= q.start) {
    const int64_t t = q.begin + (pos - q.start);
    return {p.c + t * cw, p.z + t * cw, true};
  }
  const __nv_bfloat16* row =
      p.ring + (int64_t{q.slot} * p.ring_len() + pos % p.ring_len()) * 2 * cw;
  return {row, row + cw, false};
}

__global__ void __launch_bounds__(kThreads) EmitKernel(CompressorParams p) {
  extern __shared__ float entry[];  // [width]
  __shared__ float scratch[32];
  const int t = blockIdx.x;
  const int pos = p.meta.token_pos[t];
  if ((pos + 1) % p.rate != 0) return;
  const int s = p.meta.token_seq[t];
  const SeqInfo seq{p.meta.seq_start_pos[s], p.meta.seq_begin[s], p.meta.seq_slot[s]};
  const int w = (pos + 1) / p.rate - 1;
  const int m = p.rate;
  const int width = p.width;
  const int cw = p.cw();

  float ss = 0.0f;
  for (int ch = threadIdx.x; ch < width; ch += kThreads) {
    float mx = -INFINITY, sum = 0.0f, acc = 0.0f;
    // Slots: CSA first visits window w-1 through channel ch (the Ca half),
    // then window w through channel width + ch (the Cb half).
    const int first = p.overlap ? -m : 0;
    for (int j = first; j < m; ++j) {
      int slot_pos, col;
      if (j < 0) {
        if (w == 0) continue;  // no previous window: weight 0
        slot_pos = (w - 1) * m + (j + m);
        col = ch;
      } else {
        slot_pos = w * m + j;
        col = p.overlap ? width + ch : ch;
      }
      const SlotSource src = Source(p, seq, slot_pos);
      const float cv = __bfloat162float(src.c[col]);
      float zv = __bfloat162float(src.z[col]);
      if (src.add_ape) zv += p.ape[(slot_pos % m) * cw + col];
      const float nm = fmaxf(mx, zv);
      const float scale = expf(mx - nm);  // 0 on the first slot (mx = -inf)
      const float e = expf(zv - nm);
      sum = sum * scale + e;
      acc = acc * scale + e * cv;
      mx = nm;
    }
    const float v = acc / sum;
    entry[ch] = v;
    ss += v * v;
  }
  ss = BlockSum(ss, scratch);
  const float inv = rsqrtf(ss / width + p.eps);
  for (int ch = threadIdx.x; ch < width; ch += kThreads)
    entry[ch] = entry[ch] * inv * p.norm_weight[ch];
  __syncthreads();

  const EntryPagesView& E = p.entries;
  const int page = E.table[int64_t{seq.slot} * E.max_pages + w / E.page_size];
  __nv_bfloat16* out =
      E.pool + ((int64_t{page} * E.page_size + w % E.page_size) * E.layers + E.layer) * width;
  const int pass = width - p.rope_dim;
  const float position = static_cast<float>(w * m);
  for (int ch = threadIdx.x; ch < width; ch += kThreads) {
    float v = entry[ch];
    if (ch >= pass) {
      const int k = ch - pass;
      const int pair = k / 2;
      float sn, cs;
      sincosf(position * p.inv_freq[pair], &sn, &cs);
      const float a = entry[pass + 2 * pair], b = entry[pass + 2 * pair + 1];
      v = (k % 2 == 0) ? a * cs - b * sn : b * cs + a * sn;
    }
    out[ch] = __float2bfloat16(v);
  }
}

// Stores each sequence's last ring_len tokens: ring[slot][pos % ring_len] =
// (c, z + ape[pos % rate]).
__global__ void RingStoreKernel(CompressorParams p) {
  const int t = blockIdx.x;
  const int s = p.meta.token_seq[t];
  const int len = p.meta.seq_begin[s + 1] - p.meta.seq_begin[s];
  const int i = t - p.meta.seq_begin[s];
  const int ring_len = p.ring_len();
  if (i < len - ring_len) return;
  const int pos = p.meta.token_pos[t];
  const int cw = p.cw();
  const int64_t slot = p.meta.seq_slot[s];
  __nv_bfloat16* row = p.ring + (slot * ring_len + pos % ring_len) * 2 * cw;
  const float* ape = p.ape + (pos % p.rate) * cw;
  for (int ch = threadIdx.x; ch < cw; ch += blockDim.x) {
    row[ch] = p.c[int64_t{t} * cw + ch];
    row[cw + ch] = __float2bfloat16(__bfloat162float(p.z[int64_t{t} * cw + ch]) + ape[ch]);
  }
}

}  // namespace

const char* Validate(const CompressorParams& p) {
  if (!p.c || !p.z || !p.ape || !p.norm_weight || !p.ring || !p.entries.pool || !p.entries.table ||
      !p.meta.token_pos || !p.meta.token_seq || !p.meta.seq_begin || !p.meta.seq_slot ||
      !p.meta.seq_start_pos)
    return "compressor: null pointer";
  if (p.rope_dim > 0 && !p.inv_freq) return "compressor: null inv_freq";
  if (p.rate < 1 || p.width < 1 || p.entries.width != p.width) return "compressor: bad sizes";
  if (p.rope_dim < 0 || p.rope_dim % 2 || p.rope_dim > p.width) return "compressor: bad rope_dim";
  if (p.entries.page_size < 1 || p.entries.layer < 0 || p.entries.layer >= p.entries.layers)
    return "compressor: bad entry pages";
  return nullptr;
}

cudaError_t LaunchCompressorUpdate(const CompressorParams& p, cudaStream_t stream) {
  if (Validate(p)) return cudaErrorInvalidValue;
  if (p.meta.tokens == 0) return cudaSuccess;
  EmitKernel<<<p.meta.tokens, kThreads, sizeof(float) * p.width, stream>>>(p);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  RingStoreKernel<<<p.meta.tokens, 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moegraph::cuda
