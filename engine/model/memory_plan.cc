#include "engine/model/memory_plan.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/common/status_macros.h"
#include "engine/model/dsv4_model.h"
#include "engine/state/sequence_state.h"
#include "engine/weights/safetensors.h"

namespace moegraph {

const char kPlanUsage[] =
    "plan MODEL_DIR [--gpus N] [--layout ep|layers|ep+layers] [--layer-blocks B] [--slots S] "
    "[--context C] [--max-step-tokens T] [--pool-tokens P] [--gpu-gb G]";

namespace {

constexpr int64_t kAct = 2;  // bf16 activations and state on a GPU
constexpr int kPageSize = SequenceStateOptions{}.page_size;
constexpr double kGraphMiB = 4;        // per captured decode graph (estimate)
constexpr double kWorkspaceMiB = 256;  // cuBLASLt + attention/indexer scratch (estimate)

absl::Status FlagError(const std::string& flag, const std::string& allowed,
                       const std::string& got) {
  return absl::InvalidArgumentError(
      absl::StrCat("plan: ", flag, " must be ", allowed, ", got '", got, "'"));
}

// Decimal units (GB = 1e9 bytes, as GPU memory is quoted).
std::string Gb(double bytes) {
  if (bytes >= 1e9) return absl::StrFormat("%.2f GB", bytes / 1e9);
  if (bytes >= 1e6) return absl::StrFormat("%.2f MB", bytes / 1e6);
  if (bytes >= 1e3) return absl::StrFormat("%.2f kB", bytes / 1e3);
  return absl::StrFormat("%.0f B", bytes);
}

}  // namespace

absl::StatusOr<PlanOptions> ParsePlanArgs(const std::vector<std::string>& args) {
  PlanOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) {
      if (!o.model_dir.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("plan: one MODEL_DIR expected, got '", o.model_dir, "' and '", a, "'"));
      }
      o.model_dir = a;
      continue;
    }
    std::string flag = a, value;
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      flag = a.substr(0, eq);
      value = a.substr(eq + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("plan: ", flag, " needs a value"));
    }
    auto integer = [&](int64_t lo, int64_t hi,
                       const std::string& allowed) -> absl::StatusOr<int64_t> {
      int64_t v = 0;
      if (!absl::SimpleAtoi(value, &v) || v < lo || v > hi) return FlagError(flag, allowed, value);
      return v;
    };
    if (flag == "--gpus") {
      ASSIGN_OR_RETURN(int64_t v, integer(1, 64, "an integer in [1, 64]"));
      o.gpus = static_cast<int>(v);
    } else if (flag == "--layout") {
      if (std::find(std::begin(kLayouts), std::end(kLayouts), value) == std::end(kLayouts)) {
        return FlagError(flag, "one of ep, layers, ep+layers", value);
      }
      o.layout = value;
    } else if (flag == "--layer-blocks") {
      ASSIGN_OR_RETURN(int64_t v, integer(2, 64, "an integer in [2, 64]"));
      o.layer_blocks = static_cast<int>(v);
    } else if (flag == "--slots") {
      ASSIGN_OR_RETURN(int64_t v, integer(1, 4096, "an integer in [1, 4096]"));
      o.slots = static_cast<int>(v);
    } else if (flag == "--context") {
      ASSIGN_OR_RETURN(int64_t v, integer(1, 1 << 30, "an integer in [1, 2^30] (tokens)"));
      o.context = static_cast<int>(v);
    } else if (flag == "--max-step-tokens") {
      ASSIGN_OR_RETURN(int64_t v, integer(1, 1 << 20, "an integer in [1, 2^20]"));
      o.max_step_tokens = static_cast<int>(v);
    } else if (flag == "--pool-tokens") {
      ASSIGN_OR_RETURN(o.pool_tokens, integer(0, int64_t{1} << 40, "an integer >= 0 (0: default)"));
    } else if (flag == "--gpu-gb") {
      if (!absl::SimpleAtod(value, &o.gpu_gb) || !(o.gpu_gb > 0)) {
        return FlagError(flag, "a positive number of GB (1e9 bytes)", value);
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "plan: unknown flag ", flag,
          " (allowed: --gpus, --layout, --layer-blocks, --slots, --context, --max-step-tokens, "
          "--pool-tokens, --gpu-gb)"));
    }
  }
  if (o.model_dir.empty()) return absl::InvalidArgumentError("plan: MODEL_DIR is required");
  if (o.layout == "ep+layers") {
    if (o.layer_blocks == 0) return FlagError("--layer-blocks", "given with ep+layers", "");
    if (o.gpus % o.layer_blocks != 0) {
      return FlagError("--gpus", absl::StrCat("a multiple of --layer-blocks ", o.layer_blocks),
                       absl::StrCat(o.gpus));
    }
  } else if (o.layer_blocks != 0) {
    return FlagError("--layer-blocks", "given with --layout ep+layers only",
                     absl::StrCat(o.layer_blocks));
  }
  return o;
}

