// The scheduler's host buffers of a step: its token ids and the ids sampled
// for it. Two sets alternate so that step N+1 can be written while step N's
// ids are still in use. The engine copies the ids into its own pinned staging
// block (docs/decode-step.md); positions and slots travel in the StepPlan.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace moegraph {

class HostStepBuffers {
 public:
  // One set's views. Sizes: max_tokens for the per-token arrays, max_seqs for
  // sampled_ids.
  struct Set {
    int32_t* token_ids = nullptr;
    int32_t* sampled_ids = nullptr;
  };

  // Allocates both sets through `engine` (which must outlive this object).
  static absl::StatusOr<std::unique_ptr<HostStepBuffers>> Create(Engine* engine, int max_tokens,
                                                                 int max_seqs);

  // Flips to the other set and returns it, for the caller to fill for the
  // next step. The previous set stays intact until the following flip.
  Set& Next();
  Set& current() { return sets_[current_]; }
  int max_tokens() const { return max_tokens_; }
  int max_seqs() const { return max_seqs_; }

 private:
  using Storage = std::unique_ptr<int32_t[], void (*)(int32_t*)>;
  HostStepBuffers(Storage a, Storage b, int max_tokens, int max_seqs);

  Storage storage_[2];
  Set sets_[2];
  int current_ = 0;
  int max_tokens_;
  int max_seqs_;
};

}  // namespace moegraph
