// Layer placement end to end on the CPU (docs/expert-parallel.md): 2, 3 and 4
// in-process ranks, each a block of layers, against one rank on every golden
// fixture (the multi-rank scenario of rank_scenario.h); what each rank loads
// and holds; the options' errors; and failing ranks, which end the step with
// an error instead of a hang.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/model/dsv4_engine.h"
#include "engine/parallel/in_process_handoff.h"
#include "engine/parallel/layer_parallel_engine.h"
#include "engine/weights/safetensors.h"
#include "tests/common/rank_scenario.h"

using namespace moegraph;
using namespace moegraph::testing;

namespace {

std::string Devices(int ranks) {
  std::string d = "cpu:0";
  for (int r = 1; r < ranks; ++r) d += ",cpu:" + std::to_string(r);
  return d;
}

EngineOptions LayersOptions(const std::string& dir, int max_step_tokens, int ranks) {
  EngineOptions o = Options(dir, max_step_tokens);
  o.devices = Devices(ranks);
  o.layout = "layers";
  return o;
}

}  // namespace

TEST_CASE("layers: 2, 3 and 4 CPU ranks give the single-rank logits and tokens on every fixture",
          "[parallel][layers]") {
  for (const char* name : kRankFixtures) {
    const Prompts prompts = LoadPrompts(name);
    const auto& [dir, golden, a, b, max_tokens] = prompts;
    auto single = Dsv4Engine::Create(Options(dir, max_tokens));
    INFO(name << ": " << single.status().ToString());
    REQUIRE(single.ok());
    const Trace ref = Run(**single, a, b, 0, 5, 2);
    for (int ranks : {2, 3, 4}) {
      auto layers = LayerParallelEngine::Create(LayersOptions(dir, max_tokens, ranks));
      INFO(name << " on " << ranks << " ranks: " << layers.status().ToString());
      REQUIRE(layers.ok());
      REQUIRE((*layers)->num_ranks() == ranks);
      const Trace got = Run(**layers, a, b, 0, 5, 2);
      const double rel = MaxRel(got, ref);
      std::printf("layers: %-14s %d ranks: max relative logits difference %.3g over %zu steps\n",
                  name, ranks, rel, ref.logits.size());
      CHECK(rel == 0);  // the same ops on the same rows: bit for bit
      CHECK(got.tokens == ref.tokens);
      // Other slots, the engine reused after the first run's releases.
      const Trace again_ref = Run(**single, a, b, 7, 1, 3);
      const Trace again = Run(**layers, a, b, 7, 1, 3);
      CHECK(MaxRel(again, again_ref) == 0);
      CHECK(again.tokens == again_ref.tokens);
    }
  }
}

TEST_CASE("layers: random weights (bench-decode's) are the single rank's too",
          "[parallel][layers]") {
  const std::string dir = Fixture("dsv4-shape");
  auto golden = WeightStore::OpenFile(dir + "/golden.safetensors").value();
  const std::vector<int32_t> a = Ids(*golden, "a.prompt_ids"), b = Ids(*golden, "b.prompt_ids");
  const int max_tokens = static_cast<int>(a.size() + b.size()) + 8;
  EngineOptions o = Options(dir, max_tokens);
  o.random_weights = true;
  o.weight_format = "fp8";
  o.num_layers = 4;
  auto single = Dsv4Engine::Create(o);
  INFO(single.status().ToString());
  REQUIRE(single.ok());
  const Trace ref = Run(**single, a, b, 0, 5, 2);
  o.devices = Devices(3);
  o.layout = "layers";
  auto layers = LayerParallelEngine::Create(o);
  INFO(layers.status().ToString());
  REQUIRE(layers.ok());
  CHECK((*layers)->layers(2) == LayerRange{2, 4});  // the first 4 of the config's 6
  const Trace got = Run(**layers, a, b, 0, 5, 2);
  CHECK(MaxRel(got, ref) == 0);
  CHECK(got.tokens == ref.tokens);
}