SlotState StatePerSlot(const ModelConfig& c) {
  SlotState s;
  const int64_t d = c.head_dim, ci = c.index_head_dim;
  int csa = 0, hca = 0;
  // SequenceState::Create: a window ring per layer, a compressor ring per
  // compressed layer, an indexer ring per CSA layer.
  for (AttnKind k : c.layer_types) {
    s.fixed_bytes += c.sliding_window * d * kAct;
    if (k == AttnKind::kHca) {
      ++hca;
      s.fixed_bytes += int64_t{c.hca_rate} * 2 * d * kAct;
    } else if (k == AttnKind::kCsa) {
      ++csa;
      s.fixed_bytes += 2 * int64_t{c.csa_rate} * 4 * d * kAct;
      s.fixed_bytes += 2 * int64_t{c.csa_rate} * 4 * ci * kAct;
    }
  }
  if (csa > 0) s.bytes_per_token += static_cast<double>(csa) * (d + ci) * kAct / c.csa_rate;
  if (hca > 0) s.bytes_per_token += static_cast<double>(hca) * d * kAct / c.hca_rate;
  return s;
}

absl::StatusOr<MemoryPlan> MakeMemoryPlan(const PlanOptions& o) {
  std::error_code ec;
  if (!std::filesystem::is_directory(o.model_dir, ec)) {
    return absl::NotFoundError(absl::StrCat("plan: ", o.model_dir, " is not a directory"));
  }
  MemoryPlan p;
  p.options = o;
  ASSIGN_OR_RETURN(p.config, LoadModelConfig(o.model_dir));
  const ModelConfig& c = p.config;
  ASSIGN_OR_RETURN(std::unique_ptr<WeightStore> ws, WeightStore::OpenHeaders(o.model_dir));
  ASSIGN_OR_RETURN(p.report, CheckCheckpoint(*ws, c));
  if (!p.report.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "plan: ", o.model_dir, " does not match its config.json: ", p.report.ErrorSummary()));
  }
  p.context = o.context > 0 ? o.context : c.max_position_embeddings;
  p.pool_tokens = o.pool_tokens > 0
                      ? o.pool_tokens
                      : std::min<int64_t>(int64_t{o.slots} * p.context, kDefaultPoolTokens);
  const int E = c.n_routed_experts;
  const int num_blocks = o.layout == "layers"      ? o.gpus
                         : o.layout == "ep+layers" ? o.layer_blocks
                                                   : 1;
  if (num_blocks > c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("plan: ", num_blocks,
                                                   " layer blocks on a model of ", c.num_layers,
                                                   " layers; allowed: 1 to ", c.num_layers));
  }
  p.slot = StatePerSlot(c);
  const PlanBlock* heaviest = nullptr;
  for (int b = 0; b < num_blocks; ++b) {
    PlanBlock blk;
    blk.layers = LayerBlock(c.num_layers, num_blocks, b);
    blk.gpus = o.gpus / num_blocks;
    blk.experts_per_gpu = (E + blk.gpus - 1) / blk.gpus;
    for (int l = blk.layers.first; l < blk.layers.end; ++l) {
      blk.weights += p.report.layer_device_bytes[l];
      if (E > 0) blk.weights += p.report.layer_expert_device_bytes[l] / E * blk.experts_per_gpu;
    }
    if (b == 0) blk.weights += p.report.embed_device_bytes;
    if (b == num_blocks - 1) blk.weights += p.report.head_device_bytes;
    SequenceStateOptions so;  // as Dsv4Engine sets them on a GPU (bucketed steps: a scratch slot)
    so.num_slots = o.slots;
    so.context_limit = p.context;
    so.pool_tokens = p.pool_tokens;
    so.page_size = kPageSize;
    so.scratch_tokens = o.max_step_tokens;
    so.first_layer = blk.layers.first;
    so.end_layer = blk.layers.end;
    ASSIGN_OR_RETURN(blk.state, SequenceState::DeviceBytes(c, so, DType::kBF16));
    p.blocks.push_back(blk);
  }
  for (const PlanBlock& blk : p.blocks) {
    if (heaviest == nullptr || blk.weights + blk.state > heaviest->weights + heaviest->state)
      heaviest = &blk;
  }
  p.experts_per_gpu = heaviest->experts_per_gpu;
  p.weights = heaviest->weights;
  p.state = heaviest->state;
  for (int g = 0; g < kNumTensorGroups; ++g) {
    uint64_t b = p.report.device_bytes[g];
    if (static_cast<TensorGroup>(g) == TensorGroup::kRoutedExperts && E > 0) {
      b = b / E * p.experts_per_gpu;
    }
    p.weights_by_group[g] = b;
  }
  const int rows = std::min(o.slots, o.max_step_tokens);
  p.activations = Dsv4Model::DeviceBufferBytes(c, o.max_step_tokens, rows, DType::kBF16);
  for (int b = 1; b < rows; b *= 2) ++p.graph_count;
  ++p.graph_count;  // the buckets 1, 2, 4, .. up to `rows`
  p.graphs = static_cast<uint64_t>(p.graph_count * kGraphMiB * (1 << 20));
  p.workspace = static_cast<uint64_t>(kWorkspaceMiB * (1 << 20));
  return p;
}

