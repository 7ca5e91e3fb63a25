// [cuda] decode graphs: eager ("off") and "full" engines give bit-identical
// logits, "piecewise" the same tokens and logits within rounding, and all
// identical greedy tokens (device-sampled or host-sampled) over a
// run where requests join, prefill beside running decodes, and leave; padded
// rows leave real slots' state untouched; a graph decode step allocates,
// synchronizes and copies nothing beyond its staging copy, its graph launch,
// its ids copy and two fences.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include "engine/model/dsv4_engine.h"
#include "tests/common/pipeline_scenario.h"
#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

std::string FixtureDir(const std::string& name) {
  // The GPU machine runs the binary from another checkout path.
  const char* root = std::getenv("MOEGRAPH_SOURCE_DIR");
  return std::string(root ? root : MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/" + name;
}

std::unique_ptr<Dsv4Engine> MakeEngine(const std::string& fixture, const std::string& graphs,
                                       bool device_sampling = true, int slots = 6) {
  EngineOptions o;
  o.model_dir = FixtureDir(fixture);
  o.device = "cuda";
  o.num_slots = slots;
  o.context_limit = 512;
  o.max_step_tokens = 64;
  o.graphs = graphs;
  o.device_sampling = device_sampling;
  auto e = Dsv4Engine::Create(o);
  INFO(e.status());
  REQUIRE(e.ok());
  return std::move(*e);
}

int Argmax(const float* row, int vocab) {
  return static_cast<int>(std::max_element(row, row + vocab) - row);
}

// A scripted run: requests with their prompts join at given steps, leave
// after a number of generated tokens; each step decodes every prefilled
// request and prefills up to `budget` prompt tokens (as the scheduler does).
struct Request {
  int join_step = 0;
  int prompt_len = 0;
  int max_new = 0;
  int slot = -1;
  std::vector<int32_t> tokens;
  int computed = 0;
  int generated = 0;
};

struct Trace {
  std::vector<std::vector<int32_t>> tokens;  // per request: generated ids
  std::vector<std::vector<float>> logits;    // per step (host-logits engines)
  std::map<std::string, int> modes;          // steps per last_step_mode()
};

Trace RunScript(Dsv4Engine& e, bool sample_on_device, int vocab) {
  std::vector<Request> reqs;
  for (auto [join, prompt, new_tokens] :
       {std::tuple{0, 37, 14}, std::tuple{0, 5, 20}, std::tuple{3, 60, 10}, std::tuple{6, 3, 12},
        std::tuple{9, 21, 8}}) {
    Request r;
    r.join_step = join;
    r.prompt_len = prompt;
    r.max_new = new_tokens;
    reqs.push_back(r);
  }
  for (size_t r = 0; r < reqs.size(); ++r) {
    for (int i = 0; i < reqs[r].prompt_len; ++i)
      reqs[r].tokens.push_back(static_cast<int32_t>((r * 131 + i * 17 + 3) % vocab));
  }
  sampling::SamplingParams greedy;
  Trace trace;
  trace.tokens.resize(reqs.size());
  std::vector<bool> slot_used(e.num_slots(), false);
  for (int step = 0; step < 60; ++step) {
    for (Request& r : reqs) {
      if (r.join_step == step && r.slot < 0) {
        r.slot = static_cast<int>(std::find(slot_used.begin(), slot_used.end(), false) -
                                  slot_used.begin());
        slot_used[r.slot] = true;
        REQUIRE(e.AcquireSlot(r.slot, r.prompt_len + r.max_new + 1).ok());
      }
    }
    StepPlan plan;
    std::vector<int32_t> ids;
    std::vector<Request*> order;
    int budget = 48;
    auto add = [&](Request& r, int len, bool want) {
      SeqChunk ch(r.slot, r.computed, static_cast<int>(ids.size()), len, want);
      ch.sampling = &greedy;
      ch.sample_index = static_cast<uint64_t>(r.generated);
      for (int i = 0; i < len; ++i) ids.push_back(r.tokens[r.computed + i]);
      plan.seqs.push_back(ch);
      order.push_back(&r);
      budget -= len;
    };
    for (Request& r : reqs) {
      if (r.slot >= 0 && r.computed >= r.prompt_len) add(r, 1, true);
    }
    for (Request& r : reqs) {
      if (r.slot < 0 || r.computed >= r.prompt_len || budget <= 0) continue;
      const int len = std::min(budget, r.prompt_len - r.computed);
      add(r, len, r.computed + len == r.prompt_len);
    }
    if (plan.seqs.empty()) continue;
    plan.token_ids = ids.data();
    plan.num_tokens = static_cast<int>(ids.size());
    StepResult result;
    absl::Status st =
        sample_on_device ? e.StepAndSample(plan, &result) : e.Step(plan, &result.logits);
    INFO("step " << step << ": " << st);
    REQUIRE(st.ok());
    REQUIRE(result.sampled == sample_on_device);
    ++trace.modes[e.last_step_mode()];
    if (!sample_on_device) trace.logits.push_back(result.logits);
    int row = 0;
    for (size_t i = 0; i < plan.seqs.size(); ++i) {
      Request& r = *order[i];
      r.computed += plan.seqs[i].len;
      if (!plan.seqs[i].want_logits) continue;
      const int32_t next = sample_on_device
                               ? result.ids[row]
                               : Argmax(result.logits.data() + int64_t{row} * vocab, vocab);
      ++row;
      r.tokens.push_back(next);
      ++r.generated;
      trace.tokens[&r - reqs.data()].push_back(next);
      if (r.generated == r.max_new) {
        e.ReleaseSlot(r.slot);
        slot_used[r.slot] = false;
        r.slot = -2;  // done
      }
    }
  }
  for (const Request& r : reqs) REQUIRE(r.slot == -2);
  return trace;
}

TEST_CASE("decode graphs: eager and full give identical logits and tokens", "[cuda]") {
  // Timed autotuning may pick another cuBLASLt algorithm in each engine (and
  // so other roundings); the heuristic's first choice is the same in both.
  setenv("MOEGRAPH_CUBLASLT_AUTOTUNE", "0", 1);
  for (const std::string fixture : {"dsv4-tiny", "dsv4-topk2", "dsv4-shape"}) {
    INFO(fixture);
    auto eager = MakeEngine(fixture, "off");
    auto full = MakeEngine(fixture, "full");
    auto sampled = MakeEngine(fixture, "full");
    REQUIRE(eager->graph_mode() == "off");
    REQUIRE(full->graph_mode() == "full");
    const int vocab = eager->info().vocab_size;
    const Trace a = RunScript(*eager, false, vocab);
    const Trace b = RunScript(*full, false, vocab);
    const Trace c = RunScript(*sampled, true, vocab);
    // Piecewise runs the indexer and attention sized by the real positions
    // (other key splits than the capacity-sized eager/full decode): the same
    // tokens, logits equal up to the split's float rounding.
    auto piecewise = MakeEngine(fixture, "piecewise");
    const Trace d = RunScript(*piecewise, false, vocab);
    CHECK(d.modes.at("piecewise") >= 10);
    CHECK(a.tokens == d.tokens);
    REQUIRE(a.logits.size() == d.logits.size());
    double worst = 0;
    for (size_t s = 0; s < a.logits.size(); ++s)
      worst = std::max(worst, RelErr(d.logits[s], a.logits[s]));
    Report("DecodeGraph", fixture + " piecewise vs eager logits", worst, 1e-2, worst <= 1e-2);
    CHECK(worst <= 1e-2);
    CHECK(a.modes.count("full") == 0);
    CHECK(b.modes.at("full") >= 10);  // the pure-decode steps
    CHECK(b.modes.at("eager") > 3);   // prefill steps run eagerly
    REQUIRE(a.logits.size() == b.logits.size());
    int differing = 0;
    for (size_t s = 0; s < a.logits.size(); ++s) differing += a.logits[s] != b.logits[s];
    Report("DecodeGraph", fixture + " steps with differing logits (eager vs full)", differing, 0,
           differing == 0);
    CHECK(differing == 0);
    CHECK(a.tokens == b.tokens);
    CHECK(a.tokens == c.tokens);
  }
  unsetenv("MOEGRAPH_CUBLASLT_AUTOTUNE");
}

TEST_CASE("decode graphs: a one-token prompt (every position 0) runs in every mode", "[cuda]") {
  // Its eager ops' bound is position 0, a real bound (it was taken for
  // "unknown" and refused); an idle EP rank's padded step is the same.
  std::vector<float> want;
  for (const char* graphs : {"off", "piecewise", "full"}) {
    auto e = MakeEngine("dsv4-tiny", graphs);
    REQUIRE(e->AcquireSlot(0, 8).ok());
    std::vector<int32_t> one = {7};
    StepPlan p;
    p.token_ids = one.data();
    p.num_tokens = 1;
    p.seqs.push_back(SeqChunk(0, 0, 0, 1, true));
    std::vector<float> logits;
    const absl::Status s = e->Step(p, &logits);
    INFO(graphs << ": " << s.ToString());
    REQUIRE(s.ok());
    REQUIRE(logits.size() == static_cast<size_t>(e->info().vocab_size));
    if (want.empty()) want = logits;
    // Each engine tunes its own GEMM algorithms: the last bits may differ.
    double err = 0, scale = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      err = std::max(err, std::fabs(static_cast<double>(logits[i]) - want[i]));
      scale = std::max(scale, std::fabs(static_cast<double>(want[i])));
    }
    CHECK(err <= 1e-2 * scale);
    CHECK(Argmax(logits.data(), e->info().vocab_size) == Argmax(want.data(), e->info().vocab_size));
  }
}