TEST_CASE("layers: each rank loads only its layers' weights and state; info says the layout",
          "[parallel][layers]") {
  const std::string dir = Fixture("dsv4-tiny");  // 5 layers
  auto single = Dsv4Engine::Create(Options(dir, 64));
  REQUIRE(single.ok());
  const Dsv4Model& whole = (*single)->model();
  const int V = 320, D = (*single)->info().hidden_size;
  // The fixture's bf16 embedding, as stored.
  CHECK(whole.embed_weight_bytes() == size_t{V} * D * 2);
  size_t layer_sum = 0;
  for (int l = 0; l < 5; ++l) {
    CHECK(whole.layer_weight_bytes(l) > 0);
    layer_sum += whole.layer_weight_bytes(l);
  }
  CHECK(whole.head_weight_bytes() > size_t{V} * D * 2);
  // What is neither a layer, the embedding nor the head: the rope tables,
  // which every rank computes for itself.
  const size_t rope =
      whole.weight_bytes() - layer_sum - whole.embed_weight_bytes() - whole.head_weight_bytes();
  CHECK(rope > 0);
  CHECK(rope < 4096);

  for (int ranks : {2, 3, 4, 5}) {
    auto e = LayerParallelEngine::Create(LayersOptions(dir, 64, ranks));
    REQUIRE(e.ok());
    size_t total = 0;
    int next = 0;
    for (int r = 0; r < ranks; ++r) {
      INFO(ranks << " ranks, rank " << r);
      const Dsv4Model& m = (*e)->rank(r)->model();
      const LayerRange own = (*e)->layers(r);
      CHECK(own.first == next);  // contiguous, in rank order
      CHECK((own.count() == 5 / ranks || own.count() == 5 / ranks + 1));
      next = own.end;
      size_t expect = rope;
      for (int l = 0; l < 5; ++l) {
        CHECK(m.layer_weight_bytes(l) == (own.contains(l) ? whole.layer_weight_bytes(l) : 0));
        if (own.contains(l)) expect += whole.layer_weight_bytes(l);
        CHECK((*e)->rank(r)->state()->holds_layer(l) == own.contains(l));
        CHECK((*e)->rank(r)->state()->window_ring(l).empty() == !own.contains(l));
      }
      // The compressed-entry pools hold this rank's layers of each kind only.
      const ModelConfig& c = (*e)->rank(r)->config();
      for (auto [kind, attn] : {std::pair{EntryKind::kCsa, AttnKind::kCsa},
                                std::pair{EntryKind::kHca, AttnKind::kHca}}) {
        int held = 0, first_of_kind = -1;
        for (int l = own.first; l < own.end; ++l) {
          if (c.layer_types[l] != attn) continue;
          if (held++ == 0) first_of_kind = c.index_within_kind(l);
        }
        if (held == 0) continue;
        const EntryPages pages = (*e)->rank(r)->state()->entries(kind, first_of_kind);
        CHECK(pages.pool.dim(2) == held);
        CHECK(pages.layer == 0);
      }
      CHECK(m.embed_weight_bytes() == (r == 0 ? whole.embed_weight_bytes() : 0));
      CHECK(m.head_weight_bytes() == (r == ranks - 1 ? whole.head_weight_bytes() : 0));
      expect += m.embed_weight_bytes() + m.head_weight_bytes();
      CHECK(m.weight_bytes() == expect);
      CHECK(m.weight_bytes() < whole.weight_bytes());
      total += m.weight_bytes();
    }
    CHECK(next == 5);
    CHECK(total == whole.weight_bytes() + (ranks - 1) * rope);
  }

  auto two = LayerParallelEngine::Create(LayersOptions(dir, 64, 2));
  REQUIRE(two.ok());
  CHECK((*two)->info().device == "cpu:0,cpu:1");
  CHECK((*two)->info().layout ==
        "2 devices (in-process CPU ranks); layers: cpu:0 [0, 2) + embedding, cpu:1 [2, 5) + "
        "head; all experts and every slot on each; decode graphs off");
  CHECK((*two)->num_slots() == 8);
  CHECK((*two)->num_slot_groups() == 1);  // no balancing across ranks
  // Every rank holds every slot; its state pool is sized for its layers only.
  REQUIRE((*two)->AcquireSlot(5, 16).ok());
  CHECK((*two)->rank(0)->state()->in_use(5));
  CHECK((*two)->rank(1)->state()->in_use(5));
  CHECK((*two)->state_pool().reserved_tokens == 16);
  (*two)->ReleaseSlot(5);
  CHECK_FALSE((*two)->rank(1)->state()->in_use(5));
}

