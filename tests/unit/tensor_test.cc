#include <catch2/catch.hpp>

#include "engine/backend/tensor.h"
#include "engine/common/bf16.h"

using namespace moegraph;

TEST_CASE("tensor views report shape, size and row slices", "[tensor]") {
  float data[24];
  Tensor t(data, DType::kF32, {4, 6});
  CHECK(t.numel() == 24);
  CHECK(t.bytes() == 96);
  CHECK(t.ShapeString() == "[4, 6]");
  Tensor r = t.rows(1, 2);
  CHECK(r.data == data + 6);
  CHECK(r.dim(0) == 2);
  CHECK(t.view({2, 3, 4}).ShapeString() == "[2, 3, 4]");
}

TEST_CASE("bf16 conversion rounds to nearest even", "[bf16]") {
  CHECK(Bf16ToFloat(FloatToBf16(1.0f)) == 1.0f);
  CHECK(Bf16ToFloat(FloatToBf16(-2.5f)) == -2.5f);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even (1.0).
  CHECK(Bf16ToFloat(FloatToBf16(1.00390625f)) == 1.0f);
  CHECK(Bf16ToFloat(FloatToBf16(1.01171875f)) == 1.015625f);
  CHECK(F16ToFloat(0x3c00) == 1.0f);
  CHECK(F16ToFloat(0xc000) == -2.0f);
  CHECK(F16ToFloat(0x0001) == Approx(5.960464477539063e-08f));
}
