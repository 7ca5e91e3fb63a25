// [cuda] the device sampler (Backend::Sample) against the host sampler's
// definition: greedy ids identical to the host argmax (bans honoured), seeded
// draws distributed as the truncated softmax (total variation), nothing drawn
// outside the kept set, and each row's id independent of the rest of the batch.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "engine/sampling/device_row.h"
#include "engine/sampling/sampler.h"
#include "kernels/cuda/sample_row.h"
#include "tests/cuda/backend_pair.h"

namespace moegraph::cuda_test {
namespace {

using Row = cuda::SampleRowParams;

Row MakeRow(const sampling::SamplingParams& p, uint64_t index) {
  absl::StatusOr<Row> r = sampling::DeviceRow(p, index, {});
  REQUIRE(r.ok());
  return *r;
}

// Runs the device sampler over `rows` rows of logits (row-major, vocab wide).
std::vector<int32_t> DeviceSample(const std::vector<float>& logits, int vocab,
                                  const std::vector<Row>& rows) {
  const int R = static_cast<int>(rows.size());
  auto lg = Make(Kind::kF32, logits, {R, vocab});
  std::vector<int32_t> words(rows.size() * cuda::kSampleRowWords);
  std::memcpy(words.data(), rows.data(), rows.size() * sizeof(Row));
  auto params = MakeI32(words, {R, cuda::kSampleRowWords});
  auto ids = MakeOut(Kind::kI32, {R});
  REQUIRE(Gpu().Sample(lg->gpu, params->gpu, ids->gpu).ok());
  return FetchI32(Gpu(), ids->gpu);
}

// The host sampler's distribution after truncation (top-k, min-p, top-p).
std::vector<double> Expected(const std::vector<float>& l, const sampling::SamplingParams& p) {
  const int V = static_cast<int>(l.size());
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
  const int m = p.top_k > 0 ? std::min(p.top_k, V) : V;
  std::vector<double> q(V, 0.0);
  double total = 0;
  for (int i = 0; i < m; ++i) {
    double v = std::exp((l[order[i]] - l[order[0]]) / p.temperature);
    if (v < p.min_p) v = 0;
    q[order[i]] = v;
    total += v;
  }
  if (p.top_p < 1.0f) {
    double cum = 0;
    int keep = m;
    for (int i = 0; i < m; ++i) {
      cum += q[order[i]];
      if (cum >= p.top_p * total) {
        keep = i + 1;
        break;
      }
    }
    for (int i = keep; i < m; ++i) q[order[i]] = 0;
    total = cum;
  }
  for (double& v : q) v /= total;
  return q;
}

TEST_CASE("Sample: greedy rows match the host argmax, bans honoured", "[cuda]") {
  ReseedRng("SampleGreedy");
  const int V = 129280, R = 9;
  std::vector<float> logits = RandomBf16(int64_t{R} * V, 2.0f);
  logits[3 * V + 77] = logits[3 * V + 78] = 50.0f;  // a tie: lowest id wins
  std::vector<Row> rows(R);
  rows[5].banned[0] = 0;
  logits[5 * V + 0] = 60.0f;  // banned top: the runner-up must win
  std::vector<int32_t> got = DeviceSample(logits, V, rows);
  for (int r = 0; r < R; ++r) {
    std::vector<float> row(logits.begin() + int64_t{r} * V, logits.begin() + int64_t{r + 1} * V);
    if (r == 5) row[0] = -INFINITY;
    const int want = static_cast<int>(std::max_element(row.begin(), row.end()) - row.begin());
    INFO("row " << r);
    CHECK(got[r] == want);
  }
  CHECK(got[3] == 77);
}

TEST_CASE("Sample: seeded draws follow the truncated distribution", "[cuda]") {
  ReseedRng("SampleDist");
  const int V = 4096;
  std::vector<float> base = RandomBf16(V, 1.5f);
  struct Case {
    const char* name;
    float temperature;
    int top_k;
    float top_p, min_p;
  };
  for (Case c : {Case{"t1", 1.0f, 0, 1.0f, 0.0f}, Case{"t0.7 top_k 40", 0.7f, 40, 1.0f, 0.0f},
                 Case{"top_p 0.8", 1.0f, 0, 0.8f, 0.0f}, Case{"min_p 0.1", 1.0f, 0, 1.0f, 0.1f},
                 Case{"all", 0.8f, 200, 0.9f, 0.02f}}) {
    sampling::SamplingParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    p.seed = 0x5eed + static_cast<uint64_t>(c.top_k);
    const std::vector<double> want = Expected(base, p);
    const int R = 2048, batches = 16;
    std::vector<double> seen(V, 0.0);
    std::vector<float> logits;
    for (int r = 0; r < R; ++r) logits.insert(logits.end(), base.begin(), base.end());
    int outside = 0;
    for (int b = 0; b < batches; ++b) {
      std::vector<Row> rows;
      for (int r = 0; r < R; ++r) rows.push_back(MakeRow(p, uint64_t(b) * R + r));
      for (int32_t id : DeviceSample(logits, V, rows)) {
        REQUIRE(id >= 0);
        REQUIRE(id < V);
        seen[id] += 1.0 / (R * batches);
        if (want[id] == 0) ++outside;
      }
    }
    double tv = 0;
    for (int i = 0; i < V; ++i) tv += 0.5 * std::abs(seen[i] - want[i]);
    // Sampling noise alone gives a TV that grows with the kept set (about
    // 0.1 over 4096 tokens from 32768 draws): compare with the TV of as many
    // host draws from the exact distribution.
    std::discrete_distribution<int> exact(want.begin(), want.end());
    std::vector<double> host(V, 0.0);
    for (int d = 0; d < R * batches; ++d) host[exact(Rng())] += 1.0 / (R * batches);
    double tv_ref = 0;
    for (int i = 0; i < V; ++i) tv_ref += 0.5 * std::abs(host[i] - want[i]);
    const double bound = 1.25 * tv_ref + 0.01;
    Report("Sample", std::string(c.name) + " total variation (bound: 1.25 x host draws' + 0.01)",
           tv, bound, tv <= bound);
    INFO(c.name << ": TV " << tv << " (host draws " << tv_ref << "), draws outside the kept set "
                << outside);
    CHECK(tv <= bound);
    CHECK(outside == 0);
  }
}

TEST_CASE("Sample: a row's draw does not depend on the rest of the batch", "[cuda]") {
  ReseedRng("SampleInvariance");
  const int V = 32000, R = 12;
  std::vector<float> logits = RandomBf16(int64_t{R} * V, 1.0f);
  std::vector<Row> rows;
  for (int r = 0; r < R; ++r) {
    sampling::SamplingParams p;
    p.temperature = 0.9f;
    p.top_p = r % 2 ? 0.95f : 1.0f;
    p.top_k = r % 3 ? 0 : 100;
    p.seed = 1000 + r;
    rows.push_back(MakeRow(p, 7 + r));
  }
  const std::vector<int32_t> batch = DeviceSample(logits, V, rows);
  for (int r = 0; r < R; ++r) {
    std::vector<float> one(logits.begin() + int64_t{r} * V, logits.begin() + int64_t{r + 1} * V);
    CHECK(DeviceSample(one, V, {rows[r]})[0] == batch[r]);
  }
}

}  // namespace
}  // namespace moegraph::cuda_test

