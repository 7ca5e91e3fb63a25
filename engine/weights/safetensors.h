// Read-only access to safetensors checkpoints: one file or a sharded set
// (model.safetensors.index.json), mmapped, with the header validated (well-
// formed JSON, offsets inside the file, sizes = dtype x shape, no overlaps).
// Tensor data stays in the read-only mapping: views returned by Get must not
// be written through (the page is mapped PROT_READ).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/tensor.h"

namespace moegraph {

// One mmapped .safetensors file.
class SafetensorsFile {
 public:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    const void* data;  // into the mapping (or an aligned copy, see below)
    size_t bytes;
  };
  // Header bytes are capped like the reference implementation's (100 MB).
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;
  // F32, BF16, F16, I64, I32, F8_E4M3, F8_E8M0, I8 and U8 are read; anything
  // else is an error naming the tensor and the dtype.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // The header alone (read, not mapped), validated as Open does except that the
  // data section may be absent: every entry's `data` is null. For planning
  // (moegraph plan) and for checking a checkpoint's tensor list without its data.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenHeader(const std::string& path);
  ~SafetensorsFile();
  bool headers_only() const { return headers_only_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenImpl(const std::string& path,
                                                                   bool headers_only);
  std::string path_;
  bool headers_only_ = false;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, Entry> entries_;
  // Tensors whose offset in the file is not a multiple of their element size
  // are copied here so that views are always naturally aligned.
  std::vector<std::unique_ptr<uint64_t[]>> aligned_copies_;
};

// All tensors of a checkpoint directory, by canonical name: the leading
// "model." is dropped, "embed_tokens.weight" becomes "embed.weight",
// "lm_head.weight" becomes "head.weight", and transformers' "hc_head.hc_fn",
// "hc_head.hc_base", "hc_head.hc_scale" become the upstream "hc_head_fn",
// "hc_head_base", "hc_head_scale" (dsv4.md's spelling). Two stored names that
// map to one canonical name are an error.
class WeightStore {
 public:
  static absl::StatusOr<std::unique_ptr<WeightStore>> Open(const std::string& model_dir);
  // The same directory's tensor list from the headers alone (index and shard
  // headers, validated; data not read and not needed): Get returns tensors
  // with shape and dtype and a null `data`. Never hand such a store to a model.
  static absl::StatusOr<std::unique_ptr<WeightStore>> OpenHeaders(const std::string& model_dir);
  // False for a store from OpenHeaders.
  bool has_data() const { return !headers_only_; }
  // Also usable on a single file (golden.safetensors); names are not rewritten.
  static absl::StatusOr<std::unique_ptr<WeightStore>> OpenFile(const std::string& path);

  bool Has(std::string_view name) const;
  // The tensor as a host view (data in the mapping). Error names the tensor
  // when it is missing, or when `shape` (if non-empty) or `dtypes` (if
  // non-empty) do not match: "layers.3.attn.wq_a.weight: expected shape
  // [48, 64], found [64, 48]".
  absl::StatusOr<Tensor> Get(std::string_view name, std::vector<int64_t> shape = {},
                             std::vector<DType> dtypes = {}) const;
  std::vector<std::string> Names() const;
  // The directory or file this store was opened from (for messages).
  const std::string& origin() const { return origin_; }

 private:
  static absl::StatusOr<std::unique_ptr<WeightStore>> OpenDir(const std::string& model_dir,
                                                              bool headers_only);
  std::string origin_;
  bool headers_only_ = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile::Entry*, std::less<>> by_name_;
};

std::string CanonicalTensorName(std::string_view name);

}  // namespace moegraph
