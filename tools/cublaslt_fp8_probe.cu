// Which cuBLASLt block-scaled FP8 configurations work on this GPU, each
// result checked against a product computed here (kernels/cuda/NOTES.md,
// "W8A8"): scale pointers set before or after the heuristic, the operands in
// either order, bf16 or f32 output, the weight scales K-block-major or not,
// over decode and prefill row counts. Not part of the build:
//   nvcc -O2 -arch=sm_90 -std=c++17 tools/cublaslt_fp8_probe.cu -lcublasLt -o fp8probe
#include <cublasLt.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#define CK(x)                                        \
  do {                                               \
    cudaError_t e = (x);                             \
    if (e) {                                         \
      std::printf("cuda %d line %d\n", e, __LINE__); \
      return 1;                                      \
    }                                                \
  } while (0)

struct Shape {
  int rows, n, k;
};

int Try(cublasLtHandle_t h, Shape s, bool swap, bool ptr_before, bool out_f32, bool wscale_kmajor) {
  const int rows = s.rows, n = s.n, k = s.k, kb = (k + 127) / 128, nb = (n + 127) / 128;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-2, 2);
  std::vector<__nv_fp8_e4m3> x(rows * k), w(n * k);
  std::vector<float> xf(rows * k), wf(n * k), sx(kb * rows), sw(nb * kb);
  for (int i = 0; i < rows * k; ++i) {
    x[i] = __nv_fp8_e4m3(u(rng));
    xf[i] = float(x[i]);
  }
  for (int i = 0; i < n * k; ++i) {
    w[i] = __nv_fp8_e4m3(u(rng));
    wf[i] = float(w[i]);
  }
  for (auto& v : sx) v = std::ldexp(1.0f, int(rng() % 5) - 2);
  for (auto& v : sw) v = std::ldexp(1.0f, int(rng() % 5) - 2);
  // sx[k block][row]; sw [n block][k block] (K-block-major) or [k block][n block].
  auto SW = [&](int nbi, int kbi) {
    return wscale_kmajor ? sw[nbi * kb + kbi] : sw[kbi * nb + nbi];
  };
  std::vector<double> ref(rows * n);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < n; ++c) {
      double acc = 0;
      for (int i = 0; i < k; ++i)
        acc +=
            double(xf[r * k + i]) * sx[(i / 128) * rows + r] * wf[c * k + i] * SW(c / 128, i / 128);
      ref[r * n + c] = acc;
    }
  void *dx, *dw, *dy, *dsx, *dsw, *ws;
  size_t wsb = 32 << 20;
  CK(cudaMalloc(&dx, x.size()));
  CK(cudaMalloc(&dw, w.size()));
  CK(cudaMalloc(&dy, rows * n * 4));
  CK(cudaMalloc(&dsx, sx.size() * 4));
  CK(cudaMalloc(&dsw, sw.size() * 4));
  CK(cudaMalloc(&ws, wsb));
  CK(cudaMemcpy(dx, x.data(), x.size(), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dw, w.data(), w.size(), cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dsx, sx.data(), sx.size() * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dsw, sw.data(), sw.size() * 4, cudaMemcpyHostToDevice));
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t a, b, c;
  cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasOperation_t T = CUBLAS_OP_T, N = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &T, sizeof(T));
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &N, sizeof(N));
  cublasLtMatmulMatrixScale_t blk = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F,
                              vec = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
  const void *A = swap ? dx : dw, *B = swap ? dw : dx, *SA = swap ? dsx : dsw,
             *SB = swap ? dsw : dsx;
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, swap ? &vec : &blk,
                                 sizeof(blk));
  cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, swap ? &blk : &vec,
                                 sizeof(blk));
  auto set_ptrs = [&] {
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &SA, sizeof(SA));
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &SB, sizeof(SB));
  };
  if (ptr_before) set_ptrs();
  const int m_ = swap ? rows : n, n_ = swap ? n : rows;
  cublasLtMatrixLayoutCreate(&a, CUDA_R_8F_E4M3, k, m_, k);
  cublasLtMatrixLayoutCreate(&b, CUDA_R_8F_E4M3, k, n_, k);
  cublasLtMatrixLayoutCreate(&c, out_f32 ? CUDA_R_32F : CUDA_R_16BF, m_, n_, m_);
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                       sizeof(wsb));
  cublasLtMatmulHeuristicResult_t res[8];
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h, op, a, b, c, c, pref, 8, res, &found);
  std::printf(
      "rows=%5d n=%5d k=%5d swap=%d ptr_before=%d f32=%d wkmajor=%d: heuristic st=%d found=%d",
      rows, n, k, swap, ptr_before, out_f32, wscale_kmajor, st, found);
  if (st == 0 && found > 0) {
    if (!ptr_before) set_ptrs();
    float alpha = 1, beta = 0;
    st = cublasLtMatmul(h, op, &alpha, A, a, B, b, &beta, dy, c, dy, c, &res[0].algo, ws, wsb, 0);
    CK(cudaDeviceSynchronize());
    std::vector<float> y(rows * n);
    if (out_f32) {
      CK(cudaMemcpy(y.data(), dy, rows * n * 4, cudaMemcpyDeviceToHost));
    } else {
      std::vector<uint16_t> yb(rows * n);
      CK(cudaMemcpy(yb.data(), dy, rows * n * 2, cudaMemcpyDeviceToHost));
      for (int i = 0; i < rows * n; ++i) {
        const uint32_t v = uint32_t(yb[i]) << 16;
        std::memcpy(&y[i], &v, 4);
      }
    }
    double err = 0, mag = 0;
    for (int r = 0; r < rows; ++r)
      for (int cc = 0; cc < n; ++cc) {
        const double got = swap ? y[cc * rows + r] : y[r * n + cc];
        err = std::fmax(err, std::fabs(got - ref[r * n + cc]));
        mag = std::fmax(mag, std::fabs(ref[r * n + cc]));
      }
    std::printf(" run st=%d max rel err %.3e", st, err / mag);
  }
  std::printf("\n");
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(a);
  cublasLtMatrixLayoutDestroy(b);
  cublasLtMatrixLayoutDestroy(c);
  cublasLtMatmulDescDestroy(op);
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  cudaFree(dsx);
  cudaFree(dsw);
  cudaFree(ws);
  return 0;
}

int main() {
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  std::printf("cublasLt version %zu\n", cublasLtGetVersion());
  const Shape shapes[] = {{1, 1024, 4096},   {64, 1024, 4096}, {128, 4096, 1024},
                          {256, 1024, 4096}, {16, 256, 384},   {3, 512, 512}};
  for (Shape s : shapes)
    for (int swap = 0; swap < 2; ++swap)
      for (int before = 0; before < 2; ++before)
        for (int f32 = 0; f32 < 2; ++f32)
          for (int kmajor = 1; kmajor >= 0; --kmajor) Try(h, s, swap, before, f32, kmajor);
  cublasLtDestroy(h);
}
