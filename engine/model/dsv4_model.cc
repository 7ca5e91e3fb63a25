#include "engine/model/dsv4_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "engine/model/dsv4_tensors.h"
#include "engine/model/weight_source.h"
#include "engine/parallel/expert_exchange.h"
#include "engine/parallel/expert_parallel_moe.h"
#include "engine/parallel/residual_handoff.h"
#include "engine/sampling/device_row.h"

namespace moegraph {

// A compressor's weights (the main one of CSA/HCA layers, or an indexer's).
struct CompressorWeights {
  Weight wkv, wgate;  // [cw, D]
  Tensor ape;         // f32 [rate, cw]
  Tensor norm;        // f32 [width]
};

struct Dsv4Model::Layer {
  AttnKind kind = AttnKind::kSliding;
  MlpKind mlp = MlpKind::kMoe;
  int layer_of_kind = 0;
  Tensor attn_norm, ffn_norm;
  Tensor hc_attn_fn, hc_attn_base, hc_attn_scale;
  Tensor hc_ffn_fn, hc_ffn_base, hc_ffn_scale;
  Weight wq_a, wq_b, wkv, wo_a, wo_b;
  Tensor q_norm, kv_norm, sinks;
  CompressorWeights compressor;        // CSA / HCA
  CompressorWeights index_compressor;  // CSA
  Weight index_wq_b, index_weights_proj, gate;
  Tensor gate_bias, tid2eid;
  ExpertWeights experts;
  Weight shared_w1, shared_w2, shared_w3;
};

// Per-step activations sized for max_step_tokens (T) rows.
struct Dsv4Model::Activations {
  Tensor X, X2;                // [T, n, D]
  Tensor x_in, h, y;           // [T, D]
  Tensor post, comb;           // f32 [T, n], [T, n, n]
  Tensor q_res;                // [T, q_lora]
  Tensor q, attn;              // [T, H, d]
  Tensor kv;                   // [T, d]
  Tensor o_a;                  // [T, g * o_lora]
  Tensor comp_c, comp_z;       // [T, 2d]
  Tensor index_c, index_z;     // [T, 2c]
  Tensor index_q;              // [T, nI, c]
  Tensor index_w;              // f32 [T, nI]
  Tensor selected;             // i32 [T, index_topk]
  Tensor router_logits;        // f32 [T, E]
  Tensor route_idx, route_w;   // i32 / f32 [T, k]
  Tensor moe_out, shared_out;  // [T, D]
  Tensor shared_a, shared_b;   // [T, F_shared]
  Tensor head_x;               // [T, n * D]
  Tensor head_y;               // [T, D]
  Tensor logits;               // f32 [max_rows, V]
  Tensor sampled;              // i32 [SampleOutputWords(max_rows)]: ids, logprob records
};

// The step's inputs as one block of i32 words, at fixed offsets: two pinned
// host sets (double-buffered: the host fills one while the other's copy may
// be in flight) and one device copy that every op, and every captured graph,
// reads. Written by Stage, copied by Upload.
struct Dsv4Model::Staging {
  int64_t ids = 0;     // [T] token ids
  int64_t pos = 0;     // [T] token positions
  int64_t seq = 0;     // [T] token -> sequence
  int64_t begin = 0;   // [T + 1] sequence token offsets
  int64_t slot = 0;    // [T] sequence slots
  int64_t start = 0;   // [T] sequence start positions
  int64_t rows = 0;    // [T] token index of each logits row
  int64_t feed = 0;    // [T] -1, or the last step's sampled row this token takes
  int64_t count = 0;   // [1] page-table pairs staged
  int64_t pairs = 0;   // [2 * pair_capacity] (index, page id)
  int64_t sample = 0;  // [max_rows * kSampleRowWords] cuda::SampleRowParams
  int64_t words = 0;
  int pair_capacity = 0;
  HostMemory host[2] = {HostMemory(nullptr, [](void*) {}), HostMemory(nullptr, [](void*) {})};
  HostMemory ids_host[2] = {HostMemory(nullptr, [](void*) {}), HostMemory(nullptr, [](void*) {})};
  Buffer device;
  int current = 1;      // the set Stage wrote last
  int ids_current = 1;  // the ids set DownloadIds wrote last
  std::vector<int32_t> pair_scratch;
  std::vector<bool> seen_slots;

