// `moegraph check-golden MODEL_DIR [--golden FILE] [--device cpu|cuda]
// [--devices cpu:0,cpu:1 --layout ep|layers|ep+layers [--layer-blocks N]]`: replays the reference
// runs recorded by make_dsv4_fixture.py (prefill, chunked prefill, teacher-forced decode) on one
// rank or several (docs/expert-parallel.md) and compares every logit.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "engine/common/cli_registry.h"
#include "engine/common/status_macros.h"
#include "engine/model/dsv4_engine.h"
#include "engine/parallel/expert_parallel_engine.h"
#include "engine/parallel/layer_parallel_engine.h"
#include "engine/weights/safetensors.h"
#include "nlohmann/json.hpp"

namespace moegraph {
namespace {

constexpr char kUsage[] =
    "check-golden MODEL_DIR [--golden FILE] [--device cpu|cuda[:N]] [--tolerance REL] "
    "[--argmax FRACTION] [--quantile Q] [--graphs auto|off|full] [--devices cpu:0,cpu:1,...] "
    "[--layout ep|layers|ep+layers [--layer-blocks N]] [--transport auto|in-process|nccl] "
    "[--w8a8-min-rows N]\n"
    "  --w8a8-min-rows: FP8 products of at least N rows run W8A8 on a GPU (0 = never)";

// Pass criteria. The CPU backend computes in fp32 like the reference: every
// logit within 1e-4 (relative to the largest) and every argmax equal.
// `quantile` < 1 applies max_relative to that quantile of the positions'
// errors instead of the largest.
// The CUDA backend keeps activations in bf16 (8 mantissa bits), and a bf16
// rounding can flip a near-tie of the router's or the indexer's top-k at a
// few positions, which moves those positions' logits by up to ~5e-2 while
// the rest stay near 1e-3 (kernels/cuda/NOTES.md). Its criterion is per
// phase: the median position within 1e-2, the 95th percentile within 5e-2,
// the argmax equal on >= 97% of positions, and the reference's argmax among
// our top 5 at every position. A broken kernel moves every position, not 5%.
struct Tolerance {
  double max_relative = 1e-4;
  double min_argmax = 1.0;
  double quantile = 1.0;
  bool bf16 = false;
};
Tolerance g_tolerance;

struct GoldenPrompt {
  std::string name;
  std::vector<int32_t> prompt;
  std::vector<int32_t> decode_ids;
  std::vector<float> prefill_logits;  // [L, V]
  std::vector<float> decode_logits;   // [N, V]
  std::vector<float> chunk_logits;    // [L - chunk, V]
  int chunk = 0;
};

struct PhaseResult {
  double max_err = 0, max_ref = 0;
  int positions = 0, argmax_agree = 0;
  int ref_in_top5 = 0;               // positions whose reference argmax is in our top 5
  std::vector<double> position_err;  // max |err| of each position
  void Add(const float* mine, const float* ref, int vocab) {
    int am = 0, ar = 0;
    double pos_err = 0;
    for (int v = 0; v < vocab; ++v) {
      pos_err = std::max(pos_err, std::fabs(static_cast<double>(mine[v]) - ref[v]));
      max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[v])));
      if (mine[v] > mine[am]) am = v;
      if (ref[v] > ref[ar]) ar = v;
    }
    max_err = std::max(max_err, pos_err);
    position_err.push_back(pos_err);
    ++positions;
    argmax_agree += am == ar;
    int above = 0;  // our logits strictly above ours at the reference's argmax
    for (int v = 0; v < vocab && above < 5; ++v) above += mine[v] > mine[ar];
    ref_in_top5 += above < 5;
  }
  double Scale(double err) const { return max_ref > 0 ? err / max_ref : err; }
  double relative() const { return Scale(max_err); }
  // The q-quantile of the positions' errors, relative to max|logit|.
  double relative_quantile(double q) const {
    if (position_err.empty()) return 0;
    std::vector<double> e = position_err;
    const size_t i = std::min(e.size() - 1, static_cast<size_t>(std::ceil(q * e.size())) - (q > 0));
    std::nth_element(e.begin(), e.begin() + i, e.end());
    return Scale(e[i]);
  }
  int over_tolerance() const {
    int n = 0;
    for (double e : position_err) n += Scale(e) > g_tolerance.max_relative;
    return n;
  }
  double argmax_fraction() const { return positions ? double(argmax_agree) / positions : 1.0; }
  bool ok() const {
    if (g_tolerance.bf16) {
      return relative_quantile(0.5) <= 1e-2 && relative_quantile(0.95) <= 5e-2 &&
             argmax_fraction() >= 0.97 && ref_in_top5 == positions;
    }
    return relative_quantile(g_tolerance.quantile) <= g_tolerance.max_relative &&
           argmax_fraction() >= g_tolerance.min_argmax;
  }
};

