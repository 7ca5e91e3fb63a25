// The fp32 reference kernels on small cases whose results are worked out by
// hand in the comments.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <vector>

#include "engine/common/bf16.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/compressor.h"
#include "kernels/cpu/elementwise.h"
#include "kernels/cpu/embedding.h"
#include "kernels/cpu/experts.h"
#include "kernels/cpu/hyper_connection.h"
#include "kernels/cpu/indexer.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/rmsnorm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/router.h"

using namespace moegraph;
using namespace moegraph::cpu;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out;
  for (float f : v) out.push_back(FloatToBf16(f));
  return out;
}

// One sequence of `len` tokens starting at `start` in slot `slot`.
struct OneSeq {
  std::vector<int32_t> pos, seq, begin, slot, start;
  OneSeq(int start_pos, int len, int slot_id = 0) {
    for (int i = 0; i < len; ++i) {
      pos.push_back(start_pos + i);
      seq.push_back(0);
    }
    begin = {0, len};
    slot = {slot_id};
    start = {start_pos};
  }
  BatchLayout layout() const {
    BatchLayout b;
    b.num_tokens = static_cast<int>(pos.size());
    b.num_seqs = 1;
    b.token_pos = pos.data();
    b.token_seq = seq.data();
    b.seq_begin = begin.data();
    b.seq_slot = slot.data();
    b.seq_start_pos = start.data();
    return b;
  }
};

}  // namespace

TEST_CASE("embedding copies the bf16 row into every stream", "[kernels]") {
  std::vector<uint16_t> table = ToBf16({1.0f, -2.0f, 0.5f, 4.0f, -0.25f, 8.0f});  // [3, 2]
  std::vector<int32_t> ids = {2, 0};
  std::vector<float> out(2 * 2 * 2, kNaN);
  EmbeddingParams p{ids.data(), table.data(), WeightType::kBF16, out.data(), 2, 3, 2, 2};
  REQUIRE(Embedding(p));
  CHECK(out == std::vector<float>{-0.25f, 8.0f, -0.25f, 8.0f, 1.0f, -2.0f, 1.0f, -2.0f});
  ids[0] = 3;  // outside the vocabulary
  CHECK_FALSE(Embedding(p));
}

TEST_CASE("rmsnorm, weighted and unweighted", "[kernels]") {
  // x = [3, 4]: mean(x^2) = 12.5, 1/sqrt(12.5) = 0.2828427 -> [0.848528, 1.131371].
  std::vector<float> x = {3.0f, 4.0f}, y(2, kNaN), w = {2.0f, 0.5f};
  RmsNormParams p{x.data(), nullptr, y.data(), 1, 2, 0.0f};
  RmsNorm(p);
  CHECK(y[0] == Approx(0.848528f));
  CHECK(y[1] == Approx(1.131371f));
  p.weight = w.data();  // * [2, 0.5] -> [1.697056, 0.565685]
  RmsNorm(p);
  CHECK(y[0] == Approx(1.697056f));
  CHECK(y[1] == Approx(0.565685f));
}

TEST_CASE("linear with f32 and bf16 weights", "[kernels]") {
  // x = [[1, 2], [3, 4]], W = [[1, 0], [1, 1], [0.5, -1]]:
  // y = [[1, 3, -1.5], [3, 7, -2.5]].
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 0, 1, 1, 0.5f, -1};
  std::vector<float> expect = {1, 3, -1.5f, 3, 7, -2.5f};
  std::vector<float> y(6, kNaN);
  LinearParams p;
  p.x = x.data();
  p.w = w.data();
  p.y = y.data();
  p.rows = 2;
  p.in = 2;
  p.out = 3;
  Linear(p);
  CHECK(y == expect);
  std::vector<uint16_t> wb = ToBf16(w);
  std::fill(y.begin(), y.end(), kNaN);
  p.w = wb.data();
  p.w_type = WeightType::kBF16;
  Linear(p);
  CHECK(y == expect);

  // K = 19 exercises the 8-lane body and the tail: sum(1..19) = 190.
  std::vector<float> xs(19), ones(19, 1.0f);
  for (int i = 0; i < 19; ++i) xs[i] = i + 1.0f;
  float out = kNaN;
  LinearParams q;
  q.x = xs.data();
  q.w = ones.data();
  q.y = &out;
  q.rows = 1;
  q.in = 19;
  q.out = 1;
  Linear(q);
  CHECK(out == 190.0f);
}