  int32_t* set(int i) const { return static_cast<int32_t*>(host[i].get()); }
  Tensor dev(int64_t offset, int64_t n) const {
    return Tensor(static_cast<int32_t*>(device.data()) + offset, DType::kI32, {n});
  }
};

namespace {
// Fences of the staging protocol (Backend::kNumFences): the copy out of host
// set i, and the ids copy into pinned set i.
constexpr int kFenceStaged = 0;  // + set
constexpr int kFenceIds = 2;     // + set
constexpr int kSampleWords = cuda::kSampleRowWords;
}  // namespace

Dsv4Model::~Dsv4Model() = default;

absl::StatusOr<std::unique_ptr<Dsv4Model>> Dsv4Model::Create(
    Backend* backend, const WeightStore& weights, const ModelConfig& config, int max_step_tokens,
    int max_logit_rows, const ModelShard& shard) {
  if (!weights.has_data()) {
    return absl::InvalidArgumentError(
        absl::StrCat(weights.origin(), ": opened from headers only (no tensor data to load)"));
  }
  std::unique_ptr<WeightSource> source = CheckpointSource(weights, config);
  return Create(backend, *source, config, max_step_tokens, max_logit_rows, shard);
}

absl::StatusOr<std::unique_ptr<Dsv4Model>> Dsv4Model::Create(
    Backend* backend, WeightSource& weights, const ModelConfig& config, int max_step_tokens,
    int max_logit_rows, const ModelShard& shard) {
  if (max_step_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_step_tokens must be positive, got ", max_step_tokens));
  }
  if (max_logit_rows < 0 || max_logit_rows > max_step_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_logit_rows must be in [0, ", max_step_tokens, "], got ", max_logit_rows));
  }
  if (config.hc_mult <= 0 || config.num_layers <= 0 ||
      static_cast<int>(config.layer_types.size()) != config.num_layers ||
      static_cast<int>(config.mlp_types.size()) != config.num_layers) {
    return absl::InvalidArgumentError("model config: inconsistent layer counts");
  }
  if (config.num_heads % config.o_groups != 0) {
    return absl::InvalidArgumentError(
        "model config: num_attention_heads not divisible by o_groups");
  }
  for (const RopeTable* t : {&config.rope_main, &config.rope_compress}) {
    // transformers scales cos/sin by it; V4 configs force 1.0 (dsv4.md), and
    // the Rope op has no scale, so anything else is refused rather than wrong.
    if (t->attention_factor != 1.0) {
      return absl::UnimplementedError(absl::StrCat(
          "model config: rope attention_factor ", t->attention_factor, " (only 1.0 is supported)"));
    }
  }
  std::unique_ptr<Dsv4Model> m(new Dsv4Model());
  m->backend_ = backend;
  m->config_ = config;
  m->max_tokens_ = max_step_tokens;
  m->max_rows_ = max_logit_rows > 0 ? max_logit_rows : max_step_tokens;
  m->exchange_ = shard.exchange;
  m->shard_ = shard;
  if (shard.layers == LayerRange{}) m->shard_.layers = LayerRange{0, config.num_layers};
  const LayerRange& own = m->shard_.layers;
  if (own.first < 0 || own.first >= own.end || own.end > config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layers [", own.first, ", ", own.end,
                                                   ") outside the model's ", config.num_layers));
  }
  if (m->shard_.handoff == nullptr && own.count() != config.num_layers) {
    return absl::InvalidArgumentError("a block of the layers needs a residual handoff");
  }
  if (shard.exchange != nullptr) RETURN_IF_ERROR(shard.exchange->Bind(backend));
  if (shard.handoff != nullptr) RETURN_IF_ERROR(shard.handoff->Bind(backend));
  RETURN_IF_ERROR(m->LoadWeights(weights));
  RETURN_IF_ERROR(m->AllocateActivations());
  RETURN_IF_ERROR(m->AllocateStaging());
  return m;
}

absl::Status Dsv4Model::LoadWeights(WeightSource& source) {
  const ModelConfig& c = config_;
  layers_.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    Layer& L = layers_[l];
    L.kind = c.layer_types[l];
    L.mlp = c.mlp_types[l];
    L.layer_of_kind = c.index_within_kind(l);
  }
  // Where each field goes (dsv4_tensors.h lists what is read, and in which order).
  auto tensor_of = [&](const TensorSpec& s) -> Tensor* {
    using F = TensorField;
    if (s.layer < 0) {
      switch (s.field) {
        case F::kEmbed:
          return &embed_;
        case F::kNorm:
          return &norm_;
        case F::kHcHeadFn:
          return &hc_head_fn_;
        case F::kHcHeadBase:
          return &hc_head_base_;
        case F::kHcHeadScale:
          return &hc_head_scale_;
        default:
          return nullptr;
      }
    }
    Layer& L = layers_[s.layer];
    switch (s.field) {
      case F::kAttnNorm:
        return &L.attn_norm;
      case F::kFfnNorm:
        return &L.ffn_norm;
      case F::kHcAttnFn:
        return &L.hc_attn_fn;
      case F::kHcAttnBase:
        return &L.hc_attn_base;
      case F::kHcAttnScale:
        return &L.hc_attn_scale;
      case F::kHcFfnFn:
        return &L.hc_ffn_fn;
      case F::kHcFfnBase:
        return &L.hc_ffn_base;
      case F::kHcFfnScale:
        return &L.hc_ffn_scale;
      case F::kQNorm:
        return &L.q_norm;
      case F::kKvNorm:
        return &L.kv_norm;
      case F::kSinks:
        return &L.sinks;
      case F::kCompApe:
        return &L.compressor.ape;
      case F::kCompNorm:
        return &L.compressor.norm;
      case F::kIndexCompApe:
        return &L.index_compressor.ape;
      case F::kIndexCompNorm:
        return &L.index_compressor.norm;
      case F::kGateBias:
        return &L.gate_bias;
      case F::kTid2eid:
        return &L.tid2eid;
      default:
        return nullptr;
    }
  };
  auto weight_of = [&](const TensorSpec& s) -> Weight* {
    using F = TensorField;
    if (s.layer < 0) return s.field == F::kHead ? &head_ : nullptr;
    Layer& L = layers_[s.layer];
    switch (s.field) {
      case F::kWqA:
        return &L.wq_a;
      case F::kWqB:
        return &L.wq_b;
      case F::kWkv:
        return &L.wkv;
      case F::kWoA:
        return &L.wo_a;
      case F::kWoB:
        return &L.wo_b;
      case F::kCompWkv:
        return &L.compressor.wkv;
      case F::kCompWgate:
        return &L.compressor.wgate;
      case F::kIndexCompWkv:
        return &L.index_compressor.wkv;
      case F::kIndexCompWgate:
        return &L.index_compressor.wgate;
      case F::kIndexWqB:
        return &L.index_wq_b;
      case F::kIndexWeightsProj:
        return &L.index_weights_proj;
      case F::kGate:
        return &L.gate;
      case F::kExpertW1:
        return &L.experts.w1;
      case F::kExpertW2:
        return &L.experts.w2;
      case F::kExpertW3:
        return &L.experts.w3;
      case F::kSharedW1:
        return &L.shared_w1;
      case F::kSharedW2:
        return &L.shared_w2;
      case F::kSharedW3:
        return &L.shared_w3;
      default:
        return nullptr;
    }
  };

  std::vector<HostWeight> stack;  // the routed experts of one (layer, w) so far
  // The routed experts this model holds: all, or its rank's share.
  int first_expert = 0, end_expert = c.n_routed_experts;
  if (exchange_ != nullptr) {
    first_expert = exchange_->partition().first(exchange_->rank());
    end_expert = first_expert + exchange_->partition().count(exchange_->rank());
  }
  layer_bytes_.assign(c.num_layers, 0);
  // Bytes each upload adds, to the layer, the embedding or the head.
  size_t counted = 0;  // buffers attributed so far
  auto count = [&](const TensorSpec& spec) {
    size_t& to = spec.layer >= 0                     ? layer_bytes_[spec.layer]
                 : spec.field == TensorField::kEmbed ? embed_bytes_
                                                     : head_bytes_;
    for (; counted < weight_buffers_.size(); ++counted) to += weight_buffers_[counted].bytes();
  };
  for (const TensorSpec& spec : Dsv4TensorSpecs(c)) {
    if (spec.expert >= 0 && (spec.expert < first_expert || spec.expert >= end_expert)) continue;
    if (spec.layer >= 0 ? !shard_.layers.contains(spec.layer)
                        : (spec.field == TensorField::kEmbed ? !embeds() : !runs_head())) {
      continue;
    }
    if (spec.read != TensorRead::kMatrix) {
      Tensor* dst = tensor_of(spec);
      if (dst == nullptr) return absl::InternalError("dsv4_tensors: field without a tensor");
      ASSIGN_OR_RETURN(Tensor host, source.Vector(spec));
      ASSIGN_OR_RETURN(
          *dst, backend_->UploadWeight(host, spec.read == TensorRead::kTable, &weight_buffers_));
      count(spec);
      if (stack.empty()) source.Release();
      continue;
    }
    Weight* dst = weight_of(spec);
    if (dst == nullptr) return absl::InternalError("dsv4_tensors: field without a weight");
    // A matrix in whatever format the checkpoint stores it (weight_loader.h).
    ASSIGN_OR_RETURN(HostWeight host, source.Matrix(spec));
    if (spec.expert < 0) {
      ASSIGN_OR_RETURN(*dst, backend_->UploadMatrix(host, &weight_buffers_));
      count(spec);
      if (stack.empty()) source.Release();
      continue;
    }
    stack.push_back(host);
    if (spec.expert + 1 == end_expert) {
      ASSIGN_OR_RETURN(*dst, backend_->UploadStackedMatrices(stack, &weight_buffers_));
      count(spec);
      stack.clear();
      source.Release();
    }
  }

  // Rotary tables, computed as transformers does (model_config.h).
  for (auto [table, out] :
       {std::pair{&c.rope_main, &rope_main_}, std::pair{&c.rope_compress, &rope_compress_}}) {
    std::vector<float> inv = RopeInvFreq(*table, c.rope_dim);
    Tensor host(inv.data(), DType::kF32, {static_cast<int64_t>(inv.size())});
    ASSIGN_OR_RETURN(*out, backend_->UploadWeight(host, false, &weight_buffers_));
  }
  return absl::OkStatus();
}

