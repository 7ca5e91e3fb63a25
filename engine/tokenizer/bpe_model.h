// The BPE model of tokenizer.json: vocabulary, ranked merges, and the merge
// loop of `tokenizers` (lowest rank first, leftmost on ties), behind a
// thread-safe cache of words already merged.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace moegraph {

// Debian's Abseil has its own string_view type; hash-map lookups need it.
inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

class BpeModel {
 public:
  // `model` is tokenizer.json's "model" object. With `byte_level`, words
  // passed to Tokenize are raw bytes and each byte starts as the vocabulary
  // entry of its GPT-2 alphabet character; otherwise words are UTF-8 text and
  // each character starts as its own entry.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(const nlohmann::json& model,
                                                          bool byte_level);

  // Appends the ids of `word` (non-empty) to `ids`. Thread-safe.
  void Tokenize(std::string_view word, std::vector<int32_t>* ids) const;

  const absl::flat_hash_map<std::string, int32_t>& vocab() const { return vocab_; }

 private:
  struct MergeTarget {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const MergeTarget* FindMerge(int32_t a, int32_t b) const {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }
  // Initial symbols of `word` (unknown characters become unk or vanish).
  void InitialSymbols(std::string_view word, std::vector<int32_t>* symbols) const;
  // Runs the merges over `symbols` in place.
  void MergeAll(std::vector<int32_t>* symbols) const;

  bool byte_level_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  std::optional<int32_t> unk_id_;
  absl::flat_hash_map<std::string, int32_t> vocab_;
  // With ignore_merges, the whole-word lookup keyed like Tokenize's input.
  absl::flat_hash_map<std::string, int32_t> word_vocab_;
  absl::flat_hash_map<uint64_t, MergeTarget> merges_;
  std::array<int32_t, 256> byte_ids_{};  // byte_level: initial id per byte, -1 if none

  // Word cache, sharded so concurrent Encode calls rarely contend. A shard
  // that fills up is cleared (cheap, and keeps recent words).
  static constexpr size_t kCacheShards = 32;
  static constexpr size_t kCacheShardCapacity = 4096;
  static constexpr size_t kMaxCachedWordBytes = 256;
  struct CacheShard {
    std::mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> words;
  };
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace moegraph
