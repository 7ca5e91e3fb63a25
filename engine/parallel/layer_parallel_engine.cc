#include "engine/parallel/layer_parallel_engine.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "engine/parallel/multi_rank_engine.h"

namespace moegraph {

LayerParallelEngine::~LayerParallelEngine() {
  workers_.clear();
  handoff_.reset();
  ranks_.clear();
}

absl::StatusOr<std::unique_ptr<LayerParallelEngine>> LayerParallelEngine::Create(
    const EngineOptions& options) {
  ASSIGN_OR_RETURN(std::vector<std::string> devices, CheckRankOptions(options, "layers"));
  ASSIGN_OR_RETURN(ModelConfig config, Dsv4Engine::LoadConfig(options));
  const int R = static_cast<int>(devices.size()), L = config.num_layers;
  if (R < 2 || R > L) {
    return absl::InvalidArgumentError(absl::StrCat(
        "devices: ", R, " devices with layout 'layers' on a model of ", L,
        " layers; allowed: 2 to ", L, " devices (each holds a block of at least one layer)"));
  }
  std::unique_ptr<LayerParallelEngine> e(new LayerParallelEngine());
  e->Init(options, devices, R);
  const bool cuda = CudaRanks(devices);
  ASSIGN_OR_RETURN(e->handoff_, InProcessHandoff::Create(HandoffOptions(options, config, R, cuda)));
  std::vector<std::string> blocks;
  for (int r = 0; r < R; ++r) {
    EngineOptions ro = RankOptions(options, devices[r], cuda);
    ModelShard shard;
    shard.layers = LayerBlock(L, R, r);
    shard.handoff = e->handoff_->rank(r);
    absl::StatusOr<std::unique_ptr<Dsv4Engine>> rank = Dsv4Engine::Create(ro, shard);
    if (!rank.ok()) {
      return absl::Status(rank.status().code(),
                          absl::StrCat(devices[r], ": ", rank.status().message()));
    }
    e->ranks_.push_back(std::move(rank).value());
    e->workers_.push_back(std::make_unique<RankWorker>());
    blocks.push_back(BlockName(devices[r], shard.layers, L));
  }
  // CUDA ranks tune every bucket (and capture their graphs) at load, all at
  // once: each warm-up step hands over at every boundary.
  if (cuda) {
    for (int r = 0; r < R; ++r) {
      Dsv4Engine* rank = e->ranks_[r].get();
      ResidualHandoff* handoff = e->handoff_->rank(r);
      e->workers_[r]->Post([rank, handoff] {
        absl::Status s = rank->Prepare();
        if (s.ok()) s = handoff->Finish();
        if (!s.ok()) handoff->Abort(s);
        return s;
      });
    }
    absl::Status broken;
    RETURN_IF_ERROR(StepStatus(
        WaitForRanks(e->workers_, e->step_timeout_ * 10), e->step_timeout_ * 10, *e->handoff_,
        [&e](int r, const absl::Status& s) { return e->FromRank(r, s); }, &broken));
  }
  e->logits_.resize(R);
  e->info_ = e->ranks_[0]->info();
  e->info_.device = absl::StrJoin(devices, ",");
  e->info_.layout = absl::StrCat(RanksName(devices), "; layers: ", absl::StrJoin(blocks, ", "),
                                 "; all experts and every slot on each; decode graphs ",
                                 e->ranks_[0]->graph_mode());
  return e;
}

absl::Status LayerParallelEngine::FromRank(int r, const absl::Status& s) const {
  if (s.ok()) return s;
  const LayerRange l = layers(r);
  return absl::Status(s.code(), absl::StrCat("rank ", r, " (", devices_[r], ", layers [", l.first,
                                             ", ", l.end, ")): ", s.message()));
}

absl::Status LayerParallelEngine::AcquireSlot(int slot, int max_tokens) {
  for (int r = 0; r < num_ranks(); ++r) {
    absl::Status s = ranks_[r]->AcquireSlot(slot, max_tokens);
    if (s.ok()) continue;
    for (int q = 0; q < r; ++q) ranks_[q]->ReleaseSlot(slot);
    // The ranks check the slot and its bounds alike: rank 0's error is the engine's.
    return r == 0 ? s : FromRank(r, s);
  }
  return absl::OkStatus();
}

void LayerParallelEngine::ReleaseSlot(int slot) {
  for (const auto& rank : ranks_) rank->ReleaseSlot(slot);
}

absl::Status LayerParallelEngine::StepWithOptions(const StepPlan& plan,
                                                  const ForwardOptions& options,
                                                  std::vector<float>* logits) {
  RETURN_IF_ERROR(CanStep(options));
  const int R = num_ranks();
  // Every rank stages the whole plan (token ids feed the hash-routed layers,
  // positions every attention) and checks it as one rank would. Step runs
  // the rank's decode graphs and pads to its tuned buckets, alike on every
  // rank; StepWithOptions is eager and exact (every token's logits).
  const bool bucketed = !options.all_logits && options.hidden == nullptr;
  for (int r = 0; r < R; ++r) {
    Dsv4Engine* rank = ranks_[r].get();
    std::vector<float>* out = &logits_[r];
    out->clear();
    ResidualHandoff* handoff = handoff_->rank(r);
    workers_[r]->Post([rank, &plan, options, out, handoff, bucketed]() -> absl::Status {
      absl::Status s = bucketed ? rank->Step(plan, out) : rank->StepWithOptions(plan, options, out);
      if (s.ok()) s = handoff->Finish();  // what the device recorded at its meetings
      if (!s.ok()) handoff->Abort(s);
      return s;
    });
  }
  // A plan error is every rank's: rank 0's is the engine's, as on one rank.
  RETURN_IF_ERROR(StepStatus(
      WaitForRanks(workers_, step_timeout_), step_timeout_, *handoff_,
      [this](int r, const absl::Status& s) { return r == 0 ? s : FromRank(r, s); }, &broken_));
  const std::vector<float>& last = logits_[R - 1];
  logits->insert(logits->end(), last.begin(), last.end());
  return absl::OkStatus();
}

StatePoolStats LayerParallelEngine::state_pool() const { return ColumnPool(0, 1, num_ranks()); }

}  // namespace moegraph
