// [cuda] attention-side ops vs the CPU backend: compressor window emission
// (CSA, HCA, indexer width), indexer scores + top-k, shared-KV attention with
// sinks (sliding, HCA, CSA; decode and prefill), window ring update.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <numeric>
#include <set>

#include "engine/model/model_config.h"
#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

// Entry pages with an identity page table: slot s owns pages
// [s * max_pages, (s + 1) * max_pages).
struct Pages {
  int slots = 0, max_pages = 0, page_size = 0, layers = 0, layer = 0, width = 0;
  std::vector<float> host;  // pool values (when drawn at random)
  std::unique_ptr<Mirror> pool, table;
  EntryPages cpu() const { return {pool->cpu, table->cpu, page_size, layer}; }
  EntryPages gpu() const { return {pool->gpu, table->gpu, page_size, layer}; }
  const float* Entry(int slot, int64_t e) const {
    const int64_t page = int64_t{slot} * max_pages + e / page_size;
    return host.data() + ((page * page_size + e % page_size) * layers + layer) * width;
  }
};

std::unique_ptr<Pages> MakePages(int slots, int64_t max_entries, int page_size, int layers,
                                 int layer, int width, bool random) {
  auto p = std::make_unique<Pages>();
  p->slots = slots;
  p->max_pages = static_cast<int>((max_entries + page_size - 1) / page_size) + 1;
  p->page_size = page_size;
  p->layers = layers;
  p->layer = layer;
  p->width = width;
  const int64_t pages = int64_t{slots} * p->max_pages;
  std::vector<int32_t> table(pages);
  std::iota(table.begin(), table.end(), 0);
  p->table = MakeI32(table, {slots, p->max_pages});
  if (random) {
    p->host = RandomBf16(pages * page_size * layers * width, 1.0f);
    p->pool = Make(Kind::kAct, p->host, {pages, page_size, layers, width});
  } else {
    p->pool = MakeOut(Kind::kAct, {pages, page_size, layers, width});
  }
  return p;
}

RopeTable FlashCompressRope() {
  RopeTable t;
  t.theta = 160000.0;
  t.yarn = true;
  t.factor = 16.0;
  t.original_max_position = 65536;
  return t;
}

int MaxPos(const std::vector<SeqSpec>& seqs) {
  int m = 0;
  for (const SeqSpec& s : seqs) m = std::max(m, s.start_pos + s.len - 1);
  return m;
}

int Tokens(const std::vector<SeqSpec>& seqs) {
  int t = 0;
  for (const SeqSpec& s : seqs) t += s.len;
  return t;
}