std::string FormatMemoryPlan(const MemoryPlan& p) {
  const ModelConfig& c = p.config;
  const CheckpointReport& r = p.report;
  std::string s = absl::StrFormat(
      "%s: %d layers, %d routed experts (%d per GPU on %d GPU%s), hidden %d, vocab %d\n"
      "checkpoint: %d of %d expected tensors (%d stored tensors incl. scales), formats %s; "
      "%d mtp.* tensors (%s, not loaded), %d other unused\n",
      p.options.model_dir, c.num_layers, c.n_routed_experts, p.experts_per_gpu, p.options.gpus,
      p.options.gpus == 1 ? "" : "s", c.hidden_size, c.vocab_size, r.found, r.expected,
      r.stored_tensors, absl::StrJoin(r.matrix_formats, "+"), r.mtp_tensors, Gb(r.mtp_bytes),
      r.unused.size());
  absl::StrAppend(&s, "\nweights as stored (whole checkpoint):\n");
  for (int k = 0; k < kNumStorageKinds; ++k) {
    const uint64_t b = r.storage_bytes(static_cast<StorageKind>(k));
    if (b > 0) {
      absl::StrAppend(&s, absl::StrFormat("  %-20s %12s\n",
                                          StorageKindName(static_cast<StorageKind>(k)), Gb(b)));
    }
  }
  absl::StrAppend(&s, absl::StrFormat("  %-20s %12s\n", "total", Gb(r.total_bytes())));
  if (p.blocks.size() > 1) {
    const int per = p.blocks.front().gpus;
    absl::StrAppend(&s, absl::StrFormat("\nlayout %s: %d blocks of layers, %d GPU%s each%s "
                                        "(per GPU, device bytes):\n",
                                        p.options.layout, p.blocks.size(), per, per == 1 ? "" : "s",
                                        per > 1 ? ", experts split within a block" : ""));
    for (size_t b = 0; b < p.blocks.size(); ++b) {
      const PlanBlock& blk = p.blocks[b];
      absl::StrAppend(
          &s, absl::StrFormat("  block %d (GPU %d..%d): layers %d..%d%s%s, %d experts per GPU: "
                              "weights %s, state %s\n",
                              b, b * per, (b + 1) * per - 1, blk.layers.first, blk.layers.end - 1,
                              b == 0 ? ", embedding" : "", b + 1 == p.blocks.size() ? ", head" : "",
                              blk.experts_per_gpu, Gb(blk.weights), Gb(blk.state)));
    }
    absl::StrAppend(&s, "the GPUs of the heaviest block:\n");
  } else {
    absl::StrAppend(&s,
                    "\nper GPU (device bytes: dense matrices bf16, vectors f32, FP8 with f32 "
                    "block scales, FP4 as stored):\n");
    for (int g = 0; g < kNumTensorGroups; ++g) {
      std::string kinds;
      for (int k = 0; k < kNumStorageKinds; ++k) {
        if (r.bytes[g][k] == 0) continue;
        absl::StrAppend(&kinds, kinds.empty() ? "" : ", ",
                        StorageKindName(static_cast<StorageKind>(k)));
      }
      absl::StrAppend(&s, absl::StrFormat("  %-20s %12s   (%s%s)\n",
                                          TensorGroupName(static_cast<TensorGroup>(g)),
                                          Gb(p.weights_by_group[g]), kinds,
                                          static_cast<TensorGroup>(g) == TensorGroup::kRoutedExperts
                                              ? "; split over the GPUs"
                                              : "; replicated"));
    }
  }
  absl::StrAppend(&s, absl::StrFormat("  %-20s %12s\n", "weights", Gb(p.weights)));
  absl::StrAppend(
      &s,
      absl::StrFormat(
          "\nstate (bf16): %s per slot (window + compressor rings, all layers) + %s per 1K "
          "tokens of context (compressed entries, CSA + HCA + indexer)\n"
          "  %d slots + 1 scratch, context %d, entry pool %d tokens (pages of %d entries): %s\n",
          Gb(p.slot.fixed_bytes), Gb(p.slot.bytes_per_token * 1024), p.options.slots, p.context,
          p.pool_tokens, kPageSize, Gb(p.state)));
  absl::StrAppend(
      &s, absl::StrFormat("activations + staging (max_step_tokens %d, %d logits rows): %s\n",
                          p.options.max_step_tokens,
                          std::min(p.options.slots, p.options.max_step_tokens), Gb(p.activations)));
  absl::StrAppend(&s, absl::StrFormat("graphs (estimate: %d decode buckets x %.0f MiB): %s\n",
                                      p.graph_count, kGraphMiB, Gb(p.graphs)));
  absl::StrAppend(
      &s, absl::StrFormat("workspace (estimate: %.0f MiB for cuBLASLt and attention/indexer "
                          "scratch; the engine sizes it at load): %s\n",
                          kWorkspaceMiB, Gb(p.workspace)));
  absl::StrAppend(&s, absl::StrFormat("total per GPU: %s of %.0f GB: %s\n", Gb(p.total()),
                                      p.options.gpu_gb, p.fits() ? "fits" : "does not fit"));
  return s;
}

}  // namespace moegraph
