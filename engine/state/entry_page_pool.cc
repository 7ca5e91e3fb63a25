#include "engine/state/entry_page_pool.h"

#include "absl/strings/str_cat.h"

namespace moegraph {

EntryPagePool::EntryPagePool(int num_pages, int page_size, int num_slots, int max_pages_per_slot)
    : num_pages_(num_pages),
      page_size_(page_size),
      num_slots_(num_slots),
      max_pages_per_slot_(max_pages_per_slot),
      reserved_(num_slots, 0),
      mapped_(num_slots, 0),
      table_(static_cast<size_t>(num_slots) * max_pages_per_slot, -1) {
  free_.reserve(num_pages);
  for (int p = num_pages - 1; p >= 0; --p) free_.push_back(p);
}

int EntryPagePool::PagesFor(int64_t entries) const {
  return static_cast<int>((entries + page_size_ - 1) / page_size_);
}

absl::Status EntryPagePool::Reserve(int slot, int pages) {
  if (pages > max_pages_per_slot_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "a sequence needs ", pages, " entry pages, a slot holds at most ", max_pages_per_slot_));
  }
  if (pages > unreserved_pages()) {
    return absl::ResourceExhaustedError(absl::StrCat("entry page pool: ", pages, " pages needed, ",
                                                     unreserved_pages(), " of ", num_pages_,
                                                     " unreserved"));
  }
  reserved_[slot] = pages;
  reserved_total_ += pages;
  return absl::OkStatus();
}

absl::Status EntryPagePool::Ensure(int slot, int64_t entries) {
  const int need = PagesFor(entries);
  if (need > reserved_[slot]) {
    return absl::OutOfRangeError(absl::StrCat("slot ", slot, " needs ", need,
                                              " entry pages but reserved ", reserved_[slot]));
  }
  while (mapped_[slot] < need) {
    // Reservations guarantee a free page here.
    const size_t at = static_cast<size_t>(slot) * max_pages_per_slot_ + mapped_[slot];
    table_[at] = free_.back();
    changes_.emplace_back(static_cast<int32_t>(at), free_.back());
    free_.pop_back();
    ++mapped_[slot];
    dirty_ = true;
  }
  return absl::OkStatus();
}

void EntryPagePool::Release(int slot) {
  for (int i = 0; i < mapped_[slot]; ++i) {
    int32_t& id = table_[static_cast<size_t>(slot) * max_pages_per_slot_ + i];
    free_.push_back(id);
    id = -1;
  }
  if (mapped_[slot] > 0) dirty_ = true;
  mapped_[slot] = 0;
  reserved_total_ -= reserved_[slot];
  reserved_[slot] = 0;
}

}  // namespace moegraph
