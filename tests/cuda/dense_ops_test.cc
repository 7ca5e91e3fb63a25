// [cuda] dense ops: CudaBackend vs CpuBackend at tiny and V4-Flash widths.
#include <catch2/catch.hpp>
#include <cmath>

#include "engine/model/model_config.h"
#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

std::string Dims(std::initializer_list<int64_t> dims) {
  std::string s;
  for (int64_t d : dims) s += (s.empty() ? "" : "x") + std::to_string(d);
  return s;
}

TEST_CASE("Embed", "[cuda]") {
  ReseedRng("Embed");
  for (auto [T, V, D, n] : {std::tuple{7, 320, 64, 4}, std::tuple{64, 4096, 4096, 4}}) {
    auto table = Make(Kind::kMatrix, RandomBf16(int64_t{V} * D, 1.0f), {V, D});
    std::vector<int32_t> ids(T);
    for (int& id : ids) id = static_cast<int>(Rng()() % V);
    auto idm = MakeI32(ids, {T});
    auto out = MakeOut(Kind::kAct, {T, n, D});
    REQUIRE(Cpu().Embed(idm->cpu, table->cpu, out->cpu).ok());
    REQUIRE(Gpu().Embed(idm->gpu, table->gpu, out->gpu).ok());
    CompareOut("Embed", Dims({T, n, D}), *out, 1e-6);
  }
}

TEST_CASE("Linear", "[cuda]") {
  ReseedRng("Linear");
  struct Case {
    int R, K, N;
    Kind out;
  };
  for (Case c : {Case{5, 64, 48, Kind::kAct}, Case{1, 4096, 1024, Kind::kAct},
                 Case{8, 4096, 1024, Kind::kAct}, Case{64, 1024, 32768, Kind::kAct},
                 Case{300, 4096, 512, Kind::kAct}, Case{64, 4096, 32, Kind::kF32},
                 Case{3, 4096, 4096, Kind::kF32}}) {
    auto x = Make(Kind::kAct, RandomBf16(int64_t{c.R} * c.K, 1.0f), {c.R, c.K});
    auto w = Make(Kind::kMatrix, RandomBf16(int64_t{c.N} * c.K, 0.02f), {c.N, c.K});
    auto y = MakeOut(c.out, {c.R, c.N});
    REQUIRE(Cpu().Linear(x->cpu, w->cpu, y->cpu).ok());
    REQUIRE(Gpu().Linear(x->gpu, w->gpu, y->gpu).ok());
    CompareOut("Linear", Dims({c.R, c.K, c.N}) + (c.out == Kind::kF32 ? " f32out" : ""), *y);
  }
}

TEST_CASE("GroupedLinear", "[cuda]") {
  ReseedRng("GroupedLinear");
  for (auto [R, g, Kg, Ng] : {std::tuple{3, 2, 64, 24}, std::tuple{1, 8, 4096, 1024},
                              std::tuple{64, 8, 4096, 1024}, std::tuple{200, 8, 4096, 1024}}) {
    auto x = Make(Kind::kAct, RandomBf16(int64_t{R} * g * Kg, 1.0f), {R, g * Kg});
    auto w = Make(Kind::kMatrix, RandomBf16(int64_t{g} * Ng * Kg, 0.02f), {g * Ng, Kg});
    auto y = MakeOut(Kind::kAct, {R, g * Ng});
    REQUIRE(Cpu().GroupedLinear(x->cpu, w->cpu, g, y->cpu).ok());
    REQUIRE(Gpu().GroupedLinear(x->gpu, w->gpu, g, y->gpu).ok());
    CompareOut("GroupedLinear", Dims({R, g, Kg, Ng}), *y);
  }
}

TEST_CASE("RmsNorm", "[cuda]") {
  ReseedRng("RmsNorm");
  for (auto [R, C, weighted] :
       {std::tuple{7, 64, true}, std::tuple{7, 32, false}, std::tuple{64 * 64, 512, false},
        std::tuple{64, 4096, true}, std::tuple{3, 1024, true}, std::tuple{300, 512, true}}) {
    auto x = Make(Kind::kAct, RandomBf16(int64_t{R} * C, 2.0f, 0.5f), {R, C});
    auto w = Make(Kind::kF32, RandomBf16(C, 0.2f, 1.0f), {C});
    auto y = MakeOut(Kind::kAct, {R, C});
    const Tensor wc = weighted ? w->cpu : Tensor(), wg = weighted ? w->gpu : Tensor();
    REQUIRE(Cpu().RmsNorm(x->cpu, wc, 1e-6f, y->cpu).ok());
    REQUIRE(Gpu().RmsNorm(x->gpu, wg, 1e-6f, y->gpu).ok());
    CompareOut("RmsNorm", Dims({R, C}) + (weighted ? " weighted" : " unweighted"), *y);
    // In place (y aliases x) on the GPU.
    REQUIRE(Gpu().RmsNorm(x->gpu, wg, 1e-6f, x->gpu).ok());
    ExpectClose("RmsNorm", Dims({R, C}) + " in-place", Fetch(Gpu(), x->gpu), Fetch(Cpu(), y->cpu));
  }
}

