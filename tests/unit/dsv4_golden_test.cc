// The DeepSeek-V4 model on the CPU backend against the transformers reference
// (tests/fixtures/dsv4-tiny): prefill, chunked prefill at many splits,
// teacher-forced decode, batching, per-layer residual streams, rope tables.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/dsv4_engine.h"
#include "engine/weights/safetensors.h"

using namespace moegraph;

namespace {

const std::string kModelDir = std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/dsv4-tiny";
constexpr double kTolerance = 1e-4;  // max |err| / max |reference logit|

struct Golden {
  std::unique_ptr<WeightStore> store;
  std::vector<int32_t> Ids(const std::string& key) const {
    Tensor t = store->Get(key).value();
    std::vector<int32_t> out(t.numel());
    for (int64_t i = 0; i < t.numel(); ++i) out[i] = static_cast<int32_t>(t.as<const int64_t>()[i]);
    return out;
  }
  std::vector<float> Floats(const std::string& key) const {
    Tensor t = store->Get(key).value();
    return std::vector<float>(t.as<const float>(), t.as<const float>() + t.numel());
  }
};

const Golden& GetGolden() {
  static Golden* g = [] {
    auto* golden = new Golden;
    golden->store = WeightStore::OpenFile(kModelDir + "/golden.safetensors").value();
    return golden;
  }();
  return *g;
}

std::unique_ptr<Dsv4Engine> MakeEngine(int slots = 2) {
  EngineOptions o;
  o.model_dir = kModelDir;
  o.num_slots = slots;
  o.context_limit = 128;
  o.max_step_tokens = 64;
  auto e = Dsv4Engine::Create(o);
  REQUIRE(e.ok());
  return std::move(e).value();
}

struct Compare {
  double max_err = 0, max_ref = 0;
  int rows = 0, argmax_mismatch = 0;
  void Rows(const float* mine, const float* ref, int n, int width) {
    for (int r = 0; r < n; ++r) {
      const float* a = mine + static_cast<size_t>(r) * width;
      const float* b = ref + static_cast<size_t>(r) * width;
      for (int v = 0; v < width; ++v) {
        max_err = std::max(max_err, std::fabs(static_cast<double>(a[v]) - b[v]));
        max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[v])));
      }
      argmax_mismatch +=
          (std::max_element(a, a + width) - a) != (std::max_element(b, b + width) - b);
      ++rows;
    }
  }
  double rel() const { return max_ref > 0 ? max_err / max_ref : max_err; }
};

// Feeds ids[begin, end) of one sequence in `slot`; returns logits of every
// token (all = true) or of the last.
std::vector<float> Feed(Dsv4Engine& e, int slot, const std::vector<int32_t>& ids, int begin,
                        int end, bool all) {
  StepPlan plan;
  plan.token_ids = ids.data() + begin;
  plan.num_tokens = end - begin;
  plan.seqs.push_back(SeqChunk{slot, begin, 0, end - begin, true});
  ForwardOptions opt;
  opt.all_logits = all;
  std::vector<float> logits;
  absl::Status s = e.StepWithOptions(plan, opt, &logits);
  INFO(s.ToString());
  REQUIRE(s.ok());
  return logits;
}

}  // namespace

TEST_CASE("dsv4-tiny prefill matches the reference logits", "[golden]") {
  auto engine = MakeEngine();
  const int V = engine->info().vocab_size;
  for (const char* p : {"a", "b"}) {
    std::vector<int32_t> ids = GetGolden().Ids(std::string(p) + ".prompt_ids");
    std::vector<float> ref = GetGolden().Floats(std::string(p) + ".prefill_logits");
    REQUIRE(engine->AcquireSlot(0, ids.size()).ok());
    std::vector<float> got = Feed(*engine, 0, ids, 0, ids.size(), true);
    engine->ReleaseSlot(0);
    REQUIRE(got.size() == ref.size());
    Compare c;
    c.Rows(got.data(), ref.data(), ids.size(), V);
    INFO("prompt " << p << " rel " << c.rel());
    CHECK(c.rel() <= kTolerance);
    CHECK(c.argmax_mismatch == 0);
  }
}

