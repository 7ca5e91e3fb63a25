// The whole V4-Flash checkpoint, on paper: its complete tensor list (header
// only, tests/unit/v4_flash_checkpoint.h) mapped onto what Dsv4Model loads
// (dsv4_tensors.h) by CheckCheckpoint, byte totals checked against the config
// arithmetic done here, and corrupted entries reported by name.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "engine/model/checkpoint_check.h"
#include "engine/model/model_config.h"
#include "engine/weights/safetensors.h"
#include "tests/unit/v4_flash_checkpoint.h"

using namespace moegraph;
using namespace v4flash;

namespace {

ModelConfig FlashConfig() {
  auto config = ParseModelConfig(Config().dump());
  REQUIRE(config.ok());
  return *config;
}

CheckpointReport Check(const std::vector<Entry>& tensors) {
  Checkpoint ckpt(tensors);
  auto ws = WeightStore::OpenHeaders(ckpt.dir());
  REQUIRE(ws.ok());
  auto report = CheckCheckpoint(**ws, FlashConfig());
  REQUIRE(report.ok());
  return *report;
}

bool AnyContains(const std::vector<std::string>& v, const std::string& a, const std::string& b) {
  return std::any_of(v.begin(), v.end(), [&](const std::string& s) {
    return absl::StrContains(s, a) && absl::StrContains(s, b);
  });
}

}  // namespace