TEST_CASE("layers options: more ranks than layers names devices, layout and the range",
          "[parallel][layers]") {
  EngineOptions o = LayersOptions(Fixture("dsv4-tiny"), 64, 6);
  auto e = Engine::Create(o);
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(e.status().message() ==
        "devices: 6 devices with layout 'layers' on a model of 5 layers; allowed: 2 to 5 "
        "devices (each holds a block of at least one layer)");
  o.devices = Devices(5);
  auto five = Engine::Create(o);
  REQUIRE(five.ok());
  CHECK((*five)->info().layout.find("cpu:4 [4, 5) + head") != std::string::npos);
  // The blocks: as even as integer division allows, none empty.
  CHECK(LayerBlock(5, 3, 0) == LayerRange{0, 1});
  CHECK(LayerBlock(5, 3, 1) == LayerRange{1, 3});
  CHECK(LayerBlock(5, 3, 2) == LayerRange{3, 5});
  for (int r = 0; r < 8; ++r) {
    const int n = LayerBlock(43, 8, r).count();
    CHECK((n == 5 || n == 6));
  }
}

TEST_CASE("layers: a failing rank ends the step with its error, and the next step runs",
          "[parallel][layers]") {
  auto e = LayerParallelEngine::Create(LayersOptions(Fixture("dsv4-tiny"), 64, 3));
  REQUIRE(e.ok());
  LayerParallelEngine& engine = **e;
  REQUIRE(engine.AcquireSlot(0, 8).ok());
  REQUIRE(engine.AcquireSlot(1, 8).ok());
  std::vector<int32_t> tokens = {5, 999};
  StepPlan plan;
  plan.token_ids = tokens.data();
  plan.num_tokens = 2;
  plan.seqs = {SeqChunk{0, 0, 0, 1, true}, SeqChunk{1, 0, 1, 1, true}};
  std::vector<float> logits;
  // A plan error is every rank's; the step says it as one rank would.
  absl::Status s = engine.Step(plan, &logits);
  CHECK(s.code() == absl::StatusCode::kInvalidArgument);
  CHECK(s.message() == "seqs[1]: token id 999 outside [0, 320)");
  // Rank 1 alone has lost slot 1: it fails while rank 0 runs its layers and
  // waits to hand them over; rank 0 and rank 2 are released at once.
  engine.ReleaseSlot(0);
  engine.ReleaseSlot(1);
  REQUIRE(engine.AcquireSlot(0, 8).ok());
  REQUIRE(engine.AcquireSlot(1, 8).ok());
  engine.rank(1)->ReleaseSlot(1);
  tokens[1] = 6;
  s = engine.Step(plan, &logits);
  CHECK(s.code() == absl::StatusCode::kFailedPrecondition);
  CHECK(s.message() == "rank 1 (cpu:1, layers [1, 3)): slot 1 is not acquired");
  CHECK(logits.empty());
  // Acquiring on every rank or none: slot 1 is still held by ranks 0 and 2.
  s = engine.AcquireSlot(1, 8);
  CHECK(s.message() == "slot 1 is in use");
  CHECK_FALSE(engine.rank(1)->state()->in_use(1));
  engine.ReleaseSlot(0);
  engine.ReleaseSlot(1);
  REQUIRE(engine.AcquireSlot(1, 8).ok());
  plan.seqs = {SeqChunk{1, 0, 0, 1, true}};
  tokens[0] = 7;
  plan.num_tokens = 1;
  s = engine.Step(plan, &logits);
  INFO(s.ToString());
  CHECK(s.ok());
  CHECK(logits.size() == 320);
}

