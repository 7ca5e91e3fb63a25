// How a step's tokens map to sequences and how compressed entries are paged;
// shared by the stateful kernels (compressor, indexer, attention).
#pragma once

#include <cstdint>

namespace moegraph::cpu {

// Sequence s owns tokens [seq_begin[s], seq_begin[s+1]) at positions
// seq_start_pos[s] + 0, 1, ... and keeps its state in slot seq_slot[s].
struct BatchLayout {
  int num_tokens = 0;
  int num_seqs = 0;
  const int32_t* token_pos = nullptr;      // [num_tokens]
  const int32_t* token_seq = nullptr;      // [num_tokens]
  const int32_t* seq_begin = nullptr;      // [num_seqs + 1]
  const int32_t* seq_slot = nullptr;       // [num_seqs]
  const int32_t* seq_start_pos = nullptr;  // [num_seqs]
};

// Compressed entries of one kind in fixed-size pages:
//   pool  [num_pages, page_size, layers, width]
//   table [num_slots, max_pages]  page ids (-1 = not allocated)
// Entry e of slot s for layer-of-kind `layer` is
//   pool[table[s][e / page_size]][e % page_size][layer][:].
struct EntryPagesView {
  float* pool = nullptr;
  const int32_t* table = nullptr;
  int64_t num_pages = 0;
  int num_slots = 0;
  int max_pages = 0;
  int page_size = 0;
  int layers = 0;
  int layer = 0;
  int width = 0;

  // Null when entry e of `slot` has no page.
  float* Entry(int slot, int64_t e) const {
    const int64_t page_index = e / page_size;
    if (slot < 0 || slot >= num_slots || page_index >= max_pages) return nullptr;
    const int32_t page = table[static_cast<int64_t>(slot) * max_pages + page_index];
    if (page < 0 || page >= num_pages) return nullptr;
    return pool +
           ((static_cast<int64_t>(page) * page_size + e % page_size) * layers + layer) * width;
  }
};

}  // namespace moegraph::cpu