std::vector<Tensor*> Dsv4Model::PlanActivations(const ModelConfig& c, int64_t T, int64_t max_rows,
                                                DType act, Activations* out) {
  const int64_t D = c.hidden_size, n = c.hc_mult, H = c.num_heads, d = c.head_dim;
  const int64_t nI = std::max(1, c.index_n_heads), ci = std::max(1, c.index_head_dim);
  const int64_t Fs = static_cast<int64_t>(c.moe_intermediate_size) * c.n_shared_experts;
  Activations& A = *out;
  std::vector<Tensor*> tensors;
  auto plan = [&](Tensor* t, DType type, std::initializer_list<int64_t> dims) {
    *t = Tensor(nullptr, type, dims);
    tensors.push_back(t);
  };
  plan(&A.X, act, {T, n, D});
  plan(&A.X2, act, {T, n, D});
  plan(&A.x_in, act, {T, D});
  plan(&A.h, act, {T, D});
  plan(&A.y, act, {T, D});
  plan(&A.post, DType::kF32, {T, n});
  plan(&A.comb, DType::kF32, {T, n, n});
  plan(&A.q_res, act, {T, c.q_lora_rank});
  plan(&A.q, act, {T, H, d});
  plan(&A.attn, act, {T, H, d});
  plan(&A.kv, act, {T, d});
  plan(&A.o_a, act, {T, static_cast<int64_t>(c.o_groups) * c.o_lora_rank});
  plan(&A.comp_c, act, {T, 2 * d});
  plan(&A.comp_z, act, {T, 2 * d});
  plan(&A.index_c, act, {T, 2 * ci});
  plan(&A.index_z, act, {T, 2 * ci});
  plan(&A.index_q, act, {T, nI, ci});
  plan(&A.index_w, DType::kF32, {T, nI});
  plan(&A.selected, DType::kI32, {T, std::max(1, c.index_topk)});
  plan(&A.router_logits, DType::kF32, {T, c.n_routed_experts});
  plan(&A.route_idx, DType::kI32, {T, c.num_experts_per_tok});
  plan(&A.route_w, DType::kF32, {T, c.num_experts_per_tok});
  plan(&A.moe_out, act, {T, D});
  plan(&A.shared_out, act, {T, D});
  plan(&A.shared_a, act, {T, Fs});
  plan(&A.shared_b, act, {T, Fs});
  plan(&A.head_x, act, {T, n * D});
  plan(&A.head_y, act, {T, D});
  plan(&A.logits, DType::kF32, {max_rows, c.vocab_size});
  plan(&A.sampled, DType::kI32, {cuda::SampleOutputWords(max_rows)});
  return tensors;
}

