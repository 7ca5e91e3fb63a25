// `moegraph plan`: flags, errors, and the figures it computes for the tiny
// FP4 fixture and the complete V4-Flash headers (v4_flash_checkpoint.h), each
// checked against arithmetic done here.
#include <catch2/catch.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "engine/model/memory_plan.h"
#include "tests/unit/v4_flash_checkpoint.h"

using namespace moegraph;

namespace {

std::string Fixture(const std::string& name) {
  return std::string(MOEGRAPH_SOURCE_DIR) + "/tests/fixtures/" + name;
}

MemoryPlan Plan(std::vector<std::string> args) {
  auto o = ParsePlanArgs(args);
  REQUIRE(o.ok());
  auto p = MakeMemoryPlan(*o);
  INFO(p.status().ToString());
  REQUIRE(p.ok());
  return *p;
}

// The first line of `text` that starts with `prefix`.
std::string LineOf(const std::string& text, const std::string& prefix) {
  const size_t at = text.find("\n" + prefix);
  if (at == std::string::npos) return "";
  return text.substr(at + 1, text.find('\n', at + 1) - at - 1);
}

}  // namespace

TEST_CASE("plan: flags and their errors name the flag and the allowed values", "[plan]") {
  auto o = ParsePlanArgs({"DIR", "--gpus", "4", "--slots=16", "--context", "8192"});
  REQUIRE(o.ok());
  CHECK(o->model_dir == "DIR");
  CHECK(o->gpus == 4);
  CHECK(o->slots == 16);
  CHECK(o->context == 8192);
  CHECK(o->max_step_tokens == 512);
  CHECK(o->gpu_gb == 141.0);
  auto bad = ParsePlanArgs({"DIR", "--gpus", "0"});
  REQUIRE_FALSE(bad.ok());
  CHECK(absl::StrContains(bad.status().message(), "--gpus must be an integer in [1, 64], got '0'"));
  bad = ParsePlanArgs({"DIR", "--slots", "x"});
  CHECK(absl::StrContains(bad.status().message(), "--slots must be an integer in [1, 4096]"));
  bad = ParsePlanArgs({"DIR", "--gpu", "2"});
  CHECK(absl::StrContains(bad.status().message(), "unknown flag --gpu (allowed: --gpus"));
  bad = ParsePlanArgs({"DIR", "--context"});
  CHECK(absl::StrContains(bad.status().message(), "--context needs a value"));
  bad = ParsePlanArgs({"--gpus", "2"});
  CHECK(absl::StrContains(bad.status().message(), "MODEL_DIR is required"));
  bad = ParsePlanArgs({"A", "B"});
  CHECK(absl::StrContains(bad.status().message(), "one MODEL_DIR expected"));

  auto missing = MakeMemoryPlan(*ParsePlanArgs({Fixture("no-such-dir")}));
  REQUIRE_FALSE(missing.ok());
  CHECK(absl::StrContains(missing.status().message(), "no-such-dir is not a directory"));
  // A directory with a config but no safetensors.
  auto empty = MakeMemoryPlan(*ParsePlanArgs({Fixture("configs")}));
  REQUIRE_FALSE(empty.ok());
}

TEST_CASE("plan: the tiny FP4 fixture, from its headers", "[plan]") {
  const MemoryPlan p = Plan({Fixture("dsv4-tiny-fp4"), "--gpus", "2", "--context", "256"});
  const CheckpointReport& r = p.report;
  CHECK(r.ok());
  CHECK(r.unused.empty());
  CHECK(r.found == r.expected);
  // 5 layers x 8 experts x (w1, w3: [32, 64] -> 32x32 bytes + 32x2 scales; w2: [64, 32] ->
  // 64x16 + 64x1).
  CHECK(r.group_bytes(TensorGroup::kRoutedExperts) == 5 * 8 * (2 * (1024 + 64) + 1024 + 64));
  CHECK(r.storage_bytes(StorageKind::kFp4) == 5 * 8 * 3 * 1024);
  CHECK(p.experts_per_gpu == 4);
  CHECK(p.weights_by_group[static_cast<int>(TensorGroup::kRoutedExperts)] == 5 * 4 * 3264);
  CHECK(p.context == 256);
  // Rings per slot (d 32, index 16, W 8, m 4, M 16; 2 HCA, 2 CSA, 1 sliding), bf16:
  // windows 5x8x32, HCA 2x16x64, CSA 2x(8x128 + 8x64).
  CHECK(p.slot.fixed_bytes == 2 * (5 * 8 * 32 + 2 * 16 * 64 + 2 * (8 * 128 + 8 * 64)));
  // Entries per token: CSA 2x(32 + 16)/4, HCA 2x32/16, bf16.
  CHECK(p.slot.bytes_per_token == 2 * (2 * 48 / 4.0 + 2 * 32 / 16.0));
  CHECK(p.fits());
  const std::string text = FormatMemoryPlan(p);
  CHECK(absl::StrContains(text, "8 routed experts (4 per GPU on 2 GPUs)"));
  CHECK(absl::StrContains(text, "formats "));
  CHECK(absl::StrContains(text, "fits"));

  // The bf16 fixture plans too (every matrix dense).
  const MemoryPlan b = Plan({Fixture("dsv4-tiny")});
  CHECK(b.report.ok());
  CHECK(b.report.storage_bytes(StorageKind::kFp4) == 0);
  CHECK(b.report.storage_bytes(StorageKind::kScale) == 0);
}

