#include "server/testing/fake_engine.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_format.h"
#include "engine/common/splitmix.h"

namespace moegraph {

FakeEngine::FakeEngine(const FakeEngineOptions& options)
    : options_(options), slots_(static_cast<size_t>(options.num_slots)) {
  info_.name = "fake";
  info_.model_type = "fake";
  info_.vocab_size = options.vocab_size;
  info_.context_limit = options.context_limit;
  info_.bos_token_id = options.bos_token_id;
  info_.eos_token_ids = options.eos_token_ids;
  info_.num_layers = 1;
  info_.hidden_size = 1;
  info_.device = "cpu (fake engine)";
  info_.layout = "1 device, no model";
}

void FakeEngine::LogitsFor(const std::vector<int32_t>& history, int vocab_size,
                           const std::vector<int>& eos_token_ids, float* out) {
  uint64_t h = 0x12345678ull;
  for (int32_t t : history) h = SplitMix64(h ^ static_cast<uint32_t>(t));
  for (int i = 0; i < vocab_size; ++i) {
    const uint64_t bits = SplitMix64(h + static_cast<uint64_t>(i));
    out[i] = static_cast<float>(static_cast<double>(bits >> 11) * 0x1.0p-53 * 8.0 - 4.0);
  }
  // Keep EOS unlikely so that generations run to max_tokens unless a test
  // asks for something else.
  for (int eos : eos_token_ids) {
    if (eos >= 0 && eos < vocab_size) out[eos] = -10.0f;
  }
}

absl::Status FakeEngine::AcquireSlot(int slot, int max_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  if (slot < 0 || slot >= options_.num_slots) {
    return absl::InvalidArgumentError(absl::StrFormat("fake engine: no slot %d", slot));
  }
  Slot& s = slots_[slot];
  if (s.acquired) {
    return absl::FailedPreconditionError(absl::StrFormat("fake engine: slot %d is in use", slot));
  }
  if (max_tokens > options_.context_limit) {
    return absl::InvalidArgumentError(
        absl::StrFormat("fake engine: %d tokens exceed the context limit", max_tokens));
  }
  if (options_.state_pool_tokens > 0 &&
      reserved_tokens_ + max_tokens > options_.state_pool_tokens) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("fake engine: state pool holds %d tokens, %d reserved, %d more asked",
                        options_.state_pool_tokens, reserved_tokens_, max_tokens));
  }
  s.acquired = true;
  s.reserved = max_tokens;
  s.history.clear();
  reserved_tokens_ += max_tokens;
  return absl::OkStatus();
}

void FakeEngine::ReleaseSlot(int slot) {
  {
    std::lock_guard<std::mutex> lock(launched_mu_);
    for (const Launched& l : launched_) {
      if (std::find(l.slots.begin(), l.slots.end(), slot) != l.slots.end()) ++releases_in_flight_;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (slot < 0 || slot >= options_.num_slots) return;
  Slot& s = slots_[slot];
  if (!s.acquired) return;
  reserved_tokens_ -= s.reserved;
  s = Slot{};
}

absl::Status FakeEngine::Step(const StepPlan& plan, std::vector<float>* logits) {
  if (options_.step_seconds > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(options_.step_seconds));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return ApplyLocked(plan, logits);
}

absl::Status FakeEngine::ApplyLocked(const StepPlan& plan, std::vector<float>* logits) {
  if (plan.num_tokens < 1 || plan.num_tokens > options_.max_step_tokens) {
    return absl::InvalidArgumentError(
        absl::StrFormat("fake engine: plan has %d tokens, max_step_tokens is %d", plan.num_tokens,
                        options_.max_step_tokens));
  }
  int covered = 0;
  StepRecord record{plan.num_tokens, plan.seqs, {}};
  for (const SeqChunk& c : plan.seqs) {
    if (c.slot < 0 || c.slot >= options_.num_slots || !slots_[c.slot].acquired) {
      return absl::FailedPreconditionError(
          absl::StrFormat("fake engine: slot %d is not acquired", c.slot));
    }
    Slot& s = slots_[c.slot];
    if (c.start_pos != static_cast<int>(s.history.size())) {
      return absl::FailedPreconditionError(
          absl::StrFormat("fake engine: slot %d chunk starts at %d, history has %d tokens", c.slot,
                          c.start_pos, s.history.size()));
    }
    if (c.len < 1 || c.token_offset != covered || c.token_offset + c.len > plan.num_tokens) {
      return absl::InvalidArgumentError("fake engine: chunks must tile the plan's tokens in order");
    }
    if (c.start_pos + c.len > s.reserved) {
      return absl::OutOfRangeError(absl::StrFormat(
          "fake engine: slot %d grows past its reservation of %d", c.slot, s.reserved));
    }
    covered += c.len;
    if (c.token_from_last_sample) {
      if (!options_.pipelined || c.len != 1 || last_sampled_.empty() || last_sampled_[c.slot] < 0) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "fake engine: slot %d takes the last step's sample, which sampled none for it",
            c.slot));
      }
      s.history.push_back(last_sampled_[c.slot]);
    } else {
      s.history.insert(s.history.end(), plan.token_ids + c.token_offset,
                       plan.token_ids + c.token_offset + c.len);
    }
    record.tokens.insert(record.tokens.end(), s.history.end() - c.len, s.history.end());
    if (c.want_logits) {
      const size_t at = logits->size();
      logits->resize(at + static_cast<size_t>(options_.vocab_size));
      LogitsFor(s.history, options_.vocab_size, options_.eos_token_ids, logits->data() + at);
    }
  }
  if (covered != plan.num_tokens) {
    return absl::InvalidArgumentError("fake engine: chunks do not cover the plan's tokens");
  }
  if (options_.record_steps) steps_.push_back(std::move(record));
  return absl::OkStatus();
}

