// rmsNormResidual against the CPU twin (cpu::rmsNorm) over a grid of shapes. Skips without a GPU.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "cpu/ops.h"
#include "cuda/kernels/rmsnorm.cuh"

#define CUDA_OK(x)                                                                   \
  do {                                                                               \
    cudaError_t e = (x);                                                             \
    if (e != cudaSuccess) {                                                          \
      std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); \
      return 1;                                                                      \
    }                                                                                \
  } while (0)

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("SKIP: no CUDA GPU present\n");
    return 77;
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int failures = 0;
  for (int rows : {1, 7, 64}) {
    for (int dim : {64, 256, 1000, 4096}) {
      std::vector<float> x(rows * dim), d(rows * dim), w(dim);
      std::vector<uint16_t> wBf(dim);
      for (auto& v : x) v = normal(rng);
      for (auto& v : d) v = normal(rng);
      for (int j = 0; j < dim; ++j) { wBf[j] = mla::floatToBf16(1.0f + 0.1f * normal(rng)); w[j] = mla::bf16ToFloat(wBf[j]); }
      // CPU twin: residual add, then norm.
      std::vector<float> sum(rows * dim), ref(rows * dim);
      for (size_t i = 0; i < sum.size(); ++i) sum[i] = x[i] + d[i];
      mla::cpu::rmsNorm(sum.data(), w.data(), rows, dim, 1e-6f, ref.data());

      float *dx, *dd; __nv_bfloat16 *dw, *dout;
      CUDA_OK(cudaMalloc(&dx, x.size() * 4)); CUDA_OK(cudaMalloc(&dd, d.size() * 4));
      CUDA_OK(cudaMalloc(&dw, dim * 2)); CUDA_OK(cudaMalloc(&dout, rows * dim * 2));
      CUDA_OK(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dd, d.data(), d.size() * 4, cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(dw, wBf.data(), dim * 2, cudaMemcpyHostToDevice));
      mla::cuda::RmsNormParams p;
      p.residual = dx; p.delta = dd; p.weight = dw; p.out = dout; p.rows = rows; p.dim = dim; p.eps = 1e-6f;
      mla::cuda::rmsNormResidual(p, 0);
      CUDA_OK(cudaGetLastError());
      std::vector<uint16_t> out(rows * dim);
      std::vector<float> residual(rows * dim);
      CUDA_OK(cudaMemcpy(out.data(), dout, out.size() * 2, cudaMemcpyDeviceToHost));
      CUDA_OK(cudaMemcpy(residual.data(), dx, residual.size() * 4, cudaMemcpyDeviceToHost));
      double num = 0, den = 0, resErr = 0;
      bool nan = false;
      for (size_t i = 0; i < ref.size(); ++i) {
        const double o = mla::bf16ToFloat(out[i]);
        nan |= std::isnan(o);
        num += (o - ref[i]) * (o - ref[i]);
        den += static_cast<double>(ref[i]) * ref[i];
        resErr = std::max(resErr, static_cast<double>(std::fabs(residual[i] - sum[i])));
      }
      const double err = std::sqrt(num / den);
      const bool ok = !nan && err < 1e-2 && resErr < 1e-5;
      std::printf("%s rmsnorm rows=%d dim=%d err=%.2e residual=%.1e\n", ok ? "ok  " : "FAIL", rows, dim, err, resErr);
      failures += ok ? 0 : 1;
      cudaFree(dx); cudaFree(dd); cudaFree(dw); cudaFree(dout);
    }
  }
  return failures ? 1 : 0;
}
