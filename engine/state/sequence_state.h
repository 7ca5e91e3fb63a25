// Per-sequence model state on a backend (design.md "State per sequence"): a
// fixed pool of slots, each with a sliding-window ring and compressor rings
// per layer, plus compressed entries in pages shared by the layers of each
// kind and allocated on demand. Not thread-safe (the engine's step thread).
#pragma once

#include <array>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/backend/backend.h"
#include "engine/engine.h"
#include "engine/model/model_config.h"
#include "engine/state/entry_page_pool.h"

namespace moegraph {

// The three kinds of compressed entries, each with its own page pool.
enum class EntryKind { kCsa = 0, kHca = 1, kCsaIndex = 2 };
constexpr int kNumEntryKinds = 3;

constexpr int64_t kDefaultPoolTokens = 262144;

struct SequenceStateOptions {
  int num_slots = 1;
  int context_limit = 0;  // most tokens one sequence may hold
  int64_t pool_tokens =
      0;               // tokens of compressed state over all slots; 0 = num_slots * context_limit
  int page_size = 64;  // entries per page
  // > 0: one more slot (index num_slots, outside the public range) with pages
  // mapped for this many tokens up front. Padded rows of bucketed steps point
  // at it, so they never touch a real sequence's state.
  int scratch_tokens = 0;
  // Layer placement (docs/expert-parallel.md): state only for layers
  // [first_layer, end_layer); end_layer 0 = every layer.
  int first_layer = 0;
  int end_layer = 0;
};

class SequenceState {
 public:
  static absl::StatusOr<std::unique_ptr<SequenceState>> Create(Backend* backend,
                                                               const ModelConfig& config,
                                                               const SequenceStateOptions& options);
  // The device bytes Create allocates for these options (rings, entry pages,
  // page tables), computed by the same code without a backend.
  static absl::StatusOr<uint64_t> DeviceBytes(const ModelConfig& config,
                                              const SequenceStateOptions& options,
                                              DType activation_dtype);

  int num_slots() const { return options_.num_slots; }
  // The padding slot (see scratch_tokens), or -1 when there is none.
  int scratch_slot() const { return options_.scratch_tokens > 0 ? options_.num_slots : -1; }
  int context_limit() const { return options_.context_limit; }
  bool in_use(int slot) const { return slots_[slot].in_use; }
  // Tokens the slot has consumed so far (the next chunk's start position).
  int length(int slot) const { return slots_[slot].length; }

  // Capacity and use of the page pools (Engine::state_pool()).
  StatePoolStats pool_stats() const;

  // Reserves pages of every kind for up to `max_tokens` tokens in a free slot.
  // RESOURCE_EXHAUSTED (slot stays free) when the pools cannot promise them.
  absl::Status Acquire(int slot, int max_tokens);
  // Returns the slot's pages to the pools and frees it. No-op on a free slot.
  void Release(int slot);

  // Checks that a chunk continues its sequence and fits the reservation, and
  // maps the pages its emitted entries need. Mutates page tables (host side).
  absl::Status PrepareChunk(int slot, int start_pos, int len);
  // Uploads every page table changed since the last call in full (load time;
  // steps apply TakeTableChanges on the device instead).
  absl::Status SyncTables();
  // Appends the page-table entries mapped since the last call as
  // (index into table_buffer(), page id) pairs, for the step to apply on the
  // device (Backend::ScatterPairs).
  void TakeTableChanges(std::vector<int32_t>* pairs);
  // Every kind's page table in one i32 buffer (the kinds' tables are views).
  Tensor table_buffer() const { return tables_; }
  // Records that the slot consumed `len` more tokens (after a successful step).
  void Advance(int slot, int len) { slots_[slot].length += len; }

  // Whether this state holds `layer` (layer placement holds a block).
  bool holds_layer(int layer) const {
    return layer >= options_.first_layer && layer < options_.end_layer;
  }
  // act [num_slots, W, d]
  Tensor window_ring(int layer) const { return layers_[layer].window_ring; }
  // act [num_slots, ring_len, 2*cw] of the layer's main compressor or its indexer's.
  Tensor compressor_ring(int layer, bool indexer) const {
    return indexer ? layers_[layer].index_ring : layers_[layer].compressor_ring;
  }
  // The pages of `kind` addressed at layer-of-kind `layer_of_kind` (counted
  // over the whole model; the pool holds only this state's layers).
  EntryPages entries(EntryKind kind, int layer_of_kind) const;

 private:
  struct Slot {
    bool in_use = false;
    int max_tokens = 0;
    int length = 0;
  };
  struct LayerState {
    Tensor window_ring;
    Tensor compressor_ring;  // empty on sliding layers
    Tensor index_ring;       // CSA only
  };
  struct KindState {
    int rate = 0;
    int width = 0;
    int layers = 0;
    int first_of_kind = 0;  // layer-of-kind of the pool's first layer
    EntryPagePool pages;
    Tensor pool;   // act [num_pages, page_size, layers, width]
    Tensor table;  // i32 [num_slots, max_pages_per_slot]
  };

  SequenceState() = default;
  // Create's body; with `count_only`, adds the bytes of every buffer there
  // instead of allocating (backend unused, may be null).
  static absl::StatusOr<std::unique_ptr<SequenceState>> Build(Backend* backend, DType act,
                                                              const ModelConfig& config,
                                                              const SequenceStateOptions& options,
                                                              uint64_t* count_only);

  Backend* backend_ = nullptr;
  SequenceStateOptions options_;
  std::vector<Slot> slots_;
  std::vector<LayerState> layers_;
  std::array<KindState, kNumEntryKinds> kinds_;
  std::array<int64_t, kNumEntryKinds> table_offset_{};  // of each kind in tables_
  Tensor tables_;                                       // i32, all kinds' tables
  std::vector<std::pair<int32_t, int32_t>> changes_;    // reused by TakeTableChanges
  std::vector<Buffer> buffers_;                         // owns every tensor above
};

}  // namespace moegraph