double Ms(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

absl::StatusOr<std::vector<int32_t>> ReadIds(const WeightStore& g, const std::string& key) {
  ASSIGN_OR_RETURN(Tensor t, g.Get(key, {}, {DType::kI64, DType::kI32}));
  std::vector<int32_t> out(t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    out[i] = t.dtype == DType::kI64 ? static_cast<int32_t>(t.as<const int64_t>()[i])
                                    : t.as<const int32_t>()[i];
  }
  return out;
}

absl::StatusOr<std::vector<float>> ReadLogits(const WeightStore& g, const std::string& key,
                                              int vocab) {
  ASSIGN_OR_RETURN(Tensor t, g.Get(key, {}, {DType::kF32}));
  if (t.rank != 2 || t.dim(1) != vocab) {
    return absl::InvalidArgumentError(key + ": expected [rows, " + std::to_string(vocab) +
                                      "], found " + t.ShapeString());
  }
  return std::vector<float>(t.as<const float>(), t.as<const float>() + t.numel());
}

absl::StatusOr<std::vector<GoldenPrompt>> LoadGolden(const WeightStore* g, const std::string& path,
                                                     int vocab) {
  nlohmann::json meta;
  const auto json_path = std::filesystem::path(path).parent_path() / "golden.json";
  if (std::ifstream in(json_path); in) meta = nlohmann::json::parse(in, nullptr, false);
  std::vector<GoldenPrompt> prompts;
  for (const std::string& name : g->Names()) {
    if (!absl::EndsWith(name, ".prompt_ids")) continue;
    GoldenPrompt p;
    p.name = name.substr(0, name.size() - std::string(".prompt_ids").size());
    ASSIGN_OR_RETURN(p.prompt, ReadIds(*g, name));
    ASSIGN_OR_RETURN(p.prefill_logits, ReadLogits(*g, p.name + ".prefill_logits", vocab));
    if (g->Has(p.name + ".decode_ids")) {
      ASSIGN_OR_RETURN(p.decode_ids, ReadIds(*g, p.name + ".decode_ids"));
      ASSIGN_OR_RETURN(p.decode_logits, ReadLogits(*g, p.name + ".decode_logits", vocab));
    }
    if (g->Has(p.name + ".chunk_logits")) {
      ASSIGN_OR_RETURN(p.chunk_logits, ReadLogits(*g, p.name + ".chunk_logits", vocab));
      p.chunk = static_cast<int>(p.prompt.size() - p.chunk_logits.size() / vocab);
      if (meta.is_object() && meta.contains("prompts") && meta["prompts"].contains(p.name) &&
          meta["prompts"][p.name].contains("chunk")) {
        p.chunk = meta["prompts"][p.name]["chunk"].get<int>();
      }
    }
    prompts.push_back(std::move(p));
  }
  if (prompts.empty()) return absl::NotFoundError(path + ": no *.prompt_ids tensors");
  return prompts;
}

void Print(const std::string& prompt, const char* phase, const PhaseResult& r,
           const std::string& timing) {
  std::printf(
      "%-4s %-8s rel %.3e  (max|err| %.3e / max|logit| %.3e)  argmax %d/%d  median %.3e p95 "
      "%.3e p99 %.3e, %d positions over %.0e, ref argmax in top-5 %d/%d  %s  %s\n",
      prompt.c_str(), phase, r.relative(), r.max_err, r.max_ref, r.argmax_agree, r.positions,
      r.relative_quantile(0.5), r.relative_quantile(0.95), r.relative_quantile(0.99),
      r.over_tolerance(), g_tolerance.max_relative, r.ref_in_top5, r.positions, timing.c_str(),
      r.ok() ? "ok" : "FAIL");
}

// After a failed prefill: reruns it capturing the residual streams and
// prints how far each layer's output is from P.hidden.K, when the golden
// file has them, so the first diverging layer stands out.
absl::Status DiagnoseLayers(Dsv4Engine& engine, const WeightStore& golden, const GoldenPrompt& p) {
  const int L = static_cast<int>(p.prompt.size());
  RETURN_IF_ERROR(engine.AcquireSlot(0, L));
  StepPlan plan;
  plan.token_ids = p.prompt.data();
  plan.num_tokens = L;
  plan.seqs.push_back(SeqChunk{0, 0, 0, L, false});
  std::vector<std::vector<float>> hidden;
  ForwardOptions opt;
  opt.hidden = &hidden;
  std::vector<float> unused;
  absl::Status st = engine.StepWithOptions(plan, opt, &unused);
  engine.ReleaseSlot(0);
  RETURN_IF_ERROR(st);
  for (size_t k = 0; k < hidden.size(); ++k) {
    const std::string key = p.name + ".hidden." + std::to_string(k);
    if (!golden.Has(key)) continue;
    ASSIGN_OR_RETURN(Tensor ref, golden.Get(key, {}, {DType::kF32}));
    if (static_cast<size_t>(ref.numel()) != hidden[k].size()) continue;
    PhaseResult r;
    r.Add(hidden[k].data(), ref.as<const float>(), static_cast<int>(ref.numel()));
    const std::string where =
        k == 0 ? std::string("embeddings") : "streams after layer " + std::to_string(k - 1);
    std::printf("       %-24s (%s): rel %.3e\n", where.c_str(), key.c_str(), r.relative());
  }
  return absl::OkStatus();
}

// Feeds tokens [begin, end) of `ids` to `slot` as one chunk at position `begin`.
template <typename E>
absl::Status Feed(E& engine, int slot, const std::vector<int32_t>& ids, int begin, int end,
                  bool all_logits, std::vector<float>* logits) {
  StepPlan plan;
  plan.token_ids = ids.data() + begin;
  plan.num_tokens = end - begin;
  plan.seqs.push_back(SeqChunk{slot, begin, 0, end - begin, true});
  // Last-token logits go through the serving path (buckets, decode graphs).
  if (!all_logits) return engine.Step(plan, logits);
  ForwardOptions opt;
  opt.all_logits = all_logits;
  return engine.StepWithOptions(plan, opt, logits);
}

// On a Dsv4Engine, an ExpertParallelEngine (slot 0 on rank 0, the other
// ranks idle but serving their experts) or a LayerParallelEngine (every
// step through every rank's block).
template <typename E>
absl::StatusOr<bool> CheckPrompt(E& engine, const WeightStore& golden, const GoldenPrompt& p) {
  const int V = engine.info().vocab_size;
  const int L = static_cast<int>(p.prompt.size());
  const int N = static_cast<int>(p.decode_ids.size());
  bool ok = true;
  using Clock = std::chrono::steady_clock;

  // (a) prefill, then (c) teacher-forced decode in the same slot.
  RETURN_IF_ERROR(engine.AcquireSlot(0, L + std::max(N, 1)));
  std::vector<float> logits;
  auto t0 = Clock::now();
  RETURN_IF_ERROR(Feed(engine, 0, p.prompt, 0, L, true, &logits));
  auto t1 = Clock::now();
  PhaseResult prefill;
  for (int i = 0; i < L; ++i)
    prefill.Add(&logits[size_t(i) * V], &p.prefill_logits[size_t(i) * V], V);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "prefill %d tokens %.2f ms", L, Ms(t0, t1));
  Print(p.name, "prefill", prefill, buf);
  ok &= prefill.ok();
  if (!prefill.ok()) {
    engine.ReleaseSlot(0);
    // Per-layer capture runs on one rank only.
    if constexpr (std::is_same_v<E, Dsv4Engine>) RETURN_IF_ERROR(DiagnoseLayers(engine, golden, p));
    RETURN_IF_ERROR(engine.AcquireSlot(0, L + std::max(N, 1)));
    logits.clear();
    RETURN_IF_ERROR(Feed(engine, 0, p.prompt, 0, L, true, &logits));
  }
  if (N > 0) {
    PhaseResult decode;
    decode.Add(&logits[size_t(L - 1) * V], &p.decode_logits[0], V);
    std::vector<int32_t> seq = p.prompt;
    seq.insert(seq.end(), p.decode_ids.begin(), p.decode_ids.end());
    double total_ms = 0;
    for (int i = 1; i < N; ++i) {
      std::vector<float> step;
      auto s0 = Clock::now();
      RETURN_IF_ERROR(Feed(engine, 0, seq, L + i - 1, L + i, false, &step));
      total_ms += Ms(s0, Clock::now());
      decode.Add(step.data(), &p.decode_logits[size_t(i) * V], V);
    }
    std::snprintf(buf, sizeof(buf), "%d steps %.3f ms/step (%s)", N - 1,
                  N > 1 ? total_ms / (N - 1) : 0.0, engine.last_step_mode());
    Print(p.name, "decode", decode, buf);
    ok &= decode.ok();
  }
  engine.ReleaseSlot(0);

  // (b) chunked prefill at the recorded split.
  if (!p.chunk_logits.empty() && p.chunk > 0 && p.chunk < L) {
    RETURN_IF_ERROR(engine.AcquireSlot(0, L));
    std::vector<float> first, second;
    auto c0 = Clock::now();
    RETURN_IF_ERROR(Feed(engine, 0, p.prompt, 0, p.chunk, false, &first));
    RETURN_IF_ERROR(Feed(engine, 0, p.prompt, p.chunk, L, true, &second));
    auto c1 = Clock::now();
    PhaseResult chunked;
    for (int i = 0; i < L - p.chunk; ++i) {
      chunked.Add(&second[size_t(i) * V], &p.chunk_logits[size_t(i) * V], V);
    }
    std::snprintf(buf, sizeof(buf), "split %d+%d %.2f ms", p.chunk, L - p.chunk, Ms(c0, c1));
    Print(p.name, "chunked", chunked, buf);
    ok &= chunked.ok();
    engine.ReleaseSlot(0);
  }
  return ok;
}

