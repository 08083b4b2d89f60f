#include "cuda/kernels/rmsnorm.cuh"

namespace mla::cuda {

namespace {

constexpr int kThreads = 256;

__device__ float blockSum(float v) {
  __shared__ float warpSums[kThreads / 32];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warpSums[warp] = v;
  __syncthreads();
  v = lane < kThreads / 32 ? warpSums[lane] : 0.0f;
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) warpSums[0] = v;
  }
  __syncthreads();
  return warpSums[0];
}

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
  const float inv = rsqrtf(blockSum(sumSquares) / static_cast<float>(p.dim) + p.eps);
  for (int j = threadIdx.x; j < p.dim; j += kThreads) {
    p.out[base + j] = __float2bfloat16(__bfloat162float(p.weight[j]) * (x[j] * inv));
  }
}

}  // namespace

void rmsNormResidual(const RmsNormParams& params, cudaStream_t stream) {
  if (params.rows == 0) return;
  rmsNormResidualKernel<<<params.rows, kThreads, 0, stream>>>(params);
}

}  // namespace mla::cuda
