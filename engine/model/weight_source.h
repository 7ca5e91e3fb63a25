// Where Dsv4Model::LoadWeights gets its tensors: a checkpoint (WeightStore),
// or random values for a config (bench-decode without a checkpoint). The
// loader asks for each TensorSpec in turn, uploads what it got, and calls
// Release once nothing it holds is still to be uploaded.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/backend/weight.h"
#include "engine/model/dsv4_tensors.h"
#include "engine/model/model_config.h"
#include "engine/weights/safetensors.h"

namespace moegraph {

class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // A kVector or kTable tensor, host memory valid until Release.
  virtual absl::StatusOr<Tensor> Vector(const TensorSpec& spec) = 0;
  // A kMatrix tensor as stored (weight_loader.h), valid until Release.
  virtual absl::StatusOr<HostWeight> Matrix(const TensorSpec& spec) = 0;
  // Everything handed out so far has been uploaded.
  virtual void Release() {}
};

// The checkpoint's tensors (views into its mapping; Release is a no-op).
// Checks hash-routing tables against the config's expert count.
std::unique_ptr<WeightSource> CheckpointSource(const WeightStore& store, const ModelConfig& config);

// Random weights for `config` in the formats its quantization_config names
// (ReleasedFormat), generated on the host in parallel and freed once
// uploaded: scaled so activations stay O(1) through any number of layers
// (norm weights 1, matrices ~U(-1, 1)/sqrt(K), hash tables distinct experts).
// The same seed gives the same weights.
std::unique_ptr<WeightSource> RandomSource(const ModelConfig& config, uint64_t seed);

}  // namespace moegraph
