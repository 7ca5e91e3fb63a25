#include "engine/parallel/expert_parallel_engine.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "engine/model/model_config.h"
#include "engine/parallel/multi_rank_engine.h"

namespace moegraph {

ExpertParallelEngine::~ExpertParallelEngine() {
  workers_.clear();
  ranks_.clear();
  exchange_.reset();
}

absl::StatusOr<std::unique_ptr<ExpertParallelEngine>> ExpertParallelEngine::Create(
    const EngineOptions& options) {
  ASSIGN_OR_RETURN(std::vector<std::string> devices, CheckRankOptions(options, "ep"));
  const int R = static_cast<int>(devices.size());
  if (options.num_slots < R) {
    return absl::InvalidArgumentError(absl::StrCat("num_slots: ", options.num_slots,
                                                   " is fewer than the ", R,
                                                   " devices (each rank needs a slot)"));
  }
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(options.model_dir));
  std::unique_ptr<ExpertParallelEngine> e(new ExpertParallelEngine());
  e->num_slots_ = options.num_slots;
  e->devices_ = devices;
  e->max_step_tokens_ = options.max_step_tokens;
  // A rank still busy long past every exchange deadline is stuck (a rank
  // reaches an exchange at least once a layer, and fails there at once once
  // the exchange has failed).
  e->step_timeout_ = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(options.exchange_timeout_ms) * 4, std::chrono::seconds(10));
  InProcessExchangeOptions xo;
  xo.num_ranks = R;
  xo.num_experts = config.n_routed_experts;
  xo.experts_per_token = config.num_experts_per_tok;
  xo.hidden = config.hidden_size;
  xo.capacity = options.max_step_tokens;
  xo.timeout = std::chrono::milliseconds(options.exchange_timeout_ms);
  ASSIGN_OR_RETURN(e->exchange_, InProcessExchange::Create(xo));
  e->partition_ = ExpertPartition{config.n_routed_experts, R};
  for (int r = 0; r < R; ++r) {
    EngineOptions ro = options;
    ro.device = "cpu";
    ro.devices.clear();
    ro.num_slots = (options.num_slots - r + R - 1) / R;
    if (options.state_pool_tokens > 0) {
      ro.state_pool_tokens =
          std::max<int64_t>(1, options.state_pool_tokens * ro.num_slots / options.num_slots);
    }
    ModelShard shard;
    shard.exchange = e->exchange_->rank(r);
    absl::StatusOr<std::unique_ptr<Dsv4Engine>> rank = Dsv4Engine::Create(ro, shard);
    if (!rank.ok()) {
      return absl::Status(rank.status().code(),
                          absl::StrCat(devices[r], ": ", rank.status().message()));
    }
    e->ranks_.push_back(std::move(rank).value());
    e->workers_.push_back(std::make_unique<RankWorker>());
  }
  e->plans_.resize(R);
  e->tokens_.resize(R);
  e->logits_.resize(R);

  e->info_ = e->ranks_[0]->info();
  e->info_.device = absl::StrJoin(devices, ",");
  std::vector<int> counts;
  for (int r = 0; r < R; ++r) counts.push_back(e->partition_.count(r));
  e->info_.layout = absl::StrCat(
      R, " devices (in-process CPU ranks), all layers each; ep: ", config.n_routed_experts,
      " routed experts split ", absl::StrJoin(counts, "/"),
      ", attention and shared expert "
      "replicated, slots data-parallel (slot s on rank s % ",
      R, ")");
  return e;
}

absl::Status ExpertParallelEngine::AcquireSlot(int slot, int max_tokens) {
  if (slot < 0 || slot >= num_slots_) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", slot, " outside [0, ", num_slots_, ")"));
  }
  return FromRank(rank_of(slot),
                  ranks_[rank_of(slot)]->AcquireSlot(slot / num_ranks(), max_tokens));
}

absl::Status ExpertParallelEngine::FromRank(int r, const absl::Status& s) const {
  if (s.ok()) return s;
  return absl::Status(s.code(),
                      absl::StrCat("rank ", r, " (", devices_[r], "; its slot i is slot i * ",
                                   num_ranks(), " + ", r, "): ", s.message()));
}

void ExpertParallelEngine::ReleaseSlot(int slot) {
  if (slot < 0 || slot >= num_slots_) return;
  ranks_[rank_of(slot)]->ReleaseSlot(slot / num_ranks());
}

absl::Status ExpertParallelEngine::StepWithOptions(const StepPlan& plan,
                                                   const ForwardOptions& options,
                                                   std::vector<float>* logits) {
  RETURN_IF_ERROR(CanStep(options));
  const int R = num_ranks();
  if (plan.seqs.empty() || plan.token_ids == nullptr) {
    return absl::InvalidArgumentError("step has no sequences or no token ids");
  }
  // Split the plan by slot owner; the ranks check the rest as one rank would.
  for (int r = 0; r < R; ++r) {
    plans_[r].seqs.clear();
    tokens_[r].clear();
    logits_[r].clear();
  }
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
    StepPlan& p = plans_[r];
    p.token_ids = tokens_[r].data();
    p.num_tokens = static_cast<int>(tokens_[r].size());
    Dsv4Engine* rank = ranks_[r].get();
    std::vector<float>* out = &logits_[r];
    ExpertExchange* exchange = exchange_->rank(r);
    workers_[r]->Post([rank, &p, options, out, exchange]() -> absl::Status {
      absl::Status s = p.seqs.empty() ? rank->StepIdle() : rank->StepWithOptions(p, options, out);
      // A rank failing outside the exchange (its plan, say) releases the others.
      if (!s.ok()) exchange->Abort(s);
      return s;
    });
  }
  RETURN_IF_ERROR(StepStatus(
      WaitForRanks(workers_, step_timeout_), step_timeout_, *exchange_,
      [this](int r, const absl::Status& s) { return FromRank(r, s); }, &broken_));
  // Logits rows back in plan order (each rank's rows are in its chunks' order).
  std::vector<size_t> cursor(R, 0);
  const size_t V = static_cast<size_t>(info_.vocab_size);
  for (const SeqChunk& ch : plan.seqs) {
    const int r = rank_of(ch.slot);
    const size_t rows = options.all_logits ? ch.len : (ch.want_logits ? 1 : 0);
    const std::vector<float>& src = logits_[r];
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
  StatePoolStats total;
  for (const auto& rank : ranks_) {
    const StatePoolStats s = rank->state_pool();
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
