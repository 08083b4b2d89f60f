#include "cuda/kernels/mla_expanded.cuh"
#include "cuda/device.cuh"

namespace mla::cuda {

namespace {

__global__ void broadcastRopeKeyKernel(const bf16* latent, int L, int R, int H, int N, bf16* k) {
  const int c = blockIdx.x;
  const bf16* src = latent + static_cast<size_t>(c) * (L + R) + L;
  for (int i = threadIdx.x; i < H * R; i += blockDim.x) {
    const int h = i / R, r = i % R;
    k[(static_cast<size_t>(c) * H + h) * (N + R) + N + r] = src[r];
  }
}

__global__ void concatQueryKernel(const bf16* qNope, const bf16* qRope, int H, int N, int R, bf16* q) {
  const int i = blockIdx.x;
  for (int j = threadIdx.x; j < H * (N + R); j += blockDim.x) {
    const int h = j / (N + R), d = j % (N + R);
    q[static_cast<size_t>(i) * H * (N + R) + j] = d < N ? qNope[(static_cast<size_t>(i) * H + h) * N + d] : qRope[(static_cast<size_t>(i) * H + h) * R + d - N];
  }
}

__global__ void causalSoftmaxKernel(const float* s, int numQueries, int C, int firstPosition, float scale, bf16* p) {
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const int keys = min(C, firstPosition + static_cast<int>(row % numQueries) + 1);
  const float* x = s + row * C;
  bf16* out = p + row * C;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < keys; j += blockDim.x) mx = fmaxf(mx, x[j] * scale);
  mx = blockMax(mx, scratch);
  float sum = 0.0f;
  for (int j = threadIdx.x; j < keys; j += blockDim.x) sum += __expf(x[j] * scale - mx);
  const float inv = 1.0f / blockSum(sum, scratch);
  for (int j = threadIdx.x; j < C; j += blockDim.x) out[j] = __float2bfloat16(j < keys ? __expf(x[j] * scale - mx) * inv : 0.0f);
}

}  // namespace

void broadcastRopeKey(const bf16* latent, int C, int L, int R, int H, int N, bf16* k, cudaStream_t stream) {
  if (C == 0) return;
  MLA_LAUNCH(broadcastRopeKeyKernel, C, 256, 0, stream, latent, L, R, H, N, k);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void concatQuery(const bf16* qNope, const bf16* qRope, int n, int H, int N, int R, bf16* q, cudaStream_t stream) {
  if (n == 0) return;
  MLA_LAUNCH(concatQueryKernel, n, 256, 0, stream, qNope, qRope, H, N, R, q);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void causalSoftmax(const float* s, int rows, int numQueries, int C, int firstPosition, float scale, bf16* p, cudaStream_t stream) {
  if (rows == 0) return;
  MLA_LAUNCH(causalSoftmaxKernel, rows, 256, 0, stream, s, numQueries, C, firstPosition, scale, p);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla::cuda
