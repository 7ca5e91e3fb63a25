// The complete DeepSeek-V4-Flash tensor list as the release lays it out
// (flat names, official dtypes and shapes, one MTP layer), written as
// header-only safetensors shards plus model.safetensors.index.json: data
// offsets are consecutive but no data follows (for WeightStore::OpenHeaders).
// Written from the published config by hand, independently of
// engine/model/dsv4_tensors.cc.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/unit/temp_dir.h"

namespace v4flash {

namespace fs = std::filesystem;
using json = nlohmann::json;

// The published V4-Flash numbers (tests/fixtures/configs/v4-flash-base.config.json).
constexpr int64_t D = 4096, H = 64, d = 512, QL = 1024, G = 8, OL = 1024, E = 256, F = 2048;
constexpr int64_t V = 129280, NI = 64, CI = 128, N = 4, MIX = (2 + N) * N, TOPK = 6;
constexpr int64_t W = 128, CSA_RATE = 4, HCA_RATE = 128, LAYERS = 43, HASH_LAYERS = 3;

// compress_ratios: 0, 0, then 4/128 alternating up to layer 42 (4): 2 sliding,
// 21 CSA, 20 HCA layers; its 44th entry (0) is the MTP layer's.
inline int64_t Ratio(int64_t layer) {
  if (layer < 2) return 0;
  return layer % 2 == 0 ? CSA_RATE : HCA_RATE;
}

struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
};

inline int64_t DtypeBytes(const std::string& t) {
  if (t == "F32" || t == "I32") return 4;
  if (t == "BF16" || t == "F16") return 2;
  return 1;  // F8_E4M3, F8_E8M0, I8
}

inline int64_t Bytes(const Entry& e) {
  int64_t n = DtypeBytes(e.dtype);
  for (int64_t s : e.shape) n *= s;
  return n;
}