TEST_CASE("dsv4-tiny chunked prefill at the fixture split and at other splits", "[golden]") {
  auto engine = MakeEngine();
  const int V = engine->info().vocab_size;
  for (const char* p : {"a", "b"}) {
    std::vector<int32_t> ids = GetGolden().Ids(std::string(p) + ".prompt_ids");
    std::vector<float> prefill = GetGolden().Floats(std::string(p) + ".prefill_logits");
    std::vector<float> chunk_ref = GetGolden().Floats(std::string(p) + ".chunk_logits");
    const int L = ids.size();
    const int fixture_split = L - static_cast<int>(chunk_ref.size() / V);
    std::vector<int> splits = {fixture_split, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, L - 1};
    for (int split : splits) {
      if (split <= 0 || split >= L) continue;
      REQUIRE(engine->AcquireSlot(0, L).ok());
      std::vector<float> first = Feed(*engine, 0, ids, 0, split, true);
      std::vector<float> second = Feed(*engine, 0, ids, split, L, true);
      engine->ReleaseSlot(0);
      Compare c;
      c.Rows(first.data(), prefill.data(), split, V);
      c.Rows(second.data(), prefill.data() + static_cast<size_t>(split) * V, L - split, V);
      INFO("prompt " << p << " split " << split << " rel " << c.rel());
      CHECK(c.rel() <= kTolerance);
      CHECK(c.argmax_mismatch == 0);
      if (split == fixture_split) {
        Compare f;
        f.Rows(second.data(), chunk_ref.data(), L - split, V);
        INFO("against chunk_logits: rel " << f.rel());
        CHECK(f.rel() <= kTolerance);
        CHECK(f.argmax_mismatch == 0);
      }
    }
  }
}

TEST_CASE("dsv4-tiny three-chunk prefill matches", "[golden]") {
  auto engine = MakeEngine();
  const int V = engine->info().vocab_size;
  std::vector<int32_t> ids = GetGolden().Ids("a.prompt_ids");
  std::vector<float> prefill = GetGolden().Floats("a.prefill_logits");
  const int L = ids.size();
  for (auto [s1, s2] : {std::pair{5, 21}, std::pair{16, 32}, std::pair{13, 14}}) {
    REQUIRE(engine->AcquireSlot(0, L).ok());
    Compare c;
    int begin = 0;
    for (int end : {s1, s2, L}) {
      std::vector<float> got = Feed(*engine, 0, ids, begin, end, true);
      c.Rows(got.data(), prefill.data() + static_cast<size_t>(begin) * V, end - begin, V);
      begin = end;
    }
    engine->ReleaseSlot(0);
    INFO("splits " << s1 << ", " << s2 << " rel " << c.rel());
    CHECK(c.rel() <= kTolerance);
    CHECK(c.argmax_mismatch == 0);
  }
}

TEST_CASE("dsv4-tiny teacher-forced decode matches the reference", "[golden]") {
  auto engine = MakeEngine();
  const int V = engine->info().vocab_size;
  for (const char* p : {"a", "b"}) {
    std::vector<int32_t> ids = GetGolden().Ids(std::string(p) + ".prompt_ids");
    std::vector<int32_t> dec = GetGolden().Ids(std::string(p) + ".decode_ids");
    std::vector<float> ref = GetGolden().Floats(std::string(p) + ".decode_logits");
    const int L = ids.size(), N = dec.size();
    ids.insert(ids.end(), dec.begin(), dec.end());
    REQUIRE(engine->AcquireSlot(0, L + N).ok());
    std::vector<float> last = Feed(*engine, 0, ids, 0, L, false);
    Compare c;
    c.Rows(last.data(), ref.data(), 1, V);
    for (int i = 1; i < N; ++i) {
      std::vector<float> step = Feed(*engine, 0, ids, L + i - 1, L + i, false);
      Compare one;
      one.Rows(step.data(), ref.data() + static_cast<size_t>(i) * V, 1, V);
      INFO("prompt " << p << " decode step " << i << " rel " << one.rel());
      CHECK(one.rel() <= kTolerance);
      c.Rows(step.data(), ref.data() + static_cast<size_t>(i) * V, 1, V);
    }
    engine->ReleaseSlot(0);
    INFO("prompt " << p << " rel " << c.rel());
    CHECK(c.rel() <= kTolerance);
    CHECK(c.argmax_mismatch == 0);
  }
}

