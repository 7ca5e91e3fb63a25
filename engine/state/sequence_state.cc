#include "engine/state/sequence_state.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/common/status_macros.h"

namespace moegraph {

absl::StatusOr<std::unique_ptr<SequenceState>> SequenceState::Create(
    Backend* backend, const ModelConfig& config, const SequenceStateOptions& options) {
  return Build(backend, backend->activation_dtype(), config, options, nullptr);
}

absl::StatusOr<uint64_t> SequenceState::DeviceBytes(const ModelConfig& config,
                                                    const SequenceStateOptions& options,
                                                    DType activation_dtype) {
  uint64_t bytes = 0;
  RETURN_IF_ERROR(Build(nullptr, activation_dtype, config, options, &bytes).status());
  return bytes;
}

absl::StatusOr<std::unique_ptr<SequenceState>> SequenceState::Build(
    Backend* backend, DType act, const ModelConfig& config, const SequenceStateOptions& options,
    uint64_t* count_only) {
  if (options.num_slots <= 0 || options.context_limit <= 0 || options.page_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence state: num_slots, context_limit and page_size must be positive (got ",
        options.num_slots, ", ", options.context_limit, ", ", options.page_size, ")"));
  }
  if (options.scratch_tokens < 0) {
    return absl::InvalidArgumentError("sequence state: scratch_tokens must be >= 0");
  }
  std::unique_ptr<SequenceState> s(new SequenceState());
  s->backend_ = backend;
  s->options_ = options;
  const bool scratch = options.scratch_tokens > 0;
  // Internal slots: the public ones, then the scratch slot.
  const int64_t slots = options.num_slots + (scratch ? 1 : 0);
  s->slots_.resize(slots);
  auto alloc = [&](DType t, std::initializer_list<int64_t> dims) -> absl::StatusOr<Tensor> {
    Tensor view(nullptr, t, dims);
    if (count_only != nullptr) {
      *count_only += view.bytes();
      return view;
    }
    ASSIGN_OR_RETURN(Buffer buf, backend->Allocate(view.bytes()));
    view.data = buf.data();
    s->buffers_.push_back(std::move(buf));
    RETURN_IF_ERROR(backend->Fill(view, 0.0f));
    return view;
  };