size_t Dsv4Model::DeviceBufferBytes(const ModelConfig& config, int max_step_tokens,
                                    int max_logit_rows, DType activation_dtype) {
  Activations a;
  size_t bytes = 0;
  for (const Tensor* t :
       PlanActivations(config, max_step_tokens, max_logit_rows, activation_dtype, &a)) {
    bytes += t->bytes();
  }
  Staging staging;
  LayOutStaging(max_step_tokens, max_logit_rows, &staging);
  return bytes + static_cast<size_t>(staging.words) * sizeof(int32_t);
}

absl::Status Dsv4Model::AllocateActivations() {
  act_ = std::make_unique<Activations>();
  for (Tensor* t :
       PlanActivations(config_, max_tokens_, max_rows_, backend_->activation_dtype(), act_.get())) {
    ASSIGN_OR_RETURN(Buffer buf, backend_->Allocate(t->bytes()));
    t->data = buf.data();
    activation_buffers_.push_back(std::move(buf));
  }
  return absl::OkStatus();
}

void Dsv4Model::LayOutStaging(int64_t T, int64_t max_rows, Staging* staging) {
  Staging& S = *staging;
  // Pages a step can newly map, per kind: each chunk's span plus the page it
  // starts in, so at most 2T per kind.
  S.pair_capacity = static_cast<int>(kNumEntryKinds * 2 * T + 8);
  int64_t at = 0;
  auto take = [&](int64_t n) {
    const int64_t o = at;
    at += (n + 3) & ~int64_t{3};  // 16-byte aligned sections
    return o;
  };
  S.ids = take(T);
  S.pos = take(T);
  S.seq = take(T);
  S.begin = take(T + 1);
  S.slot = take(T);
  S.start = take(T);
  S.rows = take(T);
  S.feed = take(T);
  S.count = take(1);
  S.pairs = take(2 * int64_t{S.pair_capacity});
  S.sample = take(max_rows * kSampleWords);
  S.words = at;
}

absl::Status Dsv4Model::AllocateStaging() {
  staging_ = std::make_unique<Staging>();
  Staging& S = *staging_;
  LayOutStaging(max_tokens_, max_rows_, &S);
  for (int i = 0; i < 2; ++i) {
    ASSIGN_OR_RETURN(S.host[i], backend_->AllocateHost(S.words * sizeof(int32_t)));
    std::memset(S.host[i].get(), 0, S.words * sizeof(int32_t));
    ASSIGN_OR_RETURN(S.ids_host[i],
                     backend_->AllocateHost(cuda::SampleOutputWords(max_rows_) * sizeof(int32_t)));
  }
  ASSIGN_OR_RETURN(S.device, backend_->Allocate(S.words * sizeof(int32_t)));
  S.pair_scratch.reserve(2 * S.pair_capacity);
  return absl::OkStatus();
}

absl::StatusOr<Tensor> Dsv4Model::AllLogits(int rows) {
  Tensor t(nullptr, DType::kF32, {rows, config_.vocab_size});
  if (all_logits_buffer_.bytes() < t.bytes()) {
    all_logits_buffer_.Reset();  // the backend's free waits for queued work
    ASSIGN_OR_RETURN(all_logits_buffer_, backend_->Allocate(t.bytes()));
  }
  t.data = all_logits_buffer_.data();
  return t;
}