TEST_CASE("grouped linear is block diagonal", "[kernels]") {
  // x = [1, 2 | 3, 4], W[0] = [1, 1], W[1] = [1, -1]: y = [1+2, 3-4] = [3, -1].
  std::vector<float> x = {1, 2, 3, 4}, w = {1, 1, 1, -1}, y(2, kNaN);
  GroupedLinearParams p;
  p.x = x.data();
  p.w = w.data();
  p.y = y.data();
  p.rows = 1;
  p.groups = 2;
  p.in_per_group = 2;
  p.out_per_group = 1;
  GroupedLinear(p);
  CHECK(y == std::vector<float>{3, -1});
}

TEST_CASE("rope rotates the last pair and its inverse undoes it", "[kernels]") {
  // width 4, r = 2, inv_freq 1, pos 1: angle 1 rad; x = [9, 9, 1, 0] ->
  // [9, 9, cos 1, sin 1] = [9, 9, 0.540302, 0.841471].
  std::vector<float> x = {9, 9, 1, 0}, inv = {1.0f};
  std::vector<int32_t> pos = {1};
  RopeParams p{x.data(), pos.data(), inv.data(), 1, 1, 4, 2, false};
  Rope(p);
  CHECK(x[0] == 9.0f);
  CHECK(x[1] == 9.0f);
  CHECK(x[2] == Approx(0.540302f));
  CHECK(x[3] == Approx(0.841471f));
  p.inverse = true;
  Rope(p);
  CHECK(x[2] == Approx(1.0f));
  CHECK(x[3] == Approx(0.0f).margin(1e-7));
}