inline int64_t Ceil(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline void Fp8(std::vector<Entry>* out, const std::string& base, int64_t rows, int64_t cols) {
  out->push_back({base + ".weight", "F8_E4M3", {rows, cols}});
  out->push_back({base + ".scale", "F8_E8M0", {Ceil(rows, 128), Ceil(cols, 128)}});
}

inline void Fp4(std::vector<Entry>* out, const std::string& base, int64_t rows, int64_t cols) {
  out->push_back({base + ".weight", "I8", {rows, cols / 2}});
  out->push_back({base + ".scale", "F8_E8M0", {rows, cols / 32}});
}

// One transformer block under `p` ("layers.7." or "mtp.0.").
inline void Block(std::vector<Entry>* out, const std::string& p, int64_t ratio, bool hash) {
  auto add = [&](const std::string& name, const std::string& dtype, std::vector<int64_t> shape) {
    out->push_back({p + name, dtype, std::move(shape)});
  };
  add("attn_norm.weight", "F32", {D});
  add("ffn_norm.weight", "F32", {D});
  for (const std::string site : {"attn", "ffn"}) {
    add("hc_" + site + "_fn", "F32", {MIX, N * D});
    add("hc_" + site + "_base", "F32", {MIX});
    add("hc_" + site + "_scale", "F32", {3});
  }
  Fp8(out, p + "attn.wq_a", QL, D);
  add("attn.q_norm.weight", "F32", {QL});
  Fp8(out, p + "attn.wq_b", H * d, QL);
  Fp8(out, p + "attn.wkv", d, D);
  add("attn.kv_norm.weight", "F32", {d});
  add("attn.wo_a.weight", "BF16", {G * OL, H * d / G});
  Fp8(out, p + "attn.wo_b", D, G * OL);
  add("attn.attn_sink", "F32", {H});
  if (ratio != 0) {
    const int64_t cw = ratio == CSA_RATE ? 2 * d : d;
    add("attn.compressor.wkv.weight", "F32", {cw, D});
    add("attn.compressor.wgate.weight", "F32", {cw, D});
    add("attn.compressor.ape", "F32", {ratio, cw});
    add("attn.compressor.norm.weight", "F32", {d});
  }
  if (ratio == CSA_RATE) {
    add("attn.indexer.compressor.wkv.weight", "F32", {2 * CI, D});
    add("attn.indexer.compressor.wgate.weight", "F32", {2 * CI, D});
    add("attn.indexer.compressor.ape", "F32", {CSA_RATE, 2 * CI});
    add("attn.indexer.compressor.norm.weight", "F32", {CI});
    Fp8(out, p + "attn.indexer.wq_b", NI * CI, QL);
    add("attn.indexer.weights_proj.weight", "BF16", {NI, D});
  }
  add("ffn.gate.weight", "BF16", {E, D});
  if (hash) {
    add("ffn.gate.tid2eid", "I32", {V, TOPK});
  } else {
    add("ffn.gate.bias", "F32", {E});
  }
  for (int64_t e = 0; e < E; ++e) {
    const std::string x = p + "ffn.experts." + std::to_string(e) + ".";
    Fp4(out, x + "w1", F, D);
    Fp4(out, x + "w2", D, F);
    Fp4(out, x + "w3", F, D);
  }
  Fp8(out, p + "ffn.shared_experts.w1", F, D);
  Fp8(out, p + "ffn.shared_experts.w2", D, F);
  Fp8(out, p + "ffn.shared_experts.w3", F, D);
}

// The MTP layer's own tensors (as the official code names them: e_proj/h_proj
// with their norms, then a sliding block and its own head collapse); a
// representative set, not checked against the release byte for byte.
inline void Mtp(std::vector<Entry>* out) {
  out->push_back({"mtp.0.enorm.weight", "F32", {D}});
  out->push_back({"mtp.0.hnorm.weight", "F32", {D}});
  Fp8(out, "mtp.0.e_proj", D, D);
  Fp8(out, "mtp.0.h_proj", D, D);
  out->push_back({"mtp.0.norm.weight", "F32", {D}});
  out->push_back({"mtp.0.hc_head_fn", "F32", {N, N * D}});
  out->push_back({"mtp.0.hc_head_base", "F32", {N}});
  out->push_back({"mtp.0.hc_head_scale", "F32", {1}});
  Block(out, "mtp.0.", 0, false);
}

inline std::vector<Entry> Tensors() {
  std::vector<Entry> out;
  out.push_back({"embed.weight", "BF16", {V, D}});
  out.push_back({"head.weight", "BF16", {V, D}});
  out.push_back({"norm.weight", "F32", {D}});
  out.push_back({"hc_head_fn", "F32", {N, N * D}});
  out.push_back({"hc_head_base", "F32", {N}});
  out.push_back({"hc_head_scale", "F32", {1}});
  for (int64_t l = 0; l < LAYERS; ++l) {
    Block(&out, "layers." + std::to_string(l) + ".", Ratio(l), l < HASH_LAYERS);
  }
  Mtp(&out);
  return out;
}

inline void WriteHeader(const std::string& path, const std::vector<const Entry*>& entries) {
  json h = json::object();
  int64_t at = 0;
  for (const Entry* e : entries) {
    const int64_t b = Bytes(*e);
    h[e->name] = {{"dtype", e->dtype}, {"shape", e->shape}, {"data_offsets", {at, at + b}}};
    at += b;
  }
  const std::string text = h.dump();
  std::ofstream out(path, std::ios::binary);
  REQUIRE(out);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}

// The published config with the release's quantization_config and expert_dtype.
inline json Config() {
  std::ifstream in(std::string(MOEGRAPH_SOURCE_DIR) +
                   "/tests/fixtures/configs/v4-flash-base.config.json");
  REQUIRE(in);
  json c = json::parse(in);
  c["quantization_config"] = {{"activation_scheme", "dynamic"},
                              {"fmt", "e4m3"},
                              {"quant_method", "fp8"},
                              {"scale_fmt", "ue8m0"},
                              {"weight_block_size", {128, 128}}};
  c["expert_dtype"] = "fp4";
  return c;
}

// A temp directory holding config.json, `shards` header-only shards and the index.
class Checkpoint {
 public:
  explicit Checkpoint(const std::vector<Entry>& tensors, int shards = 4) {
    const fs::path& dir_ = tmp_.fs_path();
    std::ofstream(dir_ / "config.json") << Config().dump(1);
    json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", json::object()}};
    std::vector<std::vector<const Entry*>> parts(shards);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const size_t s = i * shards / tensors.size();
      parts[s].push_back(&tensors[i]);
    }
    for (int s = 0; s < shards; ++s) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", s + 1, shards);
      WriteHeader((dir_ / name).string(), parts[s]);
      for (const Entry* e : parts[s]) index["weight_map"][e->name] = name;
    }
    std::ofstream(dir_ / "model.safetensors.index.json") << index.dump();
  }
  std::string dir() const { return tmp_.path(); }

 private:
  moegraph::testing::TempDir tmp_{"moegraph-v4flash"};
};