absl::Status Dsv4Model::AttentionBlock(int l, const StepMeta& meta, SequenceState* state) {
  const ModelConfig& c = config_;
  const Layer& L = layers_[l];
  Activations& A = *act_;
  const int64_t T = meta.num_tokens, H = c.num_heads, d = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const Tensor& rope = L.kind == AttnKind::kSliding ? rope_main_ : rope_compress_;
  Backend& b = *backend_;
  Tensor h = A.h.rows(0, T);

  // Queries: low-rank, normed, per-head unweighted rms, roped.
  Tensor q_res = A.q_res.rows(0, T);
  RETURN_IF_ERROR(b.Linear(h, L.wq_a, q_res));
  RETURN_IF_ERROR(b.RmsNorm(q_res, L.q_norm, eps, q_res));
  Tensor q = A.q.rows(0, T);
  RETURN_IF_ERROR(b.Linear(q_res, L.wq_b, q.view({T, H * d})));
  RETURN_IF_ERROR(b.RmsNorm(q.view({T * H, d}), Tensor(), eps, q.view({T * H, d})));
  RETURN_IF_ERROR(b.Rope(q, meta.token_pos, rope, c.rope_dim, false));
  // The single shared key/value head.
  Tensor kv = A.kv.rows(0, T);
  RETURN_IF_ERROR(b.Linear(h, L.wkv, kv));
  RETURN_IF_ERROR(b.RmsNorm(kv, L.kv_norm, eps, kv));
  RETURN_IF_ERROR(b.Rope(kv.view({T, 1, d}), meta.token_pos, rope, c.rope_dim, false));

  AttentionParams ap;
  ap.window = c.sliding_window;
  ap.scale = 1.0f / std::sqrt(static_cast<float>(d));
  ap.sinks = L.sinks;
  ap.window_ring = state->window_ring(l);
  if (L.kind != AttnKind::kSliding) {
    const bool csa = L.kind == AttnKind::kCsa;
    const int rate = csa ? c.csa_rate : c.hca_rate;
    const int64_t cw = csa ? 2 * d : d;
    CompressorParams cp;
    cp.rate = rate;
    cp.overlap = csa;
    cp.width = static_cast<int>(d);
    cp.rope_dim = c.rope_dim;
    cp.eps = eps;
    cp.ape = L.compressor.ape;
    cp.norm_weight = L.compressor.norm;
    cp.inv_freq = rope_compress_;
    cp.ring = state->compressor_ring(l, false);
    cp.entries = state->entries(csa ? EntryKind::kCsa : EntryKind::kHca, L.layer_of_kind);
    Tensor cc = A.comp_c.view({max_tokens_, cw}).rows(0, T);
    Tensor cz = A.comp_z.view({max_tokens_, cw}).rows(0, T);
    RETURN_IF_ERROR(b.Linear(h, L.compressor.wkv, cc));
    RETURN_IF_ERROR(b.Linear(h, L.compressor.wgate, cz));
    RETURN_IF_ERROR(b.CompressorUpdate(cc, cz, cp, meta));
    ap.entries = cp.entries;
    ap.rate = rate;
    if (csa) {
      const int64_t nI = c.index_n_heads, ci = c.index_head_dim;
      CompressorParams ip = cp;
      ip.width = static_cast<int>(ci);
      ip.ape = L.index_compressor.ape;
      ip.norm_weight = L.index_compressor.norm;
      ip.ring = state->compressor_ring(l, true);
      ip.entries = state->entries(EntryKind::kCsaIndex, L.layer_of_kind);
      Tensor ic = A.index_c.rows(0, T);
      Tensor iz = A.index_z.rows(0, T);
      RETURN_IF_ERROR(b.Linear(h, L.index_compressor.wkv, ic));
      RETURN_IF_ERROR(b.Linear(h, L.index_compressor.wgate, iz));
      RETURN_IF_ERROR(b.CompressorUpdate(ic, iz, ip, meta));
      Tensor iq = A.index_q.rows(0, T);
      RETURN_IF_ERROR(b.Linear(q_res, L.index_wq_b, iq.view({T, nI * ci})));
      RETURN_IF_ERROR(b.Rope(iq, meta.token_pos, rope_compress_, c.rope_dim, false));
      Tensor iw = A.index_w.rows(0, T);
      RETURN_IF_ERROR(b.Linear(h, L.index_weights_proj, iw));
      RETURN_IF_ERROR(b.Scale(iw, 1.0f / std::sqrt(static_cast<float>(nI)), iw));
      Tensor sel = A.selected.rows(0, T);
      const EntryPages keys = ip.entries;
      const float scale = 1.0f / std::sqrt(static_cast<float>(ci));
      RETURN_IF_ERROR(Eager(
          [&b, iq, iw, keys, rate, scale, sel](const StepMeta& m) {
            return b.IndexerTopK(iq, iw, keys, rate, scale, m, sel);
          },
          meta));
      ap.selected = sel;
    }
  }
  Tensor attn = A.attn.rows(0, T);
  RETURN_IF_ERROR(Eager(
      [&b, q, kv, ap, attn](const StepMeta& m) { return b.Attention(q, kv, ap, m, attn); }, meta));
  RETURN_IF_ERROR(b.WindowUpdate(kv, state->window_ring(l), meta));
  RETURN_IF_ERROR(b.Rope(attn, meta.token_pos, rope, c.rope_dim, true));
  Tensor o_a = A.o_a.rows(0, T);
  RETURN_IF_ERROR(b.GroupedLinear(attn.view({T, H * d}), L.wo_a, c.o_groups, o_a));
  return b.Linear(o_a, L.wo_b, A.y.rows(0, T));
}

absl::Status Dsv4Model::MoeBlock(int l, const Tensor& token_ids) {
  const ModelConfig& c = config_;
  const Layer& L = layers_[l];
  Activations& A = *act_;
  Backend& b = *backend_;
  const int64_t T = token_ids.dim(0);
  const float limit = static_cast<float>(c.swiglu_limit);
  Tensor h = A.h.rows(0, T);
  Tensor logits = A.router_logits.rows(0, T);
  RETURN_IF_ERROR(b.Linear(h, L.gate, logits));
  Tensor idx = A.route_idx.rows(0, T), w = A.route_w.rows(0, T);
  RETURN_IF_ERROR(b.Route(logits, L.gate_bias, L.tid2eid, token_ids,
                          static_cast<float>(c.routed_scaling_factor), idx, w));
  // The shared expert reads only h: it runs on the side stream, beside the
  // routed experts (and their exchange), joined before the sum.
  Tensor sa = A.shared_a.rows(0, T), sb = A.shared_b.rows(0, T);
  Tensor shared = A.shared_out.rows(0, T);
  RETURN_IF_ERROR(b.BeginSide());
  absl::Status s = b.Linear(h, L.shared_w1, sa);
  if (s.ok()) s = b.Linear(h, L.shared_w3, sb);
  if (s.ok()) s = b.SwiGlu(sa, sb, limit, sa);
  if (s.ok()) s = b.Linear(sa, L.shared_w2, shared);
  RETURN_IF_ERROR(b.EndSide());
  Tensor routed = A.moe_out.rows(0, T);
  if (s.ok()) {
    s = exchange_ != nullptr
            ? ExpertParallelRouted(b, *exchange_, h, idx, w, L.experts, limit, routed)
            : b.MoeExperts(h, idx, w, L.experts, limit, routed);
  }
  RETURN_IF_ERROR(b.JoinSide());
  RETURN_IF_ERROR(s);
  return b.Add(routed, shared, A.y.rows(0, T));
}

absl::Status Dsv4Model::Forward(const StepPlan& plan, const ForwardOptions& options,
                                SequenceState* state, std::vector<float>* logits) {
  StageOptions so;
  so.all_logits = options.all_logits;
  so.pad_tokens = options.pad_tokens;
  ASSIGN_OR_RETURN(const StepShape shape, Stage(plan, so, state));
  RETURN_IF_ERROR(Upload());
  RETURN_IF_ERROR(Run(shape, state, options.hidden));
  if (options.hidden != nullptr && shape.tokens > plan.num_tokens) {
    // The padding rows come after the plan's.
    const size_t keep =
        static_cast<size_t>(plan.num_tokens) * config_.hc_mult * config_.hidden_size;
    for (std::vector<float>& streams : *options.hidden) streams.resize(keep);
  }
  return DownloadLogits(shape, logits);
}