TEST_CASE("hyper-connection pre, post and head mixes", "[kernels]") {
  // n = 2 streams of D = 1: X = [1, 2]; fn = 0, so mix = base.
  const int n = 2;
  std::vector<float> X = {1, 2}, fn(8 * 2, 0.0f), scale = {1, 1, 1};
  // pre base 0 -> sigmoid 0.5; post base [0, ln 3] -> 2 * [0.5, 0.75] = [1, 1.5];
  // comb base [[ln 3, 0], [0, 0]] -> row softmax [[0.75, 0.25], [0.5, 0.5]],
  // column sums [1.25, 0.75] -> C = [[0.6, 1/3], [0.4, 2/3]] (one iteration).
  std::vector<float> base = {0, 0, 0, std::log(3.0f), std::log(3.0f), 0, 0, 0};
  std::vector<float> x_in(1, kNaN), post(2, kNaN), comb(4, kNaN);
  HcPreParams p;
  p.X = X.data();
  p.fn = fn.data();
  p.base = base.data();
  p.scale = scale.data();
  p.x_in = x_in.data();
  p.post = post.data();
  p.comb = comb.data();
  p.tokens = 1;
  p.dim = 1;
  p.n = n;
  p.sinkhorn_iters = 1;
  p.hc_eps = 0.0f;
  p.norm_eps = 0.0f;
  HcPre(p);
  CHECK(x_in[0] == Approx(1.5f));  // 0.5 * 1 + 0.5 * 2
  CHECK(post[0] == Approx(1.0f));
  CHECK(post[1] == Approx(1.5f));
  CHECK(comb[0] == Approx(0.6f));
  CHECK(comb[1] == Approx(1.0f / 3));
  CHECK(comb[2] == Approx(0.4f));
  CHECK(comb[3] == Approx(2.0f / 3));

  // More Sinkhorn iterations keep it doubly stochastic.
  p.sinkhorn_iters = 20;
  HcPre(p);
  CHECK(comb[0] + comb[1] == Approx(1.0f).epsilon(1e-4));
  CHECK(comb[0] + comb[2] == Approx(1.0f).epsilon(1e-4));

  // fn row 0 = [1, 0]: urms([1, 2]) = [0.632456, 1.264911], mix0 = 0.632456,
  // pre0 = sigmoid(2 * 0.632456) = 0.779870 with scale0 = 2.
  fn[0] = 1.0f;
  scale[0] = 2.0f;
  p.sinkhorn_iters = 1;
  HcPre(p);
  CHECK(x_in[0] == Approx(0.779870f * 1 + 0.5f * 2));

  // Post: X'[j] = post[j] * y + sum_i C[i][j] X[i] with y = 10, post = [1, 1.5]:
  // X'0 = 10 + 0.6 + 0.8 = 11.4, X'1 = 15 + 1/3 + 4/3 = 16.666667.
  std::vector<float> y = {10}, post2 = {1, 1.5f}, C = {0.6f, 1.0f / 3, 0.4f, 2.0f / 3},
                     out(2, kNaN);
  HcPostParams q{X.data(), y.data(), post2.data(), C.data(), out.data(), 1, 1, n};
  HcPost(q);
  CHECK(out[0] == Approx(11.4f));
  CHECK(out[1] == Approx(16.666667f));

  // Head: fn = 0, base = [0, ln 3] -> pre = [0.5, 0.75]; y = 0.5 + 1.5 = 2.
  std::vector<float> hfn(2 * 2, 0.0f), hbase = {0, std::log(3.0f)}, hscale = {1}, hy(1, kNaN);
  HcHeadParams h{X.data(), hfn.data(), hbase.data(), hscale.data(), hy.data(), 1, 1, n, 0.0f, 0.0f};
  HcHead(h);
  CHECK(hy[0] == Approx(2.0f));
}

namespace {
// One page table slot with `pages` pages of `page_size` entries, one layer.
struct Pages {
  std::vector<float> pool;
  std::vector<int32_t> table;
  EntryPagesView view;
  Pages(int pages, int page_size, int width) {
    pool.assign(static_cast<size_t>(pages) * page_size * width, kNaN);
    for (int i = 0; i < pages; ++i) table.push_back(pages - 1 - i);  // any mapping works
    view.pool = pool.data();
    view.table = table.data();
    view.num_pages = pages;
    view.num_slots = 1;
    view.max_pages = pages;
    view.page_size = page_size;
    view.layers = 1;
    view.layer = 0;
    view.width = width;
  }
  float* entry(int e) { return view.Entry(0, e); }
};
}  // namespace