TEST_CASE("Rope", "[cuda]") {
  ReseedRng("Rope");
  RopeTable main_table;  // default rope, theta 10000
  RopeTable yarn;        // V4-Flash compress table: YaRN
  yarn.theta = 160000.0;
  yarn.yarn = true;
  yarn.factor = 16.0;
  yarn.original_max_position = 65536;
  struct Case {
    int T, heads, width, r;
    const RopeTable* table;
    const char* name;
  };
  for (Case c : {Case{5, 4, 32, 8, &main_table, "main"}, Case{5, 1, 32, 8, &yarn, "compress"},
                 Case{9, 64, 512, 64, &main_table, "main"}, Case{9, 64, 512, 64, &yarn, "compress"},
                 Case{9, 64, 128, 64, &yarn, "indexer"}, Case{9, 1, 512, 64, &yarn, "kv"}}) {
    const std::vector<float> freq = RopeInvFreq(*c.table, c.r);
    auto inv = Make(Kind::kF32, freq, {c.r / 2});
    std::vector<int32_t> pos(c.T);
    for (int& p : pos) p = static_cast<int>(Rng()() % 300000);
    pos[0] = 0;
    auto pm = MakeI32(pos, {c.T});
    for (bool inverse : {false, true}) {
      auto x = Make(Kind::kAct, RandomBf16(int64_t{c.T} * c.heads * c.width, 1.0f),
                    {c.T, c.heads, c.width});
      REQUIRE(Cpu().Rope(x->cpu, pm->cpu, inv->cpu, c.r, inverse).ok());
      REQUIRE(Gpu().Rope(x->gpu, pm->gpu, inv->gpu, c.r, inverse).ok());
      CompareOut("Rope",
                 Dims({c.T, c.heads, c.width}) + " r" + std::to_string(c.r) + " " + c.name +
                     (inverse ? " inverse" : ""),
                 *x);
    }
  }
}

TEST_CASE("Elementwise", "[cuda]") {
  ReseedRng("Elementwise");
  for (auto [R, C] : {std::tuple{7, 32}, std::tuple{64, 4096}, std::tuple{300, 2048}}) {
    const std::string shape = Dims({R, C});
    auto a = Make(Kind::kAct, RandomBf16(int64_t{R} * C, 3.0f), {R, C});
    auto b = Make(Kind::kAct, RandomBf16(int64_t{R} * C, 3.0f), {R, C});
    {
      auto out = MakeOut(Kind::kAct, {R, C});
      REQUIRE(Cpu().Add(a->cpu, b->cpu, out->cpu).ok());
      REQUIRE(Gpu().Add(a->gpu, b->gpu, out->gpu).ok());
      CompareOut("Add", shape, *out);
    }
    for (Kind kind : {Kind::kAct, Kind::kF32}) {
      auto x = Make(kind, RandomBf16(int64_t{R} * C, 1.0f), {R, C});
      auto out = MakeOut(kind, {R, C});
      REQUIRE(Cpu().Scale(x->cpu, 0.37f, out->cpu).ok());
      REQUIRE(Gpu().Scale(x->gpu, 0.37f, out->gpu).ok());
      CompareOut("Scale", shape + (kind == Kind::kF32 ? " f32" : " act"), *out);
    }
    for (float limit : {10.0f, 1.0f}) {
      auto out = MakeOut(Kind::kAct, {R, C});
      REQUIRE(Cpu().SwiGlu(a->cpu, b->cpu, limit, out->cpu).ok());
      REQUIRE(Gpu().SwiGlu(a->gpu, b->gpu, limit, out->gpu).ok());
      CompareOut("SwiGlu", shape + " L" + std::to_string(static_cast<int>(limit)), *out);
    }
    {
      std::vector<int32_t> rows = {R - 1, 0, R / 2, 0};
      auto rm = MakeI32(rows, {4});
      auto out = MakeOut(Kind::kAct, {4, C});
      REQUIRE(Cpu().GatherRows(a->cpu, rm->cpu, out->cpu).ok());
      REQUIRE(Gpu().GatherRows(a->gpu, rm->gpu, out->gpu).ok());
      CompareOut("GatherRows", shape, *out, 0.0);
    }
    {
      // act -> f32 -> act round trip.
      auto f = MakeOut(Kind::kF32, {R, C});
      REQUIRE(Cpu().Convert(a->cpu, f->cpu).ok());
      REQUIRE(Gpu().Convert(a->gpu, f->gpu).ok());
      CompareOut("Convert", shape + " act->f32", *f, 0.0);
      auto back = MakeOut(Kind::kAct, {R, C});
      REQUIRE(Cpu().Convert(f->cpu, back->cpu).ok());
      REQUIRE(Gpu().Convert(f->gpu, back->gpu).ok());
      CompareOut("Convert", shape + " f32->act", *back, 0.0);
    }
  }
}

TEST_CASE("InvalidOperands", "[cuda]") {
  auto x = Make(Kind::kAct, RandomBf16(64, 1.0f), {4, 16});
  auto w = Make(Kind::kMatrix, RandomBf16(8 * 32, 1.0f), {8, 32});
  auto y = MakeOut(Kind::kAct, {4, 8});
  const absl::Status s = Gpu().Linear(x->gpu, w->gpu, y->gpu);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  Report("Validation", "Linear K mismatch -> InvalidArgument", 0.0, 0.0,
         s.code() == absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace moegraph::cuda_test