TEST_CASE("plan: V4-Flash as released, on 1, 2 and 4 GPUs", "[plan]") {
  using namespace v4flash;
  const std::vector<Entry> tensors = Tensors();
  Checkpoint ckpt(tensors);
  const Expected x = Compute();
  // On the device: FP8 block scales as f32 (4 bytes), the f32 compressor
  // matrices in bf16, everything else as stored; FP4 experts as stored.
  const int64_t fp8_scales = x.scales - x.fp4_scales;
  const int64_t replicated =
      x.fp8 + 4 * fp8_scales + x.bf16 + x.compressor / 2 + (x.f32 - x.compressor) + x.i32;
  for (int gpus : {1, 2, 4}) {
    const MemoryPlan p = Plan({ckpt.dir(), "--gpus", std::to_string(gpus), "--context", "65536"});
    INFO(FormatMemoryPlan(p));
    CHECK(p.experts_per_gpu == 256 / gpus);
    CHECK(p.weights_by_group[static_cast<int>(TensorGroup::kRoutedExperts)] ==
          static_cast<uint64_t>(x.routed / gpus));
    CHECK(static_cast<int64_t>(p.weights) == replicated + x.routed / gpus);
    // 43 window rings (128 x 512), 20 HCA rings (128 x 1024), 21 CSA rings
    // (8 x 2048 and the indexer's 8 x 512), bf16.
    CHECK(p.slot.fixed_bytes == 11'739'136);
    // Compressed entries: 21 CSA x (512 + 128) / 4 + 20 HCA x 512 / 128, bf16.
    CHECK(p.slot.bytes_per_token == 6880);
    // 8 slots x 65536 tokens, pool 262144 tokens: 9 x rings + pages
    // (CSA 1035, HCA 42, indexer 1035) + page tables.
    CHECK(p.pool_tokens == 262144);
    CHECK(p.state == 9ull * 11'739'136 + 1035ull * 64 * 21 * 512 * 2 + 42ull * 64 * 20 * 512 * 2 +
                         1035ull * 64 * 21 * 128 * 2 + (256 + 8 + 256) * 9 * 4);
    CHECK(p.fits() == (gpus > 1));
    const std::string text = FormatMemoryPlan(p);
    CHECK(absl::StrContains(text, gpus == 1 ? "does not fit" : ": fits"));
    const char* routed = gpus == 1 ? "147.17 GB" : gpus == 2 ? "73.58 GB" : "36.79 GB";
    CHECK(absl::StrContains(LineOf(text, "  routed experts "), routed));
    CHECK(absl::StrContains(text, "mtp.* tensors"));
  }
  // Everything but the routed experts, on each GPU: 10.28 GB (10.89 GB as stored).
  CHECK(replicated == 10'281'104'220);
}

TEST_CASE("plan: V4-Flash by blocks of layers (layers, ep+layers)", "[plan]") {
  using namespace v4flash;
  const std::vector<Entry> tensors = Tensors();
  Checkpoint ckpt(tensors);
  const MemoryPlan one = Plan({ckpt.dir(), "--context", "65536"});
  REQUIRE(one.blocks.size() == 1);
  const MemoryPlan two =
      Plan({ckpt.dir(), "--gpus", "2", "--layout", "layers", "--context", "65536"});
  INFO(FormatMemoryPlan(two));
  REQUIRE(two.blocks.size() == 2);
  CHECK(two.blocks[0].layers == LayerRange{0, 21});
  CHECK(two.blocks[1].layers == LayerRange{21, 43});
  CHECK(two.blocks[0].experts_per_gpu == 256);  // a block holds its layers' experts whole
  // Every byte of the one-GPU plan lives on exactly one of the two GPUs.
  CHECK(two.blocks[0].weights + two.blocks[1].weights == one.weights);
  CHECK(two.blocks[1].weights > two.blocks[0].weights);  // 22 layers and the head
  CHECK(two.weights == two.blocks[1].weights);
  // State by layer too; each block keeps its own page table per entry kind.
  const uint64_t tables = (256 + 8 + 256) * 9 * 4;
  CHECK(two.blocks[0].state + two.blocks[1].state >= one.state);
  CHECK(two.blocks[0].state + two.blocks[1].state <= one.state + tables);
  CHECK(two.fits());
  const std::string text = FormatMemoryPlan(two);
  CHECK(absl::StrContains(text, "layout layers: 2 blocks of layers, 1 GPU each"));
  CHECK(absl::StrContains(text, "block 0 (GPU 0..0): layers 0..20, embedding, 256 experts"));
  CHECK(absl::StrContains(text, "block 1 (GPU 1..1): layers 21..42, head, 256 experts"));
  // 43 layers over 4 GPUs: 10, 11, 11, 11.
  const MemoryPlan four = Plan({ckpt.dir(), "--gpus", "4", "--layout", "layers"});
  CHECK(four.blocks[0].layers.count() == 10);
  CHECK(four.blocks[3].layers == LayerRange{32, 43});
  // ep+layers: 2 blocks of 2 GPUs, experts halved within each block.
  const MemoryPlan grid = Plan({ckpt.dir(), "--gpus", "4", "--layout", "ep+layers",
                                "--layer-blocks", "2", "--context", "65536"});
  REQUIRE(grid.blocks.size() == 2);
  CHECK(grid.blocks[0].gpus == 2);
  CHECK(grid.blocks[0].experts_per_gpu == 128);
  CHECK(grid.blocks[0].layers == two.blocks[0].layers);
  CHECK(grid.blocks[0].weights < two.blocks[0].weights);
  CHECK(grid.blocks[0].state == two.blocks[0].state);
  CHECK(absl::StrContains(FormatMemoryPlan(grid), "2 GPUs each, experts split within a block"));
}

TEST_CASE("plan: layout flags are checked against each other and the model", "[plan]") {
  auto bad = ParsePlanArgs({"DIR", "--layer-blocks", "2"});
  CHECK(absl::StrContains(bad.status().message(),
                          "--layer-blocks must be given with --layout "
                          "ep+layers only"));
  bad = ParsePlanArgs({"DIR", "--layout", "ep+layers", "--gpus", "4"});
  CHECK(absl::StrContains(bad.status().message(), "--layer-blocks must be given with ep+layers"));
  bad = ParsePlanArgs({"DIR", "--layout", "ep+layers", "--gpus", "3", "--layer-blocks", "2"});
  CHECK(absl::StrContains(bad.status().message(),
                          "--gpus must be a multiple of --layer-blocks 2, got '3'"));
  bad = ParsePlanArgs({"DIR", "--layout", "rings"});
  CHECK(absl::StrContains(bad.status().message(), "one of ep, layers, ep+layers"));
  auto o = ParsePlanArgs({Fixture("dsv4-tiny-fp4"), "--gpus", "64", "--layout", "layers"});
  REQUIRE(o.ok());
  auto p = MakeMemoryPlan(*o);
  CHECK(p.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(absl::StrContains(p.status().message(), "64 layer blocks on a model of"));
}

TEST_CASE("plan: a corrupted V4-Flash header is refused naming the tensor", "[plan]") {
  using namespace v4flash;
  std::vector<Entry> tensors = Tensors();
  for (Entry& e : tensors) {
    if (e.name == "layers.30.ffn.experts.3.w1.scale") e.dtype = "F32";
  }
  Checkpoint ckpt(tensors);
  auto o = ParsePlanArgs({ckpt.dir()});
  REQUIRE(o.ok());
  auto p = MakeMemoryPlan(*o);
  REQUIRE_FALSE(p.ok());
  CHECK(absl::StrContains(p.status().message(), "layers.30.ffn.experts.3.w1.scale"));
  CHECK(absl::StrContains(p.status().message(), "does not match its config.json"));
}

TEST_CASE("plan: the moegraph binary runs it", "[plan]") {
  const std::string bin = std::string(MOEGRAPH_BINARY_DIR) + "/moegraph";
  if (!std::filesystem::exists(bin)) {
    WARN("moegraph binary not built; skipped");
    return;
  }
  auto run = [&](const std::string& args, int* rc) {
    std::string out;
    FILE* f = popen((bin + " " + args + " 2>&1").c_str(), "r");
    REQUIRE(f != nullptr);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    *rc = WEXITSTATUS(pclose(f));
    return out;
  };
  int rc = 0;
  std::string out = run("plan --help", &rc);
  CHECK(rc == 0);
  CHECK(absl::StrContains(out, "--gpus N"));
  out = run("plan " + Fixture("dsv4-tiny-fp4") + " --gpus 2", &rc);
  CHECK(rc == 0);
  CHECK(absl::StrContains(out, "total per GPU"));
  out = run("plan " + Fixture("dsv4-tiny-fp4") + " --gpus 0", &rc);
  CHECK(rc == 2);
  CHECK(absl::StrContains(out, "--gpus must be an integer in [1, 64]"));
}
