// ModelConfig parsing (current and legacy config.json spellings, bad files)
// and the rotary tables against the golden ones transformers produced.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/model/model_config.h"
#include "engine/weights/safetensors.h"
#include "nlohmann/json.hpp"

using namespace moegraph;
using json = nlohmann::json;

namespace {

std::string Fixture(const std::string& rel) {
  return std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/" + rel;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

json TinyJson() { return json::parse(ReadText(Fixture("dsv4-tiny/config.json"))); }

// The error message of a config that must fail with InvalidArgument.
std::string ErrorOf(const json& j) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump());
  REQUIRE_FALSE(c.ok());
  CHECK(c.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(c.status().message());
}

ModelConfig ParseOk(const json& j) {
  absl::StatusOr<ModelConfig> c = ParseModelConfig(j.dump());
  INFO(c.status().ToString());
  REQUIRE(c.ok());
  return *std::move(c);
}

// The tiny config rewritten in the legacy spelling (compress_ratios with an MTP
// entry, num_hash_layers, qk_rope_head_dim, rope_scaling).
json TinyLegacyJson() {
  json j = TinyJson();
  for (const char* k : {"layer_types", "mlp_layer_types", "compress_rates", "rope_parameters",
                        "partial_rotary_factor"}) {
    j.erase(k);
  }
  j["compress_ratios"] = {16, 4, 0, 4, 16, 0};
  j["num_hash_layers"] = 2;
  j["qk_rope_head_dim"] = 8;
  j["rope_scaling"] = {{"type", "yarn"},
                       {"factor", 4},
                       {"original_max_position_embeddings", 1024},
                       {"beta_fast", 32},
                       {"beta_slow", 1}};
  return j;
}

std::vector<float> GoldenTable(const std::string& name) {
  auto golden = WeightStore::OpenFile(Fixture("dsv4-tiny/golden.safetensors"));
  REQUIRE(golden.ok());
  auto t = (*golden)->Get(name, {4}, {DType::kF32});
  INFO(t.status().ToString());
  REQUIRE(t.ok());
  return std::vector<float>(t->as<float>(), t->as<float>() + 4);
}

void CheckTable(const std::vector<float>& got, const std::vector<float>& want, double rel) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("pair " << i << ": got " << got[i] << ", want " << want[i]);
    CHECK(std::fabs(got[i] - want[i]) <= rel * std::fabs(want[i]));
  }
}

const std::vector<AttnKind> kTinyLayers = {AttnKind::kHca, AttnKind::kCsa, AttnKind::kSliding,
                                           AttnKind::kCsa, AttnKind::kHca};
const std::vector<MlpKind> kTinyMlp = {MlpKind::kHashMoe, MlpKind::kHashMoe, MlpKind::kMoe,
                                       MlpKind::kMoe, MlpKind::kMoe};

}  // namespace