TEST_CASE("dsv4-tiny: sequences batched in one step give what each gives alone", "[golden]") {
  auto alone = MakeEngine();
  auto batched = MakeEngine();
  const int V = alone->info().vocab_size;
  std::vector<int32_t> a = GetGolden().Ids("a.prompt_ids"), b = GetGolden().Ids("b.prompt_ids");
  std::vector<int32_t> da = GetGolden().Ids("a.decode_ids"), db = GetGolden().Ids("b.decode_ids");
  a.insert(a.end(), da.begin(), da.end());
  b.insert(b.end(), db.begin(), db.end());
  const int La = 45, Lb = 7, steps = 20;

  // Alone: a in slot 0, then b in slot 1, each prefill then `steps` decodes.
  REQUIRE(alone->AcquireSlot(0, La + steps + 1).ok());
  REQUIRE(alone->AcquireSlot(1, Lb + steps).ok());
  std::vector<float> a_prefill = Feed(*alone, 0, a, 0, La, true);
  std::vector<float> b_prefill = Feed(*alone, 1, b, 0, Lb, true);
  std::vector<std::vector<float>> a_dec, b_dec;
  for (int i = 0; i < steps; ++i) {
    a_dec.push_back(Feed(*alone, 0, a, La + i, La + i + 1, false));
    b_dec.push_back(Feed(*alone, 1, b, Lb + i, Lb + i + 1, false));
  }

  // Batched: both prompts in one step (b first, in slot 0, to shuffle the
  // layout), then both decodes in each step.
  REQUIRE(batched->AcquireSlot(0, Lb + steps).ok());
  REQUIRE(batched->AcquireSlot(1, La + steps + 1).ok());
  std::vector<int32_t> tokens(b.begin(), b.begin() + Lb);
  tokens.insert(tokens.end(), a.begin(), a.begin() + La);
  StepPlan plan;
  plan.token_ids = tokens.data();
  plan.num_tokens = La + Lb;
  plan.seqs = {SeqChunk{0, 0, 0, Lb, true}, SeqChunk{1, 0, Lb, La, true}};
  ForwardOptions all;
  all.all_logits = true;
  std::vector<float> both;
  REQUIRE(batched->StepWithOptions(plan, all, &both).ok());
  REQUIRE(both.size() == static_cast<size_t>(La + Lb) * V);
  CHECK(std::equal(b_prefill.begin(), b_prefill.end(), both.begin()));
  CHECK(std::equal(a_prefill.begin(), a_prefill.end(), both.begin() + static_cast<size_t>(Lb) * V));
  for (int i = 0; i < steps; ++i) {
    int32_t two[2] = {b[Lb + i], a[La + i]};
    StepPlan p;
    p.token_ids = two;
    p.num_tokens = 2;
    p.seqs = {SeqChunk{0, Lb + i, 0, 1, true}, SeqChunk{1, La + i, 1, 1, true}};
    std::vector<float> logits;
    REQUIRE(batched->Step(p, &logits).ok());
    REQUIRE(logits.size() == static_cast<size_t>(2) * V);
    INFO("decode step " << i);
    CHECK(std::equal(b_dec[i].begin(), b_dec[i].end(), logits.begin()));
    CHECK(std::equal(a_dec[i].begin(), a_dec[i].end(), logits.begin() + V));
  }

  // A prefill chunk and a decode in one step (continuous batching).
  batched->ReleaseSlot(0);
  REQUIRE(batched->AcquireSlot(0, Lb).ok());
  int32_t mixed[8];
  std::copy(b.begin(), b.begin() + Lb, mixed);
  mixed[Lb] = a[La + steps];
  StepPlan mp;
  mp.token_ids = mixed;
  mp.num_tokens = Lb + 1;
  mp.seqs = {SeqChunk{0, 0, 0, Lb, true}, SeqChunk{1, La + steps, Lb, 1, true}};
  std::vector<float> mixed_logits;
  REQUIRE(batched->Step(mp, &mixed_logits).ok());
  std::vector<float> a_next = Feed(*alone, 0, a, La + steps, La + steps + 1, false);
  CHECK(std::equal(b_prefill.end() - V, b_prefill.end(), mixed_logits.begin()));
  CHECK(std::equal(a_next.begin(), a_next.end(), mixed_logits.begin() + V));
}

