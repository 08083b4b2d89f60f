#include "cuda/kernels/elementwise.cuh"

namespace mla::cuda {

namespace {

__global__ void embedKernel(const bf16* embed, const int32_t* tokens, int hidden, float* x) {
  const bf16* row = embed + static_cast<size_t>(tokens[blockIdx.x]) * hidden;
  float* out = x + static_cast<size_t>(blockIdx.x) * hidden;
  for (int j = threadIdx.x; j < hidden; j += blockDim.x) out[j] = __bfloat162float(row[j]);
}

__global__ void swigluKernel(const float* gateUp, int ffn, bf16* out) {
  const float* g = gateUp + static_cast<size_t>(blockIdx.x) * 2 * ffn;
  bf16* o = out + static_cast<size_t>(blockIdx.x) * ffn;
  for (int j = threadIdx.x; j < ffn; j += blockDim.x) {
    const float x = g[j];
    o[j] = __float2bfloat16(x / (1.0f + __expf(-x)) * g[ffn + j]);
  }
}

__global__ void addBiasKernel(float* x, const float* bias, int cols) {
  float* r = x + static_cast<size_t>(blockIdx.x) * cols;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) r[j] += bias[j];
}

__global__ void toBf16Kernel(const float* in, size_t count, bf16* out) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < count; i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    out[i] = __float2bfloat16(in[i]);
  }
}

template <typename T>
__global__ void gatherRowsKernel(const T* in, const int32_t* rows, int cols, T* out) {
  const T* src = in + static_cast<size_t>(rows[blockIdx.x]) * cols;
  T* dst = out + static_cast<size_t>(blockIdx.x) * cols;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) dst[j] = src[j];
}

template <typename T>
void gather(const T* in, const int32_t* rows, int count, int cols, T* out, cudaStream_t stream) {
  if (count == 0) return;
  MLA_LAUNCH(gatherRowsKernel<T>, count, 256, 0, stream, in, rows, cols, out);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void embedTokens(const bf16* embed, const int32_t* tokens, int n, int hidden, float* x, cudaStream_t stream) {
  if (n == 0) return;
  MLA_LAUNCH(embedKernel, n, 256, 0, stream, embed, tokens, hidden, x);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void swiglu(const float* gateUp, int n, int ffn, bf16* out, cudaStream_t stream) {
  if (n == 0) return;
  MLA_LAUNCH(swigluKernel, n, 256, 0, stream, gateUp, ffn, out);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void addBias(float* x, const float* bias, int n, int cols, cudaStream_t stream) {
  if (n == 0) return;
  MLA_LAUNCH(addBiasKernel, n, 256, 0, stream, x, bias, cols);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void toBf16(const float* in, size_t count, bf16* out, cudaStream_t stream) {
  if (count == 0) return;
  const int blocks = static_cast<int>(count / 256 + 1 < 65536 ? count / 256 + 1 : 65536);
  MLA_LAUNCH(toBf16Kernel, blocks, 256, 0, stream, in, count, out);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void gatherRows(const float* in, const int32_t* rows, int count, int cols, float* out, cudaStream_t stream) {
  gather(in, rows, count, cols, out, stream);
}

void gatherRowsBf16(const bf16* in, const int32_t* rows, int count, int cols, bf16* out, cudaStream_t stream) {
  gather(in, rows, count, cols, out, stream);
}

}  // namespace mla::cuda
