#include "engine/backend/tensor.h"

#include <cstdlib>

#include "engine/backend/backend.h"

namespace moegraph {

// ---- Backend defaults (backends without pinned memory, graphs or a sampler) --

absl::StatusOr<HostMemory> Backend::AllocateHost(size_t bytes) {
  void* p = std::malloc(bytes > 0 ? bytes : 1);
  if (p == nullptr) return absl::ResourceExhaustedError("host allocation failed");
  return HostMemory(p, [](void* q) { std::free(q); });
}

absl::Status Backend::BeginGraphCapture() {
  return absl::UnimplementedError(name() + " has no graphs");
}
absl::StatusOr<int> Backend::EndGraphCapture() {
  return absl::UnimplementedError(name() + " has no graphs");
}
absl::Status Backend::LaunchGraph(int) {
  return absl::UnimplementedError(name() + " has no graphs");
}
absl::Status Backend::Sample(const Tensor&, const Tensor&, Tensor) {
  return absl::UnimplementedError(name() + " has no device sampler");
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kBF16:
      return "BF16";
    case DType::kF16:
      return "F16";
    case DType::kI32:
      return "I32";
    case DType::kI64:
      return "I64";
  }
  return "?";
}

std::string Tensor::ShapeString() const {
  std::string s = "[";
  for (int i = 0; i < rank; ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

void Buffer::Reset() {
  if (ptr_ && backend_) backend_->Free(ptr_);
  ptr_ = nullptr;
  backend_ = nullptr;
  bytes_ = 0;
}

}  // namespace moegraph