TEST_CASE("HCA compressor pools closed windows, norms and ropes them", "[kernels]") {
  // rate 2, width 2. Window 0: c = [1, 0], [3, 2]; z = [0, 0], [ln 3, 0].
  // ch0: softmax(0, ln 3) = [0.25, 0.75] -> 0.25 + 2.25 = 2.5;
  // ch1: softmax(0, 0) -> 0 * 0.5 + 2 * 0.5 = 1. rms([2.5, 1]) = [1.313064, 0.525226],
  // roped at position 0 (identity).
  // Window 1: c = [1, 1] twice -> [1, 1], rms -> [1, 1], roped at position 2
  // with inv_freq pi/4: angle pi/2 -> [-1, 1].
  const float ln3 = std::log(3.0f);
  std::vector<float> c = {1, 0, 3, 2, 1, 1, 1, 1}, z = {0, 0, ln3, 0, 0, 0, 0, 0};
  std::vector<float> ape(4, 0.0f), norm = {1, 1}, inv = {static_cast<float>(M_PI / 4)};
  std::vector<float> ring(2 * 4, kNaN);
  Pages pages(2, 1, 2);
  OneSeq seq(0, 4);
  CompressorParams p;
  p.c = c.data();
  p.z = z.data();
  p.ape = ape.data();
  p.norm_weight = norm.data();
  p.inv_freq = inv.data();
  p.ring = ring.data();
  p.num_slots = 1;
  p.rate = 2;
  p.width = 2;
  p.rope_dim = 2;
  p.eps = 0.0f;
  p.entries = pages.view;
  p.batch = seq.layout();
  REQUIRE(CompressorUpdate(p));
  CHECK(pages.entry(0)[0] == Approx(1.313064f));
  CHECK(pages.entry(0)[1] == Approx(0.525226f));
  CHECK(pages.entry(1)[0] == Approx(-1.0f));
  CHECK(pages.entry(1)[1] == Approx(1.0f));

  // The same tokens one at a time (decode) give the same entries.
  Pages again(2, 1, 2);
  p.entries = again.view;
  for (int t = 0; t < 4; ++t) {
    OneSeq one(t, 1);
    p.c = c.data() + 2 * t;
    p.z = z.data() + 2 * t;
    p.batch = one.layout();
    REQUIRE(CompressorUpdate(p));
  }
  CHECK(again.pool == pages.pool);

  // An emitted entry without a page is an error.
  Pages none(1, 1, 2);
  none.table[0] = -1;
  p.entries = none.view;
  OneSeq first(0, 2);
  p.c = c.data();
  p.z = z.data();
  p.batch = first.layout();
  CHECK_FALSE(CompressorUpdate(p));
}

TEST_CASE("CSA compressor overlaps the previous window's Ca half", "[kernels]") {
  // rate 2, width 2, cw 4 (Ca | Cb), z = 0 so every present slot weighs equally.
  // Entry 0 = mean(Cb0, Cb1) = mean([2, 2], [2, -2]) = [2, 0] -> rms [1.414214, 0].
  // Entry 1 = mean(Ca0, Ca1, Cb2, Cb3) = mean([4,0], [0,0], [0,0], [0,4]) = [1, 1] -> [1, 1].
  std::vector<float> c = {4, 0, 2, 2, /**/ 0, 0, 2, -2, /**/ 9, 9, 0, 0, /**/ 9, 9, 0, 4};
  std::vector<float> z(16, 0.0f), ape(8, 0.0f), norm = {1, 1}, inv = {0.0f};
  std::vector<float> ring(4 * 8, kNaN);
  Pages pages(2, 1, 2);
  OneSeq seq(0, 4);
  CompressorParams p;
  p.c = c.data();
  p.z = z.data();
  p.ape = ape.data();
  p.norm_weight = norm.data();
  p.inv_freq = inv.data();
  p.ring = ring.data();
  p.num_slots = 1;
  p.rate = 2;
  p.overlap = true;
  p.width = 2;
  p.rope_dim = 2;
  p.eps = 0.0f;
  p.entries = pages.view;
  p.batch = seq.layout();
  REQUIRE(CompressorUpdate(p));
  CHECK(pages.entry(0)[0] == Approx(1.414214f));
  CHECK(pages.entry(0)[1] == Approx(0.0f).margin(1e-7));
  CHECK(pages.entry(1)[0] == Approx(1.0f));
  CHECK(pages.entry(1)[1] == Approx(1.0f));

  // ape is added to z by position in window: ape[1] = ln 3 on the Cb gates
  // makes entry 0 = 0.25 * Cb0 + 0.75 * Cb1 = [2, -1] -> rms: mean sq 2.5 -> [1.264911, -0.632456].
  ape[1 * 4 + 2] = ape[1 * 4 + 3] = std::log(3.0f);
  std::fill(ring.begin(), ring.end(), kNaN);
  REQUIRE(CompressorUpdate(p));
  CHECK(pages.entry(0)[0] == Approx(1.264911f));
  CHECK(pages.entry(0)[1] == Approx(-0.632456f));
}

