// Host-side bookkeeping of one kind's compressed-entry pages: a free list,
// per-slot reservations (admission) and per-slot page tables (allocation on
// demand). The device tensors live in SequenceState; this class only decides
// which page ids go where.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace moegraph {

class EntryPagePool {
 public:
  EntryPagePool() = default;
  EntryPagePool(int num_pages, int page_size, int num_slots, int max_pages_per_slot);

  int page_size() const { return page_size_; }
  int num_pages() const { return num_pages_; }
  int max_pages_per_slot() const { return max_pages_per_slot_; }
  // Pages a slot needs to hold `entries` entries.
  int PagesFor(int64_t entries) const;
  // Pages neither allocated nor promised to a slot.
  int unreserved_pages() const { return num_pages_ - reserved_total_; }
  // Pages not mapped to any slot (num_pages() minus those holding entries).
  int free_pages() const { return static_cast<int>(free_.size()); }

  // Promises `pages` pages to `slot` (which holds no reservation).
  // RESOURCE_EXHAUSTED when fewer are unreserved or more than a slot's table holds.
  absl::Status Reserve(int slot, int pages);
  // Maps pages so that `slot` holds entries [0, entries); may mutate the table.
  // OUT_OF_RANGE when that exceeds the slot's reservation.
  absl::Status Ensure(int slot, int64_t entries);
  // Returns the slot's pages and reservation to the pool.
  void Release(int slot);

  int num_slots() const { return num_slots_; }
  // The page table, i32 [num_slots, max_pages_per_slot], -1 = unmapped.
  const std::vector<int32_t>& table() const { return table_; }
  // True when table() changed since the last ClearDirty().
  bool dirty() const { return dirty_; }
  // Forgets the pending changes too (the whole table was uploaded).
  void ClearDirty() {
    dirty_ = false;
    changes_.clear();
  }
  // Entries Ensure() mapped since the last call, as (index into table(), page
  // id) pairs, then forgotten. Release() records none: an unmapped entry of
  // the device table may keep a stale id, which nothing reads (a slot reads
  // only entries below its length, all mapped).
  void TakeChanges(std::vector<std::pair<int32_t, int32_t>>* out) {
    out->insert(out->end(), changes_.begin(), changes_.end());
    changes_.clear();
  }

 private:
  int num_pages_ = 0;
  int page_size_ = 1;
  int num_slots_ = 0;
  int max_pages_per_slot_ = 0;
  int reserved_total_ = 0;
  std::vector<int32_t> free_;  // stack of free page ids
  std::vector<int> reserved_;  // per slot
  std::vector<int> mapped_;    // per slot: pages mapped so far
  std::vector<int32_t> table_;
  std::vector<std::pair<int32_t, int32_t>> changes_;
  bool dirty_ = true;
};

}  // namespace moegraph
