#include "engine/backend/tensor.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"

#include "engine/backend/backend.h"
#include "engine/backend/weight.h"

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
absl::Status Backend::HcPreNorm(const Tensor& X, const Tensor& fn, const Tensor& base,
                                const Tensor& scale, int sinkhorn_iters, float hc_eps,
                                float norm_eps, const Tensor& norm_weight, Tensor x_in, Tensor post,
                                Tensor comb, Tensor h) {
  absl::Status s = HcPre(X, fn, base, scale, sinkhorn_iters, hc_eps, norm_eps, x_in, post, comb);
  if (!s.ok()) return s;
  return RmsNorm(x_in, norm_weight, norm_eps, h);
}

absl::Status Backend::Sample(const Tensor&, const Tensor&, Tensor) {
  return absl::UnimplementedError(name() + " has no device sampler");
}
absl::Status Backend::MoeExpertPairs(const Tensor&, const Tensor&, const Tensor&, int,
                                     const ExpertWeights&, float, Tensor, Tensor, Tensor) {
  return absl::UnimplementedError(name() + " has no expert-parallel MoE ops yet");
}
absl::Status Backend::MoeWeightedSum(const Tensor&, const Tensor&, const Tensor&, Tensor) {
  return absl::UnimplementedError(name() + " has no expert-parallel MoE ops yet");
}
absl::Status Backend::ExchangeDispatch(const Tensor&, const Tensor&, const Tensor&,
                                       const std::vector<ExchangeRegion>&, Tensor) {
  return absl::UnimplementedError(name() + " has no expert exchange");
}
absl::Status Backend::ExchangeCombine(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                      const Tensor&, const std::vector<Tensor>&) {
  return absl::UnimplementedError(name() + " has no expert exchange");
}
absl::Status Backend::ExchangeMeet(const RankMeeting&) {
  return absl::UnimplementedError(name() + " cannot meet its peers on the device");
}
absl::StatusOr<Tensor> AllocateFilled(Backend& backend, DType dtype,
                                      std::initializer_list<int64_t> dims, float fill,
                                      std::vector<Buffer>* owner) {
  Tensor view(nullptr, dtype, dims);
  absl::StatusOr<Buffer> b = backend.Allocate(view.bytes());
  if (!b.ok()) return b.status();
  view.data = b->data();
  owner->push_back(std::move(*b));
  if (absl::Status s = backend.Fill(view, fill); !s.ok()) return s;
  return view;
}
absl::Status Backend::EnablePeerAccess(const Backend& peer) {
  if (peer.id() == id()) return absl::OkStatus();
  return absl::UnimplementedError(absl::StrCat(name(), " cannot reach ", peer.name(), "'s memory"));
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
    case DType::kF8E4M3:
      return "F8_E4M3";
    case DType::kE8M0:
      return "F8_E8M0";
    case DType::kI8:
      return "I8";
    case DType::kU8:
      return "U8";
  }
  return "?";
}

const char* WeightFormatName(WeightFormat f) {
  switch (f) {
    case WeightFormat::kDense:
      return "dense";
    case WeightFormat::kFp8:
      return "fp8";
    case WeightFormat::kFp4:
      return "fp4";
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
