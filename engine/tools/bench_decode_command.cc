// `moegraph bench-decode MODEL_DIR [--device cuda[:N]] [--batches 1,8,64]
//  [--context N] [--steps N] [--warmup N] [--graphs off,full]`: decode-step
// timing per graph mode: every batch size prefills its sequences to
// `context` tokens, then times decode steps (one token per sequence, greedy,
// sampled where the engine samples) from the host's call to the sampled ids
// on the host, with CUDA events around it (device span) and the host's wall
// clock; eager mode also splits the device time by kind of op. Each figure
// stands next to its floors (bytes of weights + state that must be read /
// 4.3 TB/s, flops / 890 TFLOP/s). `--random` needs no checkpoint: any config
// (e.g. V4-Flash's, tests/fixtures/configs) with random weights, its first
// `--layers` layers, in `--format` bf16, fp8 or fp4. With --devices (several
// ranks, docs/expert-parallel.md) it times the same decode steps by wall
// clock only.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "engine/backend/op_timer.h"
#include "engine/common/cli_registry.h"
#include "engine/common/status_macros.h"
#include "engine/model/dsv4_engine.h"
#include "engine/weights/safetensors.h"
#if MOEGRAPH_HAVE_CUDA
#include "engine/backend/cuda/cuda_backend.h"
#endif