absl::StatusOr<StepShape> Dsv4Model::Stage(const StepPlan& plan, const StageOptions& options,
                                           SequenceState* state) {
  const ModelConfig& c = config_;
  const int T = plan.num_tokens;
  const int S = static_cast<int>(plan.seqs.size());
  if (T < 0 || T > max_tokens_) {
    return absl::InvalidArgumentError(
        absl::StrCat("step carries ", T, " tokens; allowed 1..", max_tokens_));
  }
  // An empty plan is allowed only padded (warm-up and capture at load).
  if (T == 0 ? options.pad_tokens <= 0 || S != 0 : S == 0 || plan.token_ids == nullptr) {
    return absl::InvalidArgumentError("step has no sequences or no token ids");
  }
  const int pad_to = std::max(options.pad_tokens, T);
  if (pad_to > max_tokens_) {
    return absl::InvalidArgumentError(
        absl::StrCat("step padded to ", pad_to, " tokens; allowed 1..", max_tokens_));
  }
  const int scratch = state->scratch_slot();
  if (pad_to > T && scratch < 0) {
    return absl::FailedPreconditionError("padded step without a scratch slot");
  }
  Staging& st = *staging_;
  const int set = 1 - st.current;
  // The copy that last read this set (two steps ago) must be done.
  RETURN_IF_ERROR(backend_->WaitFence(kFenceStaged + set));
  int32_t* w = st.set(set);
  int32_t* ids = w + st.ids;
  int32_t* token_pos = w + st.pos;
  int32_t* token_seq = w + st.seq;
  int32_t* seq_begin = w + st.begin;
  int32_t* seq_slot = w + st.slot;
  int32_t* seq_start = w + st.start;
  int32_t* logit_rows = w + st.rows;
  int32_t* feed = w + st.feed;
  auto* sample = reinterpret_cast<cuda::SampleRowParams*>(w + st.sample);

  // Slots seen in this plan (reused: no allocation on the step path).
  std::vector<bool>& seen = st.seen_slots;
  seen.assign(state->num_slots(), false);
  int cursor = 0, rows = 0, max_pos = 0;
  for (int s = 0; s < S; ++s) {
    const SeqChunk& ch = plan.seqs[s];
    if (ch.len <= 0 || ch.token_offset < 0 || ch.token_offset + ch.len > T) {
      return absl::InvalidArgumentError(absl::StrCat("seqs[", s, "]: tokens [", ch.token_offset,
                                                     ", +", ch.len, ") outside the step's ", T));
    }
    if (ch.slot < 0 || ch.slot >= state->num_slots() || seen[ch.slot]) {
      return absl::InvalidArgumentError(
          absl::StrCat("seqs[", s, "]: slot ", ch.slot, " invalid or repeated in the step"));
    }
    seen[ch.slot] = true;
    RETURN_IF_ERROR(state->PrepareChunk(ch.slot, ch.start_pos, ch.len));
    seq_begin[s] = cursor;
    seq_slot[s] = ch.slot;
    seq_start[s] = ch.start_pos;
    max_pos = std::max(max_pos, ch.start_pos + ch.len - 1);
    int fed_row = -1;
    if (ch.token_from_last_sample) {
      if (options.fed_rows != nullptr && embeds() && runs_head() && ch.len == 1)
        fed_row = (*options.fed_rows)[ch.slot];
      if (fed_row < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "seqs[", s, "]: token_from_last_sample, but slot ", ch.slot,
            " had no device-sampled row in the step before (or the chunk is not one token)"));
      }
    }
    for (int i = 0; i < ch.len; ++i) {
      const int32_t id = plan.token_ids[ch.token_offset + i];
      if (id < 0 || id >= c.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("seqs[", s, "]: token id ", id, " outside [0, ", c.vocab_size, ")"));
      }
      ids[cursor] = id;
      feed[cursor] = fed_row;
      token_pos[cursor] = ch.start_pos + i;
      token_seq[cursor] = s;
      if (options.all_logits) logit_rows[rows++] = cursor;
      ++cursor;
    }
    if (!options.all_logits && ch.want_logits) {
      if (rows >= max_rows_) {
        return absl::InvalidArgumentError(
            absl::StrCat("step asks for more than ", max_rows_, " logits rows"));
      }
      if (options.sample) {
        // No parameters (the host samples this row): greedy, ignored.
        static const sampling::SamplingParams kGreedy;
        absl::StatusOr<cuda::SampleRowParams> row =
            sampling::DeviceRow(ch.sampling ? *ch.sampling : kGreedy, ch.sample_index, ch.banned);
        if (!row.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat("seqs[", s, "]: ", row.status().message()));
        }
        sample[rows] = *row;
      }
      logit_rows[rows++] = cursor - 1;
    }
  }
  if (cursor != T) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunks cover ", cursor, " tokens but the step carries ", T));
  }
  const int real_rows = rows;
  // Padding: scratch-slot rows at position 0 (they read and write only the
  // scratch slot's state, whose pages are mapped at load).
  int seqs = S;
  if (pad_to > T) {
    auto pad_seq = [&](int len) {
      seq_begin[seqs] = cursor;
      seq_slot[seqs] = scratch;
      seq_start[seqs] = 0;
      for (int i = 0; i < len; ++i) {
        ids[cursor] = 0;
        feed[cursor] = -1;
        token_pos[cursor] = i;
        token_seq[cursor] = seqs;
        ++cursor;
      }
      // Length-shaped launches must cover the padding's positions too (an
      // idle rank's padded step has no others).
      max_pos = std::max(max_pos, len - 1);
      ++seqs;
    };
    if (options.decode_rows) {
      while (cursor < pad_to) pad_seq(1);
    } else {
      pad_seq(pad_to - T);
    }
  }
  seq_begin[seqs] = cursor;
  const int pad_rows = options.all_logits ? rows : std::min(max_rows_, options.pad_rows);
  for (; rows < pad_rows; ++rows) {
    logit_rows[rows] = options.decode_rows ? rows : 0;
    if (options.sample) sample[rows] = cuda::SampleRowParams{};
  }
  st.pair_scratch.clear();
  state->TakeTableChanges(&st.pair_scratch);
  if (st.pair_scratch.size() > 2 * static_cast<size_t>(st.pair_capacity)) {
    return absl::InternalError(absl::StrCat("step maps ", st.pair_scratch.size() / 2,
                                            " pages; staging holds ", st.pair_capacity));
  }
  w[st.count] = static_cast<int32_t>(st.pair_scratch.size() / 2);
  std::copy(st.pair_scratch.begin(), st.pair_scratch.end(), w + st.pairs);
  for (const SeqChunk& ch : plan.seqs) state->Advance(ch.slot, ch.len);
  st.current = set;

  StepShape shape;
  shape.tokens = cursor;
  shape.seqs = seqs;
  shape.rows = rows;
  shape.real_rows = real_rows;
  shape.max_position =
      options.max_position >= 0 ? std::max(options.max_position, max_pos) : max_pos;
  shape.sample = options.sample && !options.all_logits;
  shape.all_logits = options.all_logits;
  shape.feed = options.fed_rows != nullptr && embeds() && runs_head();
  return shape;
}

