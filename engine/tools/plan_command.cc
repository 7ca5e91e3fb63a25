// `moegraph plan MODEL_DIR [--gpus N] ...`: the memory a layout needs per GPU,
// from config.json and the safetensors headers alone (engine/model/memory_plan.h).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/common/cli_registry.h"
#include "engine/model/memory_plan.h"

namespace moegraph {
namespace {

int RunPlan(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::printf(
          "usage: moegraph %s\n"
          "Prints the device memory per GPU a layout needs, from config.json and the\n"
          "safetensors headers only (no weights read, no GPU): weights by group (routed\n"
          "experts split evenly over --gpus, the rest replicated) or by block of layers,\n"
          "state per slot and per\n"
          "1K tokens, activations, graphs and workspace (estimates), and whether it fits.\n"
          "  --gpus N             GPUs (1..64, default 1)\n"
          "  --layout L           ep: experts split evenly over the GPUs, the rest\n"
          "                       replicated (default); layers: a block of layers a GPU;\n"
          "                       ep+layers: --layer-blocks B blocks, experts split within each\n"
          "  --layer-blocks B     with ep+layers: blocks of layers (2..64, dividing --gpus)\n"
          "  --slots S            sequence slots (1..4096, default 8)\n"
          "  --context C          tokens per sequence (default: max_position_embeddings)\n"
          "  --max-step-tokens T  tokens per step, sizes activations (default 512)\n"
          "  --pool-tokens P      compressed-state pool (default min(S*C, 262144))\n"
          "  --gpu-gb G           memory of one GPU in GB (default 141, an H200)\n"
          "Exit status: 0 fits, 3 does not fit, 2 bad flags, 1 bad directory or checkpoint.\n",
          kPlanUsage);
      return 0;
    }
    args.emplace_back(argv[i]);
  }
  auto options = ParsePlanArgs(args);
  if (!options.ok()) {
    std::fprintf(stderr, "%s\nusage: moegraph %s\n",
                 std::string(options.status().message()).c_str(), kPlanUsage);
    return 2;
  }
  auto plan = MakeMemoryPlan(*options);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", std::string(plan.status().message()).c_str());
    return 1;
  }
  std::fputs(FormatMemoryPlan(*plan).c_str(), stdout);
  return plan->fits() ? 0 : 3;
}

}  // namespace

MOEGRAPH_CLI_COMMAND(plan, "plan", kPlanUsage,
                     "memory per GPU of a layout, from the checkpoint's headers alone", RunPlan);

}  // namespace moegraph