TEST_CASE("decode graphs: padded rows leave other slots' state untouched", "[cuda]") {
  auto e = MakeEngine("dsv4-shape", "full", true, 4);
  Backend& b = *e->backend();
  const int layers = e->info().num_layers;
  auto ring_slot = [&](int layer, int slot) {
    Tensor ring = e->state()->window_ring(layer);
    const int64_t per = ring.numel() / ring.dim(0);
    Tensor one(static_cast<char*>(ring.data) + slot * per * 2, ring.dtype, {per});
    std::vector<uint16_t> host(per);
    REQUIRE(b.Download(host.data(), one.data, per * 2).ok());
    return host;
  };
  // Slot 3 holds a sequence that sits out the decode steps.
  std::vector<int32_t> prompt = {5, 9, 2, 7, 11};
  for (int s : {0, 1, 2, 3}) {
    REQUIRE(e->AcquireSlot(s, 64).ok());
    StepPlan p;
    p.token_ids = prompt.data();
    p.num_tokens = 5;
    p.seqs.push_back(SeqChunk(s, 0, 0, 5, true));
    std::vector<float> unused;
    REQUIRE(e->Step(p, &unused).ok());
  }
  std::vector<std::vector<uint16_t>> before;
  for (int l = 0; l < layers; ++l) before.push_back(ring_slot(l, 3));
  std::vector<int32_t> ids = {3, 4, 5};
  for (int step = 0; step < 8; ++step) {
    StepPlan p;
    p.token_ids = ids.data();
    p.num_tokens = 3;
    for (int s = 0; s < 3; ++s) p.seqs.push_back(SeqChunk(s, 5 + step, s, 1, true));
    std::vector<float> logits;
    REQUIRE(e->Step(p, &logits).ok());
    CHECK(std::string(e->last_step_mode()) == "full");
    CHECK(e->last_step_bucket() == 4);  // three rows padded to four
  }
  for (int l = 0; l < layers; ++l) CHECK(ring_slot(l, 3) == before[l]);
}

