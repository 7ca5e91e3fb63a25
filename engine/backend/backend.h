// The op interface the DeepSeek-V4 model is written against. One model
// implementation (engine/model/) drives every backend: the CPU backend
// (fp32 activations, kernels/cpu) and the CUDA backend (bf16 activations with
// fp32 statistics, kernels/cuda). A backend owns its stream, its library
// handles and their workspaces; ops are enqueued in call order and may run
// asynchronously until Synchronize() or Download().
//
// Shapes: T = tokens in the step, S = sequences in the step, D = hidden,
// n = hc streams, H = heads, d = head dim, r = rope dims. "act" means the
// backend's activation dtype (activation_dtype()). Every op validates the
// shapes and dtypes it is given and returns InvalidArgument naming the
// operand; launch failures come back as Internal naming the op.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/tensor.h"
#include "engine/backend/weight.h"

namespace moegraph {

// Per-step description of the batch, as device tensors (uploaded once per
// step by the model). Sequences are runs of consecutive tokens on the token
// axis: sequence s owns tokens [seq_begin[s], seq_begin[s+1]) at positions
// seq_start_pos[s] + 0, 1, ...
struct StepMeta {
  int num_tokens = 0;
  int num_seqs = 0;
  Tensor token_pos;      // i32 [T]   absolute position of each token
  Tensor token_seq;      // i32 [T]   index (0..S-1) of each token's sequence
  Tensor seq_begin;      // i32 [S+1] prefix offsets into the token axis
  Tensor seq_slot;       // i32 [S]   state slot of each sequence
  Tensor seq_start_pos;  // i32 [S]   position of each sequence's first token
  // Host copies of the same, for backends that plan launches on the host.
  const int* host_seq_begin = nullptr;
  const int* host_seq_slot = nullptr;
  const int* host_seq_start_pos = nullptr;
  // Host-known upper bound of token_pos: the step's own largest position when
  // eager, the state's capacity (context_limit - 1) when the launch is
  // captured into a graph replayed at any position. Ops whose grids or
  // workspaces depend on lengths size them from it and read the real lengths
  // on the device. -1: unknown (the host copies must be there); 0 is a real
  // bound (a step whose every token is at position 0).
  int max_position = -1;
};

// Host memory the device reads or writes asynchronously (pinned on CUDA),
// freed by its deleter.
using HostMemory = std::unique_ptr<void, void (*)(void*)>;

// What a backend has done, for tests that prove a step allocates, copies and
// synchronizes only what it should. Monotonic counts since creation.
struct BackendCounters {
  uint64_t allocations = 0;       // device allocations (weights, state, workspaces)
  uint64_t frees = 0;             // device frees
  uint64_t synchronizations = 0;  // host waits on the whole stream
  uint64_t uploads = 0;           // host -> device copies
  uint64_t downloads = 0;         // device -> host copies (blocking or not)
  uint64_t graph_launches = 0;
  uint64_t fence_records = 0;
  uint64_t fence_waits = 0;  // host waits on one fence
  uint64_t ops = 0;          // ops enqueued eagerly (not by a graph replay)
};

// Compressed entries of one kind (CSA main, HCA main, or CSA indexer) live in
// fixed-size pages shared by all layers of that kind:
//   pool  act [num_pages, page_size, layers_of_kind, width]
//   table i32 [num_slots, max_pages_per_slot]  page ids, filled by the model
// Entry e of slot s for layer-of-kind l is
//   pool[table[s][e / page_size]][e % page_size][l][:].
// The model allocates pages before the step that emits into them.
struct EntryPages {
  Tensor pool;
  Tensor table;
  int page_size = 0;
  int layer = 0;  // which layer-of-kind this op reads or writes
};

// A compressor's open-window ring for one layer:
//   ring act [num_slots, ring_len, 2 * cw]: per token, its c (cw wide) then
//   z + ape[pos % rate] (cw wide), stored at index pos % ring_len.
// ring_len = 2 * rate when overlapping (CSA, cw = 2 * width), rate otherwise
// (HCA, cw = width).
struct CompressorParams {
  int rate = 0;          // m (CSA) or M (HCA)
  bool overlap = false;  // CSA-style two-series windows
  int width = 0;         // entry width: head_dim, or index_head_dim for the indexer
  int rope_dim = 0;      // r: rope on the last r channels of each entry
  float eps = 1e-6f;
  Tensor ape;          // f32 [rate, cw]
  Tensor norm_weight;  // f32 [width]
  Tensor inv_freq;     // f32 [r/2]   the compress rope table
  Tensor ring;         // act [num_slots, ring_len, 2*cw]
  EntryPages entries;  // where emitted entries go
};

struct AttentionParams {
  int window = 0;      // W
  float scale = 0.0f;  // 1/sqrt(d)
  Tensor sinks;        // f32 [H]
  Tensor window_ring;  // act [num_slots, W, d]: kv of position p at p % W (earlier steps)
  // Compressed keys, absent on sliding-only layers (entries.pool.empty()).
  EntryPages entries;
  int rate = 0;  // entry e is visible to position t iff (e+1)*rate <= t+1
  // CSA: the indexer's choice, i32 [T, k], -1 = none. Empty on HCA layers,
  // where every visible entry is a key.
  Tensor selected;
};

// One destination rank's receive region for a source's dispatched rows
// (Backend::ExchangeDispatch): rows land at [0, count).
struct ExchangeRegion {
  Tensor x;          // act [capacity, D]
  Tensor experts;    // i32 [capacity, k]
  Tensor src_token;  // i32 [capacity]
  Tensor count;      // i32 [1]
};

// Where ranks sharing a device (or peers over NVLink) meet on the device
// instead of at a host barrier (Backend::ExchangeMeet), so that an exchange
// can sit inside captured graphs. Every rank makes the same meetings in the
// same order; a rank's counter numbers them.
struct RankMeeting {
  int rank = 0;
  Tensor calls;                 // i32 [1], this rank's memory: meetings so far
  Tensor inbox;                 // i32 [R], this rank's memory: each rank's last meeting
  std::vector<Tensor> mailbox;  // per rank r: i32 [1], r's inbox entry for this rank
  // Pinned host memory every rank's device reads: [0] nonzero = stop waiting
  // (the host aborted the exchange); [1 + r] set by rank r's device when it
  // gave up waiting after `timeout_ns`.
  int32_t* control = nullptr;
  int64_t timeout_ns = 0;
};

// Routed experts of one layer, stacked at upload: logically w1, w3 [E, F, D],
// w2 [E, D, F], each in one format (weight.h).
struct ExpertWeights {
  Weight w1, w2, w3;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;        // "cpu", "cuda:0 (NVIDIA H200)"
  virtual std::string id() const = 0;          // "cpu", "cuda:0": the device alone
  virtual DType activation_dtype() const = 0;  // kF32 (cpu) or kBF16 (cuda)