namespace moegraph {
namespace {

constexpr char kUsage[] =
    "bench-decode MODEL_DIR [--device cuda[:N]] [--batches 1,8,64] [--context N] [--steps N] "
    "[--warmup N] [--graphs off,full] [--prefill 2048,8192] [--random [--layers N] "
    "[--format bf16|fp8|fp4]] [--devices cpu:0,cpu:1,... [--layout ep|layers|ep+layers "
    "[--layer-blocks N]]] [--w8a8-min-rows N]\n"
    "  --random: no checkpoint; MODEL_DIR (or a config .json file) gives the config and the "
    "weights are random, generated at load; --layers keeps the config's first N layers, "
    "--format sets the weights' format (fp4: FP8 linears and FP4 experts, as released)\n"
    "  --w8a8-min-rows: FP8 products of at least N rows quantize their activations (W8A8); "
    "0 = never";
constexpr double kBandwidth = 4.3e12;  // bytes/s, device-to-device copy (gpu.md)
constexpr double kFlopRate = 890e12;   // bf16 dense, cuBLASLt 8192^3 (gpu.md)

// Kinds of op, in the order of the CUDA backend's OpKind.
constexpr int kKinds = 6;
constexpr const char* kKindNames[kKinds] = {"matmul",  "attention", "compressor",
                                            "indexer", "moe",       "norms/mhc/other"};

struct Floor {
  std::array<double, kKinds> bytes{}, flops{};
};

// What one decode step of `batch` sequences at position `pos` must read and
// compute, by kind of op (dsv4.md shapes; bf16 state). Matrices count the
// bytes of the format they are stored in on the device: bf16, or for the
// released layout (config quantization_config) 1 byte a weight for the FP8
// linears (q, kv, wo_b, indexer q, shared expert) and 0.5 + 1/32 (FP4 and its
// scale) or 1 (FP8) for the routed experts; wo_a, gate, head and the
// compressors stay bf16 there.
Floor DecodeFloor(const ModelConfig& c, int batch, int pos) {
  Floor f;
  const bool fp8 = c.quant.fp8;
  const double lin = fp8 ? 1.0 : 2.0;
  const double expert = !fp8 ? 2.0 : c.quant.expert_dtype == "fp4" ? 0.5 + 1.0 / 32 : 1.0;
  const double B = batch, D = c.hidden_size, H = c.num_heads, d = c.head_dim;
  const double ql = c.q_lora_rank, g = c.o_groups, ol = c.o_lora_rank, n = c.hc_mult;
  const double E = c.n_routed_experts, k = c.num_experts_per_tok, F = c.moe_intermediate_size;
  const double nI = c.index_n_heads, ci = c.index_head_dim, V = c.vocab_size;
  const double W = std::min(c.sliding_window, pos + 1);
  auto matmul = [&](double params, double bytes_per_param = 2.0) {
    f.bytes[0] += bytes_per_param * params;
    f.flops[0] += 2 * B * params;
  };
  for (int l = 0; l < c.num_layers; ++l) {
    const AttnKind kind = c.layer_types[l];
    matmul(ql * D + H * d * ql + d * D + D * g * ol, lin);  // q, kv, wo_b
    matmul(g * ol * (H * d / g));                           // wo_a
    matmul(E * D);                                          // gate
    matmul(3 * F * D * c.n_shared_experts, lin);            // shared expert
    double keys = W;
    if (kind == AttnKind::kCsa) {
      const double vis = (pos + 1) / c.csa_rate;
      matmul(2 * 2 * d * D + 2 * 2 * ci * D + nI * D);  // compressors, weights_proj
      matmul(nI * ci * ql, lin);                        // indexer q
      keys += std::min<double>(c.index_topk, vis);
      f.bytes[3] += B * (vis * ci * 2 + nI * ci * 2);
      f.flops[3] += B * 2 * nI * ci * vis;
      f.bytes[2] += B * (2 * c.csa_rate * 4 * d + 2 * c.csa_rate * 4 * ci) * 2 / c.csa_rate;
    } else if (kind == AttnKind::kHca) {
      const double vis = (pos + 1) / c.hca_rate;
      matmul(2 * d * D);
      keys += vis;
      f.bytes[2] += B * (c.hca_rate * 2 * d) * 2 / c.hca_rate;
    }
    f.bytes[1] += B * (keys * d * 2 + 2 * H * d * 2);
    f.flops[1] += B * 4 * H * d * keys;
    // Routed experts: the expected number of distinct experts B tokens touch.
    const double distinct = E * (1 - std::pow(1 - k / E, B));
    f.bytes[4] += distinct * 3 * F * D * expert;
    f.flops[4] += B * k * 3 * 2 * F * D;
    // Two hyper-connection sites (fp32 fn) and the streams they read/write.
    f.bytes[5] += 2 * ((2 + n) * n * n * D * 4 + B * 3 * n * D * 2);
  }
  matmul(V * D);                                // lm head
  f.bytes[5] += n * n * D * 4 + B * n * D * 2;  // head collapse
  return f;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

int Usage(const char* why) {
  std::fprintf(stderr, "moegraph %s\nusage: moegraph %s\n", why, kUsage);
  return 2;
}

// Prefills `slot` (acquired) with ids[0, len) in chunks of `chunk` tokens,
// the last chunk's logits returned to the host as a request's first token would.
absl::Status Prefill(Engine& engine, int slot, const int32_t* ids, int len, int chunk) {
  for (int begin = 0; begin < len; begin += chunk) {
    const int n = std::min(chunk, len - begin);
    StepPlan plan;
    plan.token_ids = ids + begin;
    plan.num_tokens = n;
    plan.seqs.push_back(SeqChunk(slot, begin, 0, n, begin + n == len));
    std::vector<float> logits;
    RETURN_IF_ERROR(engine.Step(plan, &logits));
  }
  return absl::OkStatus();
}

struct BenchArgs {
  std::string model_dir, device = "cuda";
  std::vector<int> batches = {1, 8, 64};
  int context = 2100, steps = 50, warmup = 5;
  std::vector<std::string> modes = {"off", "full"};
  std::vector<int> prefills;
  // No checkpoint (EngineOptions::random_weights).
  bool random = false;
  int layers = 0;
  std::string format;
  int w8a8_min_rows = kDefaultW8A8MinRows;
};

absl::Status Bench(const BenchArgs& args, const std::string& graphs) {
  const std::string& model_dir = args.model_dir;
  const std::vector<int>& batches = args.batches;
  const std::vector<int>& prefills = args.prefills;
  const int context = args.context, steps = args.steps, warmup = args.warmup;
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  const int chunk = std::min(context, 1024);
  EngineOptions options;
  options.model_dir = model_dir;
  options.device = args.device;
  options.random_weights = args.random;
  options.num_layers = args.layers;
  options.weight_format = args.format;
  options.w8a8_min_rows = args.w8a8_min_rows;
  options.num_slots = max_batch;
  // Each decode sequence holds `decode_tokens`; the pool holds all of them
  // plus the longest prefill prompt.
  // (timed, per op kind, one at a time and pipelined through Launch).
  const int decode_tokens = context + warmup + 4 * steps + 2;
  options.context_limit = decode_tokens;
  int longest_prefill = 0;
  for (int L : prefills) longest_prefill = std::max(longest_prefill, L + 1);
  options.context_limit = std::max(options.context_limit, longest_prefill);
  options.state_pool_tokens = int64_t{max_batch} * decode_tokens + longest_prefill;
  options.max_step_tokens = std::max(chunk, max_batch);
  options.graphs = graphs;
  auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<Dsv4Engine> engine, Dsv4Engine::Create(options));
  const ModelConfig& cfg = engine->config();
  const std::string mode = engine->graph_mode();
  std::printf(
      "bench-decode: %s%s on %s, %d layers, loaded (tuned%s) in %.1f s; context %d, %d warm-up + "
      "%d timed steps per batch, graphs %s, w8a8_min_rows %d\n",
      model_dir.c_str(),
      args.random ? absl::StrCat(" (random weights, ", cfg.quant.fp8 ? "fp8 linears, " : "bf16, ",
                                 cfg.quant.expert_dtype.empty() ? "" : cfg.quant.expert_dtype,
                                 cfg.quant.expert_dtype.empty() ? "" : " experts", ")")
                        .c_str()
                  : "",
      engine->info().device.c_str(), cfg.num_layers, mode == "full" ? ", graphs captured" : "",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), context, warmup,
      steps, mode.c_str(), args.w8a8_min_rows);
  OpTimer* timer = nullptr;
#if MOEGRAPH_HAVE_CUDA
  timer = CudaOpTimer(engine->backend());
#endif