TEST_CASE("tiny config.json (current spelling) parses to its values", "[model_config]") {
  absl::StatusOr<ModelConfig> loaded = LoadModelConfig(Fixture("dsv4-tiny"));
  INFO(loaded.status().ToString());
  REQUIRE(loaded.ok());
  const ModelConfig& c = *loaded;
  CHECK(c.model_type == "deepseek_v4");
  CHECK(c.vocab_size == 320);
  CHECK(c.hidden_size == 64);
  CHECK(c.num_layers == 5);
  CHECK(c.num_heads == 4);
  CHECK(c.head_dim == 32);
  CHECK(c.rope_dim == 8);
  CHECK(c.q_lora_rank == 48);
  CHECK(c.o_groups == 2);
  CHECK(c.o_lora_rank == 24);
  CHECK(c.n_routed_experts == 8);
  CHECK(c.num_experts_per_tok == 2);
  CHECK(c.n_shared_experts == 1);
  CHECK(c.moe_intermediate_size == 32);
  CHECK(c.routed_scaling_factor == 1.5);
  CHECK(c.swiglu_limit == 1.0);
  CHECK(c.sliding_window == 8);
  CHECK(c.csa_rate == 4);
  CHECK(c.hca_rate == 16);
  CHECK(c.index_n_heads == 4);
  CHECK(c.index_head_dim == 16);
  CHECK(c.index_topk == 3);
  CHECK(c.hc_mult == 4);
  CHECK(c.hc_sinkhorn_iters == 20);
  CHECK(c.hc_eps == 1e-6);
  CHECK(c.rms_norm_eps == 1e-6);
  CHECK(c.max_position_embeddings == 4096);
  CHECK(c.bos_token_id == 0);
  CHECK(c.eos_token_ids == std::vector<int>{1});
  CHECK_FALSE(c.tie_word_embeddings);
  CHECK(c.num_nextn_predict_layers == 1);
  CHECK(c.layer_types == kTinyLayers);
  CHECK(c.mlp_types == kTinyMlp);

  CHECK_FALSE(c.rope_main.yarn);
  CHECK(c.rope_main.theta == 10000.0);
  CHECK(c.rope_compress.yarn);
  CHECK(c.rope_compress.theta == 160000.0);
  CHECK(c.rope_compress.factor == 4.0);
  CHECK(c.rope_compress.original_max_position == 1024.0);
  CHECK(c.rope_compress.beta_fast == 32.0);
  CHECK(c.rope_compress.beta_slow == 1.0);
  CHECK(c.rope_compress.attention_factor == 1.0);

  CHECK(c.num_layers_of(AttnKind::kSliding) == 1);
  CHECK(c.num_layers_of(AttnKind::kCsa) == 2);
  CHECK(c.num_layers_of(AttnKind::kHca) == 2);
  CHECK(c.index_within_kind(0) == 0);
  CHECK(c.index_within_kind(1) == 0);
  CHECK(c.index_within_kind(2) == 0);
  CHECK(c.index_within_kind(3) == 1);
  CHECK(c.index_within_kind(4) == 1);
  CHECK(c.index_within_kind(5) == -1);
  CHECK(std::string(AttnKindName(AttnKind::kSliding)) == "sliding_attention");
  CHECK(std::string(AttnKindName(AttnKind::kCsa)) == "compressed_sparse_attention");
  CHECK(std::string(AttnKindName(AttnKind::kHca)) == "heavily_compressed_attention");
}

TEST_CASE("V4-Flash legacy config.json: 43 layers, 2 sliding then CSA/HCA, YaRN on compress",
          "[model_config]") {
  ModelConfig c = ParseOk(json::parse(ReadText(Fixture("configs/v4-flash-base.config.json"))));
  REQUIRE(c.num_layers == 43);
  REQUIRE(c.layer_types.size() == 43);
  CHECK(c.layer_types[0] == AttnKind::kSliding);
  CHECK(c.layer_types[1] == AttnKind::kSliding);
  for (int l = 2; l < 43; ++l) {
    INFO("layer " << l);
    CHECK(c.layer_types[l] == (l % 2 == 0 ? AttnKind::kCsa : AttnKind::kHca));
  }
  CHECK(c.num_layers_of(AttnKind::kSliding) == 2);
  CHECK(c.num_layers_of(AttnKind::kCsa) == 21);
  CHECK(c.num_layers_of(AttnKind::kHca) == 20);
  CHECK(c.index_within_kind(42) == 20);  // the last CSA layer
  CHECK(c.index_within_kind(41) == 19);  // the last HCA layer
  REQUIRE(c.mlp_types.size() == 43);
  for (int l = 0; l < 43; ++l) CHECK(c.mlp_types[l] == (l < 3 ? MlpKind::kHashMoe : MlpKind::kMoe));
  CHECK(c.csa_rate == 4);
  CHECK(c.hca_rate == 128);
  CHECK(c.rope_dim == 64);
  CHECK(c.head_dim == 512);
  CHECK(c.hidden_size == 4096);
  CHECK(c.vocab_size == 129280);
  CHECK(c.n_routed_experts == 256);
  CHECK(c.o_groups == 8);
  CHECK(c.num_nextn_predict_layers == 1);
  CHECK(c.eos_token_ids == std::vector<int>{1});
  CHECK_FALSE(c.rope_main.yarn);
  CHECK(c.rope_main.theta == 10000.0);
  CHECK(c.rope_compress.yarn);
  CHECK(c.rope_compress.theta == 160000.0);
  CHECK(c.rope_compress.factor == 16.0);
  CHECK(c.rope_compress.original_max_position == 65536.0);
  CHECK(c.rope_compress.beta_fast == 32.0);
  CHECK(c.rope_compress.beta_slow == 1.0);
  CHECK(c.rope_compress.attention_factor == 1.0);

  // Ramp from pair 15 to 25 (c(32) = 15.45, c(1) = 24.71); values from an
  // independent fp32 re-computation of transformers' formula.
  std::vector<float> inv = RopeInvFreq(c.rope_compress, c.rope_dim);
  REQUIRE(inv.size() == 32);
  CHECK(inv[0] == 1.0f);
  CHECK(inv[15] == Approx(0.0036355385091155767).epsilon(1e-6));  // last fully extrapolated
  CHECK(inv[16] == Approx(0.0022656249348074198).epsilon(1e-6));
  CHECK(inv[24] == Approx(1.953125320142135e-05).epsilon(1e-6));
  CHECK(inv[25] == Approx(5.372312443796545e-06).epsilon(1e-6));  // first fully interpolated
  CHECK(inv[31] == Approx(5.680529397977807e-07).epsilon(1e-6));
}

