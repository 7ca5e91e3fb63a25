#include "engine/parallel/multi_rank_engine.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "engine/common/status_macros.h"
#include "engine/model/dsv4_engine.h"
#include "engine/parallel/expert_parallel_engine.h"
#include "engine/parallel/layer_parallel_engine.h"

namespace moegraph {

absl::StatusOr<std::vector<std::string>> ParseDevices(const std::string& devices) {
  std::vector<std::string> out;
  bool any_cuda = false;
  for (absl::string_view entry : absl::StrSplit(devices, ',')) {
    const std::string name(absl::StripAsciiWhitespace(entry));
    const size_t i = out.size();
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("devices: entry ", i, " of '", devices, "' is empty"));
    }
    int index = 0;
    auto is = [&](absl::string_view kind) {
      return name == kind || (absl::StartsWith(name, absl::StrCat(kind, ":")) &&
                              absl::SimpleAtoi(name.substr(kind.size() + 1), &index) && index >= 0);
    };
    const bool cuda = is("cuda");
    if (!cuda && !is("cpu")) {
      return absl::InvalidArgumentError(
          absl::StrCat("devices: entry ", i, " '", name, "' is not cpu, cpu:N, cuda or cuda:N"));
    }
    if (i > 0 && cuda != any_cuda) {
      return absl::InvalidArgumentError(
          absl::StrCat("devices: '", devices, "' mixes CPU and CUDA ranks; use one kind"));
    }
    any_cuda = cuda;
    // Several ranks may share a GPU (each its own stream and buffers), not a
    // CPU name (the CPU ranks are threads of one pool).
    if (!cuda && std::find(out.begin(), out.end(), name) != out.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("devices: '", name, "' appears more than once"));
    }
    out.push_back(cuda && name == "cuda" ? "cuda:0" : name);
  }
  return out;
}

bool CudaRanks(const std::vector<std::string>& devices) {
  return !devices.empty() && absl::StartsWith(devices[0], "cuda");
}

EngineOptions RankOptions(const EngineOptions& options, const std::string& device, bool captured) {
  EngineOptions ro = options;
  // cpu:N names a rank, not a device: every CPU rank is the CPU backend.
  ro.device = absl::StartsWith(device, "cpu") ? "cpu" : device;
  ro.devices.clear();
  // Only an exchange without host barriers can sit in a graph; no rank runs
  // ahead (docs/expert-parallel.md), and logits come back to the engine,
  // which merges them in plan order.
  if (!captured) ro.graphs = "off";
  ro.pipeline_steps = false;
  ro.device_sampling = false;
  return ro;
}

absl::StatusOr<std::string> ResolveTransport(const EngineOptions& options,
                                             const std::vector<std::string>& devices) {
  const std::string& t = options.transport;
  if (std::find(std::begin(kTransports), std::end(kTransports), t) == std::end(kTransports)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "transport: '", t, "' is not a transport; allowed: ", absl::StrJoin(kTransports, ", ")));
  }
  // The tested default; NCCL is asked for by name until a multi-GPU run.
  if (t != "nccl") return std::string("in-process");
  if (!CudaRanks(devices)) {
    return absl::InvalidArgumentError("transport: 'nccl' needs CUDA ranks (devices cuda:N,...)");
  }
  for (size_t i = 0; i < devices.size(); ++i) {
    if (std::find(devices.begin(), devices.begin() + i, devices[i]) != devices.begin() + i) {
      return absl::InvalidArgumentError(
          absl::StrCat("transport: 'nccl' needs one rank a GPU; devices names '", devices[i],
                       "' twice (ranks sharing a GPU take the in-process transport)"));
    }
  }
  if (options.layout == "layers") {
    return absl::InvalidArgumentError(
        "transport: 'nccl' is the expert exchange's; layout 'layers' has none");
  }
  return t;
}

std::string RanksName(const std::vector<std::string>& devices) {
  return absl::StrCat(devices.size(), " devices (in-process ", CudaRanks(devices) ? "CUDA" : "CPU",
                      " ranks)");
}

absl::Status CheckLayout(const std::string& layout) {
  if (std::find(std::begin(kLayouts), std::end(kLayouts), layout) != std::end(kLayouts)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "layout: '", layout, "' is not a layout; allowed: ", absl::StrJoin(kLayouts, ", ")));
}