TEST_CASE("CompressorUpdate", "[cuda]") {
  ReseedRng("CompressorUpdate");
  struct Case {
    const char* name;
    int rate;
    bool overlap;
    int width, rope;
    std::vector<SeqSpec> seqs;
  };
  const std::vector<SeqSpec> csa_seqs = {{0, 0, 37}, {1, 102, 1}, {2, 1001, 3}, {3, 399, 1}};
  const std::vector<SeqSpec> hca_seqs = {{0, 0, 300}, {1, 250, 6}, {2, 383, 1}, {3, 1, 2}};
  const std::vector<SeqSpec> tiny_hca = {{0, 0, 37}, {1, 20, 12}, {2, 47, 1}, {3, 3, 1}};
  const std::vector<Case> cases = {
      {"tiny CSA m4 w32", 4, true, 32, 8, csa_seqs},
      {"tiny HCA M16 w32", 16, false, 32, 8, tiny_hca},
      {"tiny indexer m4 w16", 4, true, 16, 8, csa_seqs},
      {"flash CSA m4 w512", 4, true, 512, 64, csa_seqs},
      {"flash HCA M128 w512", 128, false, 512, 64, hca_seqs},
      {"flash indexer m4 w128", 4, true, 128, 64, csa_seqs},
  };
  for (const Case& c : cases) {
    const int slots = 4, cw = c.overlap ? 2 * c.width : c.width;
    const int ring_len = c.overlap ? 2 * c.rate : c.rate;
    const int T = Tokens(c.seqs);
    auto meta = MakeMeta(c.seqs);
    auto cm = Make(Kind::kAct, RandomBf16(int64_t{T} * cw, 1.0f), {T, cw});
    auto zm = Make(Kind::kAct, RandomBf16(int64_t{T} * cw, 1.0f), {T, cw});
    auto ape = Make(Kind::kF32, RandomBf16(int64_t{c.rate} * cw, 0.5f), {c.rate, cw});
    auto norm = Make(Kind::kF32, RandomBf16(c.width, 0.2f, 1.0f), {c.width});
    auto inv = Make(Kind::kF32, RopeInvFreq(FlashCompressRope(), c.rope), {c.rope / 2});
    auto ring = Make(Kind::kAct, RandomBf16(int64_t{slots} * ring_len * 2 * cw, 1.0f),
                     {slots, ring_len, 2 * cw});
    auto pages = MakePages(slots, (MaxPos(c.seqs) + 1) / c.rate + 1, 16, 2, 1, c.width, false);
    for (bool gpu : {false, true}) {
      CompressorParams p;
      p.rate = c.rate;
      p.overlap = c.overlap;
      p.width = c.width;
      p.rope_dim = c.rope;
      p.eps = 1e-6f;
      p.ape = gpu ? ape->gpu : ape->cpu;
      p.norm_weight = gpu ? norm->gpu : norm->cpu;
      p.inv_freq = gpu ? inv->gpu : inv->cpu;
      p.ring = gpu ? ring->gpu : ring->cpu;
      p.entries = gpu ? pages->gpu() : pages->cpu();
      Backend& b = gpu ? Gpu() : Cpu();
      const absl::Status s = b.CompressorUpdate(gpu ? cm->gpu : cm->cpu, gpu ? zm->gpu : zm->cpu, p,
                                                gpu ? meta->gpu : meta->cpu);
      INFO(s.ToString());
      REQUIRE(s.ok());
    }
    CompareOut("CompressorUpdate", std::string(c.name) + " entries", *pages->pool);
    CompareOut("CompressorUpdate", std::string(c.name) + " ring", *ring);
  }
}

// Host reference scores of the visible entries of one token.
std::vector<float> HostScores(const Pages& keys, const std::vector<float>& q,
                              const std::vector<float>& w, int t, int heads, int dim, int slot,
                              int64_t visible, float scale) {
  std::vector<float> s(visible);
  for (int64_t e = 0; e < visible; ++e) {
    const float* k = keys.Entry(slot, e);
    double acc = 0.0;
    for (int h = 0; h < heads; ++h) {
      const float* qh = q.data() + (int64_t{t} * heads + h) * dim;
      double dot = 0.0;
      for (int c = 0; c < dim; ++c) dot += double(qh[c]) * k[c];
      acc += std::max(dot, 0.0) * scale * w[int64_t{t} * heads + h];
    }
    s[e] = static_cast<float>(acc);
  }
  return s;
}

