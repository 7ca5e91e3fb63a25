// [cuda] hyper-connection ops (mHC pre, post, head collapse) vs the CPU backend.
#include <catch2/catch.hpp>
#include <cmath>

#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

// The pre site's inputs for T tokens of n streams of D.
struct PreInputs {
  std::unique_ptr<Mirror> X, fn, base, scale;
};
PreInputs MakePreInputs(int T, int n, int D) {
  const int rows = (2 + n) * n;
  PreInputs in;
  in.X = Make(Kind::kAct, RandomBf16(int64_t{T} * n * D, 1.0f), {T, n, D});
  in.fn = Make(Kind::kF32, RandomBf16(int64_t{rows} * n * D, 0.08f * std::sqrt(64.0f / D)),
               {rows, n * D});
  in.base = Make(Kind::kF32, RandomBf16(rows, 0.5f), {rows});
  in.scale = Make(Kind::kF32, RandomBf16(3, 0.3f, 1.0f), {3});
  return in;
}

TEST_CASE("HcPre", "[cuda]") {
  ReseedRng("HcPre");
  const int n = 4;
  for (auto [T, D] :
       {std::tuple{5, 64}, std::tuple{1, 4096}, std::tuple{64, 4096}, std::tuple{300, 4096}}) {
    const std::string shape = std::to_string(T) + "x" + std::to_string(n) + "x" + std::to_string(D);
    const PreInputs in = MakePreInputs(T, n, D);
    const Mirror &X = *in.X, &fn = *in.fn, &base = *in.base, &scale = *in.scale;
    auto x_in = MakeOut(Kind::kAct, {T, D});
    auto post = MakeOut(Kind::kF32, {T, n});
    auto comb = MakeOut(Kind::kF32, {T, n, n});
    REQUIRE(Cpu()
                .HcPre(X.cpu, fn.cpu, base.cpu, scale.cpu, 20, 1e-6f, 1e-6f, x_in->cpu, post->cpu,
                       comb->cpu)
                .ok());
    REQUIRE(Gpu()
                .HcPre(X.gpu, fn.gpu, base.gpu, scale.gpu, 20, 1e-6f, 1e-6f, x_in->gpu, post->gpu,
                       comb->gpu)
                .ok());
    CompareOut("HcPre", shape + " x_in", *x_in);
    CompareOut("HcPre", shape + " post", *post, 1e-4);
    CompareOut("HcPre", shape + " comb", *comb, 1e-4);
  }
}

TEST_CASE("HcPreNorm: the fused norm gives HcPre then RmsNorm, bit for bit", "[cuda]") {
  ReseedRng("HcPreNorm");
  const int n = 4;
  for (auto [T, D] : {std::tuple{5, 64}, std::tuple{3, 1536}, std::tuple{1, 4096},
                      std::tuple{64, 4096}, std::tuple{300, 4096}}) {
    const std::string shape = std::to_string(T) + "x" + std::to_string(n) + "x" + std::to_string(D);
    const PreInputs in = MakePreInputs(T, n, D);
    const Mirror &X = *in.X, &fn = *in.fn, &base = *in.base, &scale = *in.scale;
    auto weight = Make(Kind::kF32, RandomBf16(D, 0.2f, 1.0f), {D});
    auto x_in = MakeOut(Kind::kAct, {T, D});
    auto post = MakeOut(Kind::kF32, {T, n});
    auto comb = MakeOut(Kind::kF32, {T, n, n});
    auto h = MakeOut(Kind::kAct, {T, D});
    auto h_apart = MakeOut(Kind::kAct, {T, D});
    // The CPU backend's HcPreNorm is the two ops (Backend's default).
    REQUIRE(Cpu()
                .HcPreNorm(X.cpu, fn.cpu, base.cpu, scale.cpu, 20, 1e-6f, 1e-6f, weight->cpu,
                           x_in->cpu, post->cpu, comb->cpu, h->cpu)
                .ok());
    REQUIRE(Gpu()
                .HcPreNorm(X.gpu, fn.gpu, base.gpu, scale.gpu, 20, 1e-6f, 1e-6f, weight->gpu,
                           x_in->gpu, post->gpu, comb->gpu, h->gpu)
                .ok());
    CompareOut("HcPreNorm", shape + " h", *h);
    CompareOut("HcPreNorm", shape + " x_in", *x_in);
    const std::vector<float> fused = Fetch(Gpu(), h->gpu);
    REQUIRE(Gpu().RmsNorm(x_in->gpu, weight->gpu, 1e-6f, h_apart->gpu).ok());
    INFO(shape);
    CHECK(Fetch(Gpu(), h_apart->gpu) == fused);
  }
  // Without h it is not a fused site: refused by name.
  auto X = Make(Kind::kAct, RandomBf16(4 * 64, 1.0f), {1, 4, 64});
  auto fn = Make(Kind::kF32, RandomBf16(24 * 256, 0.08f), {24, 256});
  auto base = Make(Kind::kF32, RandomBf16(24, 0.5f), {24});
  auto scale = Make(Kind::kF32, RandomBf16(3, 0.3f, 1.0f), {3});
  auto x_in = MakeOut(Kind::kAct, {1, 64});
  auto post = MakeOut(Kind::kF32, {1, 4});
  auto comb = MakeOut(Kind::kF32, {1, 4, 4});
  const absl::Status s = Gpu().HcPreNorm(X->gpu, fn->gpu, base->gpu, scale->gpu, 20, 1e-6f, 1e-6f,
                                         Tensor(), x_in->gpu, post->gpu, comb->gpu, Tensor());
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message().find("HcPreNorm") != std::string::npos);
}

