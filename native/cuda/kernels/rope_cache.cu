#include "cuda/kernels/rope_cache.cuh"
#include "cuda/device.cuh"

namespace mla::cuda {

namespace {

// Rotates the vector x (`dim` values, in place) for position pos. The angle is computed in double:
// positions in the tens of thousands would otherwise lose digits.
__device__ void rotate(float* x, int pos, const RopeTable& r, int lane, int lanes) {
  const int half = r.rotaryDim / 2;
  for (int i = lane; i < half; i += lanes) {
    double s, c;
    sincos(static_cast<double>(pos) * r.inverseFrequencies[i], &s, &c);
    const int a = r.interleaved ? 2 * i : i, b = r.interleaved ? 2 * i + 1 : i + half;
    const float xa = x[a], xb = x[b];
    x[a] = xa * static_cast<float>(c) - xb * static_cast<float>(s);
    x[b] = xb * static_cast<float>(c) + xa * static_cast<float>(s);
  }
}

// One block per token; heads are spread over warps. Uses shared memory as the rotation buffer.
__global__ void gqaRopeCacheKernel(GqaRopeCacheParams p) {
  MLA_DYNAMIC_SHARED(float, buf);  // [(H + 2 Hkv) * D]
  const int t = blockIdx.x, D = p.headDim, width = (p.numHeads + 2 * p.numKvHeads) * D;
  const float* src = p.qkv + static_cast<size_t>(t) * width;
  for (int j = threadIdx.x; j < width; j += blockDim.x) buf[j] = src[j];
  __syncthreads();
  const int pos = p.tokens.positions[t], warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int h = warp; h < p.numHeads + p.numKvHeads; h += warps) rotate(buf + h * D, pos, p.rope, lane, 32);
  __syncthreads();
  bf16* q = p.q + static_cast<size_t>(t) * p.numHeads * D;
  for (int j = threadIdx.x; j < p.numHeads * D; j += blockDim.x) q[j] = __float2bfloat16(buf[j]);
  bf16* e = p.cache + p.tokens.slots[t] * 2 * p.numKvHeads * D;
  for (int j = threadIdx.x; j < 2 * p.numKvHeads * D; j += blockDim.x) e[j] = __float2bfloat16(buf[p.numHeads * D + j]);
}

__global__ void mlaRopeCacheKernel(MlaRopeCacheParams p) {
  MLA_DYNAMIC_SHARED(float, buf);  // [H * (N + R)] query, then [L + R] kv_a
  __shared__ float scratch[32];
  const int t = blockIdx.x, N = p.nope, R = p.ropeDim, L = p.kvLoraRank, qw = p.numHeads * (N + R);
  float* qb = buf;
  float* kb = buf + qw;
  const float* qs = p.q + static_cast<size_t>(t) * qw;
  const float* ks = p.kva + static_cast<size_t>(t) * (L + R);
  for (int j = threadIdx.x; j < qw; j += blockDim.x) qb[j] = qs[j];
  float sq = 0.0f;
  for (int j = threadIdx.x; j < L + R; j += blockDim.x) {
    const float v = ks[j];
    kb[j] = v;
    if (j < L) sq += v * v;
  }
  const float inv = p.kvNorm ? rsqrtf(blockSum(sq, scratch) / static_cast<float>(L) + p.normEps) : 1.0f;
  __syncthreads();
  const int pos = p.tokens.positions[t], warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int h = warp; h < p.numHeads; h += warps) rotate(qb + h * (N + R) + N, pos, p.rope, lane, 32);
  if (warp == 0) rotate(kb + L, pos, p.rope, lane, 32);
  __syncthreads();
  bf16* qn = p.qNope + static_cast<size_t>(t) * p.numHeads * N;
  bf16* qr = p.qRope + static_cast<size_t>(t) * p.numHeads * R;
  for (int j = threadIdx.x; j < qw; j += blockDim.x) {
    const int h = j / (N + R), c = j % (N + R);
    if (c < N) qn[h * N + c] = __float2bfloat16(qb[j]);
    else qr[h * R + c - N] = __float2bfloat16(qb[j]);
  }
  bf16* e = p.cache + p.tokens.slots[t] * (L + R);
  for (int j = threadIdx.x; j < L + R; j += blockDim.x) {
    const float v = j < L ? (p.kvNorm ? kb[j] * inv * __bfloat162float(p.kvNorm[j]) : kb[j]) : kb[j];
    e[j] = __float2bfloat16(v);
  }
}

}  // namespace

// Kernels whose shared buffer may pass the 48 KiB default opt in to more.
template <typename Kernel>
void allowSharedMemory(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) MLA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

void gqaRopeCache(const GqaRopeCacheParams& p, cudaStream_t stream) {
  if (p.numTokens == 0) return;
  const size_t bytes = sizeof(float) * (p.numHeads + 2 * p.numKvHeads) * p.headDim;
  allowSharedMemory(gqaRopeCacheKernel, bytes);
  MLA_LAUNCH(gqaRopeCacheKernel, p.numTokens, 256, bytes, stream, p);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void mlaRopeCache(const MlaRopeCacheParams& p, cudaStream_t stream) {
  if (p.numTokens == 0) return;
  const size_t bytes = sizeof(float) * (p.numHeads * (p.nope + p.ropeDim) + p.kvLoraRank + p.ropeDim);
  allowSharedMemory(mlaRopeCacheKernel, bytes);
  MLA_LAUNCH(mlaRopeCacheKernel, p.numTokens, 256, bytes, stream, p);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla::cuda