TEST_CASE("IndexerTopK", "[cuda]") {
  ReseedRng("IndexerTopK");
  struct Case {
    const char* name;
    int heads, dim, k, rate;
    std::vector<SeqSpec> seqs;
  };
  const std::vector<Case> cases = {
      {"tiny 4x16 top3", 4, 16, 3, 4, {{0, 44, 1}, {1, 2, 1}, {2, 10, 6}}},
      {"flash 64x128 top512 decode", 64, 128, 512, 4, {{0, 2099, 1}, {1, 42, 1}, {2, 2500, 1}}},
      {"flash 64x128 top512 prefill", 64, 128, 512, 4, {{0, 1000, 100}, {1, 0, 24}}},
      {"flash 64x128 top512 over 256K", 64, 128, 512, 4, {{0, 4 * 262144 - 1, 1}}},
  };
  for (const Case& c : cases) {
    const int T = Tokens(c.seqs);
    const int slots = static_cast<int>(c.seqs.size());
    auto meta = MakeMeta(c.seqs);
    const int64_t max_entries = (MaxPos(c.seqs) + 1) / c.rate;
    auto keys = MakePages(slots, max_entries, 64, 1, 0, c.dim, true);
    const std::vector<float> q = RandomBf16(int64_t{T} * c.heads * c.dim, 1.0f);
    std::vector<float> w = RandomBf16(int64_t{T} * c.heads, 1.0f);
    for (float& v : w) v /= std::sqrt(float(c.heads));
    auto qm = Make(Kind::kAct, q, {T, c.heads, c.dim});
    auto wm = Make(Kind::kF32, w, {T, c.heads});
    auto sel = MakeOut(Kind::kI32, {T, c.k});
    const float scale = 1.0f / std::sqrt(float(c.dim));
    REQUIRE(
        Cpu().IndexerTopK(qm->cpu, wm->cpu, keys->cpu(), c.rate, scale, meta->cpu, sel->cpu).ok());
    REQUIRE(
        Gpu().IndexerTopK(qm->gpu, wm->gpu, keys->gpu(), c.rate, scale, meta->gpu, sel->gpu).ok());
    const std::vector<int32_t> got = FetchI32(Gpu(), sel->gpu), ref = FetchI32(Cpu(), sel->cpu);
    int64_t agree = 0, total = 0;
    bool valid = true;
    double worst_deficit = 0.0;
    for (int t = 0; t < T; ++t) {
      const int pos = meta->token_pos[t];
      const int slot = meta->seq_slot[meta->token_seq[t]];
      const int64_t visible = (pos + 1) / c.rate;
      const int64_t take = std::min<int64_t>(c.k, visible);
      const std::vector<float> scores =
          HostScores(*keys, q, w, t, c.heads, c.dim, slot, visible, scale);
      std::vector<float> sorted = scores;
      std::sort(sorted.begin(), sorted.end(), std::greater<float>());
      const float kth = take > 0 ? sorted[take - 1] : 0.0f;
      float max_abs = 1e-30f;
      for (float s : scores) max_abs = std::max(max_abs, std::abs(s));
      std::set<int32_t> seen,
          ref_set(ref.begin() + int64_t{t} * c.k, ref.begin() + int64_t{t} * c.k + take);
      for (int i = 0; i < c.k; ++i) {
        const int32_t id = got[int64_t{t} * c.k + i];
        if (i >= take) {
          valid &= id == -1;
          continue;
        }
        if (id < 0 || id >= visible || !seen.insert(id).second) {
          valid = false;
          continue;
        }
        // A chosen entry may only fall short of the k-th best by rounding.
        worst_deficit = std::max(worst_deficit, double(kth - scores[id]) / max_abs);
        agree += ref_set.count(id);
        ++total;
      }
    }
    const double mismatch = total ? 1.0 - double(agree) / total : 0.0;
    Report("IndexerTopK", std::string(c.name) + " ids valid", valid ? 0.0 : 1.0, 0.0, valid);
    Report("IndexerTopK", std::string(c.name) + " score deficit", worst_deficit, 1e-4,
           worst_deficit <= 1e-4);
    Report("IndexerTopK", std::string(c.name) + " set mismatch vs cpu", mismatch, 1e-2,
           mismatch <= 1e-2);
    CHECK(valid);
    CHECK(worst_deficit <= 1e-4);
    CHECK(mismatch <= 1e-2);
  }
}

