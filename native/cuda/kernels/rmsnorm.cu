#include "cuda/kernels/rmsnorm.cuh"
#include "cuda/device.cuh"

namespace mla::cuda {

namespace {

constexpr int kThreads = 256;

// One block per row. Each thread owns the columns threadIdx.x + k * kThreads.
__global__ void rmsNormResidualKernel(RmsNormParams p) {
  const size_t base = static_cast<size_t>(blockIdx.x) * p.dim;
  float* x = p.residual + base;
  float sumSquares = 0.0f;
  for (int j = threadIdx.x; j < p.dim; j += kThreads) {
    float v = x[j];
    if (p.delta) {
      v += p.delta[base + j];
      x[j] = v;
    }
    sumSquares += v * v;
  }
  __shared__ float scratch[kThreads / 32];
  const float inv = rsqrtf(blockSum(sumSquares, scratch) / static_cast<float>(p.dim) + p.eps);
  for (int j = threadIdx.x; j < p.dim; j += kThreads) {
    p.out[base + j] = __float2bfloat16(__bfloat162float(p.weight[j]) * (x[j] * inv));
  }
}

}  // namespace

void rmsNormResidual(const RmsNormParams& params, cudaStream_t stream) {
  if (params.rows == 0) return;
  MLA_LAUNCH(rmsNormResidualKernel, params.rows, kThreads, 0, stream, params);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla::cuda
