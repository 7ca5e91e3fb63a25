#include "engine/parallel/expert_parallel_engine.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "engine/model/model_config.h"
#include "engine/parallel/layer_placement.h"
#include "engine/parallel/multi_rank_engine.h"
#if MOEGRAPH_HAVE_CUDA
#include "absl/strings/numbers.h"
#include "engine/backend/cuda/nccl_exchange.h"
#endif

namespace moegraph {

ExpertParallelEngine::~ExpertParallelEngine() {
  // The transports' buffers live on the ranks' backends: they go first. The
  // NCCL communicators go last: the ranks' graphs hold their operations.
  workers_.clear();
  handoffs_.clear();
  exchanges_.clear();
  nccl_exchanges_.clear();
  ranks_.clear();
  nccl_comms_.clear();
}

absl::StatusOr<std::unique_ptr<ExpertParallelEngine>> ExpertParallelEngine::Create(
    const EngineOptions& options) {
  const bool grid = options.layout == "ep+layers";
  ASSIGN_OR_RETURN(std::vector<std::string> devices,
                   CheckRankOptions(options, grid ? "ep+layers" : "ep"));
  const int N = static_cast<int>(devices.size());
  ASSIGN_OR_RETURN(ModelConfig config, Dsv4Engine::LoadConfig(options));
  const int L = config.num_layers;
  const int B = grid ? options.layer_blocks : 1;
  if (grid && (B < 2 || B > L || N % B != 0 || N / B < 2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer_blocks: ", B, " with layout 'ep+layers' on ", N, " devices and ", L,
        " layers; allowed: 2 to ", L, " blocks dividing the devices into blocks of 2 or more"));
  }
  const int R = N / B;  // EP ranks a block
  if (options.num_slots < R) {
    return absl::InvalidArgumentError(absl::StrCat("num_slots: ", options.num_slots,
                                                   " is fewer than the ", R,
                                                   " devices (each rank needs a slot)"));
  }
  std::unique_ptr<ExpertParallelEngine> e(new ExpertParallelEngine());
  e->blocks_ = B;
  e->Init(options, devices, B);
  ExchangeOptions xo;
  xo.num_ranks = R;
  xo.num_experts = config.n_routed_experts;
  xo.experts_per_token = config.num_experts_per_tok;
  xo.hidden = config.hidden_size;
  xo.capacity = options.max_step_tokens;
  xo.timeout = std::chrono::milliseconds(options.exchange_timeout_ms);
  ASSIGN_OR_RETURN(e->transport_, ResolveTransport(options, devices));
  xo.equal_rows = e->transport_ == "nccl" || options.equal_exchange_rows;
  xo.device_meetings = CudaRanks(devices);
  e->equal_rows_ = xo.equal_rows;
  e->captured_ = CudaRanks(devices);
  for (int b = 0; b < B && e->transport_ == "in-process"; ++b) {
    ASSIGN_OR_RETURN(std::unique_ptr<InProcessExchange> x, InProcessExchange::Create(xo));
    e->exchanges_.push_back(std::move(x));
  }
  for (int b = 0; b < B && e->transport_ == "nccl"; ++b) {
#if MOEGRAPH_HAVE_CUDA
    std::vector<int> ordinals;
    for (int r = 0; r < R; ++r) {
      int n = 0;
      if (!absl::SimpleAtoi(devices[b * R + r].substr(5), &n)) {
        return absl::InvalidArgumentError(
            absl::StrCat("devices: '", devices[b * R + r], "' is not cuda:N"));
      }
      ordinals.push_back(n);
    }
    ASSIGN_OR_RETURN(std::unique_ptr<NcclComms> comms, NcclComms::Create(ordinals));
    for (int r = 0; r < R; ++r) {
      ASSIGN_OR_RETURN(std::unique_ptr<ExpertExchange> x, CreateNcclExchange(xo, *comms, r));
      e->nccl_exchanges_.push_back(std::move(x));
    }
    e->nccl_comms_.push_back(std::move(comms));
#else
    return absl::UnimplementedError("transport: 'nccl' needs a build with CUDA");
#endif
  }
  for (int c = 0; B > 1 && c < R; ++c) {
    ASSIGN_OR_RETURN(
        std::unique_ptr<InProcessHandoff> h,
        InProcessHandoff::Create(HandoffOptions(options, config, B, CudaRanks(devices))));
    e->handoffs_.push_back(std::move(h));
  }
  e->partition_ = ExpertPartition{config.n_routed_experts, R};
  std::vector<std::string> blocks;
  for (int b = 0; b < B; ++b) {
    const LayerRange layers = B > 1 ? LayerBlock(L, B, b) : LayerRange{};
    for (int r = 0; r < R; ++r) {
      EngineOptions ro = RankOptions(options, devices[b * R + r], e->captured_);
      // CUDA ranks warm up together, step for step, so they get the same
      // buckets: each as many slots as the fullest (the extra go unused).
      ro.num_slots = CudaRanks(devices) ? (options.num_slots + R - 1) / R
                                        : (options.num_slots - r + R - 1) / R;
      if (options.state_pool_tokens > 0) {
        ro.state_pool_tokens =
            std::max<int64_t>(1, options.state_pool_tokens * ro.num_slots / options.num_slots);
      }
      ModelShard shard;
      shard.exchange = e->exchange(b, r);
      shard.layers = layers;
      if (B > 1) shard.handoff = e->handoffs_[r]->rank(b);
      absl::StatusOr<std::unique_ptr<Dsv4Engine>> rank = Dsv4Engine::Create(ro, shard);
      if (!rank.ok()) {
        return absl::Status(rank.status().code(),
                            absl::StrCat(devices[b * R + r], ": ", rank.status().message()));
      }
      e->ranks_.push_back(std::move(rank).value());
      e->workers_.push_back(std::make_unique<RankWorker>());
    }
    const std::vector<std::string> block(devices.begin() + b * R, devices.begin() + (b + 1) * R);
    blocks.push_back(BlockName(absl::StrJoin(block, ","), layers, L));
  }
  // CUDA ranks tune every bucket (and capture their graphs) at load, all at
  // once: the warm-up steps meet at every exchange.
  if (CudaRanks(devices)) {
    for (size_t i = 0; i < e->ranks_.size(); ++i) {
      Dsv4Engine* rank = e->ranks_[i].get();
      const int b = static_cast<int>(i) / R, r = static_cast<int>(i) % R;
      ExpertExchange* exchange = e->exchange(b, r);
      ResidualHandoff* handoff = B > 1 ? e->handoffs_[r]->rank(b) : nullptr;
      e->workers_[i]->Post([rank, exchange, handoff] {
        absl::Status s = rank->Prepare();
        if (s.ok()) s = exchange->Finish();
        if (s.ok() && handoff != nullptr) s = handoff->Finish();
        if (!s.ok()) {
          exchange->Abort(s);
          if (handoff != nullptr) handoff->Abort(s);
        }
        return s;
      });
    }
    Transports transports{e.get()};
    absl::Status broken;
    const absl::Status prepared = StepStatus(
        WaitForRanks(e->workers_, e->step_timeout_ * 10), e->step_timeout_ * 10, transports,
        [&e](int r, const absl::Status& s) { return e->FromRank(r, s); }, &broken);
    if (!broken.ok()) {
      for (const auto& comms : e->nccl_comms_) comms->Abort();  // as in a step, below
    }
    RETURN_IF_ERROR(prepared);
  }
  e->plans_.resize(R);
  e->tokens_.resize(R);
  e->logits_.resize(N);