TEST_CASE("indexer scores visible entries and keeps the top k", "[kernels]") {
  // One head, width 2, q = [2, 1], weight 1, scale 1; rate 1, position 3 -> 4 visible.
  // Keys [1,0], [0,1], [1,1], [-1,-1]: scores relu(2)=2, 1, 3, relu(-3)=0. Top 2: {2, 0}.
  Pages keys(4, 1, 2);
  const float K[4][2] = {{1, 0}, {0, 1}, {1, 1}, {-1, -1}};
  for (int e = 0; e < 4; ++e) std::copy(K[e], K[e] + 2, keys.entry(e));
  std::vector<float> q = {2, 1}, w = {1};
  std::vector<int32_t> sel(3, 99);
  OneSeq seq(3, 1);
  IndexerTopKParams p;
  p.q = q.data();
  p.weights = w.data();
  p.heads = 1;
  p.rate = 1;
  p.softmax_scale = 1.0f;
  p.k = 2;
  p.keys = keys.view;
  p.batch = seq.layout();
  p.selected = sel.data();
  std::vector<char> ws(IndexerTopKWorkspaceBytes(4));
  REQUIRE(IndexerTopK(p, ws.data()));
  std::vector<int32_t> got(sel.begin(), sel.begin() + 2);
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<int32_t>{0, 2});

  // k larger than the visible count pads with -1: position 1 sees entries 0, 1.
  OneSeq early(1, 1);
  p.batch = early.layout();
  p.k = 3;
  REQUIRE(IndexerTopK(p, ws.data()));
  std::vector<int32_t> first(sel.begin(), sel.begin() + 2);
  std::sort(first.begin(), first.end());
  CHECK(first == std::vector<int32_t>{0, 1});
  CHECK(sel[2] == -1);
}

TEST_CASE("indexer breaks score ties as torch.topk on CPU", "[kernels]") {
  // Scores [0, 0, 0, 5] (keys 0..2 relu to 0), k = 2 of N = 4: torch runs
  // std::nth_element(row, row + 1, row + 4) on (score, id) comparing scores.
  // libstdc++ introselect: median-of-three of ids 1, 2, 3 is id 2 -> pivot at
  // the front; partitioning swaps id 3 forward; the cut at 2 leaves
  // [(0, id 2), (5, id 3)] to insertion-sort. Chosen: {3, 2}, not {3, 0}.
  Pages keys(4, 1, 1);
  const float K[4] = {-1, -2, -3, 5};
  for (int e = 0; e < 4; ++e) keys.entry(e)[0] = K[e];
  std::vector<float> q = {1}, w = {1};
  std::vector<int32_t> sel(2, 99);
  OneSeq seq(3, 1);
  IndexerTopKParams p;
  p.q = q.data();
  p.weights = w.data();
  p.heads = 1;
  p.rate = 1;
  p.softmax_scale = 1.0f;
  p.k = 2;
  p.keys = keys.view;
  p.batch = seq.layout();
  p.selected = sel.data();
  std::vector<char> ws(IndexerTopKWorkspaceBytes(4));
  REQUIRE(IndexerTopK(p, ws.data()));
  std::sort(sel.begin(), sel.end());
  CHECK(sel == std::vector<int32_t>{2, 3});
}