  // ---- memory -------------------------------------------------------------
  virtual absl::StatusOr<Buffer> Allocate(size_t bytes) = 0;
  virtual void Free(void* ptr) = 0;  // called by Buffer only
  // Host -> device, ordered with the ops. `src` must stay valid until the
  // next Synchronize() unless the backend copies it (CPU does).
  virtual absl::Status Upload(void* dst, const void* src, size_t bytes) = 0;
  // Device -> host; waits for all queued work first.
  virtual absl::Status Download(void* dst, const void* src, size_t bytes) = 0;
  virtual absl::Status Fill(Tensor t, float value) = 0;  // any float dtype or i32
  virtual absl::Status Synchronize() = 0;

  // ---- step plumbing: staging, fences, graphs ---------------------------------
  // Host memory for asynchronous copies (pinned on CUDA, plain on the CPU).
  virtual absl::StatusOr<HostMemory> AllocateHost(size_t bytes);
  // Device -> host, ordered with the ops, without waiting (dst pinned; read it
  // after WaitFence on a fence recorded later).
  virtual absl::Status DownloadAsync(void* dst, const void* src, size_t bytes) {
    return Download(dst, src, bytes);
  }
  // Fences 0..kNumFences-1: RecordFence marks the point in the op order;
  // WaitFence blocks the host until the device has passed it (no-op when it
  // has, or on the CPU). A fence never recorded counts as passed.
  static constexpr int kNumFences = 8;
  virtual absl::Status RecordFence(int /*fence*/) { return absl::OkStatus(); }
  virtual absl::Status WaitFence(int /*fence*/) { return absl::OkStatus(); }
  // Graphs: the ops enqueued between BeginGraphCapture and EndGraphCapture
  // are recorded (not run) into a graph that LaunchGraph replays with the same
  // pointers and launch shapes. Backends without graphs return UNIMPLEMENTED.
  virtual bool supports_graphs() const { return false; }
  virtual absl::Status BeginGraphCapture();
  virtual absl::StatusOr<int> EndGraphCapture();
  virtual absl::Status LaunchGraph(int graph);
  // A side stream for work independent of what follows it (the shared
  // expert beside the routed experts): the ops between BeginSide and EndSide
  // run on it, after everything enqueued before BeginSide; the ops after
  // EndSide run on the main stream beside them until JoinSide makes the main
  // stream wait for the side's work. Graph capture follows both. Backends
  // with one stream (the defaults) run everything in order.
  virtual absl::Status BeginSide() { return absl::OkStatus(); }
  virtual absl::Status EndSide() { return absl::OkStatus(); }
  virtual absl::Status JoinSide() { return absl::OkStatus(); }
  // From now on workspaces may not move (graphs hold their pointers): an op
  // needing more than was reserved fails with FAILED_PRECONDITION.
  virtual void FreezeWorkspaces() {}
  virtual bool workspaces_frozen() const { return false; }
  virtual BackendCounters counters() const { return {}; }
  // Device memory in use on this backend's device, in bytes (all processes'),
  // or -1 where there is none to report (CPU).
  virtual int64_t device_memory_used() const { return -1; }
  // The device's memory in bytes, or -1 where there is none to report (CPU).
  virtual int64_t device_memory_total() const { return -1; }

