// The released checkpoints' number formats (kernels/cpu/quant.h) against
// torch's own (tests/fixtures/dsv4-tiny-fp4/act_quant.safetensors, written by
// tools/quantize_checkpoint.py), quantization_config parsing, and the matrix
// loader's checks of quantized tensors and their scales.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "engine/model/model_config.h"
#include "engine/model/weight_loader.h"
#include "engine/weights/safetensors.h"
#include "kernels/cpu/quant.h"
#include "nlohmann/json.hpp"
#include "tests/unit/temp_dir.h"

using namespace moegraph;
using json = nlohmann::json;

namespace {

const std::string kFp4Dir = std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny-fp4";

std::vector<float> Floats(const WeightStore& s, const std::string& name) {
  Tensor t = s.Get(name, {}, {DType::kF32}).value();
  return std::vector<float>(t.as<const float>(), t.as<const float>() + t.numel());
}

TEST_CASE("e4m3 decoding and rounding match torch", "[quant]") {
  auto ref = WeightStore::OpenFile(kFp4Dir + "/act_quant.safetensors");
  REQUIRE(ref.ok());
  const std::vector<float> decoded = Floats(**ref, "e4m3_decoded");
  REQUIRE(decoded.size() == 256);
  for (int b = 0; b < 256; ++b) {
    INFO("code 0x" << std::hex << b);
    const float mine = quant::E4M3ToFloat(static_cast<uint8_t>(b));
    if (std::isnan(decoded[b])) {
      CHECK(std::isnan(mine));
    } else {
      CHECK(mine == decoded[b]);
    }
  }
  CHECK(quant::E4M3ToFloat(0x7E) == 448.0f);
  const std::vector<float> in = Floats(**ref, "round_in");
  Tensor codes = (*ref)->Get("round_e4m3", {}, {DType::kU8}).value();
  int mismatches = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const float clamped = std::fmin(std::fmax(in[i], -448.0f), 448.0f);
    mismatches += quant::FloatToE4M3(clamped) != codes.as<const uint8_t>()[i];
  }
  CHECK(mismatches == 0);
}

TEST_CASE("activation quantization matches torch's reference", "[quant]") {
  auto ref = WeightStore::OpenFile(kFp4Dir + "/act_quant.safetensors");
  REQUIRE(ref.ok());
  Tensor x = (*ref)->Get("x").value();
  const int64_t rows = x.dim(0), cols = x.dim(1);
  for (auto [name, pow2] : {std::pair{"pow2", true}, std::pair{"plain", false}}) {
    std::vector<float> got = Floats(**ref, "x");
    const std::vector<float> want = Floats(**ref, name);
    for (int64_t r = 0; r < rows; ++r)
      quant::QuantizeActivationRow(got.data() + r * cols, cols, pow2);
    int exact = 0;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      exact += got[i] == want[i];
      worst = std::max(worst, std::fabs(double(got[i]) - want[i]) / (std::fabs(want[i]) + 1e-30));
    }
    INFO(name << ": " << exact << " of " << got.size() << " exact, worst relative " << worst);
    CHECK(exact == static_cast<int>(got.size()));
  }
}

