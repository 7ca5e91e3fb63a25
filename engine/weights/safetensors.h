// Read-only access to safetensors checkpoints: one file or a sharded set
// (model.safetensors.index.json), mmapped, with the header validated (well-
// formed JSON, offsets inside the file, sizes = dtype x shape, no overlaps).
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
    const void* data;  // into the mapping
    size_t bytes;
  };
  // F32, BF16, F16, I64, I32 are read; F8_E4M3 is recognised and refused with
  // "not supported yet"; anything else is an error naming the dtype.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  const std::map<std::string, Entry>& entries() const { return entries_; }
  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, Entry> entries_;
};

// All tensors of a checkpoint directory, by canonical name: the leading
// "model." is dropped, "embed_tokens.weight" becomes "embed.weight" and
// "lm_head.weight" becomes "head.weight".
class WeightStore {
 public:
  static absl::StatusOr<std::unique_ptr<WeightStore>> Open(const std::string& model_dir);
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

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile::Entry*, std::less<>> by_name_;
};

std::string CanonicalTensorName(std::string_view name);

}  // namespace moegraph