absl::Status Dsv4Model::Upload() {
  Staging& st = *staging_;
  RETURN_IF_ERROR(
      backend_->Upload(st.device.data(), st.set(st.current), st.words * sizeof(int32_t)));
  return backend_->RecordFence(kFenceStaged + st.current);
}

absl::Status Dsv4Model::Run(const StepShape& shape, SequenceState* state,
                            std::vector<std::vector<float>>* hidden) {
  const ModelConfig& c = config_;
  const int T = shape.tokens, rows = shape.rows;
  Backend& b = *backend_;
  Activations& A = *act_;
  const Staging& st = *staging_;
  // Page-table changes first: this step's chunks may emit into new pages.
  RETURN_IF_ERROR(b.ScatterPairs(state->table_buffer(), st.dev(st.pairs, 2 * st.pair_capacity),
                                 st.dev(st.count, 1)));
  const StepMeta sm = MetaFor(shape);
  Tensor token_ids = st.dev(st.ids, T);
  if (shape.feed) {
    // Pipelined steps: tokens sampled by the step before, still on the device
    // (one stream: that step's ids copy is ordered before this step's sampler
    // rewrites them).
    RETURN_IF_ERROR(b.TakeSampledIds(token_ids, st.dev(st.feed, T),
                                     Tensor(A.sampled.data, DType::kI32, {max_rows_})));
  }

  const int64_t n = c.hc_mult, D = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float hc_eps = static_cast<float>(c.hc_eps);
  Tensor X = A.X.rows(0, T), X2 = A.X2.rows(0, T);
  auto capture = [&](const Tensor& streams) -> absl::Status {
    if (hidden == nullptr) return absl::OkStatus();
    std::vector<float> host(static_cast<size_t>(T) * n * D);
    if (streams.dtype == DType::kF32) {
      RETURN_IF_ERROR(b.Download(host.data(), streams.data, host.size() * sizeof(float)));
    } else {
      Tensor f32(nullptr, DType::kF32, {T, n * D});
      ASSIGN_OR_RETURN(Buffer buf, b.Allocate(f32.bytes()));
      f32.data = buf.data();
      RETURN_IF_ERROR(b.Convert(streams.view({T, n * D}), f32));
      RETURN_IF_ERROR(b.Download(host.data(), f32.data, host.size() * sizeof(float)));
    }
    hidden->push_back(std::move(host));
    return absl::OkStatus();
  };
  if (hidden) hidden->clear();

  if (embeds()) {
    RETURN_IF_ERROR(b.Embed(token_ids, embed_, X));
    RETURN_IF_ERROR(capture(X));
  } else {
    RETURN_IF_ERROR(shard_.handoff->Receive(X));
  }
  Tensor x_in = A.x_in.rows(0, T), h = A.h.rows(0, T), y = A.y.rows(0, T);
  Tensor post = A.post.rows(0, T), comb = A.comb.rows(0, T);
  for (int l = shard_.layers.first; l < shard_.layers.end; ++l) {
    const Layer& L = layers_[l];
    RETURN_IF_ERROR(b.HcPreNorm(X, L.hc_attn_fn, L.hc_attn_base, L.hc_attn_scale,
                                c.hc_sinkhorn_iters, hc_eps, eps, L.attn_norm, x_in, post, comb,
                                h));
    RETURN_IF_ERROR(AttentionBlock(l, sm, state));
    RETURN_IF_ERROR(b.HcPost(X, y, post, comb, X2));
    std::swap(X, X2);
    RETURN_IF_ERROR(b.HcPreNorm(X, L.hc_ffn_fn, L.hc_ffn_base, L.hc_ffn_scale, c.hc_sinkhorn_iters,
                                hc_eps, eps, L.ffn_norm, x_in, post, comb, h));
    RETURN_IF_ERROR(MoeBlock(l, token_ids));
    RETURN_IF_ERROR(b.HcPost(X, y, post, comb, X2));
    std::swap(X, X2);
    RETURN_IF_ERROR(capture(X));
  }
  if (!runs_head()) return shard_.handoff->Send(X);

  if (rows > 0) {
    Tensor sel = st.dev(st.rows, rows);
    Tensor hx = A.head_x.rows(0, rows);
    RETURN_IF_ERROR(b.GatherRows(X.view({T, n * D}), sel, hx));
    Tensor hy = A.head_y.rows(0, rows);
    RETURN_IF_ERROR(b.HcHead(hx.view({rows, n, D}), hc_head_fn_, hc_head_base_, hc_head_scale_,
                             hc_eps, eps, hy));
    RETURN_IF_ERROR(b.RmsNorm(hy, norm_, eps, hy));
    Tensor lg;
    if (shape.all_logits) {
      ASSIGN_OR_RETURN(lg, AllLogits(rows));
    } else {
      lg = A.logits.rows(0, rows);
    }
    RETURN_IF_ERROR(b.Linear(hy, head_, lg));
    if (shape.sample) {
      Tensor params(static_cast<int32_t*>(st.device.data()) + st.sample, DType::kI32,
                    {rows, kSampleWords});
      // The ids, then the rows' logprob records (written where asked).
      RETURN_IF_ERROR(b.Sample(
          lg, params, Tensor(A.sampled.data, DType::kI32, {cuda::SampleOutputWords(rows)})));
    }
  }
  return absl::OkStatus();
}