TEST_CASE("decode graphs: a step copies, launches and waits only what it must", "[cuda]") {
  auto e = MakeEngine("dsv4-shape", "full");
  Backend& b = *e->backend();
  std::vector<int32_t> prompt = {5, 9, 2, 7, 11, 4, 4};
  REQUIRE(e->AcquireSlot(0, 64).ok());
  REQUIRE(e->AcquireSlot(1, 64).ok());
  sampling::SamplingParams greedy, with_logprobs;
  with_logprobs.logprobs = true;  // still on the device, inside the graph
  with_logprobs.top_logprobs = 3;
  for (int s : {0, 1}) {
    StepPlan p;
    p.token_ids = prompt.data();
    p.num_tokens = 7;
    p.seqs.push_back(SeqChunk(s, 0, 0, 7, true));
    std::vector<float> unused;
    REQUIRE(e->Step(p, &unused).ok());
  }
  std::vector<int32_t> ids = {1, 2};
  for (int step = 0; step < 5; ++step) {
    StepPlan p;
    p.token_ids = ids.data();
    p.num_tokens = 2;
    for (int s = 0; s < 2; ++s) {
      SeqChunk ch(s, 7 + step, s, 1, true);
      ch.sampling = s == 1 ? &with_logprobs : &greedy;
      p.seqs.push_back(ch);
    }
    const BackendCounters c0 = b.counters();
    StepResult r;
    REQUIRE(e->StepAndSample(p, &r).ok());
    const BackendCounters c1 = b.counters();
    REQUIRE(r.sampled);
    INFO("step " << step);
    CHECK(c1.allocations == c0.allocations);
    CHECK(c1.frees == c0.frees);
    CHECK(c1.synchronizations == c0.synchronizations);
    CHECK(c1.ops == c0.ops);  // nothing eager: the graph does it all
    CHECK(c1.uploads - c0.uploads == 1);
    CHECK(c1.graph_launches - c0.graph_launches == 1);
    CHECK(c1.downloads - c0.downloads == 1);
    CHECK(c1.fence_records - c0.fence_records == 2);  // staging copy, ids copy
    CHECK(c1.fence_waits - c0.fence_waits <= 2);
    // Greedy: the chosen id is the most likely, its logprob the top one's.
    REQUIRE(r.samples.size() == 2);
    REQUIRE(r.samples[1].top.size() == 3);
    CHECK(r.samples[1].top[0].token_id == r.ids[1]);
    CHECK(r.samples[1].logprob == r.samples[1].top[0].logprob);
    CHECK(r.samples[1].logprob <= 0.0f);
    CHECK(r.samples[1].top[1].logprob <= r.samples[1].top[0].logprob);
    CHECK(r.samples[0].top.empty());
    ids = r.ids;
  }
}

