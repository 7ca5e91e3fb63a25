// Helpers of the [cuda] op tests (see backend_pair.h).
#include "tests/cuda/backend_pair.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <functional>

#include "engine/backend/cuda/cuda_backend.h"
#include "engine/common/bf16.h"

namespace moegraph::cuda_test {

namespace {
std::unique_ptr<Backend> g_cpu, g_gpu, g_cpu_emulating, g_gpu_w8a8;

std::unique_ptr<Backend> MakeGpu(const BackendOptions& options) {
  auto created = CreateCudaBackend(0, options);
  if (!created.ok()) {
    std::fprintf(stderr, "cuda backend: %s\n", created.status().ToString().c_str());
    std::abort();
  }
  return std::move(*created);
}
}  // namespace

Backend& Cpu() {
  if (!g_cpu) g_cpu = CreateCpuBackend();
  return *g_cpu;
}

Backend& Gpu() {
  if (!g_gpu) g_gpu = MakeGpu({});
  return *g_gpu;
}

Backend& GpuW8A8() {
  if (!g_gpu_w8a8) g_gpu_w8a8 = MakeGpu(BackendOptions{.w8a8_min_rows = 1});
  return *g_gpu_w8a8;
}

Backend& CpuEmulatingW8A8() {
  if (!g_cpu_emulating)
    g_cpu_emulating = CreateCpuBackend(CpuBackendOptions{.emulate_activation_quant = true});
  return *g_cpu_emulating;
}

void ReleaseBackends() {
  g_gpu_w8a8.reset();
  g_gpu.reset();
  g_cpu_emulating.reset();
  g_cpu.reset();
}

std::mt19937& Rng() {
  static std::mt19937 rng(12345);
  return rng;
}

void ReseedRng(const std::string& name) {
  Rng().seed(static_cast<uint32_t>(std::hash<std::string>{}(name)));
}

static float RoundBf16(float v) { return Bf16ToFloat(FloatToBf16(v)); }

std::vector<float> RandomBf16(int64_t n, float std, float mean) {
  std::normal_distribution<float> dist(mean, std);
  std::vector<float> v(n);
  for (float& x : v) x = RoundBf16(dist(Rng()));
  return v;
}

std::vector<int32_t> RandomRouting(int tokens, int experts, int k) {
  std::vector<int32_t> idx(int64_t{tokens} * k);
  std::vector<int32_t> perm(experts);
  for (int t = 0; t < tokens; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), Rng());
    std::copy(perm.begin(), perm.begin() + k, idx.begin() + int64_t{t} * k);
  }
  return idx;
}

std::vector<float> RandomUniformBf16(int64_t n, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = RoundBf16(dist(Rng()));
  return v;
}

namespace {

Tensor HostTensor(void* data, DType dtype, std::initializer_list<int64_t> shape) {
  return Tensor(data, dtype, shape);
}

// Uploads raw bytes as a tensor of `dtype` on `b`.
Tensor UploadRaw(Backend& b, const void* data, DType dtype, std::initializer_list<int64_t> shape,
                 std::vector<Buffer>* owner) {
  Tensor t(nullptr, dtype, shape);
  auto buf = b.Allocate(t.bytes());
  REQUIRE(buf.ok());
  t.data = buf->data();
  REQUIRE(b.Upload(t.data, data, t.bytes()).ok());
  REQUIRE(b.Synchronize().ok());
  owner->push_back(std::move(*buf));
  return t;
}

}  // namespace

std::unique_ptr<Mirror> Make(Kind kind, const std::vector<float>& values,
                             std::initializer_list<int64_t> shape) {
  auto m = std::make_unique<Mirror>();
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  REQUIRE(static_cast<int64_t>(values.size()) == n);
  std::vector<uint16_t> bf(values.size());
  for (size_t i = 0; i < values.size(); ++i) bf[i] = FloatToBf16(values[i]);
  switch (kind) {
    case Kind::kAct:
      m->cpu = UploadRaw(Cpu(), values.data(), DType::kF32, shape, &m->owner);
      m->gpu = UploadRaw(Gpu(), bf.data(), DType::kBF16, shape, &m->owner);
      break;
    case Kind::kF32:
      m->cpu = UploadRaw(Cpu(), values.data(), DType::kF32, shape, &m->owner);
      m->gpu = UploadRaw(Gpu(), values.data(), DType::kF32, shape, &m->owner);
      break;
    case Kind::kMatrix: {
      Tensor host = HostTensor(bf.data(), DType::kBF16, shape);
      auto c = Cpu().UploadWeight(host, true, &m->owner);
      auto g = Gpu().UploadWeight(host, true, &m->owner);
      REQUIRE(c.ok());
      REQUIRE(g.ok());
      m->cpu = *c;
      m->gpu = *g;
      break;
    }
    case Kind::kI32: {
      std::vector<int32_t> iv(values.begin(), values.end());
      m->cpu = UploadRaw(Cpu(), iv.data(), DType::kI32, shape, &m->owner);
      m->gpu = UploadRaw(Gpu(), iv.data(), DType::kI32, shape, &m->owner);
      break;
    }
  }
  return m;
}

std::unique_ptr<Mirror> MakeI32(const std::vector<int32_t>& values,
                                std::initializer_list<int64_t> shape) {
  auto m = std::make_unique<Mirror>();
  m->cpu = UploadRaw(Cpu(), values.data(), DType::kI32, shape, &m->owner);
  m->gpu = UploadRaw(Gpu(), values.data(), DType::kI32, shape, &m->owner);
  return m;
}