// Byte totals of the release layout from the config alone.
struct Expected {
  int64_t fp8 = 0, fp4 = 0, scales = 0, bf16 = 0, f32 = 0, i32 = 0;
  int64_t routed = 0, shared = 0, attention = 0, compressor = 0, router = 0, small = 0;
  int64_t specs = 0, stored = 0;
  int64_t fp4_scales = 0;  // of `scales`
};

inline Expected Compute() {
  auto c = [](int64_t x) { return Ceil(x, 128); };
  Expected x;
  x.bf16 = 2 * V * D * 2;  // embed, head
  x.f32 = (D + N * N * D + N + 1) * 4;
  x.small = x.f32;
  x.specs = 6;
  x.stored = 6;
  for (int64_t l = 0; l < LAYERS; ++l) {
    const int64_t r = Ratio(l);
    const bool csa = r == CSA_RATE, hash = l < HASH_LAYERS;
    const int64_t attn8 = QL * D + H * d * QL + d * D + D * G * OL + (csa ? NI * CI * QL : 0);
    const int64_t attn8s = c(QL) * c(D) + c(H * d) * c(QL) + c(d) * c(D) + c(D) * c(G * OL) +
                           (csa ? c(NI * CI) * c(QL) : 0);
    const int64_t shared8 = 3 * F * D, shared8s = 2 * c(F) * c(D) + c(D) * c(F);
    const int64_t fp4 = E * 3 * F * D / 2, fp4s = E * 3 * F * D / 32;
    const int64_t attn16 = (G * OL * (H * d / G) + (csa ? NI * D : 0)) * 2, gate16 = E * D * 2;
    const int64_t comp = (r == HCA_RATE ? 2 * d * D : csa ? 2 * 2 * d * D + 2 * 2 * CI * D : 0) * 4;
    int64_t vec = 2 * D + 2 * (MIX * N * D + MIX + 3) + QL + d + H;
    if (r == HCA_RATE) vec += HCA_RATE * d + d;
    if (csa) vec += CSA_RATE * 2 * d + d + CSA_RATE * 2 * CI + CI;
    const int64_t bias = hash ? 0 : E * 4, tid = hash ? V * TOPK * 4 : 0;
    x.fp8 += attn8 + shared8;
    x.fp4 += fp4;
    x.scales += attn8s + shared8s + fp4s;
    x.bf16 += attn16 + gate16;
    x.f32 += comp + vec * 4 + bias;
    x.i32 += tid;
    x.routed += fp4 + fp4s;
    x.fp4_scales += fp4s;
    x.shared += shared8 + shared8s;
    x.attention += attn8 + attn8s + attn16;
    x.compressor += comp;
    x.router += gate16 + bias + tid;
    x.small += vec * 4;
    x.specs += 8 + 8 + 2 + 3 * E + 3 + (r == HCA_RATE ? 4 : 0) + (csa ? 10 : 0);
    const int64_t fp8_matrices = 7 + (csa ? 1 : 0);
    x.stored +=
        8 + 8 + 2 + 3 * E + 3 + (r == HCA_RATE ? 4 : 0) + (csa ? 10 : 0) + fp8_matrices + 3 * E;
  }
  return x;
}

}  // namespace v4flash