TEST_CASE("e2m1, E8M0 and the dequantizers", "[quant]") {
  const float table[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0f, -0.5, -1, -1.5, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) {
    CHECK(quant::E2M1ToFloat(static_cast<uint8_t>(c)) == table[c]);
    CHECK(quant::FloatToE2M1(table[c]) == (c == 8 ? 8 : c));
  }
  CHECK(quant::FloatToE2M1(0.75f) == 2);   // tie between 0.5 and 1: the even code
  CHECK(quant::FloatToE2M1(2.5f) == 4);    // tie between 2 and 3
  CHECK(quant::FloatToE2M1(100.0f) == 7);  // saturates at 6
  CHECK(quant::E8M0ToFloat(127) == 1.0f);
  CHECK(quant::E8M0ToFloat(130) == 8.0f);
  CHECK(quant::E8M0ToFloat(0) == std::ldexp(1.0f, -127));
  CHECK(std::isnan(quant::E8M0ToFloat(255)));

  // FP8: a 130 x 260 matrix has 2 x 3 blocks; each block's scale applies to it alone.
  const int64_t n = 130, k = 260;
  std::vector<uint8_t> data(n * k, 0x38);  // 1.0
  std::vector<uint8_t> scales = {127, 128, 129, 120, 121, 122};
  std::vector<float> out(n * k);
  quant::DequantizeFp8(data.data(), scales.data(), nullptr, n, k, out.data());
  CHECK(out[0] == 1.0f);
  CHECK(out[127 * k + 127] == 1.0f);
  CHECK(out[0 * k + 128] == 2.0f);
  CHECK(out[5 * k + 259] == 4.0f);
  CHECK(out[128 * k + 0] == std::ldexp(1.0f, -7));
  CHECK(out[129 * k + 200] == std::ldexp(1.0f, -6));  // block (1, 1)
  CHECK(out[129 * k + 259] == std::ldexp(1.0f, -5));  // block (1, 2)
  std::vector<float> f32_scales = {0.5f, 0.25f, 3.0f, 1.0f, 1.0f, 1.0f};
  quant::DequantizeFp8(data.data(), nullptr, f32_scales.data(), n, k, out.data());
  CHECK(out[3 * k + 259] == 3.0f);

  // FP4: element 2i in the low nibble; one scale per 32 along K.
  std::vector<uint8_t> packed(2 * 32, 0);
  packed[0] = 0x72;                                // elements 0 = code 2 (1.0), 1 = code 7 (6.0)
  packed[16] = 0x0B;                               // element 32 = code 11 (-1.5)
  std::vector<uint8_t> s4 = {127, 126, 127, 127};  // rows 0..1, groups of 32
  std::vector<float> o4(2 * 64);
  quant::DequantizeFp4(packed.data(), s4.data(), 2, 64, o4.data());
  CHECK(o4[0] == 1.0f);
  CHECK(o4[1] == 6.0f);
  CHECK(o4[32] == -0.75f);  // group 1 of row 0 has scale 2^-1
}