std::unique_ptr<Mirror> MakeOut(Kind kind, std::initializer_list<int64_t> shape) {
  auto m = std::make_unique<Mirror>();
  DType cpu_type = DType::kF32, gpu_type = DType::kF32;
  if (kind == Kind::kAct) gpu_type = DType::kBF16;
  if (kind == Kind::kI32) cpu_type = gpu_type = DType::kI32;
  if (kind == Kind::kMatrix) cpu_type = gpu_type = DType::kBF16;
  for (auto [backend, type, tensor] :
       {std::tuple{&Cpu(), cpu_type, &m->cpu}, std::tuple{&Gpu(), gpu_type, &m->gpu}}) {
    Tensor t(nullptr, type, shape);
    auto buf = backend->Allocate(t.bytes());
    REQUIRE(buf.ok());
    t.data = buf->data();
    REQUIRE(backend->Fill(t, kind == Kind::kI32 ? -7.0f : NAN).ok());
    m->owner.push_back(std::move(*buf));
    *tensor = t;
  }
  return m;
}

std::vector<float> Fetch(Backend& b, const Tensor& t) {
  const int64_t n = t.numel();
  std::vector<float> out(n);
  if (t.dtype == DType::kF32) {
    REQUIRE(b.Download(out.data(), t.data, n * 4).ok());
  } else if (t.dtype == DType::kBF16) {
    std::vector<uint16_t> raw(n);
    REQUIRE(b.Download(raw.data(), t.data, n * 2).ok());
    for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(raw[i]);
  } else if (t.dtype == DType::kI32) {
    std::vector<int32_t> raw(n);
    REQUIRE(b.Download(raw.data(), t.data, n * 4).ok());
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(raw[i]);
  } else {
    FAIL("Fetch: unsupported dtype");
  }
  return out;
}

std::vector<int32_t> FetchI32(Backend& b, const Tensor& t) {
  REQUIRE(t.dtype == DType::kI32);
  std::vector<int32_t> out(t.numel());
  REQUIRE(b.Download(out.data(), t.data, out.size() * 4).ok());
  return out;
}

double RelErr(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool gn = std::isnan(got[i]), rn = std::isnan(ref[i]);
    if (gn != rn) return INFINITY;
    if (gn) continue;
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
  return std::sqrt(num / den);
}

void Report(const std::string& op, const std::string& what, double err, double tol, bool pass) {
  std::printf("CUDA-OP|%s|%s|%.3e|%.0e|%s\n", op.c_str(), what.c_str(), err, tol,
              pass ? "PASS" : "FAIL");
  std::fflush(stdout);
}

void ExpectClose(const std::string& op, const std::string& what, const std::vector<float>& got,
                 const std::vector<float>& ref, double tol) {
  const double err = RelErr(got, ref);
  const bool pass = err <= tol;
  Report(op, what, err, tol, pass);
  INFO(op << " " << what << ": relative error " << err << " > " << tol);
  CHECK(pass);
}

void CompareOut(const std::string& op, const std::string& what, const Mirror& m, double tol) {
  ExpectClose(op, what, Fetch(Gpu(), m.gpu), Fetch(Cpu(), m.cpu), tol);
}

std::unique_ptr<MetaMirror> MakeMeta(const std::vector<SeqSpec>& seqs) {
  auto m = std::make_unique<MetaMirror>();
  int t = 0;
  m->seq_begin.push_back(0);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int i = 0; i < seqs[s].len; ++i) {
      m->token_pos.push_back(seqs[s].start_pos + i);
      m->token_seq.push_back(static_cast<int32_t>(s));
      ++t;
    }
    m->seq_begin.push_back(t);
    m->seq_slot.push_back(seqs[s].slot);
    m->seq_start_pos.push_back(seqs[s].start_pos);
  }
  const int64_t T = t, S = static_cast<int64_t>(seqs.size());
  auto add = [&](const std::vector<int32_t>& v, int64_t n) {
    m->parts.push_back(MakeI32(v, {n}));
    return m->parts.back().get();
  };
  const Mirror* pos = add(m->token_pos, T);
  const Mirror* seq = add(m->token_seq, T);
  const Mirror* begin = add(m->seq_begin, S + 1);
  const Mirror* slot = add(m->seq_slot, S);
  const Mirror* start = add(m->seq_start_pos, S);
  for (auto [meta, gpu] : {std::pair{&m->cpu, false}, std::pair{&m->gpu, true}}) {
    meta->num_tokens = t;
    meta->num_seqs = static_cast<int>(S);
    meta->token_pos = gpu ? pos->gpu : pos->cpu;
    meta->token_seq = gpu ? seq->gpu : seq->cpu;
    meta->seq_begin = gpu ? begin->gpu : begin->cpu;
    meta->seq_slot = gpu ? slot->gpu : slot->cpu;
    meta->seq_start_pos = gpu ? start->gpu : start->cpu;
    meta->host_seq_begin = m->seq_begin.data();
    meta->host_seq_slot = m->seq_slot.data();
    meta->host_seq_start_pos = m->seq_start_pos.data();
  }
  return m;
}

}  // namespace moegraph::cuda_test
