// A stand-in Engine for tests and for running the daemon without a model
// (moegraphd --fake-engine): logits are a deterministic function of the
// slot's whole token history, so greedy and seeded outputs are reproducible
// whatever else is in the batch, and every plan is checked against the
// slots' state (positions must continue each slot's history). Optionally it
// "samples on the device" (the host's sampler, run inside the engine, for
// requests without penalties) and pipelines steps like a GPU: Launch returns
// at once and Collect waits until the step's modelled device time is over.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "engine/engine.h"
#include "engine/sampling/sampler.h"

namespace moegraph {

struct FakeEngineOptions {
  int vocab_size = 320;
  int num_slots = 4;
  int max_step_tokens = 64;
  int context_limit = 4096;
  std::vector<int> eos_token_ids = {1};
  int bos_token_id = 0;
  // Pretend each step takes this long (sleeps), to test queueing and drain.
  double step_seconds = 0;
  // Total tokens the state pool can reserve over all slots (0 = unlimited);
  // AcquireSlot fails with RESOURCE_EXHAUSTED beyond it.
  int state_pool_tokens = 0;
  bool record_steps = true;  // keep every plan for steps() (tests)
  // Engine::slot_group: slot s in group s % slot_groups (as expert-parallel ranks).
  int slot_groups = 1;
  // What device_memory() reports (tests of the GPU memory metrics; empty: none).
  std::vector<DeviceMemoryStats> device_memory;
  // StepAndSample samples chunks without penalties itself (SamplesOnDevice).
  bool device_sampling = false;
  // Engine::pipelines(): Launch/Collect, steps taking step_seconds each on a
  // modelled device that runs them one after another (needs device_sampling).
  bool pipelined = false;
};

class FakeEngine final : public Engine {
 public:
  explicit FakeEngine(const FakeEngineOptions& options);

  const ModelInfo& info() const override { return info_; }
  int num_slots() const override { return options_.num_slots; }
  int max_step_tokens() const override { return options_.max_step_tokens; }
  absl::Status AcquireSlot(int slot, int max_tokens) override;
  void ReleaseSlot(int slot) override;
  absl::Status Step(const StepPlan& plan, std::vector<float>* logits) override;
  absl::Status StepAndSample(const StepPlan& plan, StepResult* result) override;
  bool SamplesOnDevice(const SeqChunk& chunk) const override;
  bool pipelines() const override { return options_.pipelined; }
  absl::Status Launch(const StepPlan& plan) override;
  absl::Status Collect(StepResult* result) override;
  std::unique_ptr<int32_t[], void (*)(int32_t*)> AllocateHostTokens(size_t count) override;
  // Tokens only (the fake has no pages): capacity state_pool_tokens, or one
  // context per slot when that is 0.
  StatePoolStats state_pool() const override;
  std::vector<DeviceMemoryStats> device_memory() const override { return options_.device_memory; }
  int num_slot_groups() const override { return options_.slot_groups; }
  int slot_group(int slot) const override { return slot % options_.slot_groups; }

  // The logits the engine returns after `history` (vocab_size values).
  static void LogitsFor(const std::vector<int32_t>& history, int vocab_size,
                        const std::vector<int>& eos_token_ids, float* out);

  // What the engine has seen, for tests (thread-safe copies).
  struct StepRecord {
    int num_tokens = 0;
    std::vector<SeqChunk> seqs;
    std::vector<int32_t> tokens;  // the step's tokens, token_from_last_sample ones resolved
  };
  std::vector<StepRecord> steps() const;
  int acquired_slots() const;
  // Launches made while another step was launched and not yet collected.
  int launches_ahead() const { return launches_ahead_; }
  // ReleaseSlot calls for a slot a launched, uncollected step names (a
  // caller bug: a GPU would still be writing that slot's state).
  int releases_in_flight() const { return releases_in_flight_; }

 private:
  struct Slot {
    bool acquired = false;
    int reserved = 0;
    std::vector<int32_t> history;
  };

  using Clock = std::chrono::steady_clock;
  struct Launched {
    absl::Status status;
    StepResult result;
    Clock::time_point done;  // when the modelled device finishes the step
    std::vector<int> slots;  // the plan's
  };

  // Checks `plan` against the slots, appends its tokens to their histories
  // and the want_logits chunks' logits to `logits`. Caller holds mu_.
  absl::Status ApplyLocked(const StepPlan& plan, std::vector<float>* logits);
  // ApplyLocked, then samples every chunk SamplesOnDevice serves (all or none).
  absl::Status RunLocked(const StepPlan& plan, StepResult* result);

  const FakeEngineOptions options_;
  ModelInfo info_;
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
  int reserved_tokens_ = 0;
  std::vector<StepRecord> steps_;
  sampling::Sampler sampler_;          // guarded by mu_
  std::vector<int32_t> last_sampled_;  // per slot, -1: none; guarded by mu_
  std::deque<Launched> launched_;      // Launch'ed, not yet collected
  Clock::time_point device_free_{};    // the modelled device's queue end
  std::atomic<int> launches_ahead_{0};
  std::atomic<int> releases_in_flight_{0};
  std::mutex launched_mu_;  // guards launched_ (ReleaseSlot reads it)
};

}  // namespace moegraph