TEST_CASE("V4-Flash: every released tensor maps, byte totals match the config arithmetic",
          "[plan]") {
  const std::vector<Entry> tensors = Tensors();
  const CheckpointReport r = Check(tensors);
  const Expected x = Compute();
  INFO(r.ErrorSummary());
  REQUIRE(r.ok());
  CHECK(r.expected == x.specs);
  CHECK(r.expected == 34223);
  CHECK(r.found == r.expected);
  CHECK(r.stored_tensors == x.stored);
  CHECK(r.unused.empty());
  int64_t mtp = 0, mtp_bytes = 0;
  for (const Entry& e : tensors) {
    if (e.name.rfind("mtp.", 0) == 0) {
      ++mtp;
      mtp_bytes += Bytes(e);
    }
  }
  CHECK(r.mtp_tensors == mtp);
  CHECK(static_cast<int64_t>(r.mtp_bytes) == mtp_bytes);
  CHECK(r.stored_tensors + r.mtp_tensors == static_cast<int64_t>(tensors.size()));
  CHECK(r.matrix_formats == std::vector<std::string>{"BF16", "F32", "fp4", "fp8"});

  auto storage = [&](StorageKind k) { return static_cast<int64_t>(r.storage_bytes(k)); };
  CHECK(storage(StorageKind::kFp8) == x.fp8);
  CHECK(storage(StorageKind::kFp4) == x.fp4);
  CHECK(storage(StorageKind::kScale) == x.scales);
  CHECK(storage(StorageKind::kBf16) == x.bf16);
  CHECK(storage(StorageKind::kF32) == x.f32);
  CHECK(storage(StorageKind::kOther) == x.i32);
  auto group = [&](TensorGroup g) { return static_cast<int64_t>(r.group_bytes(g)); };
  CHECK(group(TensorGroup::kRoutedExperts) == x.routed);
  CHECK(group(TensorGroup::kSharedExperts) == x.shared);
  CHECK(group(TensorGroup::kAttention) == x.attention);
  CHECK(group(TensorGroup::kCompressor) == x.compressor);
  CHECK(group(TensorGroup::kRouter) == x.router);
  CHECK(group(TensorGroup::kEmbedHead) == 2 * V * D * 2);
  CHECK(group(TensorGroup::kSmall) == x.small);
  CHECK(static_cast<int64_t>(r.total_bytes()) == x.fp8 + x.fp4 + x.scales + x.bf16 + x.f32 + x.i32);

  // The public figures: routed experts ~147 GB as released (FP4 + E8M0
  // scales), ~554 GB were they bf16.
  CHECK(x.routed == 147'169'738'752);
  CHECK(LAYERS * E * 3 * F * D * 2 == 554'050'781'184);
  // One expert (w1 + w2 + w3 with scales): 12.75 MiB.
  CHECK(r.bytes_per_expert == 13'369'344);
  // On the device the FP4 experts stay as stored.
  CHECK(static_cast<int64_t>(r.device_bytes[static_cast<int>(TensorGroup::kRoutedExperts)]) ==
        x.routed);
}

TEST_CASE("V4-Flash headers: the data-reading store refuses them, the header-only one reads them",
          "[plan]") {
  std::vector<Entry> tensors = {{"embed.weight", "BF16", {V, D}}};
  Checkpoint ckpt(tensors, 1);
  auto full = WeightStore::Open(ckpt.dir());
  REQUIRE_FALSE(full.ok());
  CHECK(absl::StrContains(full.status().message(), "embed.weight"));
  CHECK(absl::StrContains(full.status().message(), "outside the data section"));
  auto headers = WeightStore::OpenHeaders(ckpt.dir());
  REQUIRE(headers.ok());
  CHECK_FALSE((*headers)->has_data());
  auto t = (*headers)->Get("embed.weight", {V, D}, {DType::kBF16});
  REQUIRE(t.ok());
  CHECK(t->data == nullptr);
  CHECK(t->bytes() == static_cast<size_t>(V * D * 2));

  // Header-only still validates everything but the data's presence: a span
  // that disagrees with dtype x shape is refused naming the tensor.
  std::vector<Entry> wrong = {{"head.weight", "BF16", {V, D}}};
  Checkpoint bad(wrong, 1);
  const std::string shard = bad.dir() + "/model-00001-of-00001.safetensors";
  {
    const std::string text =
        R"({"head.weight":{"dtype":"BF16","shape":[129280,4096],"data_offsets":[0,1000]}})";
    std::ofstream out(shard, std::ios::binary | std::ios::trunc);
    const uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    out << text;
  }
  auto refused = WeightStore::OpenHeaders(bad.dir());
  REQUIRE_FALSE(refused.ok());
  CHECK(absl::StrContains(refused.status().message(), "head.weight"));
  CHECK(absl::StrContains(refused.status().message(), "data_offsets span 1000 bytes"));
}

TEST_CASE("V4-Flash: a corrupted entry is reported naming that tensor", "[plan]") {
  const std::vector<Entry> good = Tensors();
  auto edit = [&](const std::string& name, auto&& change) {
    std::vector<Entry> t = good;
    auto it = std::find_if(t.begin(), t.end(), [&](const Entry& e) { return e.name == name; });
    REQUIRE(it != t.end());
    change(t, it);
    return Check(t);
  };
  SECTION("a missing FP8 scale") {
    auto r = edit("layers.5.attn.wq_b.scale", [](auto& t, auto it) { t.erase(it); });
    CHECK(r.malformed.size() == 1);
    CHECK(AnyContains(r.malformed, "layers.5.attn.wq_b.scale", "missing"));
    CHECK(r.found == r.expected - 1);
  }
  SECTION("a wrong FP4 scale shape") {
    auto r = edit("layers.7.ffn.experts.200.w2.scale", [](auto&, auto it) {
      it->shape = {D, F / 128};
    });
    REQUIRE(r.malformed.size() == 1);
    CHECK(
        AnyContains(r.malformed, "layers.7.ffn.experts.200.w2.scale", "expected shape [4096, 64]"));
  }
  SECTION("a wrong scale dtype") {
    auto r = edit("layers.0.attn.wq_a.scale", [](auto&, auto it) { it->dtype = "BF16"; });
    REQUIRE(r.malformed.size() == 1);
    CHECK(AnyContains(r.malformed, "layers.0.attn.wq_a.scale", "expected dtype F8_E8M0 or F32"));
  }
  SECTION("a weight in a dtype no matrix format has") {
    auto r =
        edit("layers.42.ffn.shared_experts.w2.weight", [](auto&, auto it) { it->dtype = "I32"; });
    REQUIRE(r.malformed.size() == 1);
    CHECK(AnyContains(r.malformed, "layers.42.ffn.shared_experts.w2.weight", "I32"));
  }
  SECTION("a missing tensor and an unexpected one") {
    auto r =
        edit("layers.10.attn.attn_sink", [](auto&, auto it) { it->name = "layers.10.attn.sink"; });
    CHECK(r.missing == std::vector<std::string>{"layers.10.attn.attn_sink"});
    CHECK(r.unused == std::vector<std::string>{"layers.10.attn.sink"});
    CHECK(absl::StrContains(r.ErrorSummary(), "layers.10.attn.attn_sink"));
  }
}