TEST_CASE("legacy spelling of the tiny config resolves like the current one", "[model_config]") {
  ModelConfig cur = ParseOk(TinyJson());
  ModelConfig old = ParseOk(TinyLegacyJson());
  CHECK(old.layer_types == cur.layer_types);
  CHECK(old.mlp_types == cur.mlp_types);
  CHECK(old.csa_rate == 4);  // derived from the ratios: smaller is CSA
  CHECK(old.hca_rate == 16);
  CHECK(old.rope_dim == 8);
  CHECK(old.rope_main.theta == cur.rope_main.theta);
  CHECK_FALSE(old.rope_main.yarn);
  CHECK(old.rope_compress.yarn);
  CHECK(old.rope_compress.theta == 160000.0);
  CHECK(old.rope_compress.factor == 4.0);
  CHECK(old.rope_compress.attention_factor == 1.0);
  CHECK(RopeInvFreq(old.rope_compress, 8) == RopeInvFreq(cur.rope_compress, 8));

  SECTION("compress_ratios may omit the MTP entry") {
    json j = TinyLegacyJson();
    j["compress_ratios"] = {16, 4, 0, 4, 16};
    CHECK(ParseOk(j).layer_types == kTinyLayers);
  }
  SECTION("explicit compress_rates pin the mapping") {
    json j = TinyLegacyJson();
    j["compress_rates"] = {{"compressed_sparse_attention", 4},
                           {"heavily_compressed_attention", 16}};
    CHECK(ParseOk(j).layer_types == kTinyLayers);
  }
  SECTION("layer_types and compress_ratios together must agree") {
    json j = TinyJson();
    j["compress_ratios"] = {16, 4, 0, 4, 16, 0};
    CHECK(ParseOk(j).layer_types == kTinyLayers);
  }
}

