// Checks a checkpoint's tensor list against what Dsv4Model reads
// (dsv4_tensors.h), through the loader's own readers, on any WeightStore
// (a header-only one included: nothing is loaded). Reports every expected
// tensor's format and bytes by group, and what is missing, malformed or unused.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model/dsv4_tensors.h"
#include "engine/model/model_config.h"
#include "engine/weights/safetensors.h"

namespace moegraph {

// How bytes are stored: matrix data by format, their scales, dense vectors.
enum class StorageKind : uint8_t { kFp8, kFp4, kScale, kBf16, kF32, kOther };
constexpr int kNumStorageKinds = 6;
const char* StorageKindName(StorageKind k);

struct CheckpointReport {
  int64_t expected = 0;        // tensor specs (a matrix and its scale count once)
  int64_t found = 0;           // of which present and well-formed
  int64_t stored_tensors = 0;  // checkpoint tensors read (scales included)
  // Checkpoint bytes by group and storage kind.
  uint64_t bytes[kNumTensorGroups][kNumStorageKinds] = {};
  // Bytes on a CUDA device once loaded: dense matrices and the embedding in
  // bf16, vectors in f32, i32 tables, FP8 data with f32 block scales, FP4 as stored.
  uint64_t device_bytes[kNumTensorGroups] = {};
  // Routed experts of one layer-expert (w1+w2+w3 with scales), stored and on the device.
  uint64_t bytes_per_expert = 0, device_bytes_per_expert = 0;
  // The device bytes again by where they live under layer placement: per
  // layer (routed experts apart, and those per layer), and the model-level
  // tensors of the first block (the embedding) and of the last (the rest).
  std::vector<uint64_t> layer_device_bytes, layer_expert_device_bytes;
  uint64_t embed_device_bytes = 0, head_device_bytes = 0;
  std::vector<std::string> missing;    // expected names (first alternative) not present
  std::vector<std::string> malformed;  // "name: what is wrong" (shape, dtype, scale)
  std::vector<std::string> unused;     // stored, read by nothing, outside mtp.*
  int64_t mtp_tensors = 0;             // mtp.* (the MTP layer; not loaded)
  uint64_t mtp_bytes = 0;
  // Formats seen among the matrices, e.g. "fp8", "fp4", "dense".
  std::vector<std::string> matrix_formats;

  bool ok() const { return missing.empty() && malformed.empty(); }
  uint64_t group_bytes(TensorGroup g) const;
  uint64_t storage_bytes(StorageKind k) const;
  uint64_t total_bytes() const;
  uint64_t total_device_bytes() const;
  // "N missing, M malformed: first few names" (empty when ok()).
  std::string ErrorSummary() const;
};

// Never fails on the checkpoint's content (that goes in the report); errors
// only for an inconsistent config.
absl::StatusOr<CheckpointReport> CheckCheckpoint(const WeightStore& ws, const ModelConfig& config);

}  // namespace moegraph
