// The MLA decode kernel body (a template over the latent rank L and RoPE width R). Included by
// mla_decode_inst.cu only, which instantiates it for every shape in mla/kernel_shapes.h.
//
// One CTA = one query row x 16 heads x one KV range; 4 warps. Per 64-key page:
//   S = Q Kᵀ  [16 x 64]: warp w computes keys 16w..16w+15 with mma.m16n8k16 (bf16 in, fp32 acc)
//   online softmax (row max and sum across warps through shared memory), P to shared as bf16
//   O += P V  [16 x L]: warp w owns columns [w L/4, (w+1) L/4); V is the page's c_kv part
// Entries past a row's length are never read (the pool's unused slots may hold anything).
#pragma once
#include <atomic>

#include "cuda/kernels/mla_decode.cuh"
#include "cuda/ptx.cuh"

namespace mla::cuda::detail {

constexpr int kHeadsPerCta = 16;
constexpr int kWarps = 4;
constexpr int kPad = 8;  // bf16 padding per shared row against bank conflicts

__device__ __forceinline__ uint32_t pack2(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ uint32_t pack2(bf16 lo, bf16 hi) {
  __nv_bfloat162 v;
  v.x = lo;
  v.y = hi;
  return *reinterpret_cast<uint32_t*>(&v);
}

template <int L, int R>
struct Shared {
  static constexpr int kRow = L + R + kPad;  // padded row of Q and K in shared memory
  static constexpr size_t kBytes = sizeof(bf16) * (static_cast<size_t>(kHeadsPerCta) * kRow + static_cast<size_t>(kMlaBlockSize) * kRow +
                                                   static_cast<size_t>(kHeadsPerCta) * (kMlaBlockSize + kPad)) +
                                   sizeof(float) * (2 * kWarps * kHeadsPerCta + 2 * kHeadsPerCta);
};

template <int L, int R>
__global__ void __launch_bounds__(kWarps * 32) mlaDecodeKernel(MlaDecodeParams p) {
  static_assert(L % 32 == 0 && R % 16 == 0, "L must be a multiple of 32 and R of 16");
  constexpr int E = L + R;  // cache entry
  constexpr int kRow = Shared<L, R>::kRow;
  constexpr int kColsPerWarp = L / kWarps;  // O columns per warp
  constexpr int kNTiles = kColsPerWarp / 8;
  MLA_DYNAMIC_SHARED(unsigned char, smem);
  bf16* sQ = reinterpret_cast<bf16*>(smem);           // [16][kRow]
  bf16* sK = sQ + kHeadsPerCta * kRow;                // [64][kRow]
  bf16* sP = sK + kMlaBlockSize * kRow;               // [16][64 + pad]
  float* sMax = reinterpret_cast<float*>(sP + kHeadsPerCta * (kMlaBlockSize + kPad));  // [warps][16]
  float* sSum = sMax + kWarps * kHeadsPerCta;         // [warps][16]
  float* sRowM = sSum + kWarps * kHeadsPerCta;        // [16] running max
  float* sRowL = sRowM + kHeadsPerCta;                // [16] running sum

  const int split = blockIdx.x % p.numSplits, row = blockIdx.x / p.numSplits, headBase = blockIdx.y * kHeadsPerCta;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int length = p.rowLength[row];
  const int32_t* table = p.blockTables + static_cast<size_t>(p.rowSeq[row]) * p.maxBlocksPerSeq;
  // This CTA's keys: [begin, end), whole pages except at the row's end.
  const int pages = (length + kMlaBlockSize - 1) / kMlaBlockSize;
  const int pagesPerSplit = (pages + p.numSplits - 1) / p.numSplits;
  const int beginPage = split * pagesPerSplit, endPage = min(pages, beginPage + pagesPerSplit);

  // Q: [16 heads][L | R] in shared (zero rows past the last head).
  for (int i = tid; i < kHeadsPerCta * (E / 8); i += blockDim.x) {
    const int h = i / (E / 8), c = (i % (E / 8)) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (headBase + h < p.heads) {
      const size_t rh = static_cast<size_t>(row) * p.heads + headBase + h;
      v = c < L ? *reinterpret_cast<const uint4*>(p.qLatent + rh * L + c) : *reinterpret_cast<const uint4*>(p.qRope + rh * R + (c - L));
    }
    *reinterpret_cast<uint4*>(sQ + h * kRow + c) = v;
  }
  if (tid < kHeadsPerCta) {
    sRowM[tid] = -INFINITY;
    sRowL[tid] = 0.0f;
  }
  float acc[kNTiles][4];
#pragma unroll
  for (int j = 0; j < kNTiles; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
  __syncthreads();

  for (int page = beginPage; page < endPage; ++page) {
    const int first = page * kMlaBlockSize;
    const int valid = min(kMlaBlockSize, length - first);
    const bf16* src = p.cache + static_cast<size_t>(table[page]) * kMlaBlockSize * E;
    for (int i = tid; i < kMlaBlockSize * (E / 8); i += blockDim.x) {
      const int k = i / (E / 8), c = (i % (E / 8)) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (k < valid) v = *reinterpret_cast<const uint4*>(src + static_cast<size_t>(k) * E + c);
      *reinterpret_cast<uint4*>(sK + k * kRow + c) = v;
    }
    __syncthreads();

    // S for this warp's 16 keys (two n8 tiles).
    float s[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
#pragma unroll 4
    for (int k0 = 0; k0 < E; k0 += 16) {
      uint32_t a[4];
      a[0] = pack2(sQ + g * kRow + k0 + 2 * t);
      a[1] = pack2(sQ + (g + 8) * kRow + k0 + 2 * t);
      a[2] = pack2(sQ + g * kRow + k0 + 8 + 2 * t);
      a[3] = pack2(sQ + (g + 8) * kRow + k0 + 8 + 2 * t);
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        const bf16* kr = sK + (warp * 16 + n * 8 + g) * kRow + k0;
        uint32_t b[2] = {pack2(kr + 2 * t), pack2(kr + 8 + 2 * t)};
        ptx::mmaBf16(s[n], a, b);
      }
    }
    // Scale, mask keys past the end, and take each row's max over this warp's keys.
    float rowMax[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = warp * 16 + n * 8 + 2 * t + (e & 1);
        s[n][e] = key < valid ? s[n][e] * p.scale : -INFINITY;
        rowMax[e >> 1] = fmaxf(rowMax[e >> 1], s[n][e]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      rowMax[r] = fmaxf(rowMax[r], __shfl_xor_sync(0xffffffffu, rowMax[r], 1));
      rowMax[r] = fmaxf(rowMax[r], __shfl_xor_sync(0xffffffffu, rowMax[r], 2));
    }
    if (t == 0) {
      sMax[warp * kHeadsPerCta + g] = rowMax[0];
      sMax[warp * kHeadsPerCta + g + 8] = rowMax[1];
    }
    __syncthreads();
    float mNew[2], alpha[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int h = g + 8 * r;
      float m = sRowM[h];
      for (int w = 0; w < kWarps; ++w) m = fmaxf(m, sMax[w * kHeadsPerCta + h]);
      mNew[r] = m;
      alpha[r] = sRowM[h] == -INFINITY ? 0.0f : __expf(sRowM[h] - m);
    }
    float rowSum[2] = {0, 0};
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float pe = s[n][e] == -INFINITY ? 0.0f : __expf(s[n][e] - mNew[e >> 1]);
        rowSum[e >> 1] += pe;
        const int key = warp * 16 + n * 8 + 2 * t + (e & 1);
        sP[(g + 8 * (e >> 1)) * (kMlaBlockSize + kPad) + key] = __float2bfloat16(pe);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      rowSum[r] += __shfl_xor_sync(0xffffffffu, rowSum[r], 1);
      rowSum[r] += __shfl_xor_sync(0xffffffffu, rowSum[r], 2);
    }
    if (t == 0) {
      sSum[warp * kHeadsPerCta + g] = rowSum[0];
      sSum[warp * kHeadsPerCta + g + 8] = rowSum[1];
    }
    // Rescale this warp's O rows for the new maximum.
#pragma unroll
    for (int j = 0; j < kNTiles; ++j) {
      acc[j][0] *= alpha[0];
      acc[j][1] *= alpha[0];
      acc[j][2] *= alpha[1];
      acc[j][3] *= alpha[1];
    }
    __syncthreads();
    if (tid < kHeadsPerCta) {
      float total = 0.0f;
      for (int w = 0; w < kWarps; ++w) total += sSum[w * kHeadsPerCta + tid];
      const float m = sRowM[tid];
      float mn = m;
      for (int w = 0; w < kWarps; ++w) mn = fmaxf(mn, sMax[w * kHeadsPerCta + tid]);
      sRowL[tid] = sRowL[tid] * (m == -INFINITY ? 0.0f : __expf(m - mn)) + total;
      sRowM[tid] = mn;
    }
    // O += P V over the page's keys; V rows are the keys' c_kv (the first L values).
#pragma unroll
    for (int k0 = 0; k0 < kMlaBlockSize; k0 += 16) {
      uint32_t a[4];
      const bf16* pr = sP + g * (kMlaBlockSize + kPad) + k0 + 2 * t;
      const bf16* pr8 = sP + (g + 8) * (kMlaBlockSize + kPad) + k0 + 2 * t;
      a[0] = pack2(pr);
      a[1] = pack2(pr8);
      a[2] = pack2(pr + 8);
      a[3] = pack2(pr8 + 8);
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        const int col = warp * kColsPerWarp + j * 8 + g;
        const bf16* v0 = sK + (k0 + 2 * t) * kRow + col;
        uint32_t b[2] = {pack2(v0[0], v0[kRow]), pack2(v0[8 * kRow], v0[9 * kRow])};
        ptx::mmaBf16(acc[j], a, b);
      }
    }
    __syncthreads();
  }

  // Normalize and write: the final output (one split) or this split's part and its LSE.
  const float l0 = sRowL[g], l1 = sRowL[g + 8];
  const float inv0 = l0 > 0 ? 1.0f / l0 : 0.0f, inv1 = l1 > 0 ? 1.0f / l1 : 0.0f;
#pragma unroll
  for (int j = 0; j < kNTiles; ++j) {
    const int col = warp * kColsPerWarp + j * 8 + 2 * t;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int h = headBase + g + 8 * r;
      if (h >= p.heads) continue;
      const float inv = r ? inv1 : inv0;
      const float x0 = acc[j][2 * r] * inv, x1 = acc[j][2 * r + 1] * inv;
      if (p.numSplits == 1) {
        bf16* o = p.out + (static_cast<size_t>(row) * p.heads + h) * L + col;
        o[0] = __float2bfloat16(x0);
        o[1] = __float2bfloat16(x1);
      } else {
        float* o = p.partialOut + ((static_cast<size_t>(row) * p.numSplits + split) * p.heads + h) * L + col;
        o[0] = x0;
        o[1] = x1;
      }
    }
  }
  if (p.numSplits > 1 && tid < kHeadsPerCta && headBase + tid < p.heads) {
    const float l = sRowL[tid];
    p.partialLse[(static_cast<size_t>(row) * p.numSplits + split) * p.heads + headBase + tid] = l > 0 ? sRowM[tid] + logf(l) : -INFINITY;
  }
}

template <int L, int R>
void launchMlaDecode(const MlaDecodeParams& p, cudaStream_t stream) {
  const size_t bytes = Shared<L, R>::kBytes;
  // The shared-memory opt-in is per device: once per instantiation and device.
  static std::atomic<uint64_t> configured{0};
  int device = 0;
  MLA_CUDA_CHECK(cudaGetDevice(&device));
  const uint64_t bit = uint64_t(1) << (device & 63);
  if (!(configured.load() & bit)) {
    MLA_CUDA_CHECK(cudaFuncSetAttribute(mlaDecodeKernel<L, R>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    configured.fetch_or(bit);
  }
  // Rows and splits share grid.x (up to 2^31 - 1): grid.y and grid.z stop at 65,535.
  dim3 grid(p.rows * p.numSplits, (p.heads + kHeadsPerCta - 1) / kHeadsPerCta);
  const auto kernel = mlaDecodeKernel<L, R>;
  MLA_LAUNCH(kernel, grid, kWarps * 32, bytes, stream, p);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla::cuda::detail
