// ep+layers end to end on the CPU (docs/expert-parallel.md): grids of
// in-process ranks (blocks of layers, expert-parallel within each block)
// against one rank on every golden fixture (rank_scenario.h); what each rank
// loads; the options' errors; and a failing rank.
#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/model/dsv4_engine.h"
#include "engine/parallel/expert_parallel_engine.h"
#include "engine/weights/safetensors.h"
#include "tests/common/rank_scenario.h"

using namespace moegraph;
using namespace moegraph::testing;

namespace {

EngineOptions GridOptions(const std::string& dir, int max_step_tokens, int devices, int blocks) {
  EngineOptions o = Options(dir, max_step_tokens);
  o.devices = "cpu:0";
  for (int r = 1; r < devices; ++r) o.devices += ",cpu:" + std::to_string(r);
  o.layout = "ep+layers";
  o.layer_blocks = blocks;
  return o;
}

}  // namespace

TEST_CASE("ep+layers: grids of CPU ranks give the single-rank logits and tokens on every fixture",
          "[parallel][eplayers]") {
  for (const char* name : kRankFixtures) {
    const Prompts prompts = LoadPrompts(name);
    const auto& [dir, golden, a, b, max_tokens] = prompts;
    auto single = Dsv4Engine::Create(Options(dir, max_tokens));
    INFO(name << ": " << single.status().ToString());
    REQUIRE(single.ok());
    const Trace ref = Run(**single, a, b, 0, 5, 2);
    // Every sequence in one column (slots 0, 2, 4 of 2 ranks a block), the other idle.
    const Trace one_ref = Run(**single, a, b, 0, 2, 4);
    for (auto [devices, blocks] : {std::pair{4, 2}, std::pair{6, 2}, std::pair{6, 3}}) {
      auto grid = ExpertParallelEngine::Create(GridOptions(dir, max_tokens, devices, blocks));
      INFO(name << " on " << blocks << " blocks of " << devices / blocks
                << " ranks: " << grid.status().ToString());
      REQUIRE(grid.ok());
      REQUIRE((*grid)->blocks() == blocks);
      REQUIRE((*grid)->width() == devices / blocks);
      const Trace got = Run(**grid, a, b, 0, 5, 2);
      const double rel = MaxRel(got, ref);
      std::printf("ep+layers: %-14s %d blocks x %d ranks: max relative logits difference %.3g\n",
                  name, blocks, devices / blocks, rel);
      CHECK(rel == 0);
      CHECK(got.tokens == ref.tokens);
      if (devices / blocks == 2) {
        const Trace one = Run(**grid, a, b, 0, 2, 4);
        CHECK(MaxRel(one, one_ref) == 0);
        CHECK(one.tokens == one_ref.tokens);
      }
    }
  }
}

TEST_CASE("ep+layers: each rank loads its block's layers and its share of their experts",
          "[parallel][eplayers]") {
  const std::string dir = Fixture("dsv4-tiny");  // 5 layers, 8 experts
  auto single = Dsv4Engine::Create(Options(dir, 64));
  REQUIRE(single.ok());
  const Dsv4Model& whole = (*single)->model();
  auto grid = ExpertParallelEngine::Create(GridOptions(dir, 64, 4, 2));
  REQUIRE(grid.ok());
  ExpertParallelEngine& e = **grid;
  for (int r = 0; r < 4; ++r) {
    INFO("rank " << r);
    const Dsv4Model& m = e.rank(r)->model();
    const LayerRange own = r < 2 ? LayerRange{0, 2} : LayerRange{2, 5};
    CHECK(m.layers() == own);
    CHECK(m.routed_experts_loaded() == 4);
    for (int l = 0; l < 5; ++l) {
      CHECK((m.layer_weight_bytes(l) > 0) == own.contains(l));
      // Half the experts, the rest of the layer whole.
      if (own.contains(l)) CHECK(m.layer_weight_bytes(l) < whole.layer_weight_bytes(l));
      CHECK(e.rank(r)->state()->holds_layer(l) == own.contains(l));
    }
    CHECK(m.embed_weight_bytes() == (r < 2 ? whole.embed_weight_bytes() : 0));
    CHECK(m.head_weight_bytes() == (r >= 2 ? whole.head_weight_bytes() : 0));
  }
  CHECK(e.num_slot_groups() == 2);
  CHECK(e.info().layout ==
        "4 devices (in-process CPU ranks); layers: 2 blocks of 2 ranks: cpu:0,cpu:1 [0, 2) + "
        "embedding; cpu:2,cpu:3 [2, 5) + head; in each block ep: 8 routed experts split 4/4, "
        "attention and shared expert replicated, slots data-parallel (slot s on rank s % 2 of "
        "each block), exchange in-process, decode graphs off");
  // Slot 3 lives on EP rank 1 of both blocks, as its local slot 1.
  REQUIRE(e.AcquireSlot(3, 16).ok());
  CHECK(e.rank(1)->state()->in_use(1));
  CHECK(e.rank(3)->state()->in_use(1));
  CHECK_FALSE(e.rank(0)->state()->in_use(1));
  CHECK(e.state_pool().reserved_tokens == 16);
  e.ReleaseSlot(3);
  CHECK_FALSE(e.rank(3)->state()->in_use(1));
}

