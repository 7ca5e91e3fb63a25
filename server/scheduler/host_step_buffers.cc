#include "server/scheduler/host_step_buffers.h"

#include "absl/strings/str_format.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<HostStepBuffers>> HostStepBuffers::Create(Engine* engine,
                                                                         int max_tokens,
                                                                         int max_seqs) {
  if (max_tokens < 1 || max_seqs < 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "host step buffers: max_tokens %d and max_seqs %d must be >= 1", max_tokens, max_seqs));
  }
  const size_t count = static_cast<size_t>(max_tokens) + static_cast<size_t>(max_seqs);
  Storage a = engine->AllocateHostTokens(count);
  Storage b = engine->AllocateHostTokens(count);
  if (a == nullptr || b == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("host step buffers: cannot allocate 2 x %d int32", count));
  }
  return std::unique_ptr<HostStepBuffers>(
      new HostStepBuffers(std::move(a), std::move(b), max_tokens, max_seqs));
}

HostStepBuffers::HostStepBuffers(Storage a, Storage b, int max_tokens, int max_seqs)
    : storage_{std::move(a), std::move(b)}, max_tokens_(max_tokens), max_seqs_(max_seqs) {
  for (int i = 0; i < 2; ++i) {
    int32_t* base = storage_[i].get();
    sets_[i] = Set{base, base + max_tokens};
  }
}

HostStepBuffers::Set& HostStepBuffers::Next() {
  current_ ^= 1;
  return sets_[current_];
}

}  // namespace moegraph
