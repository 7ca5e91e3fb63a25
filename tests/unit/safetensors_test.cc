// safetensors reader: the tiny checkpoint (values checked against an
// independent stdlib-Python read of the file), canonical names, sharded sets,
// and corrupt files written to a temp dir.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/weights/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/unit/temp_dir.h"

using namespace moegraph;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string TinyDir() { return std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny"; }

using moegraph::testing::TempDir;

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  REQUIRE(out);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string LengthPrefix(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file: 8-byte length, header text, data.
std::string Safetensors(const std::string& header, const std::string& data) {
  return LengthPrefix(header.size()) + header + data;
}

template <typename T>
std::string Raw(std::initializer_list<T> values) {
  std::string s(values.size() * sizeof(T), '\0');
  std::memcpy(s.data(), std::data(values), s.size());
  return s;
}

// The error message of a file that must fail to open.
std::string OpenError(const std::string& path) {
  auto f = SafetensorsFile::Open(path);
  REQUIRE_FALSE(f.ok());
  return std::string(f.status().message());
}

std::string WriteAndOpenError(const TempDir& dir, const std::string& header,
                              const std::string& data) {
  const std::string path = dir.File("bad.safetensors");
  WriteBytes(path, Safetensors(header, data));
  return OpenError(path);
}

uint16_t Bf16Bits(const Tensor& t, int64_t index) { return t.as<const uint16_t>()[index]; }

}  // namespace

TEST_CASE("tiny checkpoint opens with canonical names and correct values", "[safetensors]") {
  auto opened = WeightStore::Open(TinyDir());
  INFO(opened.status().ToString());
  REQUIRE(opened.ok());
  const WeightStore& w = **opened;
  CHECK(w.Names().size() == 259);
  CHECK(w.Has("embed.weight"));
  CHECK(w.Has("head.weight"));
  CHECK(w.Has("norm.weight"));
  CHECK(w.Has("hc_head_fn"));
  CHECK(w.Has("hc_head_base"));
  CHECK(w.Has("hc_head_scale"));
  CHECK(w.Has("layers.4.ffn.experts.7.w3.weight"));
  CHECK_FALSE(w.Has("model.embed_tokens.weight"));
  CHECK_FALSE(w.Has("embed_tokens.weight"));
  CHECK_FALSE(w.Has("hc_head.hc_fn"));

  auto embed = w.Get("embed.weight", {320, 64}, {DType::kBF16});
  REQUIRE(embed.ok());
  CHECK(embed->rank == 2);
  CHECK(embed->ShapeString() == "[320, 64]");
  CHECK(Bf16Bits(*embed, 0) == 0x3c6d);
  CHECK(Bf16Bits(*embed, 1) == 0x3fc7);  // 1.5546875
  CHECK(Bf16Bits(*embed, 2) == 0xbeb2);  // -0.34765625
  CHECK(Bf16Bits(*embed, 5 * 64 + 7) == 0x3f6e);
  auto head = w.Get("head.weight", {320, 64}, {DType::kBF16});
  REQUIRE(head.ok());
  CHECK(Bf16Bits(*head, 319 * 64 + 63) == 0x3e58);

  auto base = w.Get("hc_head_base", {4}, {DType::kF32});
  REQUIRE(base.ok());
  CHECK(base->as<float>()[0] == 0.0350424088537693f);
  CHECK(base->as<float>()[2] == -0.8254336714744568f);
  auto scale = w.Get("hc_head_scale", {1}, {DType::kF32});
  REQUIRE(scale.ok());
  CHECK(scale->as<float>()[0] == 1.1871306896209717f);
  auto bias = w.Get("layers.2.ffn.gate.bias", {8}, {DType::kF32});
  REQUIRE(bias.ok());
  CHECK(bias->as<float>()[5] == -0.1473519504070282f);
  auto tid2eid = w.Get("layers.0.ffn.gate.tid2eid", {320, 2}, {DType::kI64, DType::kI32});
  REQUIRE(tid2eid.ok());
  CHECK(tid2eid->dtype == DType::kI64);
  const int64_t* ids = tid2eid->as<int64_t>();
  CHECK(std::vector<int64_t>(ids, ids + 6) == std::vector<int64_t>{3, 4, 7, 2, 2, 7});
  CHECK(ids[638] == 7);
  CHECK(ids[639] == 1);
  // Natural alignment of every view (the fixture is padded so no copies are made).
  for (const std::string& name : w.Names()) {
    auto t = w.Get(name);
    REQUIRE(t.ok());
    CHECK(reinterpret_cast<uintptr_t>(t->data) % 2 == 0);
  }
}

TEST_CASE("Get names the tensor with expected and found shape/dtype", "[safetensors]") {
  auto w = WeightStore::Open(TinyDir());
  REQUIRE(w.ok());
  auto bad_shape = (*w)->Get("layers.3.attn.wq_a.weight", {64, 48});
  REQUIRE_FALSE(bad_shape.ok());
  CHECK(bad_shape.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(bad_shape.status().message() ==
        "layers.3.attn.wq_a.weight: expected shape [64, 48], found [48, 64]");
  auto bad_dtype = (*w)->Get("embed.weight", {320, 64}, {DType::kF32, DType::kF16});
  REQUIRE_FALSE(bad_dtype.ok());
  CHECK(bad_dtype.status().message() == "embed.weight: expected dtype F32 or F16, found BF16");
  auto missing = (*w)->Get("layers.9.attn.wq_a.weight");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(missing.status().message()),
             Catch::Contains("layers.9.attn.wq_a.weight") && Catch::Contains("not found"));
}

TEST_CASE("golden.safetensors opens with names unchanged", "[safetensors]") {
  auto g = WeightStore::OpenFile(TinyDir() + "/golden.safetensors");
  REQUIRE(g.ok());
  auto ids = (*g)->Get("b.prompt_ids", {7}, {DType::kI64});
  REQUIRE(ids.ok());
  auto main = (*g)->Get("rope.main.inv_freq", {4}, {DType::kF32});
  REQUIRE(main.ok());
  CHECK(main->as<float>()[0] == 1.0f);
  CHECK(main->as<float>()[1] == 0.10000000149011612f);
  auto hidden = (*g)->Get("a.hidden.4", {45, 4, 64}, {DType::kF32});
  REQUIRE(hidden.ok());
  CHECK(hidden->rank == 3);
}

TEST_CASE("canonical tensor names", "[safetensors]") {
  CHECK(CanonicalTensorName("model.embed_tokens.weight") == "embed.weight");
  CHECK(CanonicalTensorName("embed_tokens.weight") == "embed.weight");
  CHECK(CanonicalTensorName("embed.weight") == "embed.weight");
  CHECK(CanonicalTensorName("lm_head.weight") == "head.weight");
  CHECK(CanonicalTensorName("model.lm_head.weight") == "head.weight");
  CHECK(CanonicalTensorName("model.layers.0.attn.wq_a.weight") == "layers.0.attn.wq_a.weight");
  CHECK(CanonicalTensorName("model.hc_head.hc_fn") == "hc_head_fn");
  CHECK(CanonicalTensorName("hc_head_base") == "hc_head_base");
  CHECK(CanonicalTensorName("layers.1.model.x") == "layers.1.model.x");
}

TEST_CASE("hand-written files: dtypes, metadata, scalars, empty and misaligned tensors",
          "[safetensors]") {
  TempDir dir;
  // The header is padded so the data section starts 8-aligned, as writers do;
  // the second file below puts an I32 at data offset 2, which needs a copy.
  std::string data = Raw<uint16_t>({0x3c00, 0xc000}) +             // F16 [1, -2] at [0, 4)
                     Raw<int32_t>({-7, 123456}) +                  // I32 at [4, 12): aligned
                     Raw<float>({2.5f});                           // F32 scalar at [12, 16)
  std::string odd = Raw<uint16_t>({0x3f80}) + Raw<int32_t>({42});  // I32 at [2, 6): misaligned
  json h = {{"__metadata__", {{"format", "pt"}}},
            {"half", {{"dtype", "F16"}, {"shape", {2}}, {"data_offsets", {0, 4}}}},
            {"ints", {{"dtype", "I32"}, {"shape", {1, 2}}, {"data_offsets", {4, 12}}}},
            {"scalar", {{"dtype", "F32"}, {"shape", json::array()}, {"data_offsets", {12, 16}}}},
            {"empty", {{"dtype", "BF16"}, {"shape", {0, 5}}, {"data_offsets", {16, 16}}}}};
  std::string header = h.dump();
  header.append((8 - (8 + header.size()) % 8) % 8, ' ');
  WriteBytes(dir.File("a.safetensors"), Safetensors(header, data));
  auto f = WeightStore::OpenFile(dir.File("a.safetensors"));
  INFO(f.status().ToString());
  REQUIRE(f.ok());
  CHECK((*f)->Names() == std::vector<std::string>{"empty", "half", "ints", "scalar"});
  CHECK((*f)->Get("half", {2}, {DType::kF16})->as<uint16_t>()[1] == 0xc000);
  auto ints = (*f)->Get("ints", {1, 2}, {DType::kI32});
  REQUIRE(ints.ok());
  CHECK(ints->as<int32_t>()[0] == -7);
  CHECK(ints->as<int32_t>()[1] == 123456);
  auto scalar = (*f)->Get("scalar");
  REQUIRE(scalar.ok());
  CHECK(scalar->rank == 0);
  CHECK(scalar->numel() == 1);
  CHECK(scalar->as<float>()[0] == 2.5f);
  auto empty = (*f)->Get("empty", {0, 5});
  REQUIRE(empty.ok());
  CHECK(empty->numel() == 0);

  json h2 = {{"pad", {{"dtype", "BF16"}, {"shape", {1}}, {"data_offsets", {0, 2}}}},
             {"odd", {{"dtype", "I32"}, {"shape", {1}}, {"data_offsets", {2, 6}}}}};
  std::string header2 = h2.dump();
  header2.append((8 - (8 + header2.size()) % 8) % 8, ' ');
  WriteBytes(dir.File("b.safetensors"), Safetensors(header2, odd));
  auto g = WeightStore::OpenFile(dir.File("b.safetensors"));
  REQUIRE(g.ok());
  auto o = (*g)->Get("odd", {1}, {DType::kI32});
  REQUIRE(o.ok());
  CHECK(reinterpret_cast<uintptr_t>(o->data) % 4 == 0);
  CHECK(o->as<int32_t>()[0] == 42);

  json h5 = {{"big", {{"dtype", "F32"}, {"shape", {1, 1, 1, 1, 1}}, {"data_offsets", {0, 4}}}}};
  WriteBytes(dir.File("c.safetensors"), Safetensors(h5.dump(), Raw<float>({1.0f})));
  auto r5 = WeightStore::OpenFile(dir.File("c.safetensors"));
  REQUIRE(r5.ok());
  auto t5 = (*r5)->Get("big");
  REQUIRE_FALSE(t5.ok());
  CHECK_THAT(std::string(t5.status().message()), Catch::Contains("big: rank 5"));
}

TEST_CASE("corrupt safetensors files are refused with a clear message", "[safetensors]") {
  TempDir dir;
  const std::string f32x2 = Raw<float>({1.0f, 2.0f});
  auto one = [](const std::string& dtype, json shape, json offsets) {
    return json{{"t", {{"dtype", dtype}, {"shape", shape}, {"data_offsets", offsets}}}}.dump();
  };

  SECTION("truncated checkpoint") {
    std::string tiny = ReadBytes(TinyDir() + "/model.safetensors");
    const std::string path = dir.File("truncated.safetensors");
    WriteBytes(path, tiny.substr(0, tiny.size() / 2));
    CHECK_THAT(OpenError(path), Catch::Contains("truncated.safetensors") &&
                                    Catch::Contains("lie outside the data section"));
    WriteBytes(path, tiny.substr(0, 5));
    CHECK_THAT(OpenError(path), Catch::Contains("file is 5 bytes, too short"));
    WriteBytes(path, tiny.substr(0, 1000));  // cut inside the header
    CHECK_THAT(OpenError(path), Catch::Contains("header length 26272 exceeds the 992 bytes"));
  }
  SECTION("not a regular file") {
    CHECK_THAT(OpenError(dir.path()), Catch::Contains("not a regular file"));
    CHECK(SafetensorsFile::Open(dir.File("absent.safetensors")).status().code() ==
          absl::StatusCode::kNotFound);
  }
  SECTION("bad header length") {
    const std::string path = dir.File("len.safetensors");
    WriteBytes(path, LengthPrefix(~0ull) + "{}");
    CHECK_THAT(OpenError(path), Catch::Contains("header length 18446744073709551615 exceeds"));
  }
  SECTION("bad JSON") {
    CHECK_THAT(WriteAndOpenError(dir, "{\"t\": {\"dtype\": \"F32\",", f32x2),
               Catch::Contains("header is not valid JSON"));
    CHECK_THAT(WriteAndOpenError(dir, "[1, 2, 3]", f32x2),
               Catch::Contains("header: expected a JSON object, found an array of 3"));
    CHECK_THAT(WriteAndOpenError(dir, "{\"__metadata__\": [1]}", ""),
               Catch::Contains("__metadata__: expected an object of strings"));
  }
  SECTION("entries lacking fields or with wrong types") {
    CHECK_THAT(WriteAndOpenError(dir, R"({"t": {"dtype": "F32", "shape": [2]}})", f32x2),
               Catch::Contains("tensor 't': missing 'data_offsets'"));
    CHECK_THAT(
        WriteAndOpenError(dir, one("F32", {-2}, {0, 8}), f32x2),
        Catch::Contains("tensor 't': shape entry: expected a non-negative integer, found -2"));
    CHECK_THAT(WriteAndOpenError(dir, one("F32", {2}, {0}), f32x2),
               Catch::Contains("tensor 't': data_offsets: expected [begin, end]"));
    CHECK_THAT(WriteAndOpenError(dir, R"({"t": 5})", f32x2),
               Catch::Contains("tensor 't': expected an object"));
  }
  SECTION("offsets outside the data section") {
    CHECK_THAT(WriteAndOpenError(dir, one("F32", {2}, {4, 12}), f32x2),
               Catch::Contains(
                   "tensor 't': data_offsets [4, 12] lie outside the data section of 8 bytes"));
    CHECK_THAT(WriteAndOpenError(dir, one("F32", {0}, {6, 5}), f32x2),
               Catch::Contains("data_offsets [6, 5]"));
  }
  SECTION("overlapping tensors") {
    json h = {{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
              {"b", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {4, 8}}}}};
    CHECK_THAT(WriteAndOpenError(dir, h.dump(), f32x2),
               Catch::Contains("tensors 'a' [0, 8) and 'b' [4, 8) overlap"));
  }
  SECTION("size != dtype x shape") {
    CHECK_THAT(WriteAndOpenError(dir, one("F32", {3}, {0, 8}), f32x2),
               Catch::Contains(
                   "tensor 't': data_offsets span 8 bytes but dtype F32 x shape [3] needs 12"));
    CHECK_THAT(WriteAndOpenError(dir, one("BF16", {4294967296LL, 4294967296LL, 4}, {0, 8}), f32x2),
               Catch::Contains("needs more than 64-bit sizes hold"));
    // An element count past INT64_MAX before a zero dim is refused too.
    CHECK_THAT(WriteAndOpenError(dir, one("F32", {4294967296LL, 2147483649LL, 0}, {0, 0}), f32x2),
               Catch::Contains("needs more than 64-bit sizes hold"));
  }
  SECTION("the quantized checkpoints' dtypes are read") {
    for (auto [name, dtype] :
         {std::pair{"F8_E4M3", DType::kF8E4M3}, std::pair{"F8_E8M0", DType::kE8M0},
          std::pair{"I8", DType::kI8}, std::pair{"U8", DType::kU8}}) {
      WriteBytes(dir.File("q.safetensors"), Safetensors(one(name, {8}, {0, 8}), f32x2));
      auto f = SafetensorsFile::Open(dir.File("q.safetensors"));
      REQUIRE(f.ok());
      const auto& e = (*f)->entries().at("t");
      CHECK(e.dtype == dtype);
      CHECK(e.bytes == 8);
    }
    // One byte per element: 8 bytes cannot hold 9 of them.
    CHECK_THAT(WriteAndOpenError(dir, one("F8_E4M3", {9}, {0, 8}), f32x2),
               Catch::Contains("dtype F8_E4M3 x shape [9] needs 9"));
  }
  SECTION("unknown dtype") {
    CHECK_THAT(WriteAndOpenError(dir, one("F64", {1}, {0, 8}), f32x2),
               Catch::Contains("tensor 't': unsupported dtype \"F64\"") &&
                   Catch::Contains("F8_E4M3, F8_E8M0, I8, U8"));
    CHECK_THAT(WriteAndOpenError(dir, one("Q4_K", {1}, {0, 8}), f32x2),
               Catch::Contains("unsupported dtype \"Q4_K\""));
  }
}

