// The CPU backend's operand validation (errors name the op and the operand)
// and its memory and weight-upload rules.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "engine/backend/backend.h"
#include "engine/backend/backend_factory.h"
#include "engine/common/bf16.h"

using namespace moegraph;

TEST_CASE("cpu backend rejects mismatched operands by name", "[backend]") {
  std::unique_ptr<Backend> b = CreateCpuBackend();
  CHECK(b->name() == "cpu");
  CHECK(b->activation_dtype() == DType::kF32);
  std::vector<float> x(2 * 3), w(4 * 3), y(2 * 5);
  Tensor tx(x.data(), DType::kF32, {2, 3}), tw(w.data(), DType::kF32, {4, 3});
  Tensor ty(y.data(), DType::kF32, {2, 5});
  absl::Status s = b->Linear(tx, tw, ty);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message().find("Linear: y") != std::string::npos);
  CHECK(s.message().find("[2, 4]") != std::string::npos);
  CHECK(s.message().find("[2, 5]") != std::string::npos);
  CHECK(b->Linear(tx, tw, ty.view({2, 4})).ok());

  std::vector<int32_t> ids = {0};
  Tensor tid(ids.data(), DType::kI32, {1});
  std::vector<float> table(2 * 3), out(1 * 2 * 4);
  absl::Status e = b->Embed(tid, Tensor(table.data(), DType::kF32, {2, 3}),
                            Tensor(out.data(), DType::kF32, {1, 2, 4}));
  CHECK(e.message().find("Embed: out") != std::string::npos);
  ids[0] = 5;
  e = b->Embed(tid, Tensor(table.data(), DType::kF32, {2, 3}),
               Tensor(out.data(), DType::kF32, {1, 2, 3}));
  CHECK(e.code() == absl::StatusCode::kInvalidArgument);

  std::vector<float> X(1 * 2 * 3), Xo(1 * 2 * 3), yy(3), post(2), comb(4);
  Tensor tX(X.data(), DType::kF32, {1, 2, 3});
  CHECK(b->HcPost(tX, Tensor(yy.data(), DType::kF32, {1, 3}),
                  Tensor(post.data(), DType::kF32, {1, 2}),
                  Tensor(comb.data(), DType::kF32, {1, 2, 2}), tX)
            .message()
            .find("alias") != std::string::npos);
}

TEST_CASE("cpu backend takes a pipelined step's tokens from the last sampled ids", "[backend]") {
  std::unique_ptr<Backend> b = CreateCpuBackend();
  std::vector<int32_t> ids = {11, 0, 0, 13, 0}, from = {-1, 2, 0, -1, 7}, sampled = {40, 41, 42};
  const Tensor tids(ids.data(), DType::kI32, {5}), tfrom(from.data(), DType::kI32, {5});
  REQUIRE(b->TakeSampledIds(tids, tfrom, Tensor(sampled.data(), DType::kI32, {3})).ok());
  // Rows past the sampled ids (7 >= 3) leave the token as staged.
  CHECK(ids == std::vector<int32_t>{11, 42, 40, 13, 0});
  const absl::Status s =
      b->TakeSampledIds(tids, tfrom.view({4}), Tensor(sampled.data(), DType::kI32, {3}));
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message().find("TakeSampledIds: from") != std::string::npos);
}

TEST_CASE("cpu backend uploads weights by the documented dtype rules", "[backend]") {
  std::unique_ptr<Backend> b = CreateCpuBackend();
  std::vector<Buffer> owner;
  std::vector<uint16_t> bf = {FloatToBf16(1.5f), FloatToBf16(-2.0f)};
  Tensor host(bf.data(), DType::kBF16, {1, 2});
  auto matrix = b->UploadWeight(host, true, &owner);
  REQUIRE(matrix.ok());
  CHECK(matrix->dtype == DType::kBF16);
  auto vec = b->UploadWeight(host, false, &owner);
  REQUIRE(vec.ok());
  CHECK(vec->dtype == DType::kF32);
  CHECK(vec->as<float>()[1] == -2.0f);
  std::vector<int64_t> ids = {7, -1};
  auto ints = b->UploadWeight(Tensor(ids.data(), DType::kI64, {2}), false, &owner);
  REQUIRE(ints.ok());
  CHECK(ints->dtype == DType::kI32);
  CHECK(ints->as<int32_t>()[0] == 7);
  CHECK(ints->as<int32_t>()[1] == -1);

  std::vector<float> e0 = {1, 2}, e1 = {3, 4};
  auto stacked = b->UploadStacked(
      {Tensor(e0.data(), DType::kF32, {1, 2}), Tensor(e1.data(), DType::kF32, {1, 2})}, &owner);
  REQUIRE(stacked.ok());
  CHECK(stacked->ShapeString() == "[2, 1, 2]");
  CHECK(stacked->as<float>()[3] == 4.0f);
  CHECK_FALSE(
      b->UploadStacked(
           {Tensor(e0.data(), DType::kF32, {1, 2}), Tensor(e1.data(), DType::kF32, {2, 1})}, &owner)
          .ok());
}

TEST_CASE("backend factory picks cpu, and cuda when built and present", "[backend]") {
  CHECK(CreateBackend("cpu").ok());
#if MOEGRAPH_HAVE_CUDA
  // Built with CUDA: a machine without a GPU reports UNAVAILABLE; a device
  // index past the last GPU is INVALID_ARGUMENT.
  auto cuda = CreateBackend("cuda");
  if (!cuda.ok()) CHECK(cuda.status().code() == absl::StatusCode::kUnavailable);
  const absl::StatusCode far = CreateBackend("cuda:999").status().code();
  CHECK((far == absl::StatusCode::kUnavailable || far == absl::StatusCode::kInvalidArgument));
#else
  CHECK(CreateBackend("cuda").status().code() == absl::StatusCode::kUnimplemented);
  CHECK(CreateBackend("cuda:1").status().code() == absl::StatusCode::kUnimplemented);
#endif
  CHECK(CreateBackend("cuda:x").status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(CreateBackend("tpu").status().code() == absl::StatusCode::kInvalidArgument);
}