  // Uploads a checkpoint tensor (host memory, any of F32/BF16/F16/I32/I64) as
  // the backend stores it: matrices for Linear keep bf16 (CUDA converts f32
  // and f16 to bf16; CPU keeps bf16 and f32, f16 -> f32), other float tensors
  // become f32, integers become i32. `matrix` says which rule applies.
  virtual absl::StatusOr<Tensor> UploadWeight(const Tensor& host, bool matrix,
                                              std::vector<Buffer>* owner) = 0;
  // Stacks E host matrices of equal shape [N, K] into one [E, N, K] tensor.
  virtual absl::StatusOr<Tensor> UploadStacked(const std::vector<Tensor>& host,
                                               std::vector<Buffer>* owner) = 0;
  // A checkpoint matrix in its stored format (weight.h): the CPU dequantizes
  // it; CUDA keeps FP8/FP4 as stored, with the scales laid out for its GEMMs.
  virtual absl::StatusOr<Weight> UploadMatrix(const HostWeight& host,
                                              std::vector<Buffer>* owner) = 0;
  // E matrices of one shape and format, stacked [E, ...] (routed experts).
  virtual absl::StatusOr<Weight> UploadStackedMatrices(const std::vector<HostWeight>& host,
                                                       std::vector<Buffer>* owner) = 0;

  // ---- dense ops ------------------------------------------------------------
  // out[t, s, :] = table[ids[t], :] for each of n streams. ids i32 [T],
  // table [V, D] (bf16/f32), out act [T, n, D].
  virtual absl::Status Embed(const Tensor& ids, const Tensor& table, Tensor out) = 0;

  // y = x W^T. x act [R, K]; w [N, K] in any format; y [R, N] act or f32.
  virtual absl::Status Linear(const Tensor& x, const Weight& w, Tensor y) = 0;

  // Block-diagonal grouped projection: x act [R, g*Kg], w [g*Ng, Kg];
  // y[:, G*Ng:(G+1)*Ng] = x[:, G*Kg:(G+1)*Kg] W[G]^T. y act [R, g*Ng].
  virtual absl::Status GroupedLinear(const Tensor& x, const Weight& w, int groups, Tensor y) = 0;

  // y = x / sqrt(mean(x^2) + eps) * (weight or 1), per row of C values.
  // x, y act [R, C] (may alias); weight f32 [C] or empty for the unweighted norm.
  virtual absl::Status RmsNorm(const Tensor& x, const Tensor& weight, float eps, Tensor y) = 0;

