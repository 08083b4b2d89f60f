#include "cuda/kernels/gather.cuh"

namespace mla::cuda {

namespace {
__global__ void gatherRowsBf16Kernel(const bf16* in, const int32_t* rows, int cols, bf16* out) {
  const bf16* src = in + static_cast<size_t>(rows[blockIdx.x]) * cols;
  bf16* dst = out + static_cast<size_t>(blockIdx.x) * cols;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) dst[j] = src[j];
}
}  // namespace

void gatherRowsBf16(const bf16* in, const int32_t* rows, int count, int cols, bf16* out, cudaStream_t stream) {
  if (count == 0) return;
  gatherRowsBf16Kernel<<<count, 256, 0, stream>>>(in, rows, cols, out);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla::cuda