bool FakeEngine::SamplesOnDevice(const SeqChunk& chunk) const {
  return options_.device_sampling && chunk.want_logits && chunk.sampling != nullptr &&
         !chunk.sampling->has_penalties();
}

absl::Status FakeEngine::RunLocked(const StepPlan& plan, StepResult* result) {
  result->sampled = false;
  result->ids.clear();
  result->samples.clear();
  result->logits.clear();
  bool device = options_.device_sampling;
  for (const SeqChunk& c : plan.seqs) device = device && (!c.want_logits || SamplesOnDevice(c));
  std::vector<float> logits;
  if (absl::Status s = ApplyLocked(plan, &logits); !s.ok()) return s;
  last_sampled_.assign(static_cast<size_t>(options_.num_slots), -1);
  if (!device) {
    result->logits = std::move(logits);
    return absl::OkStatus();
  }
  result->sampled = true;
  const size_t vocab = static_cast<size_t>(options_.vocab_size);
  size_t row = 0;
  for (const SeqChunk& c : plan.seqs) {
    if (!c.want_logits) continue;
    sampling::SampleResult r;
    sampler_.Sample(std::span<const float>(logits.data() + row * vocab, vocab), *c.sampling,
                    nullptr, c.banned, c.sample_index, &r);
    ++row;
    last_sampled_[c.slot] = r.token_id;
    result->ids.push_back(r.token_id);
    result->samples.push_back(std::move(r));
  }
  return absl::OkStatus();
}

absl::Status FakeEngine::StepAndSample(const StepPlan& plan, StepResult* result) {
  if (options_.step_seconds > 0) {
    std::this_thread::sleep_for(std::chrono::duration<double>(options_.step_seconds));
  }
  std::lock_guard<std::mutex> lock(mu_);
  return RunLocked(plan, result);
}

absl::Status FakeEngine::Launch(const StepPlan& plan) {
  if (!options_.pipelined) return Engine::Launch(plan);
  std::lock_guard<std::mutex> launched_lock(launched_mu_);
  if (launched_.size() >= 2) {
    return absl::FailedPreconditionError("fake engine: two steps are launched and not collected");
  }
  if (!launched_.empty()) ++launches_ahead_;
  Launched l;
  for (const SeqChunk& c : plan.seqs) l.slots.push_back(c.slot);
  {
    std::lock_guard<std::mutex> lock(mu_);
    l.status = RunLocked(plan, &l.result);
  }
  const auto step = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options_.step_seconds));
  device_free_ = std::max(device_free_, Clock::now()) + step;
  l.done = device_free_;
  launched_.push_back(std::move(l));
  return absl::OkStatus();
}

absl::Status FakeEngine::Collect(StepResult* result) {
  if (!options_.pipelined) return Engine::Collect(result);
  Clock::time_point done;
  {
    std::lock_guard<std::mutex> lock(launched_mu_);
    if (launched_.empty()) return absl::FailedPreconditionError("fake engine: nothing launched");
    done = launched_.front().done;
  }
  std::this_thread::sleep_until(done);
  Launched l;
  {
    std::lock_guard<std::mutex> lock(launched_mu_);
    l = std::move(launched_.front());
    launched_.pop_front();
  }
  *result = std::move(l.result);
  return l.status;
}

std::unique_ptr<int32_t[], void (*)(int32_t*)> FakeEngine::AllocateHostTokens(size_t count) {
  return {new int32_t[count], [](int32_t* p) { delete[] p; }};
}

StatePoolStats FakeEngine::state_pool() const {
  std::lock_guard<std::mutex> lock(mu_);
  StatePoolStats st;
  st.capacity_tokens = options_.state_pool_tokens > 0
                           ? options_.state_pool_tokens
                           : int64_t{options_.num_slots} * options_.context_limit;
  st.max_sequence_tokens =
      static_cast<int>(std::min<int64_t>(options_.context_limit, st.capacity_tokens));
  st.reserved_tokens = reserved_tokens_;
  for (const Slot& s : slots_) st.used_tokens += static_cast<int64_t>(s.history.size());
  return st;
}

std::vector<FakeEngine::StepRecord> FakeEngine::steps() const {
  std::lock_guard<std::mutex> lock(mu_);
  return steps_;
}

int FakeEngine::acquired_slots() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const Slot& s : slots_) n += s.acquired ? 1 : 0;
  return n;
}

}  // namespace moegraph