  // The prompt: the golden file's first prompt when it is long enough, else
  // random ids; decode feeds random ids (spreads the hash-routed experts).
  std::mt19937 rng(1234);
  std::vector<int32_t> prompt(context);
  for (int32_t& id : prompt) id = static_cast<int32_t>(2 + rng() % (cfg.vocab_size - 2));
  if (auto golden = WeightStore::OpenFile(model_dir + "/golden.safetensors");
      !args.random && golden.ok()) {
    if (auto ids = (*golden)->Get("a.prompt_ids", {}, {DType::kI64}); ids.ok()) {
      for (int i = 0; i < std::min<int64_t>(context, ids->numel()); ++i)
        prompt[i] = static_cast<int32_t>(ids->as<const int64_t>()[i]);
    }
  }

  // Prefill: time to the first token of one prompt, the first one after load
  // (every shape was tuned at load) and warm, next to the flops floor (every
  // token's attention counted at the prompt's mean position).
  for (int L : prefills) {
    std::vector<int32_t> ids(L);
    for (int32_t& id : ids) id = static_cast<int32_t>(2 + rng() % (cfg.vocab_size - 2));
    std::array<double, 2> ms{};
    for (int run = 0; run < 2; ++run) {
      RETURN_IF_ERROR(engine->AcquireSlot(0, L + 1));
      const auto w0 = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(Prefill(*engine, 0, ids.data(), L, chunk));
      ms[run] =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count();
      engine->ReleaseSlot(0);
    }
    const Floor f = DecodeFloor(cfg, L, L / 2);
    double flops = 0;
    for (double x : f.flops) flops += x;
    const double floor_ms = flops / kFlopRate * 1e3;
    std::printf(
        "PREFILL mode=%s tokens=%d (chunks of %d): first %.2f ms, warm %.2f ms (first/warm %.2f), "
        "%.0f tokens/s; flops floor %.2f ms, x floor %.2f\n",
        mode.c_str(), L, chunk, ms[0], ms[1], ms[0] / ms[1], L * 1e3 / ms[1], floor_ms,
        ms[1] / floor_ms);
    std::fflush(stdout);
  }

