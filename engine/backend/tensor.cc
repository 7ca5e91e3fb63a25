#include "engine/backend/tensor.h"

#include "engine/backend/backend.h"

namespace moegraph {

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