// Pipelined steps (Engine::Launch/Collect): step N+1 is launched before step
// N's ids reach the host, its decode tokens taken on the device from N's
// samples (token_from_last_sample). The same engine runs the sequences one
// step at a time on slots 0-2 and pipelined on slots 3-5
// (tests/common/pipeline_scenario.h): greedy, seeded sampling and logprobs
// must agree token for token and value for value; a launch neither
// synchronizes nor launches more than its graph.
TEST_CASE("decode graphs: pipelined steps give the tokens of steps run one at a time", "[cuda]") {
  auto e = MakeEngine("dsv4-shape", "full");
  REQUIRE(e->pipelines());
  Backend& b = *e->backend();
  testing::PipelineScenario scenario(e->info().vocab_size);
  constexpr int kDecodeSteps = 12;
  for (int s = 0; s < 6; ++s) REQUIRE(e->AcquireSlot(s, 64).ok());
  const testing::PipelineScenario::Trace one = scenario.OneAtATime(*e, 0, kDecodeSteps);
  testing::PipelineScenario::Trace pipelined;
  // Host tokens for plans whose decode tokens are fed (read only when not).
  const std::vector<int32_t> unused(testing::PipelineScenario::kSeqs, 0);
  // Launch 0, launch 1 fed, collect 0, launch 2 fed, collect 1, ...
  REQUIRE(e->Launch(scenario.Plan(3, 0, true, unused)).ok());
  for (int step = 1; step <= kDecodeSteps + 1; ++step) {
    if (step <= kDecodeSteps) {
      const BackendCounters c0 = b.counters();
      absl::Status st = e->Launch(scenario.Plan(3, step, true, unused));
      INFO("launch " << step << ": " << st);
      REQUIRE(st.ok());
      const BackendCounters c1 = b.counters();
      CHECK(c1.synchronizations == c0.synchronizations);  // the host never waits for the GPU here
      CHECK(c1.graph_launches - c0.graph_launches == 1);
      CHECK(e->Launch(scenario.Plan(3, step, true, unused)).code() ==
            absl::StatusCode::kFailedPrecondition);  // two are in flight
      StepResult refused;
      CHECK(e->StepAndSample(scenario.Plan(3, step, false, unused), &refused).code() ==
            absl::StatusCode::kFailedPrecondition);
    }
    StepResult r;
    REQUIRE(e->Collect(&r).ok());
    testing::PipelineScenario::Record(r, &pipelined);
    CHECK(std::string(e->last_step_mode()) == (step == 1 ? "eager" : "full"));
  }
  StepResult none;
  CHECK(e->Collect(&none).code() == absl::StatusCode::kFailedPrecondition);
  CHECK(pipelined == one);
  CHECK(one.tokens[0] != one.tokens[1]);  // the seeds are used
  e->ReleaseSlot(0);
  REQUIRE(e->AcquireSlot(0, 64).ok());
  scenario.ExpectFedTokenRefused(*e, 0);
}

}  // namespace
}  // namespace moegraph::cuda_test
