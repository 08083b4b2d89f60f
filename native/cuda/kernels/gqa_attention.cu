#include "cuda/kernels/gqa_attention.cuh"
#include "cuda/device.cuh"

namespace mla::cuda {

namespace {

constexpr int kMaxHeadDim = 256;

// One warp per (row, query head). Keys go 32 at a time: lane j scores key j (a full dot product
// over the head), the warp updates its online softmax, then each lane accumulates its D/32 output
// dims over the 32 keys with the probabilities broadcast by shuffles.
__global__ void gqaAttentionKernel(GqaAttentionParams p) {
  const int warpsPerBlock = blockDim.x >> 5;
  const int item = blockIdx.x * warpsPerBlock + (threadIdx.x >> 5);
  if (item >= p.rows * p.heads) return;
  const int row = item / p.heads, head = item % p.heads, lane = threadIdx.x & 31;
  const int D = p.headDim, kvHead = head / (p.heads / p.kvHeads), entry = 2 * p.kvHeads * D;
  const int length = p.rowLength[row];
  const int first = p.slidingWindow > 0 ? max(0, length - p.slidingWindow) : 0;
  const int32_t* table = p.blockTables + static_cast<size_t>(p.rowSeq[row]) * p.maxBlocksPerSeq;
  const bf16* q = p.q + (static_cast<size_t>(row) * p.heads + head) * D;
  float acc[kMaxHeadDim / 32];
  const int per = (D + 31) / 32;
  for (int i = 0; i < per; ++i) acc[i] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  for (int base = first; base < length; base += 32) {
    const int key = base + lane;
    float s = -INFINITY;
    const bf16* k = nullptr;
    if (key < length) {
      k = p.cache + (static_cast<size_t>(table[key / p.blockSize]) * p.blockSize + key % p.blockSize) * entry + kvHead * D;
      float dot = 0.0f;
      for (int d = 0; d < D; ++d) dot += __bfloat162float(q[d]) * __bfloat162float(k[d]);
      s = dot * p.scale;
    }
    const float mNew = fmaxf(m, warpMax(s));
    const float pe = s == -INFINITY ? 0.0f : __expf(s - mNew);
    const float alpha = m == -INFINITY ? 0.0f : __expf(m - mNew);
    l = l * alpha + warpSum(pe);
    for (int i = 0; i < per; ++i) acc[i] *= alpha;
    const int count = min(32, length - base);
    for (int j = 0; j < count; ++j) {
      const float pj = __shfl_sync(0xffffffffu, pe, j);
      const int kj = base + j;
      const bf16* v = p.cache + (static_cast<size_t>(table[kj / p.blockSize]) * p.blockSize + kj % p.blockSize) * entry + (p.kvHeads + kvHead) * D;
      for (int i = 0; i < per; ++i) {
        const int d = lane + 32 * i;
        if (d < D) acc[i] += pj * __bfloat162float(v[d]);
      }
    }
    m = mNew;
  }
  bf16* o = p.out + (static_cast<size_t>(row) * p.heads + head) * D;
  const float inv = l > 0 ? 1.0f / l : 0.0f;
  for (int i = 0; i < per; ++i) {
    const int d = lane + 32 * i;
    if (d < D) o[d] = __float2bfloat16(acc[i] * inv);
  }
}

}  // namespace

void gqaAttention(const GqaAttentionParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  if (p.headDim > kMaxHeadDim) throw Error("gqaAttention: head_dim above 256 is not supported");
  const int warps = 4, items = p.rows * p.heads;
  MLA_LAUNCH(gqaAttentionKernel, (items + warps - 1) / warps, warps * 32, 0, stream, p);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla::cuda