TEST_CASE("dsv4-tiny residual streams after every layer match", "[golden]") {
  auto engine = MakeEngine();
  const ModelConfig& cfg = engine->config();
  for (const char* p : {"a", "b"}) {
    std::vector<int32_t> ids = GetGolden().Ids(std::string(p) + ".prompt_ids");
    REQUIRE(engine->AcquireSlot(0, ids.size()).ok());
    StepPlan plan;
    plan.token_ids = ids.data();
    plan.num_tokens = ids.size();
    plan.seqs.push_back(SeqChunk{0, 0, 0, static_cast<int>(ids.size()), false});
    std::vector<std::vector<float>> hidden;
    ForwardOptions opt;
    opt.hidden = &hidden;
    std::vector<float> logits;
    REQUIRE(engine->StepWithOptions(plan, opt, &logits).ok());
    engine->ReleaseSlot(0);
    REQUIRE(hidden.size() == static_cast<size_t>(cfg.num_layers) + 1);
    int checked = 0;
    for (int k = 0; k <= cfg.num_layers; ++k) {
      const std::string key = std::string(p) + ".hidden." + std::to_string(k);
      if (!GetGolden().store->Has(key)) continue;
      std::vector<float> ref = GetGolden().Floats(key);
      REQUIRE(ref.size() == hidden[k].size());
      Compare c;
      c.Rows(hidden[k].data(), ref.data(), 1, ref.size());
      // The first layer that diverges names itself here.
      INFO("prompt " << p << ": streams after layer " << k - 1 << " (hidden." << k << ") rel "
                     << c.rel());
      CHECK(c.rel() <= kTolerance);
      ++checked;
    }
    CHECK(checked >= 2);
  }
}

TEST_CASE("dsv4-tiny rope tables match the reference", "[golden]") {
  auto config = LoadModelConfig(kModelDir);
  REQUIRE(config.ok());
  for (auto [name, table] : {std::pair{"rope.main.inv_freq", &config->rope_main},
                             std::pair{"rope.compress.inv_freq", &config->rope_compress}}) {
    std::vector<float> ref = GetGolden().Floats(name);
    std::vector<float> got = RopeInvFreq(*table, config->rope_dim);
    REQUIRE(got.size() == ref.size());
    for (size_t i = 0; i < ref.size(); ++i) {
      INFO(name << "[" << i << "]");
      CHECK(got[i] == Approx(ref[i]).epsilon(1e-6));
    }
  }
}

