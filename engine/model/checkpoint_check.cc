#include "engine/model/checkpoint_check.h"

#include <algorithm>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/model/weight_loader.h"
#include "kernels/cpu/quant.h"

namespace moegraph {
namespace {

StorageKind DenseKind(DType t) {
  if (t == DType::kBF16) return StorageKind::kBf16;
  if (t == DType::kF32) return StorageKind::kF32;
  return StorageKind::kOther;
}

}  // namespace

const char* StorageKindName(StorageKind k) {
  switch (k) {
    case StorageKind::kFp8:
      return "fp8 e4m3";
    case StorageKind::kFp4:
      return "fp4 e2m1";
    case StorageKind::kScale:
      return "scales";
    case StorageKind::kBf16:
      return "bf16";
    case StorageKind::kF32:
      return "f32";
    case StorageKind::kOther:
      return "other";
  }
  return "?";
}

uint64_t CheckpointReport::group_bytes(TensorGroup g) const {
  uint64_t s = 0;
  for (uint64_t b : bytes[static_cast<int>(g)]) s += b;
  return s;
}

uint64_t CheckpointReport::storage_bytes(StorageKind k) const {
  uint64_t s = 0;
  for (const auto& row : bytes) s += row[static_cast<int>(k)];
  return s;
}

uint64_t CheckpointReport::total_bytes() const {
  uint64_t s = 0;
  for (int g = 0; g < kNumTensorGroups; ++g) s += group_bytes(static_cast<TensorGroup>(g));
  return s;
}

uint64_t CheckpointReport::total_device_bytes() const {
  uint64_t s = 0;
  for (uint64_t b : device_bytes) s += b;
  return s;
}

std::string CheckpointReport::ErrorSummary() const {
  if (ok()) return "";
  auto first = [](const std::vector<std::string>& v) {
    std::vector<std::string> head(v.begin(), v.begin() + std::min<size_t>(v.size(), 5));
    return absl::StrJoin(head, "; ") + (v.size() > 5 ? "; ..." : "");
  };
  std::string s = absl::StrCat(missing.size(), " missing, ", malformed.size(), " malformed");
  if (!missing.empty()) absl::StrAppend(&s, "; missing: ", first(missing));
  if (!malformed.empty()) absl::StrAppend(&s, "; malformed: ", first(malformed));
  return s;
}

absl::StatusOr<CheckpointReport> CheckCheckpoint(const WeightStore& ws, const ModelConfig& c) {
  if (static_cast<int>(c.layer_types.size()) != c.num_layers ||
      static_cast<int>(c.mlp_types.size()) != c.num_layers) {
    return absl::InvalidArgumentError("model config: inconsistent layer counts");
  }
  CheckpointReport r;
  r.layer_device_bytes.assign(c.num_layers, 0);
  r.layer_expert_device_bytes.assign(c.num_layers, 0);
  auto place = [&](const TensorSpec& spec, int group, uint64_t bytes) {
    r.device_bytes[group] += bytes;
    if (spec.layer >= 0 && spec.layer < c.num_layers) {
      (group == static_cast<int>(TensorGroup::kRoutedExperts) ? r.layer_expert_device_bytes
                                                              : r.layer_device_bytes)[spec.layer] +=
          bytes;
    } else {
      (spec.field == TensorField::kEmbed ? r.embed_device_bytes : r.head_device_bytes) += bytes;
    }
  };
  std::set<std::string> used;
  std::set<std::string> formats;
  const int64_t blk = quant::kFp8Block;
  for (const TensorSpec& spec : Dsv4TensorSpecs(c)) {
    ++r.expected;
    const bool matrix = spec.read == TensorRead::kMatrix;
    const std::string* name = nullptr;
    for (const std::string& n : spec.names) {
      if (ws.Has(matrix ? n + ".weight" : n)) {
        name = &n;
        break;
      }
    }
    if (name == nullptr) {
      r.missing.push_back(matrix ? spec.names.front() + ".weight" : spec.names.front());
      continue;
    }
    const int g = static_cast<int>(GroupOf(spec.field));
    if (!matrix) {
      absl::StatusOr<Tensor> t = ws.Get(*name, spec.shape);
      if (!t.ok()) {
        r.malformed.push_back(std::string(t.status().message()));
        continue;
      }
      used.insert(*name);
      ++r.found;
      ++r.stored_tensors;
      r.bytes[g][static_cast<int>(DenseKind(t->dtype))] += t->bytes();
      const bool is_int = t->dtype == DType::kI32 || t->dtype == DType::kI64;
      const uint64_t n = static_cast<uint64_t>(t->numel());
      place(spec, g, n * (is_int ? 4 : spec.read == TensorRead::kTable ? 2 : 4));
      continue;
    }
    // The loader's own reader: the same shape, dtype and scale checks.
    absl::StatusOr<HostWeight> w =
        ReadMatrix(ws, spec.names, spec.shape[0], spec.shape[1], c.quant);
    if (!w.ok()) {
      r.malformed.push_back(std::string(w.status().message()));
      continue;
    }
    used.insert(*name + ".weight");
    for (const char* suffix : {".scale", ".weight_scale_inv"}) {
      if (w->format != WeightFormat::kDense && ws.Has(*name + suffix)) {
        used.insert(*name + suffix);
        ++r.stored_tensors;
        break;
      }
    }
    ++r.found;
    ++r.stored_tensors;
    formats.insert(w->format == WeightFormat::kFp8   ? "fp8"
                   : w->format == WeightFormat::kFp4 ? "fp4"
                                                     : DTypeName(w->data.dtype));
    // (Header-only tensors have null data: count by shape, not by empty().)
    const uint64_t data = w->data.bytes();
    const uint64_t scale = w->format == WeightFormat::kDense ? 0 : w->scale.bytes();
    uint64_t device = 0;
    if (w->format == WeightFormat::kFp8) {
      r.bytes[g][static_cast<int>(StorageKind::kFp8)] += data;
      device = data + 4 * static_cast<uint64_t>(((spec.shape[0] + blk - 1) / blk) *
                                                ((spec.shape[1] + blk - 1) / blk));
    } else if (w->format == WeightFormat::kFp4) {
      r.bytes[g][static_cast<int>(StorageKind::kFp4)] += data;
      device = data + scale;
    } else {
      r.bytes[g][static_cast<int>(DenseKind(w->data.dtype))] += data;
      device = 2 * static_cast<uint64_t>(spec.shape[0] * spec.shape[1]);
    }
    r.bytes[g][static_cast<int>(StorageKind::kScale)] += scale;
    place(spec, g, device);
    if (spec.expert == 0 && spec.layer == 0) {
      r.bytes_per_expert += data + scale;
      r.device_bytes_per_expert += device;
    }
  }
  for (const std::string& name : ws.Names()) {
    if (used.count(name)) continue;
    if (absl::StartsWith(name, "mtp.")) {
      ++r.mtp_tensors;
      absl::StatusOr<Tensor> t = ws.Get(name);
      if (t.ok()) r.mtp_bytes += t->bytes();
    } else {
      r.unused.push_back(name);
    }
  }
  r.matrix_formats.assign(formats.begin(), formats.end());
  return r;
}

}  // namespace moegraph