int Dsv4Model::routed_experts_loaded() const {
  const Layer& first = layers_[shard_.layers.first];
  if (first.experts.w1.empty()) return 0;
  return static_cast<int>(first.experts.w1.data.dim(0));
}

size_t Dsv4Model::weight_bytes() const {
  size_t bytes = 0;
  for (const Buffer& buf : weight_buffers_) bytes += buf.bytes();
  return bytes;
}

absl::Status Dsv4Model::RunIdle() {
  if (exchange_ == nullptr) return absl::FailedPreconditionError("RunIdle without an exchange");
  const float limit = static_cast<float>(config_.swiglu_limit);
  Tensor none = act_->h.rows(0, 0);
  for (int l = shard_.layers.first; l < shard_.layers.end; ++l) {
    const Layer& L = layers_[l];
    RETURN_IF_ERROR(ExpertParallelRouted(*backend_, *exchange_, none, act_->route_idx.rows(0, 0),
                                         act_->route_w.rows(0, 0), L.experts, limit,
                                         act_->moe_out.rows(0, 0)));
  }
  return absl::OkStatus();
}

StepMeta Dsv4Model::MetaFor(const StepShape& shape) const {
  const Staging& st = *staging_;
  StepMeta sm;
  sm.num_tokens = shape.tokens;
  sm.num_seqs = shape.seqs;
  sm.token_pos = st.dev(st.pos, shape.tokens);
  sm.token_seq = st.dev(st.seq, shape.tokens);
  sm.seq_begin = st.dev(st.begin, shape.seqs + 1);
  sm.seq_slot = st.dev(st.slot, shape.seqs);
  sm.seq_start_pos = st.dev(st.start, shape.seqs);
  sm.max_position = shape.max_position;
  return sm;
}

absl::Status Dsv4Model::Eager(std::function<absl::Status(const StepMeta&)> op,
                              const StepMeta& meta) {
  if (capturing_ == nullptr) return op(meta);
  // Close the stretch captured so far; the op runs at every replay instead.
  ASSIGN_OR_RETURN(const int graph, backend_->EndGraphCapture());
  capturing_->graphs.push_back(graph);
  capturing_->eager.push_back(std::move(op));
  return backend_->BeginGraphCapture();
}

absl::StatusOr<std::unique_ptr<Dsv4Model::Pieces>> Dsv4Model::CapturePieces(const StepShape& shape,
                                                                            SequenceState* state) {
  auto pieces = std::make_unique<Pieces>();
  RETURN_IF_ERROR(backend_->BeginGraphCapture());
  capturing_ = pieces.get();
  absl::Status run = Run(shape, state);
  capturing_ = nullptr;
  absl::StatusOr<int> last = backend_->EndGraphCapture();
  RETURN_IF_ERROR(run);
  if (!last.ok()) return last.status();
  pieces->graphs.push_back(*last);
  return pieces;
}

absl::Status Dsv4Model::ReplayPieces(const Pieces& pieces, const StepShape& shape) {
  const StepMeta meta = MetaFor(shape);
  for (size_t i = 0; i < pieces.graphs.size(); ++i) {
    RETURN_IF_ERROR(backend_->LaunchGraph(pieces.graphs[i]));
    if (i < pieces.eager.size()) RETURN_IF_ERROR(pieces.eager[i](meta));
  }
  return absl::OkStatus();
}

absl::Status Dsv4Model::DownloadLogits(const StepShape& shape, std::vector<float>* logits) {
  const int rows = shape.all_logits ? shape.rows : shape.real_rows;
  if (rows == 0 || !runs_head()) return absl::OkStatus();
  Tensor lg;
  if (shape.all_logits) {
    ASSIGN_OR_RETURN(lg, AllLogits(rows));
  } else {
    lg = act_->logits.rows(0, rows);
  }
  const size_t old = logits->size();
  logits->resize(old + static_cast<size_t>(rows) * config_.vocab_size);
  return backend_->Download(logits->data() + old, lg.data, lg.bytes());
}

absl::StatusOr<int> Dsv4Model::DownloadIds(const StepShape& shape, bool logprobs) {
  Staging& st = *staging_;
  if (!shape.sample) return absl::FailedPreconditionError("DownloadIds: the step did not sample");
  const int set = 1 - st.ids_current;
  const int64_t words = logprobs ? cuda::SampleOutputWords(shape.rows) : shape.real_rows;
  RETURN_IF_ERROR(
      backend_->DownloadAsync(st.ids_host[set].get(), act_->sampled.data, words * sizeof(int32_t)));
  RETURN_IF_ERROR(backend_->RecordFence(kFenceIds + set));
  st.ids_current = set;
  return set;
}

absl::StatusOr<const int32_t*> Dsv4Model::WaitIds(int set) {
  Staging& st = *staging_;
  if (set < 0 || set > 1) return absl::InvalidArgumentError("WaitIds: set must be 0 or 1");
  RETURN_IF_ERROR(backend_->WaitFence(kFenceIds + set));
  return static_cast<const int32_t*>(st.ids_host[set].get());
}

const cuda::SampleLogprobs* Dsv4Model::SampledLogprobs(const StepShape& shape, int set) const {
  const Staging& st = *staging_;
  return reinterpret_cast<const cuda::SampleLogprobs*>(
      static_cast<const int32_t*>(st.ids_host[set].get()) + shape.rows);
}

}  // namespace moegraph
