// Expert parallelism end to end on the CPU (docs/expert-parallel.md): 2, 4 and
// 8 in-process ranks against one rank on every golden fixture, with requests
// joining and leaving, idle ranks, every sequence on one rank, and the
// fixtures' hash-routed layers; plus the options' errors.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/backend/backend_factory.h"
#include "engine/model/dsv4_engine.h"
#include "engine/parallel/expert_parallel_engine.h"
#include "engine/weights/safetensors.h"
#include "tests/common/rank_scenario.h"

using namespace moegraph;
using namespace moegraph::testing;

TEST_CASE("2, 4 and 8 CPU ranks give the single-rank logits and tokens on every fixture", "[ep]") {
  for (const char* name : kRankFixtures) {
    const Prompts prompts = LoadPrompts(name);
    const auto& [dir, golden, a, b, max_tokens] = prompts;
    auto single = Dsv4Engine::Create(Options(dir, max_tokens));
    INFO(name << ": " << single.status().ToString());
    REQUIRE(single.ok());
    // Slots 0, 5, 2: on 2 ranks a and c share rank 0; on 8, five ranks stay idle.
    const Trace ref = Run(**single, a, b, 0, 5, 2);

    // The scenario's first step is the reference's prefill of prompt a.
    {
      Tensor t = golden->Get("a.prefill_logits").value();
      const float* want = t.as<const float>();
      REQUIRE(static_cast<size_t>(t.numel()) == ref.logits[0].size());
      double err = 0, scale = 0;
      for (int64_t i = 0; i < t.numel(); ++i) {
        err = std::max(err, std::fabs(static_cast<double>(ref.logits[0][i]) - want[i]));
        scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
      }
      CHECK(err / scale <= 1e-4);
    }
    for (int ranks : {2, 4, 8}) {
      EngineOptions o = Options(dir, max_tokens);
      o.devices = "cpu:0";
      for (int r = 1; r < ranks; ++r) o.devices += ",cpu:" + std::to_string(r);
      auto ep = ExpertParallelEngine::Create(o);
      INFO(name << " on " << ranks << " ranks: " << ep.status().ToString());
      REQUIRE(ep.ok());
      REQUIRE((*ep)->num_ranks() == ranks);
      const Trace got = Run(**ep, a, b, 0, 5, 2);
      const double rel = MaxRel(got, ref);
      std::printf("ep: %-14s %d ranks: max relative logits difference %.3g over %zu steps\n", name,
                  ranks, rel, ref.logits.size());
      CHECK(rel <= 1e-6);
      CHECK(got.tokens == ref.tokens);

      // Every sequence on rank 0 (slots 0, R, 2R mod 8 differ), the others idle.
      if (ranks <= 4) {
        const Trace one_ref = Run(**single, a, b, 0, ranks, 2 * ranks % 8);
        const Trace one = Run(**ep, a, b, 0, ranks, 2 * ranks % 8);
        const double rel1 = MaxRel(one, one_ref);
        std::printf("ep: %-14s %d ranks, every sequence on rank 0: max relative %.3g\n", name,
                    ranks, rel1);
        CHECK(rel1 <= 1e-6);
        CHECK(one.tokens == one_ref.tokens);
      }
    }
  }
}

TEST_CASE("ep: every rank padded to one token count, as NCCL's sizes need, gives the same logits",
          "[ep]") {
  // equal_exchange_rows: the in-process exchange refuses a call whose ranks
  // bring different rows, so every step below proves the padding agreed
  // (idle ranks included: they run a padded empty step, not RunIdle).
  for (const char* name : {"dsv4-tiny", "dsv4-topk2", "dsv4-shape"}) {
    const Prompts prompts = LoadPrompts(name);
    const auto& [dir, golden, a, b, max_tokens] = prompts;
    auto single = Dsv4Engine::Create(Options(dir, max_tokens));
    REQUIRE(single.ok());
    const Trace ref = Run(**single, a, b, 0, 5, 2);
    const Trace one_ref = Run(**single, a, b, 0, 4, 0);
    for (int ranks : {2, 4}) {
      EngineOptions o = Options(dir, max_tokens);
      o.equal_exchange_rows = true;
      o.devices = "cpu:0";
      for (int r = 1; r < ranks; ++r) o.devices += ",cpu:" + std::to_string(r);
      auto ep = ExpertParallelEngine::Create(o);
      INFO(name << " on " << ranks << " padded ranks: " << ep.status().ToString());
      REQUIRE(ep.ok());
      const Trace got = Run(**ep, a, b, 0, 5, 2);
      const double rel = MaxRel(got, ref);
      std::printf("ep padded: %-12s %d ranks: max relative logits difference %.3g\n", name, ranks,
                  rel);
      CHECK(rel <= 1e-6);
      CHECK(got.tokens == ref.tokens);
      // Slots 0, 4 and 0 again (c after a left) are all on rank 0, the rest idle.
      const Trace one = Run(**ep, a, b, 0, 4, 0);
      CHECK(MaxRel(one, one_ref) <= 1e-6);
      CHECK(one.tokens == one_ref.tokens);
    }
  }
}

