// Which layers each rank runs under layer placement (docs/expert-parallel.md):
// contiguous blocks, as even as integer division allows; the first block's
// rank also embeds the tokens, the last block's runs the head.
#pragma once

namespace moegraph {

// Layers [first, end) of the model.
struct LayerRange {
  int first = 0;
  int end = 0;

  int count() const { return end - first; }
  bool contains(int layer) const { return layer >= first && layer < end; }
  bool operator==(const LayerRange&) const = default;
};

// Rank r of num_ranks (<= num_layers) runs [r * L / R, (r + 1) * L / R):
// blocks differ by at most one layer and none is empty.
inline LayerRange LayerBlock(int num_layers, int num_ranks, int rank) {
  auto at = [&](int r) {
    return static_cast<int>(static_cast<long long>(r) * num_layers / num_ranks);
  };
  return LayerRange{at(rank), at(rank + 1)};
}

}  // namespace moegraph