  for (int B : batches) {
    for (int s = 0; s < B; ++s) {
      RETURN_IF_ERROR(engine->AcquireSlot(s, decode_tokens));
      RETURN_IF_ERROR(Prefill(*engine, s, prompt.data(), context, chunk));
    }
    std::vector<int32_t> ids(B);
    sampling::SamplingParams greedy;
    std::vector<double> step_ms, wall_ms, host_us;
    std::string step_mode;
    std::array<std::vector<double>, kKinds> kind_ms;
    int pos = context;
    auto decode_step = [&](bool timed, bool by_kind) -> absl::Status {
      for (int32_t& id : ids) id = static_cast<int32_t>(2 + rng() % (cfg.vocab_size - 2));
      StepPlan plan;
      plan.token_ids = ids.data();
      plan.num_tokens = B;
      for (int s = 0; s < B; ++s) {
        SeqChunk ch(s, pos, s, 1, true);
        ch.sampling = &greedy;
        plan.seqs.push_back(ch);
      }
      StepResult result;
      if (timer && by_kind) RETURN_IF_ERROR(timer->Enable(true));
      if (timer) RETURN_IF_ERROR(timer->Mark());
      const auto w0 = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(engine->StepAndSample(plan, &result));
      step_mode = engine->last_step_mode();
      const double wall =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count();
      double span = wall;
      if (timer) {
        ASSIGN_OR_RETURN(span, timer->SinceMark());
      }
      if (timer && by_kind) {
        ASSIGN_OR_RETURN(auto ms, timer->Collect());
        RETURN_IF_ERROR(timer->Enable(false));
        for (int k = 0; k < kKinds; ++k) kind_ms[k].push_back(ms[k]);
      }
      if (timed && !by_kind) {
        step_ms.push_back(span);
        wall_ms.push_back(wall);
        host_us.push_back(engine->last_host_us());
      }
      ++pos;
      return absl::OkStatus();
    };
    for (int i = 0; i < warmup; ++i) RETURN_IF_ERROR(decode_step(false, false));
    for (int i = 0; i < steps; ++i) RETURN_IF_ERROR(decode_step(true, false));
    if (timer && mode == "off") {
      for (int i = 0; i < steps; ++i) RETURN_IF_ERROR(decode_step(true, true));
    }
    // Pipelined (as the scheduler runs a device-sampling engine): each step
    // launched before the previous one's ids are collected, its tokens taken
    // on the device from those ids; next to the same steps collected one at
    // a time. Both sample at temperature 1 with a seed per sequence, so the
    // tokens (and the hash-routed experts they pick) spread as random ids do.
    double pipelined_ms = 0, serial_ms = 0;
    std::vector<double> fed_span_ms;
    if (engine->pipelines()) {
      std::vector<sampling::SamplingParams> spread(B);
      for (int s = 0; s < B; ++s) {
        spread[s].temperature = 1.0f;
        spread[s].seed = static_cast<uint64_t>(s) + 1;
      }
      std::fill(ids.begin(), ids.end(), 0);
      auto launch = [&](bool fed) -> absl::Status {
        StepPlan plan;
        plan.token_ids = ids.data();
        plan.num_tokens = B;
        for (int s = 0; s < B; ++s) {
          SeqChunk ch(s, pos, s, 1, true);
          ch.sampling = &spread[s];
          ch.sample_index = static_cast<uint64_t>(pos);
          ch.token_from_last_sample = fed;
          plan.seqs.push_back(ch);
        }
        ++pos;
        return engine->Launch(plan);
      };
      StepResult result;
      auto ms_since = [](std::chrono::steady_clock::time_point t0) {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
            .count();
      };
      // One at a time, each step's GPU span from events (the GPU is idle at
      // each Mark, so the span is the step's own work).
      auto w0 = std::chrono::steady_clock::now();
      for (int i = 0; i < steps; ++i) {
        if (timer) RETURN_IF_ERROR(timer->Mark());
        RETURN_IF_ERROR(launch(i > 0));
        RETURN_IF_ERROR(engine->Collect(&result));
        if (timer) {
          ASSIGN_OR_RETURN(const double span, timer->SinceMark());
          fed_span_ms.push_back(span);
        }
      }
      serial_ms = ms_since(w0) / steps;
      w0 = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(launch(false));
      for (int i = 1; i < steps; ++i) {
        RETURN_IF_ERROR(launch(true));
        RETURN_IF_ERROR(engine->Collect(&result));
      }
      RETURN_IF_ERROR(engine->Collect(&result));
      pipelined_ms = ms_since(w0) / steps;
    }
    for (int s = 0; s < B; ++s) engine->ReleaseSlot(s);

    const Floor f = DecodeFloor(cfg, B, context + warmup + steps);
    const double med = Median(step_ms);
    double floor_bytes = 0, floor_flops = 0;
    for (int k = 0; k < kKinds; ++k) {
      floor_bytes += f.bytes[k];
      floor_flops += f.flops[k];
    }
    const double floor_ms = std::max(floor_bytes / kBandwidth * 1e3, floor_flops / kFlopRate * 1e3);
    std::printf(
        "\nBENCH mode=%s batch=%d: decode step %.3f ms median (p10 %.3f, p90 %.3f; host wall %.3f "
        "ms, host %.1f us before the wait), %.0f tokens/s; floor %.3f ms (bytes) / %.3f ms "
        "(flops); x floor %.2f; ran as %s\n",
        mode.c_str(), B, med, Percentile(step_ms, 0.1), Percentile(step_ms, 0.9), Median(wall_ms),
        Median(host_us), B * 1e3 / med, floor_bytes / kBandwidth * 1e3,
        floor_flops / kFlopRate * 1e3, med / floor_ms, step_mode.c_str());
    if (pipelined_ms > 0) {
      std::printf(
          "PIPELINED mode=%s batch=%d: %.3f ms a step over %d steps launched back to back, "
          "%.0f tokens/s, x floor %.2f; the same steps one at a time: %.3f ms (sampled "
          "tokens fed on the device)\n",
          mode.c_str(), B, pipelined_ms, steps, B * 1e3 / pipelined_ms, pipelined_ms / floor_ms,
          serial_ms);
      if (!fed_span_ms.empty()) {
        // The GPU's idle time a step: the wall time a step takes minus the
        // GPU span of one (events), one at a time and pipelined.
        const double span = Median(fed_span_ms);
        std::printf(
            "GPU-IDLE mode=%s batch=%d: step span %.3f ms (events); idle %.1f us a step one at a "
            "time, %.1f us pipelined\n",
            mode.c_str(), B, span, (serial_ms - span) * 1e3, (pipelined_ms - span) * 1e3);
      }
    }
    std::printf("| %s | %d | %.3f | %.0f | %.3f | %.3f | %.2f |\n", mode.c_str(), B, med,
                B * 1e3 / med, Median(wall_ms), floor_ms, med / floor_ms);
    if (mode != "off" || !timer) {
      std::fflush(stdout);
      continue;
    }
    std::printf(
        "| batch | op kind | device ms/step | floor ms (bytes/4.3TB/s) | floor ms "
        "(flops/890TF) | x floor |\n");
    std::printf("|---|---|---|---|---|---|\n");
    double sum = 0;
    for (int k = 0; k < kKinds; ++k) {
      const double ms = Median(kind_ms[k]);
      sum += ms;
      const double fb = f.bytes[k] / kBandwidth * 1e3, ff = f.flops[k] / kFlopRate * 1e3;
      std::printf("| %d | %s | %.3f | %.4f | %.4f | %.1f |\n", B, kKindNames[k], ms, fb, ff,
                  ms / std::max(fb, ff));
    }
    std::printf("| %d | sum of ops | %.3f | %.4f | %.4f | %.1f |\n", B, sum,
                floor_bytes / kBandwidth * 1e3, floor_flops / kFlopRate * 1e3,
                sum / std::max(floor_bytes / kBandwidth * 1e3, floor_flops / kFlopRate * 1e3));
    std::printf("| %d | step (span, incl. gaps) | %.3f | | | %.1f |\n", B, med,
                med / std::max(floor_bytes / kBandwidth * 1e3, floor_flops / kFlopRate * 1e3));
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

// Several ranks: every batch prefills its sequences to `context` random
// tokens, then times `steps` greedy decode steps by the host's wall clock
// (no op timer or floors: the ranks' backends are not exposed).
absl::Status BenchRanks(const BenchArgs& args, const std::string& devices,
                        const std::string& layout, int layer_blocks) {
  const std::string& model_dir = args.model_dir;
  const std::vector<int>& batches = args.batches;
  const int context = args.context, steps = args.steps, warmup = args.warmup;
  const int max_batch = *std::max_element(batches.begin(), batches.end());
  EngineOptions options;
  options.model_dir = model_dir;
  options.devices = devices;
  options.layout = layout;
  options.layer_blocks = layer_blocks;
  options.random_weights = args.random;
  options.num_layers = args.layers;
  options.weight_format = args.format;
  options.w8a8_min_rows = args.w8a8_min_rows;
  options.num_slots = max_batch;
  options.context_limit = context + warmup + steps + 2;
  options.state_pool_tokens = int64_t{max_batch} * options.context_limit;
  options.max_step_tokens = std::max(std::min(context, 1024), max_batch);
  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Create(options));
  const int V = engine->info().vocab_size;
  std::printf(
      "bench-decode: %s on %s (%s), loaded in %.1f s; context %d, %d warm-up + %d timed "
      "steps per batch\n",
      model_dir.c_str(), engine->info().device.c_str(), engine->info().layout.c_str(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), context, warmup,
      steps);
  std::mt19937 rng(1234);
  auto random_id = [&] { return static_cast<int32_t>(2 + rng() % (V - 2)); };
  std::vector<int32_t> prompt(context);
  for (int32_t& id : prompt) id = random_id();
  const int chunk = options.max_step_tokens;
  for (int B : batches) {
    if (B > options.num_slots) return absl::InvalidArgumentError("batch exceeds the slots");
    for (int s = 0; s < B; ++s) {
      RETURN_IF_ERROR(engine->AcquireSlot(s, options.context_limit));
      RETURN_IF_ERROR(Prefill(*engine, s, prompt.data(), context, chunk));
    }
    std::vector<int32_t> ids(B);
    std::vector<double> wall_ms;
    for (int i = 0; i < warmup + steps; ++i) {
      for (int32_t& id : ids) id = random_id();
      StepPlan plan;
      plan.token_ids = ids.data();
      plan.num_tokens = B;
      for (int s = 0; s < B; ++s) plan.seqs.push_back(SeqChunk{s, context + i, s, 1, true});
      std::vector<float> logits;
      const auto w0 = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(engine->Step(plan, &logits));
      const double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - w0).count();
      if (i >= warmup) wall_ms.push_back(ms);
    }
    for (int s = 0; s < B; ++s) engine->ReleaseSlot(s);
    std::sort(wall_ms.begin(), wall_ms.end());
    const double median = wall_ms[wall_ms.size() / 2];
    std::printf(
        "DECODE devices=%s batch=%d: median %.3f ms/step (min %.3f, max %.3f), %.0f "
        "tokens/s\n",
        devices.c_str(), B, median, wall_ms.front(), wall_ms.back(), B * 1e3 / median);
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

int RunBenchDecode(int argc, char** argv) {
  BenchArgs args;
  std::string& model_dir = args.model_dir;
  std::string& device = args.device;
  std::vector<int>& batches = args.batches;
  int &context = args.context, &steps = args.steps, &warmup = args.warmup;
  std::vector<std::string>& modes = args.modes;
  std::vector<int>& prefills = args.prefills;
  std::string devices, layout = "ep";
  int layer_blocks = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--device" && has_value) {
      device = argv[++i];
    } else if (a == "--devices" && has_value) {
      devices = argv[++i];
    } else if (a == "--layout" && has_value) {
      layout = argv[++i];
    } else if (a == "--layer-blocks" && has_value) {
      if (!absl::SimpleAtoi(argv[++i], &layer_blocks))
        return Usage("bench-decode: bad --layer-blocks");
    } else if (a == "--batches" && has_value) {
      batches.clear();
      for (absl::string_view part : absl::StrSplit(argv[++i], ',')) {
        int b = 0;
        if (!absl::SimpleAtoi(part, &b) || b < 1) return Usage("bench-decode: bad --batches");
        batches.push_back(b);
      }
    } else if ((a == "--context" || a == "--steps" || a == "--warmup") && has_value) {
      int v = 0;
      if (!absl::SimpleAtoi(argv[++i], &v) || v < (a == "--warmup" ? 0 : 1))
        return Usage(("bench-decode: bad " + a).c_str());
      (a == "--context" ? context : a == "--steps" ? steps : warmup) = v;
    } else if (a == "--prefill" && has_value) {
      for (absl::string_view part : absl::StrSplit(argv[++i], ',')) {
        int L = 0;
        if (!absl::SimpleAtoi(part, &L) || L < 1) return Usage("bench-decode: bad --prefill");
        prefills.push_back(L);
      }
    } else if (a == "--graphs" && has_value) {
      modes = absl::StrSplit(argv[++i], ',');
      for (const std::string& m : modes) {
        if (m != "off" && m != "piecewise" && m != "full" && m != "auto")
          return Usage("bench-decode: --graphs takes a list of off, piecewise, full, auto");
      }
    } else if (a == "--random") {
      args.random = true;
    } else if (a == "--layers" && has_value) {
      if (!absl::SimpleAtoi(argv[++i], &args.layers) || args.layers < 1)
        return Usage("bench-decode: --layers takes a positive count");
    } else if (a == "--format" && has_value) {
      args.format = argv[++i];
    } else if (a == "--w8a8-min-rows" && has_value) {
      if (!absl::SimpleAtoi(argv[++i], &args.w8a8_min_rows) || args.w8a8_min_rows < 0)
        return Usage("bench-decode: --w8a8-min-rows takes a count >= 0 (0 = never)");
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: moegraph %s\n", kUsage);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      return Usage(("bench-decode: unknown or incomplete option " + a).c_str());
    } else if (model_dir.empty()) {
      model_dir = a;
    } else {
      return Usage(("bench-decode: unexpected argument " + a).c_str());
    }
  }
  if (model_dir.empty()) return Usage("bench-decode: MODEL_DIR is required");
  if (!args.random && (args.layers != 0 || !args.format.empty()))
    return Usage("bench-decode: --layers and --format need --random (no checkpoint)");
  if (!devices.empty()) {
    const absl::Status s = BenchRanks(args, devices, layout, layer_blocks);
    if (!s.ok()) {
      std::fprintf(stderr, "bench-decode: %s\n", s.ToString().c_str());
      return 1;
    }
    return 0;
  }
  for (const std::string& m : modes) {
    const absl::Status s = Bench(args, m);
    if (!s.ok()) {
      std::fprintf(stderr, "bench-decode: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace

MOEGRAPH_CLI_COMMAND(bench_decode, "bench-decode", kUsage,
                     "time decode steps per graph mode next to their floors", RunBenchDecode);

}  // namespace moegraph
