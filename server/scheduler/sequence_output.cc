#include "server/scheduler/sequence_output.h"

#include <algorithm>

namespace moegraph {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";
}

SequenceOutput::SequenceOutput(StopCriteria criteria,
                               std::unique_ptr<DetokenizerStream> detokenizer)
    : criteria_(std::move(criteria)), detokenizer_(std::move(detokenizer)) {
  stop_ids_ = criteria_.eos_token_ids;
  stop_ids_.insert(stop_ids_.end(), criteria_.stop_token_ids.begin(),
                   criteria_.stop_token_ids.end());
  std::sort(stop_ids_.begin(), stop_ids_.end());
  stop_ids_.erase(std::unique(stop_ids_.begin(), stop_ids_.end()), stop_ids_.end());
  for (const std::string& s : criteria_.stop_strings)
    max_stop_len_ = std::max(max_stop_len_, s.size());
}

std::span<const int32_t> SequenceOutput::banned_ids_at(int index) const {
  if (index < criteria_.min_tokens) return stop_ids_;
  return {};
}

size_t SequenceOutput::HeldBackSuffix() const {
  // The longest suffix of pending_ that is a proper prefix of a stop string.
  const size_t limit = std::min(pending_.size(), max_stop_len_ == 0 ? 0 : max_stop_len_ - 1);
  for (size_t len = limit; len > 0; --len) {
    std::string_view suffix(pending_.data() + pending_.size() - len, len);
    for (const std::string& s : criteria_.stop_strings) {
      if (s.size() > len && std::string_view(s).substr(0, len) == suffix) return len;
    }
  }
  return 0;
}

SequenceOutput::Step SequenceOutput::Add(int32_t token_id) {
  Step step;
  ++num_tokens_;
  if (detokenizer_ != nullptr) pending_ += detokenizer_->Add(token_id);
  if (num_tokens_ >= criteria_.min_tokens && !criteria_.stop_strings.empty()) {
    size_t best = std::string::npos;
    const std::string* matched = nullptr;
    for (const std::string& s : criteria_.stop_strings) {
      size_t pos = pending_.find(s);
      if (pos != std::string::npos && (best == std::string::npos || pos < best)) {
        best = pos;
        matched = &s;
      }
    }
    if (matched != nullptr) {
      step.text = pending_.substr(0, best);
      if (criteria_.include_stop_str_in_output) step.text += *matched;
      pending_.clear();
      step.finished = true;
      step.reason = FinishReason::kStop;
      step.stop_string = *matched;
      return step;
    }
  }
  if (num_tokens_ > criteria_.min_tokens &&
      std::binary_search(stop_ids_.begin(), stop_ids_.end(), token_id)) {
    step.finished = true;
    step.reason = FinishReason::kStop;
    step.stop_token_id = token_id;
  } else if (num_tokens_ >= criteria_.max_tokens) {
    step.finished = true;
    step.reason = FinishReason::kLength;
  }
  if (step.finished) {
    step.text = Flush();
    return step;
  }
  const size_t hold = HeldBackSuffix();
  step.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return step;
}

std::string SequenceOutput::Flush() {
  std::string text = std::move(pending_);
  pending_.clear();
  if (detokenizer_ != nullptr) text += detokenizer_->Flush();
  return text;
}

}  // namespace moegraph