namespace moegraph::cuda_test {
namespace {

TEST_CASE("Sample: logprobs on the device equal the host sampler's", "[cuda]") {
  // Greedy and seeded rows, with no, chosen-only, 5 and 20 top logprobs, a
  // tie in the top entries (lower id first) and a banned top id (its logprob
  // still reported, as the host does over the raw logits).
  ReseedRng("SampleLogprobs");
  const int V = 129280, R = 6;
  std::vector<float> logits = RandomBf16(int64_t{R} * V, 3.0f);
  logits[2 * V + 500] = logits[2 * V + 400] = 40.0f;
  logits[4 * V + 9] = 45.0f;
  std::vector<sampling::SamplingParams> params(R);
  const int tops[R] = {0, 0, 5, 20, 3, 20};
  std::vector<Row> rows(R);
  std::vector<std::vector<int32_t>> banned(R);
  banned[4] = {9};
  for (int r = 0; r < R; ++r) {
    params[r].logprobs = r != 0;
    params[r].top_logprobs = tops[r];
    if (r % 2 == 1) {
      params[r].temperature = 0.8f;
      params[r].top_p = 0.9f;
      params[r].seed = 1000 + r;
    }
    absl::StatusOr<Row> row = sampling::DeviceRow(params[r], 7, banned[r]);
    REQUIRE(row.ok());
    rows[r] = *row;
  }
  auto lg = Make(Kind::kF32, logits, {R, V});
  std::vector<int32_t> words(rows.size() * cuda::kSampleRowWords);
  std::memcpy(words.data(), rows.data(), rows.size() * sizeof(Row));
  auto prm = MakeI32(words, {R, cuda::kSampleRowWords});
  auto out = MakeOut(Kind::kI32, {cuda::SampleOutputWords(R)});
  REQUIRE(Gpu().Sample(lg->gpu, prm->gpu, out->gpu).ok());
  const std::vector<int32_t> got = FetchI32(Gpu(), out->gpu);
  const auto* rec = reinterpret_cast<const cuda::SampleLogprobs*>(got.data() + R);

  sampling::Sampler host;
  for (int r = 0; r < R; ++r) {
    INFO("row " << r);
    sampling::SampleResult want;
    host.Sample(std::span<const float>(logits.data() + int64_t{r} * V, V), params[r], nullptr,
                banned[r], 7, &want);
    // Seeded draws may differ from the host's at a float boundary; the
    // chosen logprob is checked at the device's own choice.
    if (params[r].greedy()) CHECK(got[r] == want.token_id);
    if (r == 0) continue;  // no logprobs asked: no record read
    const float* l = logits.data() + int64_t{r} * V;
    const double m = *std::max_element(l, l + V);
    double sum = 0;
    for (int i = 0; i < V; ++i) sum += std::exp(double{l[i]} - m);
    CHECK(rec[r].chosen == Approx(l[got[r]] - (m + std::log(sum))).margin(2e-4));
    REQUIRE(rec[r].count == static_cast<int>(want.top.size()));
    for (int j = 0; j < rec[r].count; ++j) {
      CHECK(rec[r].ids[j] == want.top[j].token_id);
      CHECK(rec[r].values[j] == Approx(want.top[j].logprob).margin(2e-4));
    }
  }
  CHECK(rec[2].ids[0] == 400);  // the tie: lower id first
  CHECK(rec[2].ids[1] == 500);
  CHECK(rec[4].ids[0] == 9);  // banned from the draw, still the most likely
  CHECK(got[4] != 9);
}

}  // namespace
}  // namespace moegraph::cuda_test