TEST_CASE("flat rope_parameters (transformers' config-class form) apply to the compress table",
          "[model_config]") {
  json j = TinyJson();
  j["rope_parameters"] = {{"rope_type", "yarn"},
                          {"factor", 4.0},
                          {"original_max_position_embeddings", 1024},
                          {"beta_fast", 32.0},
                          {"beta_slow", 1.0}};
  ModelConfig c = ParseOk(j);
  CHECK_FALSE(c.rope_main.yarn);
  CHECK(c.rope_main.theta == 10000.0);
  CHECK(c.rope_compress.yarn);
  CHECK(c.rope_compress.theta == 160000.0);  // compress_rope_theta
  CHECK(c.rope_compress.attention_factor == 1.0);
  CheckTable(RopeInvFreq(c.rope_compress, c.rope_dim), GoldenTable("rope.compress.inv_freq"), 2e-7);

  SECTION("the flash-shaped overrides on the tiny config") {
    json flash = TinyJson();
    json overrides = json::parse(ReadText(Fixture("configs/flash-shaped-4layer.overrides.json")));
    flash.update(overrides);
    // The tiny config's qk_rope_head_dim (8) now contradicts head_dim 512 *
    // partial_rotary_factor 0.125 = 64. (transformers silently drops the legacy
    // key when partial_rotary_factor is given; we refuse the contradiction.)
    std::string err = ErrorOf(flash);
    CHECK_THAT(err, Catch::Contains("qk_rope_head_dim") && Catch::Contains("64") &&
                        Catch::Contains("found 8"));
    flash.erase("qk_rope_head_dim");
    ModelConfig f = ParseOk(flash);
    CHECK(f.num_layers == 4);
    CHECK(f.layer_types == std::vector<AttnKind>{AttnKind::kSliding, AttnKind::kCsa, AttnKind::kHca,
                                                 AttnKind::kCsa});
    CHECK(f.mlp_types ==
          std::vector<MlpKind>{MlpKind::kHashMoe, MlpKind::kMoe, MlpKind::kMoe, MlpKind::kMoe});
    CHECK(f.rope_dim == 64);
    CHECK(f.hca_rate == 128);
    CHECK(f.index_topk == 512);
    CHECK(f.rope_compress.yarn);
    CHECK(f.rope_compress.factor == 16.0);
    CHECK(f.rope_compress.original_max_position == 65536.0);
    CHECK(f.rope_compress.theta == 160000.0);
    CHECK_FALSE(f.rope_main.yarn);
  }
}

TEST_CASE("rope tables match transformers' golden inv_freq", "[model_config][rope]") {
  ModelConfig c = ParseOk(TinyJson());
  CheckTable(RopeInvFreq(c.rope_main, c.rope_dim), GoldenTable("rope.main.inv_freq"), 2e-7);
  CheckTable(RopeInvFreq(c.rope_compress, c.rope_dim), GoldenTable("rope.compress.inv_freq"), 2e-7);
  // Spelled out: default rope is theta^(-2i/r); YaRN here ramps over pairs 0..2.
  std::vector<float> compress = RopeInvFreq(c.rope_compress, c.rope_dim);
  CHECK(compress[1] == Approx(0.03125).epsilon(1e-7));   // half 0.05, half 0.05/4
  CHECK(compress[2] == Approx(0.000625).epsilon(1e-6));  // 0.0025 / 4
}

TEST_CASE("YaRN edge cases follow transformers: equal bounds, clamping, mscale",
          "[model_config][rope]") {
  RopeTable t;
  t.theta = 10000.0;
  t.yarn = true;
  t.factor = 8.0;
  t.original_max_position = 512;
  t.beta_fast = 2;
  t.beta_slow = 4;
  // floor(c(2)) = ceil(c(4)) = 3: the ramp gets its +0.001, so pair 3 is fully
  // extrapolated and pair 4 fully interpolated (no 0/0).
  std::vector<float> inv = RopeInvFreq(t, 16);
  REQUIRE(inv.size() == 8);
  CHECK(inv[3] == Approx(0.03162277862429619).epsilon(1e-6));
  CHECK(inv[4] == Approx(0.0012499999720603228).epsilon(1e-6));
  CHECK(inv[7] == Approx(3.9528473280370235e-05).epsilon(1e-6));
  for (float v : inv) CHECK(std::isfinite(v));

  // high = ceil(c(1)) = 9 is clamped to r-1 = 7; everything below stays extrapolated.
  t.factor = 2.0;
  t.original_max_position = 1e9;
  t.beta_fast = 32;
  t.beta_slow = 1;
  inv = RopeInvFreq(t, 8);
  CHECK(inv[3] == Approx(0.0010000000474974513).epsilon(1e-6));

  // A nested YaRN table without attention_factor gets transformers' mscale.
  json j = TinyJson();
  j["rope_parameters"]["compress"].erase("attention_factor");
  CHECK(ParseOk(j).rope_compress.attention_factor == Approx(0.1 * std::log(4.0) + 1.0));
  j["rope_parameters"]["compress"]["mscale"] = 1.0;
  j["rope_parameters"]["compress"]["mscale_all_dim"] = 1.0;
  CHECK(ParseOk(j).rope_compress.attention_factor == Approx(1.0));
  // factor: null means max_position_embeddings / original_max_position_embeddings.
  j["rope_parameters"]["compress"]["factor"] = nullptr;
  CHECK(ParseOk(j).rope_compress.factor == 4.0);  // 4096 / 1024
}

