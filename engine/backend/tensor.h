// Tensor views and owned buffers on a backend's device (host memory on the CPU
// backend, GPU memory on CUDA). Views never own; Buffer owns and frees through
// the backend that allocated it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

namespace moegraph {

// kF8E4M3 and kE8M0 are the released checkpoints' FP8 values and power-of-two
// scales; kI8/kU8 hold packed FP4 pairs (kernels/cpu/quant.h).
enum class DType : uint8_t { kF32, kBF16, kF16, kI32, kI64, kF8E4M3, kE8M0, kI8, kU8 };

constexpr size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kBF16:
      return 2;
    case DType::kF16:
      return 2;
    case DType::kI32:
      return 4;
    case DType::kI64:
      return 8;
    case DType::kF8E4M3:
    case DType::kE8M0:
    case DType::kI8:
    case DType::kU8:
      return 1;
  }
  return 0;
}
const char* DTypeName(DType t);

// A non-owning, row-major, contiguous view. `shape[0..rank)` are the sizes.
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int rank = 0;
  std::array<int64_t, 4> shape{};

  Tensor() = default;
  Tensor(void* d, DType t, std::initializer_list<int64_t> dims) : data(d), dtype(t) {
    for (int64_t s : dims) shape[rank++] = s;
  }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= shape[i];
    return n;
  }
  size_t bytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  int64_t dim(int i) const { return shape[i]; }
  bool empty() const { return data == nullptr; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  // Same memory, another shape of the same element count.
  Tensor view(std::initializer_list<int64_t> dims) const {
    Tensor t(data, dtype, dims);
    return t;
  }
  // Rows [begin, begin+count) of the leading dimension.
  Tensor rows(int64_t begin, int64_t count) const {
    Tensor t = *this;
    t.shape[0] = count;
    t.data = static_cast<char*>(data) + begin * (bytes() / (shape[0] ? shape[0] : 1));
    return t;
  }
  std::string ShapeString() const;
};

class Backend;

// Owned device memory, freed through its backend. Move-only.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend* backend, void* ptr, size_t bytes) : backend_(backend), ptr_(ptr), bytes_(bytes) {}
  ~Buffer() { Reset(); }
  Buffer(Buffer&& o) noexcept { *this = std::move(o); }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      Reset();
      backend_ = std::exchange(o.backend_, nullptr);
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return ptr_; }
  size_t bytes() const { return bytes_; }
  Tensor tensor(DType t, std::initializer_list<int64_t> dims) const {
    return Tensor(ptr_, t, dims);
  }
  void Reset();

 private:
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace moegraph