TEST_CASE("ep+layers options: layer_blocks names itself and the allowed range",
          "[parallel][eplayers]") {
  auto error = [](int devices, int blocks, const std::string& layout = "ep+layers") {
    EngineOptions o = GridOptions(Fixture("dsv4-tiny"), 64, devices, blocks);
    o.layout = layout;
    auto e = Engine::Create(o);
    REQUIRE_FALSE(e.ok());
    CHECK(e.status().code() == absl::StatusCode::kInvalidArgument);
    return std::string(e.status().message());
  };
  const std::string range =
      "layers; allowed: 2 to 5 blocks dividing the devices into blocks of 2 or more";
  CHECK(error(4, 3) == "layer_blocks: 3 with layout 'ep+layers' on 4 devices and 5 " + range);
  CHECK(error(4, 0) == "layer_blocks: 0 with layout 'ep+layers' on 4 devices and 5 " + range);
  CHECK(error(4, 4) == "layer_blocks: 4 with layout 'ep+layers' on 4 devices and 5 " + range);
  CHECK(error(12, 6) == "layer_blocks: 6 with layout 'ep+layers' on 12 devices and 5 " + range);
  CHECK(error(4, 2, "ep") == "layer_blocks: 2 applies to layout ep+layers only, not 'ep'");
}

TEST_CASE("ep+layers: a failing rank ends the step with its error, and the next step runs",
          "[parallel][eplayers]") {
  auto grid = ExpertParallelEngine::Create(GridOptions(Fixture("dsv4-tiny"), 64, 4, 2));
  REQUIRE(grid.ok());
  ExpertParallelEngine& e = **grid;
  REQUIRE(e.AcquireSlot(0, 8).ok());
  REQUIRE(e.AcquireSlot(1, 8).ok());
  // Rank 3 (block 1, EP rank 1) alone has lost slot 1 (its local slot 0):
  // the others are released from their exchanges and handoffs.
  e.rank(3)->ReleaseSlot(0);
  std::vector<int32_t> tokens = {5, 6};
  StepPlan plan;
  plan.token_ids = tokens.data();
  plan.num_tokens = 2;
  plan.seqs = {SeqChunk{0, 0, 0, 1, true}, SeqChunk{1, 0, 1, 1, true}};
  std::vector<float> logits;
  absl::Status s = e.Step(plan, &logits);
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(s.message() ==
        "rank 3 (cpu:3, layers [2, 5); its slot i is slot i * 2 + 1): slot 0 is not acquired");
  CHECK(logits.empty());
  e.ReleaseSlot(0);
  e.ReleaseSlot(1);
  REQUIRE(e.AcquireSlot(1, 8).ok());
  plan.seqs = {SeqChunk{1, 0, 0, 1, true}};
  plan.num_tokens = 1;
  s = e.Step(plan, &logits);
  INFO(s.ToString());
  CHECK(s.ok());
  CHECK(logits.size() == 320);
}