  const int d = config.head_dim, c = config.index_head_dim;
  if (options.end_layer == 0) s->options_.end_layer = config.num_layers;
  const int first = s->options_.first_layer, end = s->options_.end_layer;
  if (first < 0 || first >= end || end > config.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("sequence state: layers [", first, ", ", end,
                                                   ") outside the model's ", config.num_layers));
  }
  auto kind = [&](EntryKind e, int rate, int width, AttnKind of) {
    KindState& k = s->kinds_[static_cast<int>(e)];
    k.rate = rate;
    k.width = width;
    k.first_of_kind = static_cast<int>(
        std::count(config.layer_types.begin(), config.layer_types.begin() + first, of));
    k.layers = static_cast<int>(
        std::count(config.layer_types.begin() + first, config.layer_types.begin() + end, of));
  };
  kind(EntryKind::kCsa, config.csa_rate, d, AttnKind::kCsa);
  kind(EntryKind::kHca, config.hca_rate, d, AttnKind::kHca);
  kind(EntryKind::kCsaIndex, config.csa_rate, c, AttnKind::kCsa);
  const int64_t pool_tokens =
      options.pool_tokens > 0
          ? options.pool_tokens
          : std::min<int64_t>(options.num_slots * int64_t{options.context_limit},
                              kDefaultPoolTokens);
  std::array<int, kNumEntryKinds> max_pages{};
  int64_t table_words = 0;
  for (int i = 0; i < kNumEntryKinds; ++i) {
    KindState& k = s->kinds_[i];
    if (k.layers == 0) continue;
    if (k.rate <= 0 || k.width <= 0) {
      return absl::InvalidArgumentError("sequence state: compressed layers need a positive rate");
    }
    auto pages_for = [&](int64_t tokens) {
      return static_cast<int>((tokens / k.rate + options.page_size - 1) / options.page_size);
    };
    max_pages[i] =
        std::max({1, pages_for(options.context_limit), pages_for(options.scratch_tokens)});
    // Every slot may round its last page up, hence the extra page per slot.
    const int num_pages = pages_for(pool_tokens) + static_cast<int>(slots) +
                          (scratch ? pages_for(options.scratch_tokens) : 0);
    k.pages = EntryPagePool(num_pages, options.page_size, static_cast<int>(slots), max_pages[i]);
    ASSIGN_OR_RETURN(k.pool, alloc(act, {num_pages, options.page_size, k.layers, k.width}));
    s->table_offset_[i] = table_words;
    table_words += slots * max_pages[i];
  }
  ASSIGN_OR_RETURN(s->tables_, alloc(DType::kI32, {std::max<int64_t>(1, table_words)}));
  for (int i = 0; i < kNumEntryKinds && count_only == nullptr; ++i) {
    KindState& k = s->kinds_[i];
    if (k.layers == 0) continue;
    k.table =
        Tensor(s->tables_.as<int32_t>() + s->table_offset_[i], DType::kI32, {slots, max_pages[i]});
  }

  s->layers_.resize(config.num_layers);
  for (int l = first; l < end; ++l) {
    LayerState& ls = s->layers_[l];
    ASSIGN_OR_RETURN(ls.window_ring, alloc(act, {slots, config.sliding_window, d}));
    if (config.layer_types[l] == AttnKind::kHca) {
      ASSIGN_OR_RETURN(ls.compressor_ring, alloc(act, {slots, config.hca_rate, 2 * d}));
    } else if (config.layer_types[l] == AttnKind::kCsa) {
      ASSIGN_OR_RETURN(ls.compressor_ring, alloc(act, {slots, 2 * config.csa_rate, 4 * d}));
      ASSIGN_OR_RETURN(ls.index_ring, alloc(act, {slots, 2 * config.csa_rate, 4 * c}));
    }
  }
  if (scratch) {
    const int slot = s->scratch_slot();
    for (KindState& k : s->kinds_) {
      if (k.layers == 0) continue;
      const int64_t entries = options.scratch_tokens / k.rate;
      RETURN_IF_ERROR(k.pages.Reserve(slot, k.pages.PagesFor(entries)));
      RETURN_IF_ERROR(k.pages.Ensure(slot, entries));
    }
    s->slots_[slot] = Slot{true, options.scratch_tokens, 0};
  }
  if (count_only != nullptr) return s;  // nothing allocated: only the sizes were wanted
  RETURN_IF_ERROR(s->SyncTables());
  return s;
}

absl::Status SequenceState::Acquire(int slot, int max_tokens) {
  if (slot < 0 || slot >= num_slots()) {
    return absl::InvalidArgumentError(
        absl::StrCat("slot ", slot, " outside [0, ", num_slots(), ")"));
  }
  if (slots_[slot].in_use) {
    return absl::FailedPreconditionError(absl::StrCat("slot ", slot, " is in use"));
  }
  if (max_tokens <= 0 || max_tokens > options_.context_limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens ", max_tokens, " outside [1, ", options_.context_limit, "]"));
  }
  int taken = 0;
  for (; taken < kNumEntryKinds; ++taken) {
    KindState& k = kinds_[taken];
    if (k.layers == 0) continue;
    absl::Status st = k.pages.Reserve(slot, k.pages.PagesFor(max_tokens / k.rate));
    if (!st.ok()) {
      for (int i = 0; i < taken; ++i) {
        if (kinds_[i].layers) kinds_[i].pages.Release(slot);
      }
      return st;
    }
  }
  slots_[slot] = Slot{true, max_tokens, 0};
  return absl::OkStatus();
}