  // In-place interleaved rope on the last r channels of each head:
  // x act [T, heads, width]; pos i32 [T]; inv_freq f32 [r/2]. inverse rotates
  // by -pos (undoing the rotation on attention outputs).
  virtual absl::Status Rope(Tensor x, const Tensor& pos, const Tensor& inv_freq, int rope_dim,
                            bool inverse) = 0;

  // out = a + b, all act of one shape (out may alias either).
  virtual absl::Status Add(const Tensor& a, const Tensor& b, Tensor out) = 0;

  // out = x * alpha. x, out act or f32, same dtype and element count (may alias).
  virtual absl::Status Scale(const Tensor& x, float alpha, Tensor out) = 0;

  // out = silu(min(a, L)) * clamp(b, -L, L). a, b, out act [R, F].
  virtual absl::Status SwiGlu(const Tensor& a, const Tensor& b, float limit, Tensor out) = 0;

  // out[i, :] = x[rows[i], :]. rows i32 [n] (device), x [R, C], out [n, C].
  virtual absl::Status GatherRows(const Tensor& x, const Tensor& rows, Tensor out) = 0;

  // ids[i] = sampled[from[i]] where from[i] >= 0, else unchanged. ids, from
  // i32 [n]; sampled i32 [m] (a step's sampled ids); a from[i] >= m leaves
  // ids[i] unchanged (the host validates). A pipelined step's tokens taken
  // from the ids the step before it sampled, without the host.
  virtual absl::Status TakeSampledIds(Tensor ids, const Tensor& from, const Tensor& sampled) = 0;

  // out = x converted to out.dtype (act <-> f32), same shape.
  virtual absl::Status Convert(const Tensor& x, Tensor out) = 0;

  // dst[pairs[2i]] = pairs[2i+1] for i < min(count[0], pairs.numel() / 2).
  // dst, pairs, count i32 (device); the count is read on the device, so a
  // captured launch applies however many pairs the step staged.
  virtual absl::Status ScatterPairs(Tensor dst, const Tensor& pairs, const Tensor& count) = 0;

  // Samples one id per row: logits f32 [R, V]; params the rows'
  // cuda::SampleRowParams (52 bytes each) as i32 [R, 13]; ids i32 [R], or
  // i32 [cuda::SampleOutputWords(R)]: the ids, then one cuda::SampleLogprobs
  // per row, written for rows whose params ask for logprobs.
  // UNIMPLEMENTED where the backend has no sampler (the host samples).
  virtual absl::Status Sample(const Tensor& logits, const Tensor& params, Tensor ids);

  // ---- hyper-connections (dsv4.md "mHC") --------------------------------------
  // X act [T, n, D]; fn f32 [(2+n)n, nD]; base f32 [(2+n)n]; scale f32 [3].
  // Outputs: x_in act [T, D]; post f32 [T, n]; comb f32 [T, n, n] (C[i][j]).
  virtual absl::Status HcPre(const Tensor& X, const Tensor& fn, const Tensor& base,
                             const Tensor& scale, int sinkhorn_iters, float hc_eps, float norm_eps,
                             Tensor x_in, Tensor post, Tensor comb) = 0;
  // HcPre, then h = RmsNorm(x_in, norm_weight, norm_eps) (the sub-layer
  // input is only ever normed): one op where the backend fuses the two
  // (CUDA: the collapse's block norms its own row, a launch less a site).
  virtual absl::Status HcPreNorm(const Tensor& X, const Tensor& fn, const Tensor& base,
                                 const Tensor& scale, int sinkhorn_iters, float hc_eps,
                                 float norm_eps, const Tensor& norm_weight, Tensor x_in,
                                 Tensor post, Tensor comb, Tensor h);
  // Xout[t, j, :] = post[t, j] * y[t, :] + sum_i comb[t, i, j] * X[t, i, :].
  // Xout must not alias X.
  virtual absl::Status HcPost(const Tensor& X, const Tensor& y, const Tensor& post,
                              const Tensor& comb, Tensor Xout) = 0;
  // Head collapse: fn f32 [n, nD], base f32 [n], scale f32 [1]; y act [T, D].
  virtual absl::Status HcHead(const Tensor& X, const Tensor& fn, const Tensor& base,
                              const Tensor& scale, float hc_eps, float norm_eps, Tensor y) = 0;

