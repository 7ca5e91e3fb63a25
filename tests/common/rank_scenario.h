// The multi-rank engine tests' scenario (tests/unit: expert_parallel_engine_test.cc,
// layer_parallel_engine_test.cc; tests/cuda/multi_rank_test.cc): golden fixtures, a run of steps
// with requests joining and leaving and a chunked prefill, and the logits' relative difference
// between two runs.
#pragma once

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/model/dsv4_engine.h"
#include "engine/model/dsv4_model.h"
#include "engine/weights/safetensors.h"

namespace moegraph::testing {

inline std::string Fixture(const std::string& name) {
  // The GPU machine runs the [cuda] binary from another checkout path.
  const char* root = std::getenv("MOEGRAPH_SOURCE_DIR");
  return std::string(root != nullptr ? root : MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/" + name;
}

inline std::vector<int32_t> Ids(const WeightStore& g, const std::string& key) {
  Tensor t = g.Get(key).value();
  std::vector<int32_t> out(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) out[i] = static_cast<int32_t>(t.as<const int64_t>()[i]);
  return out;
}

// The fixtures every multi-rank test runs on.
inline constexpr const char* kRankFixtures[] = {"dsv4-tiny", "dsv4-topk2", "dsv4-shape",
                                                "dsv4-tiny-fp4", "dsv4-tiny-fp8"};

// A fixture's golden file, its two prompts, and a step budget holding both.
struct Prompts {
  std::string dir;
  std::unique_ptr<WeightStore> golden;
  std::vector<int32_t> a, b;
  int max_tokens = 0;
};

inline Prompts LoadPrompts(const std::string& name) {
  Prompts p;
  p.dir = Fixture(name);
  p.golden = WeightStore::OpenFile(p.dir + "/golden.safetensors").value();
  p.a = Ids(*p.golden, "a.prompt_ids");
  p.b = Ids(*p.golden, "b.prompt_ids");
  p.max_tokens = static_cast<int>(p.a.size() + p.b.size()) + 8;
  return p;
}

inline EngineOptions Options(const std::string& dir, int max_step_tokens) {
  EngineOptions o;
  o.model_dir = dir;
  o.num_slots = 8;
  o.context_limit = 1024;
  o.max_step_tokens = max_step_tokens;
  return o;
}

inline int Argmax(const float* row, int V) {
  return static_cast<int>(std::max_element(row, row + V) - row);
}

// A run of steps: what each step carries and what it returned.
struct Trace {
  std::vector<std::vector<float>> logits;  // per step
  std::vector<int32_t> tokens;             // greedy tokens, in step order
};

// The scenario, on any engine with StepWithOptions: prompt a prefills in slot
// `sa` and decodes greedily; prompt b joins in slot `sb` at step 3 beside a's
// decode; a leaves after step 7 and b's prompt joins again in slot `sc` as
// two chunks; b and c decode to the end. With `forced`, the sequences are fed
// those tokens (another run's, in its order) instead of their own argmax,
// which is still what the trace records.
template <typename E>
Trace Run(E& engine, const std::vector<int32_t>& a, const std::vector<int32_t>& b, int sa, int sb,
          int sc, const std::vector<int32_t>* forced = nullptr) {
  const int V = engine.info().vocab_size;
  Trace tr;
  struct Seq {
    int slot = 0, pos = 0;
    std::vector<int32_t> prompt;
    int32_t next = -1;  // the token to feed at `pos` once the prompt is in
    bool live = false;
  };
  Seq A, B, C;
  A.slot = sa;
  B.slot = sb;
  C.slot = sc;
  A.prompt = a;
  B.prompt = b;
  C.prompt = b;
  const int steps = 14;
  for (int step = 0; step < steps; ++step) {
    std::vector<Seq*> join;
    if (step == 0) join.push_back(&A);
    if (step == 3) join.push_back(&B);
    if (step == 8 || step == 9) join.push_back(&C);
    if (step == 8) {
      engine.ReleaseSlot(A.slot);
      A.live = false;
    }
    std::vector<int32_t> tokens;
    StepPlan plan;
    bool all = false;
    std::vector<Seq*> order;
    for (Seq* s : {&A, &B, &C}) {
      const bool joining = std::find(join.begin(), join.end(), s) != join.end();
      if (!s->live && !joining) continue;
      if (joining && s->pos == 0) {
        REQUIRE(engine.AcquireSlot(s->slot, static_cast<int>(s->prompt.size()) + steps).ok());
      }
      int len = 1;
      const int offset = static_cast<int>(tokens.size());
      if (joining) {
        // C comes in two chunks (chunked prefill); A and B in one.
        const int total = static_cast<int>(s->prompt.size());
        const int end = (s == &C && step == 8) ? total / 2 : total;
        len = end - s->pos;
        tokens.insert(tokens.end(), s->prompt.begin() + s->pos, s->prompt.begin() + end);
        s->live = end == total;
        all = all || s == &A;
      } else {
        tokens.push_back(s->next);
      }
      plan.seqs.push_back(SeqChunk{s->slot, s->pos, offset, len, s->live});
      order.push_back(s);
    }
    plan.token_ids = tokens.data();
    plan.num_tokens = static_cast<int>(tokens.size());
    ForwardOptions fo;
    fo.all_logits = all;  // step 0: every prompt token's logits
    std::vector<float> logits;
    absl::Status st = engine.StepWithOptions(plan, fo, &logits);
    INFO("step " << step << ": " << st.ToString());
    REQUIRE(st.ok());
    size_t row = 0;
    for (size_t i = 0; i < order.size(); ++i) {
      Seq* s = order[i];
      const SeqChunk& ch = plan.seqs[i];
      s->pos += ch.len;
      const size_t rows = all ? ch.len : (ch.want_logits ? 1 : 0);
      row += rows;
      if (ch.want_logits) {
        const int32_t argmax = Argmax(logits.data() + (row - 1) * V, V);
        s->next = forced != nullptr ? forced->at(tr.tokens.size()) : argmax;
        tr.tokens.push_back(argmax);
      }
    }
    REQUIRE(row * V == logits.size());
    tr.logits.push_back(std::move(logits));
  }
  for (Seq* s : {&A, &B, &C}) {
    if (s->live) engine.ReleaseSlot(s->slot);
  }
  return tr;
}

inline double MaxRel(const Trace& got, const Trace& ref) {
  double err = 0, scale = 0;
  for (size_t s = 0; s < ref.logits.size(); ++s) {
    REQUIRE(got.logits[s].size() == ref.logits[s].size());
    for (size_t i = 0; i < ref.logits[s].size(); ++i) {
      err = std::max(err, std::fabs(static_cast<double>(got.logits[s][i]) - ref.logits[s][i]));
      scale = std::max(scale, std::fabs(static_cast<double>(ref.logits[s][i])));
    }
  }
  return scale > 0 ? err / scale : err;
}

// A 600-token prefill (dsv4-topk2's prompt a) on 2 ranks of `layout` with a
// 1 ms exchange timeout, which rank 1 runs out of waiting for rank 0: the
// step's status, checked to come within 10 s and without logits.
inline absl::Status PrefillPastTimeout(const std::string& layout) {
  const std::string dir = Fixture("dsv4-topk2");
  auto golden = WeightStore::OpenFile(dir + "/golden.safetensors").value();
  const std::vector<int32_t> a = Ids(*golden, "a.prompt_ids");
  EngineOptions o = Options(dir, static_cast<int>(a.size()));
  o.num_slots = 2;
  o.devices = "cpu:0,cpu:1";
  o.layout = layout;
  o.exchange_timeout_ms = 1;
  auto engine = Engine::Create(o);
  REQUIRE(engine.ok());
  REQUIRE((*engine)->AcquireSlot(0, static_cast<int>(a.size())).ok());
  StepPlan plan;
  plan.token_ids = a.data();
  plan.num_tokens = static_cast<int>(a.size());
  plan.seqs = {SeqChunk{0, 0, 0, plan.num_tokens, true}};
  std::vector<float> logits;
  const auto t0 = std::chrono::steady_clock::now();
  const absl::Status s = (*engine)->Step(plan, &logits);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  CHECK(logits.empty());
  return s;
}

}  // namespace moegraph::testing