StatePoolStats SequenceState::pool_stats() const {
  StatePoolStats st;
  st.max_sequence_tokens = options_.context_limit;
  int64_t capacity = -1;  // the least any kind's pages hold, in tokens
  for (const KindState& k : kinds_) {
    if (k.layers == 0) continue;
    const EntryPagePool& p = k.pages;
    // The scratch slot's pages (padding rows) are no request's to use.
    const int scratch =
        options_.scratch_tokens > 0 ? p.PagesFor(options_.scratch_tokens / k.rate) : 0;
    const int num_pages = p.num_pages() - scratch;
    st.capacity_pages += num_pages;
    st.reserved_pages += p.num_pages() - p.unreserved_pages() - scratch;
    st.used_pages += p.num_pages() - p.free_pages() - scratch;
    const int64_t kind_tokens = int64_t{num_pages} * p.page_size() * k.rate;
    capacity = capacity < 0 ? kind_tokens : std::min(capacity, kind_tokens);
    // Acquire reserves PagesFor(max_tokens / rate) pages, at most the pool's
    // (and a slot's table's) pages: the largest max_tokens that passes.
    const int64_t pages = std::min(num_pages, p.max_pages_per_slot());
    const int64_t longest = pages * p.page_size() * k.rate + k.rate - 1;
    st.max_sequence_tokens = static_cast<int>(std::min<int64_t>(st.max_sequence_tokens, longest));
  }
  // Without compressed layers only the per-slot rings hold state: one
  // context per slot.
  st.capacity_tokens = capacity >= 0 ? capacity : int64_t{num_slots()} * options_.context_limit;
  for (int i = 0; i < num_slots(); ++i) {  // not the scratch slot
    const Slot& s = slots_[i];
    if (!s.in_use) continue;
    st.reserved_tokens += s.max_tokens;
    st.used_tokens += s.length;
  }
  return st;
}

void SequenceState::Release(int slot) {
  if (slot < 0 || slot >= num_slots() || !slots_[slot].in_use) return;
  for (KindState& k : kinds_) {
    if (k.layers) k.pages.Release(slot);
  }
  slots_[slot] = Slot{};
}

absl::Status SequenceState::PrepareChunk(int slot, int start_pos, int len) {
  if (slot < 0 || slot >= num_slots() || !slots_[slot].in_use) {
    return absl::FailedPreconditionError(absl::StrCat("slot ", slot, " is not acquired"));
  }
  const Slot& s = slots_[slot];
  if (start_pos != s.length) {
    return absl::InvalidArgumentError(absl::StrCat("slot ", slot, ": chunk starts at position ",
                                                   start_pos, " but the sequence holds ", s.length,
                                                   " tokens"));
  }
  if (len <= 0 || start_pos + len > s.max_tokens) {
    return absl::OutOfRangeError(absl::StrCat("slot ", slot, ": chunk of ", len,
                                              " tokens at position ", start_pos,
                                              " exceeds the reserved ", s.max_tokens, " tokens"));
  }
  for (KindState& k : kinds_) {
    if (k.layers) RETURN_IF_ERROR(k.pages.Ensure(slot, (start_pos + len) / k.rate));
  }
  return absl::OkStatus();
}

absl::Status SequenceState::SyncTables() {
  for (KindState& k : kinds_) {
    if (!k.layers || !k.pages.dirty()) continue;
    RETURN_IF_ERROR(backend_->Upload(k.table.data, k.pages.table().data(),
                                     k.pages.table().size() * sizeof(int32_t)));
    k.pages.ClearDirty();
  }
  return absl::OkStatus();
}

void SequenceState::TakeTableChanges(std::vector<int32_t>* pairs) {
  for (int i = 0; i < kNumEntryKinds; ++i) {
    KindState& k = kinds_[i];
    if (!k.layers) continue;
    changes_.clear();
    k.pages.TakeChanges(&changes_);
    for (const auto& [at, page] : changes_) {
      pairs->push_back(static_cast<int32_t>(table_offset_[i] + at));
      pairs->push_back(page);
    }
  }
}

EntryPages SequenceState::entries(EntryKind kind, int layer_of_kind) const {
  const KindState& k = kinds_[static_cast<int>(kind)];
  EntryPages e;
  e.pool = k.pool;
  e.table = k.table;
  e.page_size = k.pages.page_size();
  e.layer = layer_of_kind - k.first_of_kind;
  return e;
}

}  // namespace moegraph