  // ---- attention and its state ----------------------------------------------
  // Per token, in position order within each sequence: store (c, z + ape) in
  // the ring; when the token closes window w ((pos+1) % rate == 0), emit entry
  // w = rms(sum_j softmax_j(z_j) * c_j; norm) roped at position w*rate into
  // params.entries (dsv4.md "Compressors"). c, z act [T, cw].
  virtual absl::Status CompressorUpdate(const Tensor& c, const Tensor& z,
                                        const CompressorParams& params, const StepMeta& meta) = 0;

  // Indexer scores and top-k: q act [T, nI, c] (roped), weights f32 [T, nI]
  // (already scaled by 1/sqrt(nI)); keys = indexer entries visible to each
  // token (rate). score_w = sum_h weights_h * relu(q_h . K_w) * softmax_scale.
  // selected i32 [T, k]: the top-k visible entry ids by score, then -1 where
  // fewer than k are visible. Ties (frequent: a row whose heads all relu to 0
  // scores exactly 0) are broken as torch.topk on CPU breaks them, which the
  // reference logits depend on: over the row of all N = (seq_start + seq_len)
  // / rate entries the sequence holds after the step (non-visible = -inf),
  // take = min(k, N) leading elements of libstdc++ std::partial_sort (when
  // take * 64 <= N) or std::nth_element(row, row + take - 1, row + N) with
  // comparison on the score only; ids >= visible among them become -1.
  // kernels/cpu/indexer.cc is the reference.
  virtual absl::Status IndexerTopK(const Tensor& q, const Tensor& weights, const EntryPages& keys,
                                   int rate, float softmax_scale, const StepMeta& meta,
                                   Tensor selected) = 0;

  // Shared-KV attention with sinks (dsv4.md "Attention"). q act [T, H, d];
  // kv act [T, d] are this step's keys (= values); earlier keys of the window
  // come from params.window_ring. out act [T, H, d] (not yet un-roped).
  virtual absl::Status Attention(const Tensor& q, const Tensor& kv, const AttentionParams& params,
                                 const StepMeta& meta, Tensor out) = 0;

  // Writes each sequence's last min(len, W) kv rows into ring[slot][pos % W].
  // Call after every Attention of the layer has read the ring.
  virtual absl::Status WindowUpdate(const Tensor& kv, Tensor ring, const StepMeta& meta) = 0;

  // ---- MoE ------------------------------------------------------------------
  // logits f32 [T, E] -> s = sqrt(softplus(logits)). Top-k mode (tid2eid
  // empty): idx = topk(s + bias, k). Hash mode: idx = tid2eid[token_ids[t]]
  // (tid2eid i32 [V, k], token_ids i32 [T]). w = s[idx] / (sum + 1e-20) * scaling.
  // idx i32 [T, k], w f32 [T, k].
  virtual absl::Status Route(const Tensor& logits, const Tensor& bias, const Tensor& tid2eid,
                             const Tensor& token_ids, float routed_scaling, Tensor idx,
                             Tensor w) = 0;

  // out[t] = sum_k w[t,k] * expert_{idx[t,k]}(x[t]), clamped SwiGLU experts.
  // x act [T, D]; out act [T, D] (overwritten).
  virtual absl::Status MoeExperts(const Tensor& x, const Tensor& idx, const Tensor& w,
                                  const ExpertWeights& experts, float swiglu_limit, Tensor out) = 0;