absl::StatusOr<std::vector<std::string>> CheckRankOptions(const EngineOptions& options,
                                                          const char* layout) {
  ASSIGN_OR_RETURN(std::vector<std::string> devices, ParseDevices(options.devices));
  RETURN_IF_ERROR(CheckLayout(options.layout));
  if (options.layout != layout) {
    return absl::InvalidArgumentError(absl::StrCat("layout: '", options.layout, "' is not ", layout,
                                                   " (Engine::Create picks the engine)"));
  }
  if (options.max_step_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_step_tokens must be positive, got ", options.max_step_tokens));
  }
  if (options.layer_blocks != 0 && options.layout != "ep+layers") {
    return absl::InvalidArgumentError(absl::StrCat("layer_blocks: ", options.layer_blocks,
                                                   " applies to layout ep+layers only, not '",
                                                   options.layout, "'"));
  }
  RETURN_IF_ERROR(ResolveTransport(options, devices).status());
  if (options.exchange_timeout_ms <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("exchange_timeout_ms must be positive, got ", options.exchange_timeout_ms));
  }
  return devices;
}

absl::StatusOr<std::unique_ptr<Engine>> CreateMultiRankEngine(const EngineOptions& options) {
  ASSIGN_OR_RETURN(std::vector<std::string> devices, ParseDevices(options.devices));
  RETURN_IF_ERROR(CheckLayout(options.layout));
  if (devices.size() == 1 && !(options.transport == "nccl" && options.layout == "ep")) {
    EngineOptions one = options;
    one.device = absl::StartsWith(devices[0], "cpu") ? "cpu" : devices[0];
    one.devices.clear();
    ASSIGN_OR_RETURN(std::unique_ptr<Dsv4Engine> engine, Dsv4Engine::Create(one));
    return std::unique_ptr<Engine>(std::move(engine));
  }
  if (options.layout == "layers") {
    ASSIGN_OR_RETURN(std::unique_ptr<LayerParallelEngine> engine,
                     LayerParallelEngine::Create(options));
    return std::unique_ptr<Engine>(std::move(engine));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ExpertParallelEngine> engine,
                   ExpertParallelEngine::Create(options));
  return std::unique_ptr<Engine>(std::move(engine));
}

void MultiRankEngine::Init(const EngineOptions& options, const std::vector<std::string>& devices,
                           int blocks) {
  num_slots_ = options.num_slots;
  devices_ = devices;
  max_step_tokens_ = options.max_step_tokens;
  // A rank still busy long past every deadline it could meet is stuck: a
  // rank reaches an exchange at least once a layer, or waits for each
  // earlier block once, and fails at once when its transport has failed.
  step_timeout_ = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(options.exchange_timeout_ms) * (blocks + 3),
      std::chrono::seconds(10));
}

InProcessHandoffOptions MultiRankEngine::HandoffOptions(const EngineOptions& options,
                                                        const ModelConfig& config, int ranks,
                                                        bool device_meetings) {
  InProcessHandoffOptions ho;
  ho.num_ranks = ranks;
  ho.capacity = options.max_step_tokens;
  ho.streams = config.hc_mult;
  ho.hidden = config.hidden_size;
  ho.timeout = std::chrono::milliseconds(options.exchange_timeout_ms);
  ho.device_meetings = device_meetings;
  return ho;
}

std::string MultiRankEngine::BlockName(const std::string& devices, LayerRange layers,
                                       int num_layers) {
  return absl::StrCat(devices, " [", layers.first, ", ", layers.end, ")",
                      layers.first == 0 ? " + embedding" : "",
                      layers.end == num_layers ? " + head" : "");
}

StatePoolStats MultiRankEngine::ColumnPool(int first, int stride, int count) const {
  StatePoolStats total = ranks_[first]->state_pool();
  for (int i = 1; i < count; ++i) {
    const StatePoolStats s = ranks_[first + i * stride]->state_pool();
    if (s.capacity_tokens < total.capacity_tokens) {
      total.capacity_tokens = s.capacity_tokens;
      total.reserved_tokens = s.reserved_tokens;
      total.used_tokens = s.used_tokens;
    }
    total.capacity_pages += s.capacity_pages;
    total.reserved_pages += s.reserved_pages;
    total.used_pages += s.used_pages;
    total.max_sequence_tokens = std::min(total.max_sequence_tokens, s.max_sequence_tokens);
  }
  return total;
}

}  // namespace moegraph