TEST_CASE("attention: sliding window, sink, ring and compressed keys", "[kernels]") {
  // H = 1, d = 2, W = 2, scale 1, sink 0. Keys kv0 = [1, 0], kv1 = [0, 1], kv2 = [0, 0].
  // t0: q = [ln 2, 0]: s = ln 2 -> exps 2 (key) and 1 (sink): out = 2/3 kv0 = [0.666667, 0].
  // t1: q = [0, ln 3]: s = [0, ln 3] -> 1, 3, sink 1: out = 0.2 kv0 + 0.6 kv1 = [0.2, 0.6].
  // t2: q = [5, 0]: window holds positions 1, 2 only (kv0 would score 5):
  //     s = [0, 0], sink 0 -> thirds: out = kv1 / 3 = [0, 0.333333].
  const float ln2 = std::log(2.0f), ln3 = std::log(3.0f);
  std::vector<float> q = {ln2, 0, 0, ln3, 5, 0}, kv = {1, 0, 0, 1, 0, 0};
  std::vector<float> ring(2 * 2, kNaN), sinks = {0.0f}, out(6, kNaN);
  OneSeq seq(0, 3);
  AttentionParams p;
  p.q = q.data();
  p.kv = kv.data();
  p.ring = ring.data();
  p.sinks = sinks.data();
  p.out = out.data();
  p.heads = 1;
  p.dim = 2;
  p.window = 2;
  p.num_slots = 1;
  p.scale = 1.0f;
  p.batch = seq.layout();
  std::vector<char> ws(AttentionWorkspaceBytes(8));
  REQUIRE(Attention(p, ws.data()));
  CHECK(out[0] == Approx(2.0f / 3));
  CHECK(out[1] == 0.0f);
  CHECK(out[2] == Approx(0.2f));
  CHECK(out[3] == Approx(0.6f));
  CHECK(out[4] == Approx(0.0f).margin(1e-7));
  CHECK(out[5] == Approx(1.0f / 3));

  // Decode of t2 alone reads position 1 from the ring (slot 0, index 1 % 2).
  ring[1 * 2 + 0] = 0;
  ring[1 * 2 + 1] = 1;
  OneSeq decode(2, 1);
  std::vector<float> out2(2, kNaN);
  p.q = q.data() + 4;
  p.kv = kv.data() + 4;
  p.out = out2.data();
  p.batch = decode.layout();
  REQUIRE(Attention(p, ws.data()));
  CHECK(out2[0] == Approx(0.0f).margin(1e-7));
  CHECK(out2[1] == Approx(1.0f / 3));

  // Compressed keys (rate 2): entry 0 = [3, 3] is visible to position 1. With
  // q = 0 every score is 0: kv0, kv1, entry 0 and the sink share 1/4 each:
  // out = (kv0 + kv1 + e0) / 4 = [1, 1]. Selecting none (-1) drops the entry:
  // (kv0 + kv1) / 3 = [1/3, 1/3].
  Pages entries(1, 1, 2);
  entries.entry(0)[0] = entries.entry(0)[1] = 3.0f;
  std::vector<float> zq = {0, 0, 0, 0}, out3(4, kNaN);
  OneSeq two(0, 2);
  p.q = zq.data();
  p.kv = kv.data();
  p.out = out3.data();
  p.batch = two.layout();
  p.entries = entries.view;
  p.rate = 2;
  REQUIRE(Attention(p, ws.data()));
  CHECK(out3[0] == Approx(0.5f));  // t0 sees no entry: (kv0) / 2
  CHECK(out3[2] == Approx(1.0f));
  CHECK(out3[3] == Approx(1.0f));
  std::vector<int32_t> selected = {-1, -1};
  p.selected = selected.data();
  p.k = 1;
  REQUIRE(Attention(p, ws.data()));
  CHECK(out3[2] == Approx(1.0f / 3));
  CHECK(out3[3] == Approx(1.0f / 3));
}