TEST_CASE("bad config.json files are refused with the field named", "[model_config]") {
  SECTION("not JSON") {
    absl::StatusOr<ModelConfig> c = ParseModelConfig("{\"model_type\": \"deepseek_v4\",");
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(c.status().message()), Catch::Contains("not valid JSON"));
  }
  SECTION("not an object") {
    absl::StatusOr<ModelConfig> c = ParseModelConfig("[1, 2]");
    REQUIRE_FALSE(c.ok());
    CHECK_THAT(std::string(c.status().message()),
               Catch::Contains("expected a JSON object") && Catch::Contains("an array of 2"));
  }
  SECTION("wrong model_type") {
    json j = TinyJson();
    j["model_type"] = "deepseek_v3";
    CHECK_THAT(ErrorOf(j), Catch::Contains("model_type") && Catch::Contains("\"deepseek_v4\"") &&
                               Catch::Contains("\"deepseek_v3\""));
  }
  SECTION("missing required field") {
    json j = TinyJson();
    j.erase("hidden_size");
    CHECK_THAT(ErrorOf(j), Catch::Contains("hidden_size") && Catch::Contains("missing"));
    j = TinyJson();
    j.erase("model_type");
    CHECK_THAT(ErrorOf(j), Catch::Contains("model_type") && Catch::Contains("missing"));
    j = TinyJson();
    j.erase("layer_types");
    CHECK_THAT(ErrorOf(j), Catch::Contains("layer_types") && Catch::Contains("compress_ratios"));
  }
  SECTION("wrong types and ranges") {
    json j = TinyJson();
    j["hidden_size"] = "64";
    CHECK_THAT(ErrorOf(j), Catch::Contains("hidden_size: expected an integer >= 1, found \"64\""));
    j = TinyJson();
    j["head_dim"] = 32.5;
    CHECK_THAT(ErrorOf(j), Catch::Contains("head_dim") && Catch::Contains("found 32.5"));
    j = TinyJson();
    j["sliding_window"] = 0;
    CHECK_THAT(ErrorOf(j), Catch::Contains("sliding_window") && Catch::Contains("found 0"));
    j = TinyJson();
    j["vocab_size"] = 4294967296LL;
    CHECK_THAT(ErrorOf(j), Catch::Contains("vocab_size") && Catch::Contains("4294967296"));
    j = TinyJson();
    j["num_experts_per_tok"] = 9;
    CHECK_THAT(ErrorOf(j), Catch::Contains("num_experts_per_tok: expected an integer in [1, 8]"));
    j = TinyJson();
    j["tie_word_embeddings"] = 1;
    CHECK_THAT(ErrorOf(j), Catch::Contains("tie_word_embeddings: expected true or false, found 1"));
    j = TinyJson();
    j["layer_types"] = "sliding_attention";
    CHECK_THAT(ErrorOf(j), Catch::Contains("layer_types: expected an array"));
  }
  SECTION("layer_types length != num_hidden_layers") {
    json j = TinyJson();
    j["layer_types"].erase(4);
    CHECK_THAT(ErrorOf(j),
               Catch::Contains("layer_types: expected 5 entries") && Catch::Contains("found 4"));
  }
  SECTION("unknown layer type") {
    json j = TinyJson();
    j["layer_types"][2] = "full_attention";
    CHECK_THAT(ErrorOf(j), Catch::Contains("layer_types[2]") &&
                               Catch::Contains("sliding_attention") &&
                               Catch::Contains("\"full_attention\""));
    j = TinyJson();
    j["mlp_layer_types"][1] = "dense";
    CHECK_THAT(ErrorOf(j), Catch::Contains("mlp_layer_types[1]") && Catch::Contains("\"dense\""));
  }
  SECTION("compress_ratios disagreeing with layer_types") {
    json j = TinyJson();
    j["compress_ratios"] = {16, 4, 0, 16, 16, 0};
    CHECK_THAT(ErrorOf(j), Catch::Contains("compress_ratios[3]") &&
                               Catch::Contains("heavily_compressed_attention") &&
                               Catch::Contains("layer_types[3] is compressed_sparse_attention"));
  }
  SECTION("compress_ratios of the wrong length or with a rate compress_rates lacks") {
    json j = TinyLegacyJson();
    j["compress_ratios"] = {16, 4, 0};
    CHECK_THAT(ErrorOf(j), Catch::Contains("compress_ratios: expected 6 entries") &&
                               Catch::Contains("found 3"));
    j = TinyLegacyJson();
    j["compress_rates"] = {{"compressed_sparse_attention", 4},
                           {"heavily_compressed_attention", 128}};
    CHECK_THAT(ErrorOf(j), Catch::Contains("compress_ratios[0]") && Catch::Contains("found 16"));
    j = TinyLegacyJson();
    j["compress_ratios"] = {16, 4, 0, 8, 16, 0};
    CHECK_THAT(ErrorOf(j), Catch::Contains("compress_ratios") && Catch::Contains("{4, 8, 16}"));
  }
  SECTION("qk_rope_head_dim != head_dim * partial_rotary_factor") {
    json j = TinyJson();
    j["qk_rope_head_dim"] = 16;
    CHECK_THAT(ErrorOf(j), Catch::Contains("qk_rope_head_dim: expected head_dim * "
                                           "partial_rotary_factor = 32 * 0.25 = 8, found 16"));
    j = TinyJson();
    j["rope_parameters"]["compress"]["partial_rotary_factor"] = 0.5;
    CHECK_THAT(ErrorOf(j), Catch::Contains("rope_parameters.compress.partial_rotary_factor"));
  }
  SECTION("num_attention_heads not divisible by o_groups") {
    json j = TinyJson();
    j["o_groups"] = 3;
    CHECK_THAT(ErrorOf(j),
               Catch::Contains("o_groups: expected a divisor of num_attention_heads (4), "
                               "found 3"));
  }
  SECTION("mlp_layer_types contradicting num_hash_layers") {
    json j = TinyJson();
    j["num_hash_layers"] = 3;
    CHECK_THAT(ErrorOf(j),
               Catch::Contains("mlp_layer_types[2]") && Catch::Contains("num_hash_layers = 3"));
  }
  SECTION("rope tables") {
    json j = TinyJson();
    j["rope_parameters"]["compress"]["rope_type"] = "llama3";
    CHECK_THAT(ErrorOf(j), Catch::Contains("rope_parameters.compress.rope_type") &&
                               Catch::Contains("\"llama3\""));
    j = TinyJson();
    j["rope_parameters"]["compress"].erase("original_max_position_embeddings");
    CHECK_THAT(ErrorOf(j),
               Catch::Contains("rope_parameters.compress.original_max_position_embeddings") &&
                   Catch::Contains("missing"));
    j = TinyJson();
    j["rope_parameters"].erase("main");
    CHECK_THAT(ErrorOf(j), Catch::Contains("rope_parameters: expected both `main` and `compress`"));
    j = TinyLegacyJson();
    j["rope_parameters"] = j["rope_scaling"];
    CHECK_THAT(ErrorOf(j), Catch::Contains("rope_scaling"));
    j = TinyJson();
    j["rope_theta"] = -1;
    CHECK_THAT(ErrorOf(j), Catch::Contains("rope_theta: expected a number > 1, found -1"));
  }
  SECTION("features the engine does not implement") {
    json j = TinyJson();
    j["num_key_value_heads"] = 2;
    CHECK_THAT(ErrorOf(j), Catch::Contains("num_key_value_heads: expected an integer in [1, 1], "
                                           "found 2"));
    j = TinyJson();
    j["scoring_func"] = "softmax";
    CHECK_THAT(ErrorOf(j), Catch::Contains("scoring_func") && Catch::Contains("\"softmax\""));
  }
  SECTION("LoadModelConfig names the file") {
    absl::StatusOr<ModelConfig> c = LoadModelConfig("/nonexistent-moegraph-dir");
    REQUIRE_FALSE(c.ok());
    CHECK(c.status().code() == absl::StatusCode::kNotFound);
    CHECK_THAT(std::string(c.status().message()),
               Catch::Contains("/nonexistent-moegraph-dir/config.json"));
  }
}