// Fixtures of other shapes and formats (tests/fixtures/dsv4-*/README.md):
// every prompt's prefill, chunked prefill at the recorded split and
// teacher-forced decode, and the residual streams where recorded. The -fp4 and
// -fp8 fixtures are the released FP8/FP4 layouts; their references ran on the
// dequantized weights.
TEST_CASE("dsv4-topk2, dsv4-shape, dsv4-tiny-fp4 and dsv4-tiny-fp8 match the reference",
          "[golden]") {
  for (const char* name : {"dsv4-topk2", "dsv4-shape", "dsv4-tiny-fp4", "dsv4-tiny-fp8"}) {
    const std::string dir = std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/" + name;
    auto store = WeightStore::OpenFile(dir + "/golden.safetensors");
    REQUIRE(store.ok());
    Golden g;
    g.store = std::move(store).value();
    EngineOptions o;
    o.model_dir = dir;
    o.num_slots = 1;
    o.context_limit = 1024;
    o.max_step_tokens = 640;
    auto created = Dsv4Engine::Create(o);
    INFO(name << ": " << created.status().ToString());
    REQUIRE(created.ok());
    Dsv4Engine& e = **created;
    const int V = e.info().vocab_size;
    for (const char* p : {"a", "b"}) {
      const std::string P = p;
      std::vector<int32_t> ids = g.Ids(P + ".prompt_ids"), dec = g.Ids(P + ".decode_ids");
      std::vector<float> prefill = g.Floats(P + ".prefill_logits");
      std::vector<float> chunk = g.Floats(P + ".chunk_logits");
      std::vector<float> decode = g.Floats(P + ".decode_logits");
      const int L = ids.size(), N = dec.size(), split = L - static_cast<int>(chunk.size() / V);
      ids.insert(ids.end(), dec.begin(), dec.end());

      REQUIRE(e.AcquireSlot(0, L + N).ok());
      std::vector<std::vector<float>> hidden;
      StepPlan plan;
      plan.token_ids = ids.data();
      plan.num_tokens = L;
      plan.seqs.push_back(SeqChunk{0, 0, 0, L, true});
      ForwardOptions opt;
      opt.all_logits = true;
      opt.hidden = &hidden;
      std::vector<float> got;
      REQUIRE(e.StepWithOptions(plan, opt, &got).ok());
      Compare pc, dc;
      pc.Rows(got.data(), prefill.data(), L, V);
      dc.Rows(got.data() + static_cast<size_t>(L - 1) * V, decode.data(), 1, V);
      for (int i = 1; i < N; ++i) {
        std::vector<float> step = Feed(e, 0, ids, L + i - 1, L + i, false);
        dc.Rows(step.data(), decode.data() + static_cast<size_t>(i) * V, 1, V);
      }
      e.ReleaseSlot(0);
      for (size_t k = 0; k < hidden.size(); ++k) {
        const std::string key = P + ".hidden." + std::to_string(k);
        if (!g.store->Has(key)) continue;
        std::vector<float> ref = g.Floats(key);
        Compare hc;
        hc.Rows(hidden[k].data(), ref.data(), 1, ref.size());
        INFO(name << " " << p << ": streams after layer " << static_cast<int>(k) - 1 << " rel "
                  << hc.rel());
        CHECK(hc.rel() <= kTolerance);
      }

      REQUIRE(e.AcquireSlot(0, L).ok());
      Feed(e, 0, ids, 0, split, false);
      std::vector<float> second = Feed(e, 0, ids, split, L, true);
      e.ReleaseSlot(0);
      Compare cc;
      cc.Rows(second.data(), chunk.data(), L - split, V);

      INFO(name << " prompt " << p << ": prefill rel " << pc.rel() << ", decode rel " << dc.rel()
                << ", chunked at " << split << " rel " << cc.rel());
      CHECK(pc.rel() <= kTolerance);
      CHECK(dc.rel() <= kTolerance);
      CHECK(cc.rel() <= kTolerance);
      CHECK(pc.argmax_mismatch + dc.argmax_mismatch + cc.argmax_mismatch == 0);
    }
  }
}