int Usage(const char* why) {
  std::fprintf(stderr, "moegraph %s\nusage: moegraph %s\n", why, kUsage);
  return 2;
}

int RunCheckGolden(int argc, char** argv) {
  std::string model_dir, golden, device = "cpu", tolerance, argmax, quantile, graphs = "auto";
  std::string devices, layout = "ep", layer_blocks = "0", transport = "auto";
  std::string w8a8_min_rows = std::to_string(kDefaultW8A8MinRows);
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--golden" || a == "--device" || a == "--tolerance" || a == "--argmax" ||
         a == "--quantile" || a == "--graphs" || a == "--devices" || a == "--layout" ||
         a == "--layer-blocks" || a == "--w8a8-min-rows" || a == "--transport") &&
        i + 1 < argc) {
      (a == "--golden"          ? golden
       : a == "--device"        ? device
       : a == "--tolerance"     ? tolerance
       : a == "--argmax"        ? argmax
       : a == "--graphs"        ? graphs
       : a == "--devices"       ? devices
       : a == "--layout"        ? layout
       : a == "--layer-blocks"  ? layer_blocks
       : a == "--transport"     ? transport
       : a == "--w8a8-min-rows" ? w8a8_min_rows
                                : quantile) = argv[++i];
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: moegraph %s\n", kUsage);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return Usage(("check-golden: unknown or incomplete option " + a).c_str());
    } else if (model_dir.empty()) {
      model_dir = a;
    } else {
      return Usage(("check-golden: unexpected argument " + a).c_str());
    }
  }
  if (model_dir.empty()) return Usage("check-golden: MODEL_DIR is required");
  if (device != "cpu" && device != "cuda" && !absl::StartsWith(device, "cuda:")) {
    return Usage(("check-golden: --device must be cpu or cuda, got " + device).c_str());
  }
  if (golden.empty()) golden = (std::filesystem::path(model_dir) / "golden.safetensors").string();
  if (device != "cpu") g_tolerance.bf16 = true;
  // Explicit thresholds replace the bf16 criterion.
  if (!tolerance.empty() || !argmax.empty() || !quantile.empty()) g_tolerance.bf16 = false;
  if (!tolerance.empty() &&
      (!absl::SimpleAtod(tolerance, &g_tolerance.max_relative) || g_tolerance.max_relative < 0)) {
    return Usage(
        ("check-golden: --tolerance must be a non-negative number, got " + tolerance).c_str());
  }
  if (!quantile.empty() && (!absl::SimpleAtod(quantile, &g_tolerance.quantile) ||
                            g_tolerance.quantile <= 0 || g_tolerance.quantile > 1)) {
    return Usage(("check-golden: --quantile must be in (0, 1], got " + quantile).c_str());
  }
  if (!argmax.empty() && (!absl::SimpleAtod(argmax, &g_tolerance.min_argmax) ||
                          g_tolerance.min_argmax < 0 || g_tolerance.min_argmax > 1)) {
    return Usage(("check-golden: --argmax must be a fraction in [0, 1], got " + argmax).c_str());
  }

  auto config = LoadModelConfig(model_dir);
  if (!config.ok()) {
    std::fprintf(stderr, "check-golden: %s\n", config.status().ToString().c_str());
    return 1;
  }
  auto store = WeightStore::OpenFile(golden);
  if (!store.ok()) {
    std::fprintf(stderr, "check-golden: %s\n", store.status().ToString().c_str());
    return 1;
  }
  auto prompts = LoadGolden(store->get(), golden, config->vocab_size);
  if (!prompts.ok()) {
    std::fprintf(stderr, "check-golden: %s\n", prompts.status().ToString().c_str());
    return 1;
  }
  int longest = 1, context = 1;
  for (const GoldenPrompt& p : *prompts) {
    longest = std::max<int>(longest, p.prompt.size());
    context = std::max<int>(context, p.prompt.size() + std::max<size_t>(p.decode_ids.size(), 1));
  }
  EngineOptions options;
  options.model_dir = model_dir;
  options.device = device;
  options.num_slots = 1;
  options.context_limit = context;
  options.max_step_tokens = longest;
  options.graphs = graphs;
  options.devices = devices;
  options.layout = layout;
  options.transport = transport;
  if (!absl::SimpleAtoi(w8a8_min_rows, &options.w8a8_min_rows) || options.w8a8_min_rows < 0) {
    return Usage(
        ("check-golden: --w8a8-min-rows takes a count >= 0 (0 = never), got " + w8a8_min_rows)
            .c_str());
  }
  if (!absl::SimpleAtoi(layer_blocks, &options.layer_blocks)) {
    return Usage(("check-golden: --layer-blocks must be a number, got " + layer_blocks).c_str());
  }
  auto t0 = std::chrono::steady_clock::now();
  // Loads, prints what and where, and checks every prompt: 1 on an error.
  auto check = [&](auto created, bool* all_ok) -> int {
    if (!created.ok()) {
      std::fprintf(stderr, "check-golden: %s\n", created.status().ToString().c_str());
      return 1;
    }
    auto& engine = **created;
    std::printf("model %s on %s (%s): %d layers, vocab %d, loaded in %.1f ms; golden %s\n",
                model_dir.c_str(), engine.info().device.c_str(), engine.info().layout.c_str(),
                engine.info().num_layers, engine.info().vocab_size,
                Ms(t0, std::chrono::steady_clock::now()), golden.c_str());
    for (const GoldenPrompt& p : *prompts) {
      auto ok = CheckPrompt(engine, **store, p);
      if (!ok.ok()) {
        std::fprintf(stderr, "check-golden: prompt %s: %s\n", p.name.c_str(),
                     ok.status().ToString().c_str());
        return 1;
      }
      *all_ok &= *ok;
    }
    return 0;
  };
  bool all_ok = true;
  std::string graph_mode = "off";
  if (devices.empty()) {
    auto engine = Dsv4Engine::Create(options);
    if (engine.ok()) graph_mode = (*engine)->graph_mode();
    if (check(std::move(engine), &all_ok) != 0) return 1;
  } else if (layout == "layers") {
    if (check(LayerParallelEngine::Create(options), &all_ok) != 0) return 1;
  } else {
    // One slot a rank: the prompts run in slot 0 (rank 0), the rest idle.
    const std::vector<std::string> ranks = absl::StrSplit(devices, ',');
    options.num_slots = static_cast<int>(ranks.size());
    if (check(ExpertParallelEngine::Create(options), &all_ok) != 0) return 1;
  }
  if (g_tolerance.bf16) {
    std::printf(
        "%s (bf16 criterion per phase: median position error <= 1e-2, p95 <= 5e-2, argmax equal "
        "on >= 97%% of positions, reference argmax in our top 5 everywhere; decode graphs %s)\n",
        all_ok ? "PASS" : "FAIL", graph_mode.c_str());
    return all_ok ? 0 : 1;
  }
  std::printf(
      "%s (tolerance: relative error <= %.0e on %s and argmax equal on >= %.0f%% of positions)\n",
      all_ok ? "PASS" : "FAIL", g_tolerance.max_relative,
      g_tolerance.quantile >= 1
          ? "every position"
          : absl::StrFormat("%g%% of positions", 100 * g_tolerance.quantile).c_str(),
      100.0 * g_tolerance.min_argmax);
  return all_ok ? 0 : 1;
}

}  // namespace

MOEGRAPH_CLI_COMMAND(check_golden, "check-golden", kUsage,
                     "compare the model's logits with a golden reference file", RunCheckGolden);

}  // namespace moegraph
