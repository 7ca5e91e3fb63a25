// Helpers of the [cuda] op tests: one CPU and one CUDA backend, tensors
// mirrored on both (same values: inputs are drawn as bf16-exact floats so the
// fp32 CPU and the bf16 GPU start from identical numbers), outputs poisoned
// with NaN before each op, and relative-error comparison by norm.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/backend/backend.h"

namespace moegraph::cuda_test {

Backend& Cpu();
Backend& Gpu();
// The same device with every FP8 product W8A8 (BackendOptions), and the
// CPU emulating that activation quantization (CpuBackendOptions): tensors and
// weights made on Gpu() / Cpu() work on them too.
Backend& GpuW8A8();
Backend& CpuEmulatingW8A8();
// Destroys both backends (before main returns: CUDA must still be up).
void ReleaseBackends();

// Fresh random draws for every test (seeded from the test name for reruns).
std::mt19937& Rng();
void ReseedRng(const std::string& name);

// n values ~ N(mean, std), rounded to bf16.
std::vector<float> RandomBf16(int64_t n, float std, float mean = 0.0f);
std::vector<float> RandomUniformBf16(int64_t n, float lo, float hi);
// Routing for `tokens` tokens: k distinct experts of `experts` each, [tokens, k].
std::vector<int32_t> RandomRouting(int tokens, int experts, int k);

enum class Kind { kAct, kF32, kI32, kMatrix };

// One tensor on both backends; owns its memory.
struct Mirror {
  Tensor cpu, gpu;
  std::vector<Buffer> owner;
};

// kAct: f32 on CPU, bf16 on GPU. kF32: f32 on both. kMatrix: bf16 on both
// (UploadWeight with matrix = true). kI32: i32 on both (values truncated).
std::unique_ptr<Mirror> Make(Kind kind, const std::vector<float>& values,
                             std::initializer_list<int64_t> shape);
std::unique_ptr<Mirror> MakeI32(const std::vector<int32_t>& values,
                                std::initializer_list<int64_t> shape);
// Uninitialised output, poisoned with NaN (float kinds) or -7 (i32).
std::unique_ptr<Mirror> MakeOut(Kind kind, std::initializer_list<int64_t> shape);

std::vector<float> Fetch(Backend& b, const Tensor& t);
std::vector<int32_t> FetchI32(Backend& b, const Tensor& t);

// ||got - ref|| / ||ref||; infinity when any value is NaN in one but not the other.
double RelErr(const std::vector<float>& got, const std::vector<float>& ref);

// Records the comparison on stdout ("CUDA-OP|op|case|err|tol|PASS") and
// CHECKs it.
void ExpectClose(const std::string& op, const std::string& what, const std::vector<float>& got,
                 const std::vector<float>& ref, double tol = 1e-2);
void Report(const std::string& op, const std::string& what, double err, double tol, bool pass);

// Downloads `cpu_t`/`gpu_t` of both and compares them.
void CompareOut(const std::string& op, const std::string& what, const Mirror& m, double tol = 1e-2);

// A step's sequences on both backends: (slot, start_pos, len) each.
struct SeqSpec {
  int slot, start_pos, len;
};
struct MetaMirror {
  StepMeta cpu, gpu;
  std::vector<int32_t> token_pos, token_seq, seq_begin, seq_slot, seq_start_pos;
  std::vector<std::unique_ptr<Mirror>> parts;
};
std::unique_ptr<MetaMirror> MakeMeta(const std::vector<SeqSpec>& seqs);

}  // namespace moegraph::cuda_test