TEST_CASE("ep ranks hold only their share of the experts; info says the layout", "[ep]") {
  EngineOptions o = Options(Fixture("dsv4-shape"), 64);  // 6 experts
  o.devices = "cpu:0,cpu:1,cpu:2,cpu:3";
  auto ep = ExpertParallelEngine::Create(o);
  REQUIRE(ep.ok());
  const ExpertPartition& p = (*ep)->partition();
  CHECK(p.count(0) + p.count(1) + p.count(2) + p.count(3) == 6);
  for (int r = 0; r < 4; ++r) {
    INFO("rank " << r);
    CHECK((*ep)->rank(r)->model().routed_experts_loaded() == (r % 2 == 0 ? 1 : 2));
  }
  o.devices = "cpu:0,cpu:1,cpu:2,cpu:3,cpu:4,cpu:5,cpu:6,cpu:7";  // ranks 0 and 4 hold none
  auto eight = ExpertParallelEngine::Create(o);
  REQUIRE(eight.ok());
  CHECK((*eight)->rank(0)->model().routed_experts_loaded() == 0);
  CHECK((*eight)->rank(4)->model().routed_experts_loaded() == 0);
  CHECK((*eight)->rank(7)->model().routed_experts_loaded() == 1);
  CHECK((*ep)->info().device == "cpu:0,cpu:1,cpu:2,cpu:3");
  CHECK((*ep)->info().layout.find("6 routed experts split 1/2/1/2") != std::string::npos);
  CHECK((*ep)->num_slots() == 8);
  // Slots 0..7 land on ranks 0,1,2,3,0,1,2,3: rank 1 holds slots 1 and 5.
  REQUIRE((*ep)->AcquireSlot(5, 16).ok());
  CHECK((*ep)->rank(1)->state()->in_use(1));
  CHECK_FALSE((*ep)->rank(0)->state()->in_use(1));
  (*ep)->ReleaseSlot(5);
  CHECK_FALSE((*ep)->rank(1)->state()->in_use(1));
  // The pool is the ranks' pools together.
  const StatePoolStats all = (*ep)->state_pool();
  int64_t capacity = 0;
  for (int r = 0; r < 4; ++r) capacity += (*ep)->rank(r)->state_pool().capacity_tokens;
  CHECK(all.capacity_tokens == capacity);
  CHECK(all.capacity_tokens > 0);
}

TEST_CASE("ep: a bad step names its cause, and the next step runs", "[ep]") {
  EngineOptions o = Options(Fixture("dsv4-tiny"), 64);
  o.devices = "cpu:0,cpu:1";
  auto ep = ExpertParallelEngine::Create(o);
  REQUIRE(ep.ok());
  ExpertParallelEngine& e = **ep;
  REQUIRE(e.AcquireSlot(0, 8).ok());
  REQUIRE(e.AcquireSlot(1, 8).ok());
  // What names a chunk by its plan index is checked before any rank runs.
  std::vector<int32_t> tokens = {5, 999};
  StepPlan plan;
  plan.token_ids = tokens.data();
  plan.num_tokens = 2;
  plan.seqs = {SeqChunk{0, 0, 0, 1, true}, SeqChunk{1, 0, 1, 1, true}};
  std::vector<float> logits;
  absl::Status s = e.Step(plan, &logits);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message() == "seqs[1]: token id 999 outside [0, 320)");
  plan.seqs = {SeqChunk{1, 0, 0, 1, true}, SeqChunk{1, 0, 1, 1, true}};
  CHECK(e.Step(plan, &logits).message() == "seqs[1]: slot 1 invalid or repeated in the step");
  // Slot 1 (rank 1's slot 0) does not continue its sequence: rank 1 fails in
  // its own checks, rank 0 is released from the exchange at once, and the
  // step returns rank 1's error, saying how to read its slot numbers.
  tokens[1] = 6;
  plan.seqs = {SeqChunk{0, 0, 0, 1, true}, SeqChunk{1, 3, 1, 1, true}};
  s = e.Step(plan, &logits);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message() ==
        "rank 1 (cpu:1; its slot i is slot i * 2 + 1): slot 0: chunk starts at position 3 but "
        "the sequence holds 0 tokens");
  e.ReleaseSlot(0);
  e.ReleaseSlot(1);
  REQUIRE(e.AcquireSlot(1, 8).ok());
  plan.seqs = {SeqChunk{1, 0, 0, 1, true}};
  tokens[0] = 7;
  plan.num_tokens = 1;
  logits.clear();
  s = e.Step(plan, &logits);
  INFO(s.ToString());
  CHECK(s.ok());
  CHECK(logits.size() == 320);
  // Out-of-range slots are refused before any rank runs.
  plan.seqs = {SeqChunk{8, 0, 0, 1, true}};
  CHECK(e.Step(plan, &logits).message() == "seqs[0]: slot 8 invalid or repeated in the step");
}