json TinyJson() {
  std::ifstream in(std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny/config.json");
  return json::parse(in);
}

TEST_CASE("quantization_config and expert_dtype in both places", "[quant]") {
  json j = TinyJson();
  CHECK_FALSE(ParseModelConfig(j.dump())->quant.fp8);
  j["quantization_config"] = {{"activation_scheme", "dynamic"},
                              {"fmt", "e4m3"},
                              {"quant_method", "fp8"},
                              {"scale_fmt", "ue8m0"},
                              {"weight_block_size", {128, 128}}};
  j["expert_dtype"] = "fp4";
  auto c = ParseModelConfig(j.dump());
  REQUIRE(c.ok());
  CHECK(c->quant.fp8);
  CHECK(c->quant.pow2_scales);
  CHECK(c->quant.expert_dtype == "fp4");
  // Later releases: inside quantization_config.
  j.erase("expert_dtype");
  j["quantization_config"]["expert_dtype"] = "fp8";
  CHECK(ParseModelConfig(j.dump())->quant.expert_dtype == "fp8");
  auto error = [](const json& bad) {
    auto r = ParseModelConfig(bad.dump());
    REQUIRE_FALSE(r.ok());
    return std::string(r.status().message());
  };
  json disagree = j;
  disagree["expert_dtype"] = "fp4";
  CHECK_THAT(error(disagree), Catch::Contains("disagrees with quantization_config.expert_dtype"));
  json bad = j;
  bad["quantization_config"]["quant_method"] = "awq";
  CHECK_THAT(error(bad),
             Catch::Contains("quantization_config.quant_method: expected one of \"fp8\""));
  bad = j;
  bad["quantization_config"]["weight_block_size"] = {64, 64};
  CHECK_THAT(error(bad), Catch::Contains("weight_block_size: expected [128, 128]"));
  bad = j;
  bad["quantization_config"]["expert_dtype"] = "int4";
  CHECK_THAT(error(bad), Catch::Contains("expected one of \"fp4\", \"fp8\""));
  bad = TinyJson();
  bad["expert_dtype"] = "fp4";
  CHECK_THAT(error(bad), Catch::Contains("needs quantization_config"));
}

// A safetensors file built in a temp directory.
class Checkpoint {
 public:
  void Add(const std::string& name, const char* dtype, std::vector<int64_t> shape, size_t elem) {
    size_t n = elem;
    for (int64_t d : shape) n *= d;
    header_[name] = {
        {"dtype", dtype}, {"shape", shape}, {"data_offsets", {data_.size(), data_.size() + n}}};
    data_.append(n, '\x38');  // 1.0 in e4m3, 2^-71 in E8M0: any valid byte
  }
  std::unique_ptr<WeightStore> Open() {
    const std::string h = header_.dump();
    std::string bytes(8, '\0');
    for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
    std::ofstream(dir_.File("model.safetensors"), std::ios::binary) << bytes << h << data_;
    auto s = WeightStore::Open(dir_.path());
    REQUIRE(s.ok());
    return std::move(s).value();
  }

 private:
  testing::TempDir dir_{"moegraph-q"};
  json header_ = json::object();
  std::string data_;
};

TEST_CASE("quantized matrices: formats, scales and their errors", "[quant]") {
  QuantConfig q;
  q.fp8 = true;
  q.pow2_scales = true;
  Checkpoint ck;
  ck.Add("a.weight", "F8_E4M3", {300, 256}, 1);
  ck.Add("a.scale", "F8_E8M0", {3, 2}, 1);
  ck.Add("b.weight", "F8_E4M3", {64, 64}, 1);  // no scale
  ck.Add("c.weight", "I8", {64, 32}, 1);
  ck.Add("c.scale", "F8_E8M0", {64, 2}, 1);
  ck.Add("d.weight", "F8_E4M3", {64, 64}, 1);
  ck.Add("d.scale", "F8_E8M0", {2, 1}, 1);  // wrong shape
  ck.Add("e.weight", "I32", {4, 4}, 4);
  ck.Add("f.weight", "F8_E4M3", {128, 128}, 1);
  ck.Add("f.weight_scale_inv", "F32", {1, 1}, 4);  // transformers' spelling, f32
  auto ws = ck.Open();

  auto a = ReadMatrix(*ws, {"a"}, 300, 256, q);
  REQUIRE(a.ok());
  CHECK(a->format == WeightFormat::kFp8);
  CHECK(a->scale.dtype == DType::kE8M0);
  CHECK(a->pow2_act_scales);
  auto c = ReadMatrix(*ws, {"c"}, 64, 64, q);
  REQUIRE(c.ok());
  CHECK(c->format == WeightFormat::kFp4);
  CHECK(c->data.dim(1) == 32);
  auto f = ReadMatrix(*ws, {"f"}, 128, 128, q);
  REQUIRE(f.ok());
  CHECK(f->scale.dtype == DType::kF32);

  auto msg = [&](const std::string& base, int64_t n, int64_t k) {
    auto r = ReadMatrix(*ws, {base}, n, k, q);
    REQUIRE_FALSE(r.ok());
    return std::string(r.status().message());
  };
  CHECK_THAT(msg("b", 64, 64), Catch::Contains("b.weight is F8_E4M3 but its scale b.scale") &&
                                   Catch::Contains("is missing"));
  CHECK_THAT(msg("d", 64, 64), Catch::Contains("d.scale: expected shape [1, 1], found [2, 1]"));
  CHECK_THAT(msg("e", 4, 4), Catch::Contains("e.weight: dtype I32 is not a matrix format"));
  CHECK_THAT(msg("c", 64, 48), Catch::Contains("c.weight: packed FP4 needs K divisible by 32"));
  CHECK_THAT(msg("c", 64, 32),
             Catch::Contains("c.weight: expected shape [64, 16], found [64, 32]"));
  CHECK_THAT(msg("a", 300, 128), Catch::Contains("a.weight: expected shape [300, 128]"));
  CHECK_THAT(msg("zz", 1, 1), Catch::Contains("checkpoint lacks zz.weight"));
}

}  // namespace