  // ---- MoE over ranks (expert parallelism, docs/expert-parallel.md) ------------
  // The experts this rank holds over the rows dispatched to it. x act [R*cap, D];
  // experts i32 [R*cap, k] global ids, -1 where another rank holds the choice;
  // counts i32 [R] (source s owns rows [s*cap, s*cap + counts[s])); `local` the
  // rank's experts, stacked from global id first_expert. Writes one unweighted
  // output row per (row, choice) pair into out act [P, D] (the combine send
  // buffer), grouped by expert, with pair_dst i32 [P] = row * k + choice and
  // pair_count i32 [1]. Default: UNIMPLEMENTED.
  virtual absl::Status MoeExpertPairs(const Tensor& x, const Tensor& experts, const Tensor& counts,
                                      int first_expert, const ExpertWeights& local,
                                      float swiglu_limit, Tensor out, Tensor pair_dst,
                                      Tensor pair_count);
  // out[t] = sum_i w[t,i] * y[t,i,:], in increasing expert id idx[t,i] (ties in
  // choice order): what MoeExperts computes, given every choice's output.
  // y act [T, k, D]; idx i32 / w f32 [T, k]; out act [T, D]. Default: UNIMPLEMENTED.
  virtual absl::Status MoeWeightedSum(const Tensor& y, const Tensor& idx, const Tensor& w,
                                      Tensor out);

  // ---- the expert exchange's data movement (engine/parallel/in_process_exchange.h) --
  // Row t of x (act [T, D], T >= 0) goes to to[r] for every rank r that
  // owns (owner i32 [E]: rank of each expert) any of idx[t, :] (i32 [T, k]),
  // rows in increasing t, with its k ids (-1 where r does not hold the
  // choice) and t; to[r].count = rows sent to r. The regions may be another
  // backend's memory (EnablePeerAccess). rows_scratch i32 [>= T * R] (the
  // device's row plan). Default: UNIMPLEMENTED.
  virtual absl::Status ExchangeDispatch(const Tensor& x, const Tensor& idx, const Tensor& owner,
                                        const std::vector<ExchangeRegion>& to, Tensor rows_scratch);
  // Pair p < pair_count of out (act [P, D]) goes to combined[s] (act
  // [cap, k, D] of source rank s = row / cap) at src_token[row] * k + choice,
  // where pair_dst[p] = row * k + choice names a row this rank received
  // (src_token i32 [R * cap]; row % cap < counts[s], counts i32 [R]).
  // Default: UNIMPLEMENTED.
  virtual absl::Status ExchangeCombine(const Tensor& out, const Tensor& pair_dst,
                                       const Tensor& pair_count, const Tensor& src_token,
                                       const Tensor& counts, const std::vector<Tensor>& combined);
  // Counts this rank's meeting (calls += 1), posts it into every rank's
  // inbox, then waits, on the device, until every rank has posted it: what
  // this rank's ops wrote before is visible to the peers' ops after theirs
  // (and the other way), without the host. Gives up when control[0] is set
  // or after timeout_ns (setting control[1 + rank]); the host reads both
  // after the step. Default: UNIMPLEMENTED (the exchange then meets on the host).
  virtual absl::Status ExchangeMeet(const RankMeeting& m);
  // Lets this backend's ops read and write `peer`'s memory (ranks in one
  // process). Default: OK when both are the same device, else UNIMPLEMENTED.
  virtual absl::Status EnablePeerAccess(const Backend& peer);
};

// A tensor of `dims` on `backend` with every element `fill` (float dtypes
// or i32), its buffer appended to `owner`.
absl::StatusOr<Tensor> AllocateFilled(Backend& backend, DType dtype,
                                      std::initializer_list<int64_t> dims, float fill,
                                      std::vector<Buffer>* owner);

// What a device backend does differently from its defaults (each takes what
// applies to it).
struct BackendOptions {
  // CUDA: FP8 products of at least this many rows quantize their activations
  // to e4m3 (1x128 groups, as the released checkpoints' reference does) and
  // run cuBLASLt's block-scaled FP8 GEMM (W8A8) on their rows in multiples
  // of 16 (the rest, smaller products, and all when 0, keep the activations
  // bf16: W8A16).
  int w8a8_min_rows = 0;
};

// The CPU backend (always available).
struct CpuBackendOptions {
  // Quantize the inputs of FP8/FP4 products to e4m3 in 1x128 groups, as the
  // released checkpoints' reference (and a W8A8/W4A8 GPU path) does; off, the
  // CPU runs the dequantized weights on unquantized activations.
  bool emulate_activation_quant = false;
};
std::unique_ptr<Backend> CreateCpuBackend(const CpuBackendOptions& options = {});

}  // namespace moegraph