TEST_CASE("layers: a rank that does not hand over in time fails the step, no hang",
          "[parallel][layers]") {
  // Rank 1 waits for rank 0's block over 600 tokens.
  const absl::Status s = PrefillPastTimeout("layers");
  INFO(s.ToString());
  CHECK(s.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(s.message() ==
        "layer handoff: rank 0 did not reach handoff 0->1 within 1 ms (rank 1 waited)");
}

TEST_CASE("in-process handoff: streams pass bit for bit; an aborting rank releases the rest",
          "[parallel][layers]") {
  InProcessHandoffOptions o;
  o.num_ranks = 3;
  o.capacity = 4;
  o.streams = 2;
  o.hidden = 3;
  o.timeout = std::chrono::seconds(20);
  std::vector<std::unique_ptr<Backend>> backends;  // outlive the handoff
  auto h = InProcessHandoff::Create(o);
  REQUIRE(h.ok());
  for (int r = 0; r < 3; ++r) {
    backends.push_back(CreateCpuBackend());
    REQUIRE((*h)->rank(r)->Bind(backends.back().get()).ok());
  }
  const int T = 3, n = 2, D = 3;
  std::vector<std::vector<float>> x(3, std::vector<float>(T * n * D, -1.0f));
  for (int i = 0; i < T * n * D; ++i) x[0][i] = 0.1f * i;
  auto view = [&](int r) { return Tensor(x[r].data(), DType::kF32, {T, n, D}); };
  std::vector<absl::Status> got(3);
  auto run = [&](bool fail_rank1) {
    std::vector<std::thread> threads;
    threads.emplace_back([&] { got[0] = (*h)->rank(0)->Send(view(0)); });
    threads.emplace_back([&] {
      got[1] = (*h)->rank(1)->Receive(view(1));
      if (fail_rank1) {
        (*h)->rank(1)->Abort(absl::InternalError("injected"));
        return;
      }
      for (float& v : x[1]) v += 1.0f;
      if (got[1].ok()) got[1] = (*h)->rank(1)->Send(view(1));
    });
    threads.emplace_back([&] { got[2] = (*h)->rank(2)->Receive(view(2)); });
    for (std::thread& t : threads) t.join();
  };
  run(true);
  CHECK(got[1].ok());  // its receive had finished
  CHECK(got[0].code() == absl::StatusCode::kAborted);
  CHECK(got[0].message() == "layer handoff: rank 1 failed: injected");
  CHECK(got[2].message() == "layer handoff: rank 1 failed: injected");
  (*h)->Reset();
  run(false);
  for (const absl::Status& s : got) CHECK(s.ok());
  for (int i = 0; i < T * n * D; ++i) CHECK(x[2][i] == 0.1f * i + 1.0f);
  // Shapes past the capacity are refused (and fail the handoff for all).
  std::vector<float> big(5 * n * D);
  CHECK((*h)->rank(0)->Send(Tensor(big.data(), DType::kF32, {5, n, D})).message() ==
        "handoff: 5 tokens exceed the capacity 4");
  CHECK((*h)->status().code() == absl::StatusCode::kAborted);
}

TEST_CASE("in-process handoff: ranks stepping on their own never overwrite unread streams",
          "[parallel][layers]") {
  // As in a load-time warm-up: every rank runs its steps back to back on its
  // own thread, nothing between them, each step's row count different. A
  // sender that rewrote a buffer before its reader was done would show as a
  // wrong row count or wrong values.
  // Two ranks are the case that raced: rank 0 has nothing to receive, so
  // nothing held it back from its next write.
  const int R = GENERATE(2, 3), n = 2, D = 3, cap = 5, steps = 200;
  InProcessHandoffOptions o;
  o.num_ranks = R;
  o.capacity = cap;
  o.streams = n;
  o.hidden = D;
  o.timeout = std::chrono::seconds(20);
  std::vector<std::unique_ptr<Backend>> backends;  // outlive the handoff
  auto h = InProcessHandoff::Create(o);
  REQUIRE(h.ok());
  for (int r = 0; r < R; ++r) {
    backends.push_back(CreateCpuBackend());
    REQUIRE((*h)->rank(r)->Bind(backends.back().get()).ok());
  }
  auto rows = [](int step) { return 1 + step % cap; };
  auto value = [](int step, int i) { return static_cast<float>(step * 1000 + i); };
  std::vector<absl::Status> status(R);
  std::vector<int> wrong(R, 0);
  std::vector<std::thread> threads;
  for (int r = 0; r < R; ++r) {
    threads.emplace_back([&, r] {
      std::vector<float> x(cap * n * D);
      for (int step = 0; step < steps && status[r].ok(); ++step) {
        const int T = rows(step);
        const Tensor view(x.data(), DType::kF32, {T, n, D});
        if (r == 0) {
          for (int i = 0; i < T * n * D; ++i) x[i] = value(step, i);
        } else {
          status[r] = (*h)->rank(r)->Receive(view);
          for (int i = 0; status[r].ok() && i < T * n * D; ++i) wrong[r] += x[i] != value(step, i);
        }
        if (status[r].ok() && r + 1 < R) status[r] = (*h)->rank(r)->Send(view);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < R; ++r) {
    INFO("rank " << r << ": " << status[r].ToString());
    CHECK(status[r].ok());
    CHECK(wrong[r] == 0);
  }
}