  e->info_ = e->ranks_[0]->info();
  e->info_.device = absl::StrJoin(devices, ",");
  std::vector<int> counts;
  for (int r = 0; r < R; ++r) counts.push_back(e->partition_.count(r));
  const std::string ep = absl::StrCat(
      "ep: ", config.n_routed_experts, " routed experts split ", absl::StrJoin(counts, "/"),
      ", attention and shared expert replicated, slots data-parallel (slot s on rank s % ", R,
      grid ? " of each block)" : ")", ", exchange ", e->transport_, ", decode graphs ",
      e->ranks_[0]->graph_mode());
  e->info_.layout =
      grid ? absl::StrCat(RanksName(devices), "; layers: ", B, " blocks of ", R,
                          " ranks: ", absl::StrJoin(blocks, "; "), "; in each block ", ep)
           : absl::StrCat(RanksName(devices), ", all layers each; ", ep);
  return e;
}

absl::Status ExpertParallelEngine::AcquireSlot(int slot, int max_tokens) {
  if (slot < 0 || slot >= num_slots_) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", slot, " outside [0, ", num_slots_, ")"));
  }
  const int R = width();
  for (int b = 0; b < blocks_; ++b) {
    const int r = b * R + rank_of(slot);
    absl::Status s = ranks_[r]->AcquireSlot(slot / R, max_tokens);
    if (s.ok()) continue;
    for (int q = 0; q < b; ++q) ranks_[q * R + rank_of(slot)]->ReleaseSlot(slot / R);
    return FromRank(r, s);
  }
  return absl::OkStatus();
}

