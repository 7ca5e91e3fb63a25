// A stand-in Engine for tests and for running the daemon without a model
// (moegraphd --fake-engine): logits are a deterministic function of the
// slot's whole token history, so greedy and seeded outputs are reproducible
// whatever else is in the batch, and every plan is checked against the
// slots' state (positions must continue each slot's history).
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

#include "engine/engine.h"

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
  };
  std::vector<StepRecord> steps() const;
  int acquired_slots() const;

 private:
  struct Slot {
    bool acquired = false;
    int reserved = 0;
    std::vector<int32_t> history;
  };

  const FakeEngineOptions options_;
  ModelInfo info_;
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
  int reserved_tokens_ = 0;
  std::vector<StepRecord> steps_;
};

}  // namespace moegraph