TEST_CASE("Attention", "[cuda]") {
  ReseedRng("Attention");
  enum class Layer { kSliding, kHca, kCsa };
  struct Case {
    const char* name;
    int heads, dim, window;
    Layer layer;
    int rate, k;
    std::vector<SeqSpec> seqs;
  };
  const std::vector<SeqSpec> decode = {{0, 2099, 1}, {1, 130, 1}, {2, 5, 1}};
  std::vector<SeqSpec> decode64;
  for (int s = 0; s < 64; ++s) decode64.push_back({s, 1500 + 9 * s, 1});
  const std::vector<SeqSpec> prefill = {{0, 1000, 150}, {1, 0, 40}};
  const std::vector<SeqSpec> tiny = {{0, 44, 1}, {1, 3, 1}, {2, 20, 9}};
  const std::vector<Case> cases = {
      {"tiny 4x32 sliding", 4, 32, 8, Layer::kSliding, 0, 0, tiny},
      {"tiny 4x32 HCA", 4, 32, 8, Layer::kHca, 16, 0, tiny},
      {"tiny 4x32 CSA top3", 4, 32, 8, Layer::kCsa, 4, 3, tiny},
      {"flash 64x512 sliding decode", 64, 512, 128, Layer::kSliding, 0, 0, decode},
      {"flash 64x512 HCA decode", 64, 512, 128, Layer::kHca, 128, 0, decode},
      {"flash 64x512 CSA top512 decode", 64, 512, 128, Layer::kCsa, 4, 512, decode},
      {"flash 64x512 CSA top512 decode b64", 64, 512, 128, Layer::kCsa, 4, 512, decode64},
      {"flash 64x512 HCA prefill", 64, 512, 128, Layer::kHca, 128, 0, prefill},
      {"flash 64x512 CSA top512 prefill", 64, 512, 128, Layer::kCsa, 4, 512, prefill},
  };
  for (const Case& c : cases) {
    const int T = Tokens(c.seqs);
    const int slots = static_cast<int>(c.seqs.size());
    auto meta = MakeMeta(c.seqs);
    auto q = Make(Kind::kAct, RandomBf16(int64_t{T} * c.heads * c.dim, 1.0f), {T, c.heads, c.dim});
    auto kv = Make(Kind::kAct, RandomBf16(int64_t{T} * c.dim, 1.0f), {T, c.dim});
    auto ring = Make(Kind::kAct, RandomBf16(int64_t{slots} * c.window * c.dim, 1.0f),
                     {slots, c.window, c.dim});
    auto sinks = Make(Kind::kF32, RandomBf16(c.heads, 0.5f, 1.0f), {c.heads});
    std::unique_ptr<Pages> pages;
    std::unique_ptr<Mirror> selected;
    if (c.layer != Layer::kSliding) {
      pages = MakePages(slots, (MaxPos(c.seqs) + 1) / c.rate + 1, 64, 2, 1, c.dim, true);
    }
    if (c.layer == Layer::kCsa) {
      std::vector<int32_t> sel(int64_t{T} * c.k, -1);
      for (int t = 0; t < T; ++t) {
        const int visible = (meta->token_pos[t] + 1) / c.rate;
        std::vector<int32_t> ids(visible);
        std::iota(ids.begin(), ids.end(), 0);
        std::shuffle(ids.begin(), ids.end(), Rng());
        for (int i = 0; i < std::min(c.k, visible); ++i) sel[int64_t{t} * c.k + i] = ids[i];
      }
      selected = MakeI32(sel, {T, c.k});
    }
    auto out = MakeOut(Kind::kAct, {T, c.heads, c.dim});
    for (bool gpu : {false, true}) {
      AttentionParams p;
      p.window = c.window;
      p.scale = 1.0f / std::sqrt(float(c.dim));
      p.sinks = gpu ? sinks->gpu : sinks->cpu;
      p.window_ring = gpu ? ring->gpu : ring->cpu;
      if (pages) {
        p.entries = gpu ? pages->gpu() : pages->cpu();
        p.rate = c.rate;
      }
      if (selected) p.selected = gpu ? selected->gpu : selected->cpu;
      Backend& b = gpu ? Gpu() : Cpu();
      const absl::Status s = b.Attention(gpu ? q->gpu : q->cpu, gpu ? kv->gpu : kv->cpu, p,
                                         gpu ? meta->gpu : meta->cpu, gpu ? out->gpu : out->cpu);
      INFO(s.ToString());
      REQUIRE(s.ok());
    }
    CompareOut("Attention", c.name, *out);
  }
}

TEST_CASE("WindowUpdate", "[cuda]") {
  ReseedRng("WindowUpdate");
  for (auto [W, d] : {std::tuple{8, 32}, std::tuple{128, 512}}) {
    const std::vector<SeqSpec> seqs = {{0, 10, 200}, {1, 5, 3}, {2, 127, 1}};
    const int T = Tokens(seqs);
    auto meta = MakeMeta(seqs);
    auto kv = Make(Kind::kAct, RandomBf16(int64_t{T} * d, 1.0f), {T, d});
    auto ring = Make(Kind::kAct, RandomBf16(int64_t{3} * W * d, 1.0f), {3, W, d});
    REQUIRE(Cpu().WindowUpdate(kv->cpu, ring->cpu, meta->cpu).ok());
    REQUIRE(Gpu().WindowUpdate(kv->gpu, ring->gpu, meta->gpu).ok());
    CompareOut("WindowUpdate", "W" + std::to_string(W) + " d" + std::to_string(d), *ring, 0.0);
  }
}

}  // namespace
}  // namespace moegraph::cuda_test