TEST_CASE("sharded checkpoints via model.safetensors.index.json", "[safetensors]") {
  TempDir dir;
  json s1 = {
      {"model.embed_tokens.weight", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}}};
  json s2 = {{"lm_head.weight", {{"dtype", "F32"}, {"shape", {1, 2}}, {"data_offsets", {0, 8}}}},
             {"model.norm.weight", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {8, 12}}}}};
  WriteBytes(dir.File("model-00001-of-00002.safetensors"),
             Safetensors(s1.dump(), Raw<float>({1.5f, -3.0f})));
  WriteBytes(dir.File("model-00002-of-00002.safetensors"),
             Safetensors(s2.dump(), Raw<float>({7.0f, 8.0f, 9.0f})));
  json index = {{"metadata", {{"total_size", 20}}},
                {"weight_map",
                 {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                  {"lm_head.weight", "model-00002-of-00002.safetensors"},
                  {"model.norm.weight", "model-00002-of-00002.safetensors"}}}};
  const std::string index_path = dir.File("model.safetensors.index.json");

  SECTION("valid") {
    WriteBytes(index_path, index.dump());
    auto w = WeightStore::Open(dir.path());
    INFO(w.status().ToString());
    REQUIRE(w.ok());
    CHECK((*w)->Names() == std::vector<std::string>{"embed.weight", "head.weight", "norm.weight"});
    CHECK((*w)->Get("embed.weight", {2})->as<float>()[1] == -3.0f);
    CHECK((*w)->Get("head.weight", {1, 2})->as<float>()[0] == 7.0f);
    CHECK((*w)->Get("norm.weight", {1})->as<float>()[0] == 9.0f);
  }
  SECTION("a listed shard is missing") {
    index["weight_map"]["model.norm.weight"] = "model-00003-of-00003.safetensors";
    WriteBytes(index_path, index.dump());
    auto w = WeightStore::Open(dir.path());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == absl::StatusCode::kNotFound);
    CHECK_THAT(std::string(w.status().message()),
               Catch::Contains("model-00003-of-00003.safetensors") &&
                   Catch::Contains("model.norm.weight"));
  }
  SECTION("the index puts a tensor in the wrong shard") {
    index["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors";
    WriteBytes(index_path, index.dump());
    auto w = WeightStore::Open(dir.path());
    REQUIRE_FALSE(w.ok());
    CHECK_THAT(std::string(w.status().message()),
               Catch::Contains("'model.norm.weight' in model-00001-of-00002.safetensors") &&
                   Catch::Contains("model-00002-of-00002.safetensors"));
  }
  SECTION("a file name escaping the directory") {
    index["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
    WriteBytes(index_path, index.dump());
    auto w = WeightStore::Open(dir.path());
    REQUIRE_FALSE(w.ok());
    CHECK_THAT(std::string(w.status().message()),
               Catch::Contains("weight_map['model.norm.weight']") &&
                   Catch::Contains("../elsewhere.safetensors"));
  }
  SECTION("index is not JSON / has no weight_map") {
    WriteBytes(index_path, "{\"weight_map\": ");
    CHECK_THAT(std::string(WeightStore::Open(dir.path()).status().message()),
               Catch::Contains("model.safetensors.index.json: not valid JSON"));
    WriteBytes(index_path, "{\"metadata\": {}}");
    CHECK_THAT(std::string(WeightStore::Open(dir.path()).status().message()),
               Catch::Contains("weight_map: expected an object"));
  }
  SECTION("two stored names with one canonical name") {
    json dup = {
        {"embed_tokens.weight", {{"dtype", "F32"}, {"shape", {1}}, {"data_offsets", {0, 4}}}}};
    WriteBytes(dir.File("model-00002-of-00002.safetensors"),
               Safetensors(dup.dump(), Raw<float>({1.0f})));
    index["weight_map"] = {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                           {"embed_tokens.weight", "model-00002-of-00002.safetensors"}};
    WriteBytes(index_path, index.dump());
    auto w = WeightStore::Open(dir.path());
    REQUIRE_FALSE(w.ok());
    CHECK_THAT(std::string(w.status().message()),
               Catch::Contains("tensor 'embed.weight' is stored twice") &&
                   Catch::Contains("'model.embed_tokens.weight'") &&
                   Catch::Contains("'embed_tokens.weight'"));
  }
  SECTION("a directory with no checkpoint") {
    TempDir empty;
    auto w = WeightStore::Open(empty.path());
    REQUIRE_FALSE(w.ok());
    CHECK(w.status().code() == absl::StatusCode::kNotFound);
    CHECK_THAT(std::string(w.status().message()),
               Catch::Contains("neither model.safetensors nor model.safetensors.index.json"));
  }
}