absl::Status ExpertParallelEngine::FromRank(int r, const absl::Status& s) const {
  if (s.ok()) return s;
  const int R = width();
  std::string layers;
  if (blocks_ > 1) {
    const LayerRange l = ranks_[r]->model().layers();
    layers = absl::StrCat(", layers [", l.first, ", ", l.end, ")");
  }
  return absl::Status(
      s.code(), absl::StrCat("rank ", r, " (", devices_[r], layers, "; its slot i is slot i * ", R,
                             " + ", r % R, "): ", s.message()));
}

void ExpertParallelEngine::ReleaseSlot(int slot) {
  if (slot < 0 || slot >= num_slots_) return;
  for (int b = 0; b < blocks_; ++b) {
    ranks_[b * width() + rank_of(slot)]->ReleaseSlot(slot / width());
  }
}

absl::Status ExpertParallelEngine::Transports::status() const {
  for (const auto& x : engine->exchanges_) {
    if (!x->status().ok()) return x->status();
  }
  for (const auto& h : engine->handoffs_) {
    if (!h->status().ok()) return h->status();
  }
  return absl::OkStatus();
}

void ExpertParallelEngine::Transports::Reset() {
  for (const auto& x : engine->exchanges_) x->Reset();
  for (const auto& h : engine->handoffs_) h->Reset();
}