TEST_CASE("HcPost", "[cuda]") {
  ReseedRng("HcPost");
  const int n = 4;
  for (auto [T, D] : {std::tuple{5, 64}, std::tuple{64, 4096}, std::tuple{300, 4096}}) {
    const std::string shape = std::to_string(T) + "x" + std::to_string(n) + "x" + std::to_string(D);
    auto X = Make(Kind::kAct, RandomBf16(int64_t{T} * n * D, 1.0f), {T, n, D});
    auto y = Make(Kind::kAct, RandomBf16(int64_t{T} * D, 1.0f), {T, D});
    auto post = Make(Kind::kF32, RandomUniformBf16(int64_t{T} * n, 0.0f, 2.0f), {T, n});
    auto comb = Make(Kind::kF32, RandomUniformBf16(int64_t{T} * n * n, 0.0f, 0.5f), {T, n, n});
    auto out = MakeOut(Kind::kAct, {T, n, D});
    REQUIRE(Cpu().HcPost(X->cpu, y->cpu, post->cpu, comb->cpu, out->cpu).ok());
    REQUIRE(Gpu().HcPost(X->gpu, y->gpu, post->gpu, comb->gpu, out->gpu).ok());
    CompareOut("HcPost", shape, *out);
  }
}

TEST_CASE("HcHead", "[cuda]") {
  ReseedRng("HcHead");
  const int n = 4;
  for (auto [T, D] : {std::tuple{5, 64}, std::tuple{1, 4096}, std::tuple{64, 4096}}) {
    const std::string shape = std::to_string(T) + "x" + std::to_string(n) + "x" + std::to_string(D);
    auto X = Make(Kind::kAct, RandomBf16(int64_t{T} * n * D, 1.0f), {T, n, D});
    auto fn =
        Make(Kind::kF32, RandomBf16(int64_t{n} * n * D, 0.08f * std::sqrt(64.0f / D)), {n, n * D});
    auto base = Make(Kind::kF32, RandomBf16(n, 0.5f), {n});
    auto scale = Make(Kind::kF32, RandomBf16(1, 0.3f, 1.0f), {1});
    auto y = MakeOut(Kind::kAct, {T, D});
    REQUIRE(Cpu().HcHead(X->cpu, fn->cpu, base->cpu, scale->cpu, 1e-6f, 1e-6f, y->cpu).ok());
    REQUIRE(Gpu().HcHead(X->gpu, fn->gpu, base->gpu, scale->gpu, 1e-6f, 1e-6f, y->gpu).ok());
    CompareOut("HcHead", shape, *y);
  }
}

}  // namespace
}  // namespace moegraph::cuda_test
