// Random weights (EngineOptions::random_weights): a config alone loads, steps
// give finite logits, the seed decides the weights, and the overrides
// (num_layers, weight_format) are checked.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "engine/model/dsv4_engine.h"
#include "tests/unit/temp_dir.h"

namespace moegraph {
namespace {

const std::string kModelDir = std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny";

EngineOptions RandomOptions() {
  EngineOptions o;
  o.model_dir = kModelDir;
  o.num_slots = 1;
  o.context_limit = 64;
  o.max_step_tokens = 16;
  o.random_weights = true;
  return o;
}

// A 12-token prefill and 3 decode steps; the logits of every step.
std::vector<float> Run(const EngineOptions& o) {
  auto created = Engine::Create(o);
  REQUIRE(created.ok());
  Engine& engine = **created;
  REQUIRE(engine.AcquireSlot(0, 16).ok());
  std::vector<int32_t> ids = {5, 9, 3, 17, 2, 8, 11, 4, 7, 6, 13, 10};
  std::vector<float> all;
  StepPlan plan;
  plan.token_ids = ids.data();
  plan.num_tokens = 12;
  plan.seqs.push_back(SeqChunk(0, 0, 0, 12, true));
  REQUIRE(engine.Step(plan, &all).ok());
  for (int pos = 12; pos < 15; ++pos) {
    StepPlan d;
    d.token_ids = ids.data() + (pos - 12);
    d.num_tokens = 1;
    d.seqs.push_back(SeqChunk(0, pos, 0, 1, true));
    REQUIRE(engine.Step(d, &all).ok());
  }
  return all;
}

TEST_CASE("random weights: finite, seeded, in every format", "[random]") {
  EngineOptions o = RandomOptions();
  const std::vector<float> a = Run(o);
  REQUIRE(a.size() == 4 * 320);  // 4 rows of dsv4-tiny's vocabulary (320)
  float spread = 0;
  for (float v : a) {
    REQUIRE(std::isfinite(v));
    spread = std::max(spread, std::fabs(v - a[0]));
  }
  CHECK(spread > 1e-3f);  // not a constant
  CHECK(Run(o) == a);     // the seed decides everything
  o.random_seed = 2;
  CHECK(Run(o) != a);
  for (const char* format : {"fp8", "fp4", "bf16"}) {
    INFO(format);
    o.weight_format = format;
    for (float v : Run(o)) REQUIRE(std::isfinite(v));
  }
}

TEST_CASE("random weights: expert-parallel ranks get the same model", "[random][ep]") {
  // Each rank generates only its own experts; the replicated weights must
  // still agree, or the ranks would run different models.
  EngineOptions o = RandomOptions();
  o.weight_format = "fp4";
  const std::vector<float> one = Run(o);
  o.devices = "cpu:0,cpu:1,cpu:2";
  o.num_slots = 3;
  CHECK(Run(o) == one);
}

TEST_CASE("random weights: a config file, the first N layers", "[random]") {
  testing::TempDir dir("moegraph-random");
  const std::string file = dir.File("tiny.json");
  std::filesystem::copy_file(kModelDir + "/config.json", file);
  EngineOptions o = RandomOptions();
  o.model_dir = file;
  o.num_layers = 1;
  auto created = Dsv4Engine::Create(o);
  REQUIRE(created.ok());
  CHECK((*created)->config().num_layers == 1);
  CHECK((*created)->info().name == "tiny (random weights)");
}

TEST_CASE("random weights: bad overrides name the field", "[random]") {
  EngineOptions o = RandomOptions();
  o.num_layers = 99;
  auto r = Dsv4Engine::Create(o);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(std::string(r.status().message()), Catch::Contains("num_layers: expected 0 (all) to"));
  o.num_layers = 0;
  o.weight_format = "int4";
  r = Dsv4Engine::Create(o);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(std::string(r.status().message()),
             Catch::Contains("weight_format: 'int4' is not one of bf16, fp8, fp4"));
  o = RandomOptions();
  o.random_weights = false;
  o.num_layers = 1;
  r = Dsv4Engine::Create(o);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(std::string(r.status().message()), Catch::Contains("random weights only"));
}

}  // namespace
}  // namespace moegraph