absl::Status ExpertParallelEngine::StepWithOptions(const StepPlan& plan,
                                                   const ForwardOptions& options,
                                                   std::vector<float>* logits) {
  RETURN_IF_ERROR(CanStep(options));
  const int R = width();
  if (plan.seqs.empty() || plan.token_ids == nullptr) {
    return absl::InvalidArgumentError("step has no sequences or no token ids");
  }
  // Split the plan by slot owner; the ranks check the rest as one rank would.
  for (int r = 0; r < R; ++r) {
    plans_[r].seqs.clear();
    tokens_[r].clear();
  }
  for (std::vector<float>& l : logits_) l.clear();
  // What names a chunk by its index in the plan is checked here, as one rank
  // would (a rank would name its own index and slot).
  seen_slots_.assign(num_slots_, false);
  for (size_t s = 0; s < plan.seqs.size(); ++s) {
    const SeqChunk& ch = plan.seqs[s];
    if (ch.slot < 0 || ch.slot >= num_slots_ || seen_slots_[ch.slot]) {
      return absl::InvalidArgumentError(
          absl::StrCat("seqs[", s, "]: slot ", ch.slot, " invalid or repeated in the step"));
    }
    seen_slots_[ch.slot] = true;
    if (ch.len <= 0 || ch.token_offset < 0 || ch.token_offset + ch.len > plan.num_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("seqs[", s, "]: tokens [", ch.token_offset,
                                                     ", +", ch.len, ") outside the step's ",
                                                     plan.num_tokens));
    }
    for (int i = 0; i < ch.len; ++i) {
      const int32_t id = plan.token_ids[ch.token_offset + i];
      if (id < 0 || id >= info_.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("seqs[", s, "]: token id ", id, " outside [0, ", info_.vocab_size, ")"));
      }
    }
    const int r = rank_of(ch.slot);
    SeqChunk local = ch;
    local.slot = ch.slot / R;
    local.token_offset = static_cast<int>(tokens_[r].size());
    tokens_[r].insert(tokens_[r].end(), plan.token_ids + ch.token_offset,
                      plan.token_ids + ch.token_offset + ch.len);
    plans_[r].seqs.push_back(local);
  }
  for (int r = 0; r < R; ++r) {
    plans_[r].token_ids = tokens_[r].data();
    plans_[r].num_tokens = static_cast<int>(tokens_[r].size());
  }
  // Exchanges that move the same rows on every rank: every rank's step is
  // padded to the most tokens any rank's own step (its bucket) would carry,
  // idle ranks' too. Each block's ranks see the same columns' plans.
  int pad_to = 0;
  for (int r = 0; equal_rows_ && r < R; ++r) {
    pad_to = std::max(pad_to, ranks_[r]->PaddedTokens(plans_[r]));
  }
  for (int b = 0; b < blocks_; ++b) {
    for (int r = 0; r < R; ++r) {
      const StepPlan& p = plans_[r];
      Dsv4Engine* rank = ranks_[b * R + r].get();
      std::vector<float>* out = &logits_[b * R + r];
      ExpertExchange* exchange = this->exchange(b, r);
      ResidualHandoff* handoff = blocks_ > 1 ? handoffs_[r]->rank(b) : nullptr;
      // Step runs the rank's decode graphs and pads to its tuned buckets;
      // StepWithOptions is eager and exact (every token's logits, streams).
      const bool bucketed = !options.all_logits && options.hidden == nullptr;
      workers_[b * R + r]->Post(
          [rank, &p, options, out, exchange, handoff, bucketed, pad_to]() -> absl::Status {
            absl::Status s = pad_to > 0       ? rank->StepPaddedTo(p, pad_to, options, out)
                             : p.seqs.empty() ? rank->StepIdle()
                             : bucketed       ? rank->Step(p, out)
                                              : rank->StepWithOptions(p, options, out);
            // What the device recorded at its meetings (in-process CUDA ranks).
            if (s.ok()) s = exchange->Finish();
            if (s.ok() && handoff != nullptr) s = handoff->Finish();
            // A rank failing outside the exchange (its plan, say) releases the others.
            if (!s.ok()) {
              exchange->Abort(s);
              if (handoff != nullptr) handoff->Abort(s);
            }
            return s;
          });
    }
  }
  Transports transports{this};
  const absl::Status step = StepStatus(
      WaitForRanks(workers_, step_timeout_), step_timeout_, transports,
      [this](int r, const absl::Status& s) { return FromRank(r, s); }, &broken_);
  // A rank stuck in NCCL waits for a peer that failed or is gone: aborting
  // the communicators releases it (the engine is broken from here on, so it
  // can be destroyed without waiting forever).
  if (!broken_.ok()) {
    for (const auto& comms : nccl_comms_) comms->Abort();
  }
  RETURN_IF_ERROR(step);
  // Logits rows back in plan order (each rank's rows are in its chunks'
  // order), from the last block.
  std::vector<size_t> cursor(R, 0);
  const size_t V = static_cast<size_t>(info_.vocab_size);
  for (const SeqChunk& ch : plan.seqs) {
    const int r = rank_of(ch.slot);
    const size_t rows = options.all_logits ? ch.len : (ch.want_logits ? 1 : 0);
    const std::vector<float>& src = logits_[(blocks_ - 1) * R + r];
    if ((cursor[r] + rows) * V > src.size()) {
      return absl::InternalError(absl::StrCat("rank ", r, " returned too few logits rows"));
    }
    logits->insert(logits->end(), src.begin() + cursor[r] * V,
                   src.begin() + (cursor[r] + rows) * V);
    cursor[r] += rows;
  }
  return absl::OkStatus();
}

StatePoolStats ExpertParallelEngine::state_pool() const {
  // Each column holds its slots on every block (ColumnPool); columns add up.
  StatePoolStats total;
  const int R = width();
  for (int r = 0; r < R; ++r) {
    const StatePoolStats s = ColumnPool(r, R, blocks_);
    total.capacity_tokens += s.capacity_tokens;
    total.reserved_tokens += s.reserved_tokens;
    total.used_tokens += s.used_tokens;
    total.capacity_pages += s.capacity_pages;
    total.reserved_pages += s.reserved_pages;
    total.used_pages += s.used_pages;
    if (s.max_sequence_tokens > 0) {
      total.max_sequence_tokens = total.max_sequence_tokens == 0
                                      ? s.max_sequence_tokens
                                      : std::min(total.max_sequence_tokens, s.max_sequence_tokens);
    }
  }
  return total;
}

}  // namespace moegraph
