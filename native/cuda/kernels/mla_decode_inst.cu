// The MLA decode kernel for every shape in mla/kernel_shapes.h, the dispatch, and the combine.
#include <stdexcept>

#include "cuda/kernels/mla_decode_kernel.cuh"
#include "mla/kernel_shapes.h"

namespace mla::cuda {

namespace {

// Merges the splits of each (row, head) by their log-sum-exp: out = sum_s w_s O_s / sum_s w_s,
// w_s = exp(lse_s - max lse). One block per (row, head).
__global__ void mlaCombineKernel(MlaDecodeParams p, int L) {
  const int row = blockIdx.x / p.heads, head = blockIdx.x % p.heads;
  const float* lse = p.partialLse + static_cast<size_t>(row) * p.numSplits * p.heads + head;
  float m = -INFINITY;
  for (int s = 0; s < p.numSplits; ++s) m = fmaxf(m, lse[static_cast<size_t>(s) * p.heads]);
  float total = 0.0f;
  for (int s = 0; s < p.numSplits; ++s) {
    const float x = lse[static_cast<size_t>(s) * p.heads];
    total += x == -INFINITY ? 0.0f : __expf(x - m);
  }
  const float inv = total > 0 ? 1.0f / total : 0.0f;
  for (int c = threadIdx.x; c < L; c += blockDim.x) {
    float acc = 0.0f;
    for (int s = 0; s < p.numSplits; ++s) {
      const float x = lse[static_cast<size_t>(s) * p.heads];
      if (x == -INFINITY) continue;
      acc += __expf(x - m) * p.partialOut[((static_cast<size_t>(row) * p.numSplits + s) * p.heads + head) * L + c];
    }
    p.out[(static_cast<size_t>(row) * p.heads + head) * L + c] = __float2bfloat16(acc * inv);
  }
}

}  // namespace

bool mlaDecodeSupports(int kvLoraRank, int qkRopeDim) {
#define MLA_CHECK_SHAPE(L, R) \
  if (kvLoraRank == L && qkRopeDim == R) return true;
  MLA_FOR_EACH_DECODE_SHAPE(MLA_CHECK_SHAPE)
#undef MLA_CHECK_SHAPE
  return false;
}

void mlaDecode(const MlaDecodeParams& p, int kvLoraRank, int qkRopeDim, cudaStream_t stream) {
  if (p.rows == 0) return;
#define MLA_LAUNCH_SHAPE(L, R)                                   \
  if (kvLoraRank == L && qkRopeDim == R) {                      \
    detail::launchMlaDecode<L, R>(p, stream);                  \
    if (p.numSplits > 1) {                                      \
      MLA_LAUNCH(mlaCombineKernel, p.rows * p.heads, 128, 0, stream, p, L); \
      MLA_CUDA_CHECK(cudaGetLastError());                       \
    }                                                           \
    return;                                                     \
  }
  MLA_FOR_EACH_DECODE_SHAPE(MLA_LAUNCH_SHAPE)
#undef MLA_LAUNCH_SHAPE
  throw Error("the CUDA MLA decode kernel is not built for kv_lora_rank " + std::to_string(kvLoraRank) + " with qk_rope_head_dim " +
              std::to_string(qkRopeDim) + " (see native/include/mla/kernel_shapes.h)");
}

int mlaDecodeSplits(int rows, int heads, int maxRowLength, int numSms) {
  const int ctas = rows * ((heads + detail::kHeadsPerCta - 1) / detail::kHeadsPerCta);
  const int pages = (maxRowLength + kMlaBlockSize - 1) / kMlaBlockSize;
  int splits = (2 * numSms + ctas - 1) / ctas;
  splits = splits < 1 ? 1 : splits;
  splits = splits > pages ? pages : splits;
  return splits > 64 ? 64 : (splits < 1 ? 1 : splits);
}

size_t mlaDecodePartialRows(int maxRows, int heads, int maxRowLength, int numSms) {
  // Splits only happen while rows x head groups < 2 SMs, so a few hundred row counts cover it.
  size_t most = 0;
  const int last = maxRows < 4 * numSms + 1 ? maxRows : 4 * numSms + 1;
  for (int rows = 1; rows <= last; ++rows) {
    const int splits = mlaDecodeSplits(rows, heads, maxRowLength, numSms);
    if (splits > 1 && static_cast<size_t>(rows) * splits > most) most = static_cast<size_t>(rows) * splits;
  }
  return most;
}

}  // namespace mla::cuda
