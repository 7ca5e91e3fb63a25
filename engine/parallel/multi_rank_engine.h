// Engine::Create's choice when EngineOptions::devices is set
// (docs/expert-parallel.md): the devices and layout checked, then one rank
// (the single-rank engine), an ExpertParallelEngine (`ep`) or a
// LayerParallelEngine (`layers`); and what those two share.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/model/dsv4_engine.h"
#include "engine/parallel/in_process_handoff.h"
#include "engine/parallel/layer_placement.h"
#include "engine/parallel/rank_worker.h"

namespace moegraph {

// Errors name the field (devices, layout, num_slots, exchange_timeout_ms).
absl::StatusOr<std::unique_ptr<Engine>> CreateMultiRankEngine(const EngineOptions& options);

// The entries of `devices`, checked: non-empty, all "cpu"/"cpu:N" (no
// repeats) or all "cuda"/"cuda:N" (repeats are ranks sharing a GPU; "cuda"
// is returned as "cuda:0").
absl::StatusOr<std::vector<std::string>> ParseDevices(const std::string& devices);
// True when the (parsed) devices are CUDA ranks. Their steps may run in
// decode graphs, in any layout: NCCL is stream-ordered, and the in-process
// exchange and handoff of CUDA ranks meet on the device (no host barrier).
bool CudaRanks(const std::vector<std::string>& devices);
// "in-process" or "nccl" for options.transport on `devices`; errors name
// the field (nccl: CUDA ranks, one a GPU, not with layout 'layers').
absl::StatusOr<std::string> ResolveTransport(const EngineOptions& options,
                                             const std::vector<std::string>& devices);
// A rank's engine options: `options` on `device`, not running ahead, and
// eager unless `captured`.
EngineOptions RankOptions(const EngineOptions& options, const std::string& device,
                          bool captured = false);
// "2 devices (in-process CUDA ranks)".
std::string RanksName(const std::vector<std::string>& devices);
// OK when `layout` is one of kLayouts.
absl::Status CheckLayout(const std::string& layout);
// What every multi-rank engine checks first: the devices (returned), the
// layout (one of kLayouts and `layout`), max_step_tokens, the transport
// and exchange_timeout_ms.
absl::StatusOr<std::vector<std::string>> CheckRankOptions(const EngineOptions& options,
                                                          const char* layout);

// An engine of several Dsv4Engine ranks, each driven by its own worker thread.
class MultiRankEngine : public Engine {
 public:
  const ModelInfo& info() const override { return info_; }
  int num_slots() const override { return num_slots_; }
  int max_step_tokens() const override { return max_step_tokens_; }
  absl::Status Step(const StepPlan& plan, std::vector<float>* logits) final {
    return StepWithOptions(plan, ForwardOptions{}, logits);
  }
  std::unique_ptr<int32_t[], void (*)(int32_t*)> AllocateHostTokens(size_t count) override {
    return ranks_[0]->AllocateHostTokens(count);
  }
  // Step with ForwardOptions::all_logits (per-layer capture is single-rank only).
  virtual absl::Status StepWithOptions(const StepPlan& plan, const ForwardOptions& options,
                                       std::vector<float>* logits) = 0;

  int num_ranks() const { return static_cast<int>(ranks_.size()); }
  Dsv4Engine* rank(int r) const { return ranks_[r].get(); }

 protected:
  // Sets what every multi-rank engine keeps of `options`; a step may wait
  // for `blocks` blocks of layers in turn before a rank counts as stuck.
  void Init(const EngineOptions& options, const std::vector<std::string>& devices, int blocks);
  // A handoff over `ranks` blocks of `config`'s layers, sized for
  // `options`; CUDA ranks take `device_meetings`.
  static InProcessHandoffOptions HandoffOptions(const EngineOptions& options,
                                                const ModelConfig& config, int ranks,
                                                bool device_meetings);
  // The pool of `count` ranks (first, first + stride, ...) that each hold
  // every one of some slots, for a block of layers each: a sequence needs
  // room on all, so the tightest rank's tokens count; pages add up.
  StatePoolStats ColumnPool(int first, int stride, int count) const;
  // "cpu:0,cpu:1 [0, 2) + embedding": a block's devices and what it runs.
  static std::string BlockName(const std::string& devices, LayerRange layers, int num_layers);
  // OK when a step may run: no rank got stuck before, and `options` asks
  // for nothing that only one rank can do.
  absl::Status CanStep(const ForwardOptions& options) const {
    if (!broken_.ok()) return broken_;
    if (options.hidden != nullptr) {
      return absl::InvalidArgumentError("hidden-state capture runs on one rank only");
    }
    return absl::OkStatus();
  }

  ModelInfo info_;
  std::vector<std::string> devices_;
  int num_slots_ = 0;
  int max_step_tokens_ = 0;
  std::chrono::milliseconds step_timeout_{0};
  // The engines' destructors stop the workers first, then free the
  // transports (whose buffers live on the ranks' backends), then the ranks.
  std::vector<std::unique_ptr<Dsv4Engine>> ranks_;
  std::vector<std::unique_ptr<RankWorker>> workers_;
  absl::Status broken_;  // set when a rank did not finish a step: no more steps
};

}  // namespace moegraph