TEST_CASE("router: sqrt-softplus scores, biased top-k and hash tables", "[kernels]") {
  // logits [0, 1, 2, 30]: softplus = [ln 2, 1.313262, 2.126928, 30 (threshold)];
  // s = sqrt = [0.832555, 1.145976, 1.458399, 5.477226].
  // bias [0, 0, 0, -10] drops expert 3: top 2 = {2, 1};
  // w = s / (s2 + s1) * 1.5 = [0.839971, 0.660029].
  std::vector<float> logits = {0, 1, 2, 30}, bias = {0, 0, 0, -10};
  std::vector<int32_t> idx(2, -7);
  std::vector<float> w(2, kNaN);
  RouteParams p;
  p.logits = logits.data();
  p.bias = bias.data();
  p.tokens = 1;
  p.experts = 4;
  p.k = 2;
  p.routed_scaling = 1.5f;
  p.idx = idx.data();
  p.w = w.data();
  REQUIRE(Route(p));
  CHECK(idx == std::vector<int32_t>{2, 1});
  CHECK(w[0] == Approx(0.839971f));
  CHECK(w[1] == Approx(0.660029f));
  CHECK(Softplus(30.0f) == 30.0f);

  // Hash: token 1 -> experts [3, 0]; w = [5.477226, 0.832555] / 6.309781.
  std::vector<int32_t> tid2eid = {1, 2, 3, 0}, tokens = {1};
  p.bias = nullptr;
  p.tid2eid = tid2eid.data();
  p.token_ids = tokens.data();
  p.vocab = 2;
  p.routed_scaling = 1.0f;
  REQUIRE(Route(p));
  CHECK(idx == std::vector<int32_t>{3, 0});
  CHECK(w[0] == Approx(0.868053f));
  CHECK(w[1] == Approx(0.131947f));
  tokens[0] = 2;  // outside the table
  CHECK_FALSE(Route(p));
}

TEST_CASE("clamped SwiGLU and routed experts", "[kernels]") {
  // a = [0, 2, -1] -> min(a, 1) = [0, 1, -1]; b = [5, 0.5, -3] -> clamp = [1, 0.5, -1].
  // silu = [0, 0.731059, -0.268941] -> out = [0, 0.365529, 0.268941].
  std::vector<float> a = {0, 2, -1}, b = {5, 0.5f, -3}, out(3, kNaN);
  SwiGlu(a.data(), b.data(), 1.0f, out.data(), 3);
  CHECK(out[0] == 0.0f);
  CHECK(out[1] == Approx(0.365529f));
  CHECK(out[2] == Approx(0.268941f));

  // Two experts, D = F = 1: w1 = [1], [2]; w3 = [1], [1]; w2 = [1], [3]; limit 10.
  // x = 1, idx = [1, 0], w = [0.5, 0.25]:
  // expert 0: silu(1) * 1 * 1 = 0.731059; expert 1: silu(2) * 1 * 3 = 5.284782;
  // out = 0.25 * 0.731059 + 0.5 * 5.284782 = 2.825156.
  std::vector<float> x = {1}, w1 = {1, 2}, w3 = {1, 1}, w2 = {1, 3}, rw = {0.5f, 0.25f}, y = {kNaN};
  std::vector<int32_t> idx = {1, 0};
  MoeExpertsParams p;
  p.x = x.data();
  p.idx = idx.data();
  p.w = rw.data();
  p.w1 = w1.data();
  p.w3 = w3.data();
  p.w2 = w2.data();
  p.out = y.data();
  p.tokens = 1;
  p.dim = 1;
  p.ffn = 1;
  p.experts = 2;
  p.k = 2;
  p.limit = 10.0f;
  std::vector<char> ws(MoeExpertsWorkspaceBytes(1, 1, 1));
  REQUIRE(MoeExperts(p, ws.data()));
  CHECK(y[0] == Approx(2.825156f));
  // A token listing expert 1 twice (a hash table may) counts it twice, within
  // the one-row-per-token workspace (it overran it before): 0.75 * 5.284782.
  // The workspace is exactly its size, so ASan sees any overrun.
  idx = {1, 1};
  std::vector<char> exact(MoeExpertsWorkspaceBytes(1, 1, 1));
  REQUIRE(MoeExperts(p, exact.data()));
  CHECK(y[0] == Approx(0.75f * 5.284782f));
  idx[0] = 2;
  CHECK_FALSE(MoeExperts(p, ws.data()));
}