TEST_CASE("ep options: bad devices, layouts and slot counts name the field", "[ep]") {
  EngineOptions o = Options(Fixture("dsv4-tiny"), 64);
  auto error = [&](const std::string& devices, const std::string& layout = "ep") {
    EngineOptions x = o;
    x.devices = devices;
    x.layout = layout;
    auto e = Engine::Create(x);
    REQUIRE_FALSE(e.ok());
    return e.status();
  };
  CHECK(error("cpu:0,,cpu:1").message() == "devices: entry 1 of 'cpu:0,,cpu:1' is empty");
  CHECK(error("cpu:0,gpu:1").message() ==
        "devices: entry 1 'gpu:1' is not cpu, cpu:N, cuda or cuda:N");
  CHECK(error("cpu:0,cpu:0").message() == "devices: 'cpu:0' appears more than once");
  CHECK(error("cpu:0,cuda:0").message() ==
        "devices: 'cpu:0,cuda:0' mixes CPU and CUDA ranks; use one kind");
  o.transport = "pigeon";
  CHECK(error("cpu:0,cpu:1").message() ==
        "transport: 'pigeon' is not a transport; allowed: auto, in-process, nccl");
  o.transport = "nccl";
  CHECK(error("cpu:0,cpu:1").message() ==
        "transport: 'nccl' needs CUDA ranks (devices cuda:N,...)");
  CHECK(error("cuda:0,cuda:0").message() ==
        "transport: 'nccl' needs one rank a GPU; devices names 'cuda:0' twice (ranks sharing a "
        "GPU take the in-process transport)");
  CHECK(error("cuda:0,cuda:1", "layers").message() ==
        "transport: 'nccl' is the expert exchange's; layout 'layers' has none");
  o.transport = "auto";
  // CUDA ranks are built; without a GPU (or a CUDA build) the rank says so.
  if (!CreateBackend("cuda:0").ok()) {
    absl::Status cuda = error("cuda:0,cuda:0");
    CHECK(cuda.message().find("cuda:0: ") == 0);
  }
  CHECK(error("cpu:0,cpu:1", "rows").message() ==
        "layout: 'rows' is not a layout; allowed: ep, layers, ep+layers");
  o.num_slots = 2;
  CHECK(error("cpu:0,cpu:1,cpu:2").message() ==
        "num_slots: 2 is fewer than the 3 devices (each rank needs a slot)");
  // One device is the single-rank engine, as before.
  o.num_slots = 2;
  EngineOptions one = o;
  one.devices = "cpu:0";
  auto e = Engine::Create(one);
  REQUIRE(e.ok());
  CHECK((*e)->info().layout.find("1 device, all layers, all experts") == 0);
}

TEST_CASE("ep: a rank that does not reach the exchange in time fails the step, no hang", "[ep]") {
  // Rank 1 has no tokens and waits at the first dispatch while rank 0 is
  // still in layer 0's attention over 600 tokens.
  const absl::Status s = PrefillPastTimeout("ep");
  INFO(s.ToString());
  // Rank 1 gave up waiting; rank 0 failed at its next exchange and returned
  // the same error.
  CHECK(s.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(s.message() ==
        "expert exchange: rank 0 did not reach dispatch within 1 ms (rank 1 waited)");
}
