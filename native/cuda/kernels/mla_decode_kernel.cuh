// The MLA decode kernel body (a template over the latent rank L and RoPE width R). Included by
// mla_decode_inst.cu only, which instantiates it for every shape in mla/kernel_shapes.h.
//
// A persistent CTA of 8 warps works through its span of (tile, chunk) pairs. Warp w owns tile rows
// 16 (w % 4) .. + 15 and half h = w / 4 of the keys of S and of the columns of O:
//   chunk of 32 keys [c_kv | k_pe] -> shared memory by cp.async, three stages (two in flight);
//   S = Q Kᵀ [16 x 16] per warp: mma.m16n8k16, Q and K fragments by ldmatrix;
//   online softmax: row maxima and sums of the two halves meet in shared memory; P -> shared (bf16);
//   O += P V [16 x L/2] per warp: V is the c_kv part of the same shared rows, fragments by ldmatrix.trans.
// Keys past a tile's length are zero-filled by the copy (never read from the pool), keys past a
// row's own causal length are masked, and rows past the tile's rows are zero and never written.
#pragma once
#include "cuda/kernels/mla_decode.cuh"
#include "cuda/ptx.cuh"

namespace mla::cuda::detail {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr float kLog2e = 1.4426950408889634f;

// kStages chunk buffers: 3 (two chunks in flight) where a block may have 227 KiB of shared memory
// (sm_90); 2 where it may have 163 KiB (sm_80).
template <int L, int R, int kStages>
struct Smem {
  static constexpr int E = L + R;
  static constexpr int kRow = E + 8;               // bf16 per shared row: +16 bytes, so ldmatrix rows hit distinct banks
  static constexpr int kPRow = kMlaChunk + 8;
  static constexpr size_t kQ = static_cast<size_t>(kMlaTileRows) * kRow;
  static constexpr size_t kK = static_cast<size_t>(kStages) * kMlaChunk * kRow;
  static constexpr size_t kP = static_cast<size_t>(kMlaTileRows) * kPRow;
  static constexpr size_t kStats = 4 * kMlaTileRows;  // floats: row max and row sum of each half
  static constexpr size_t kBytes = sizeof(bf16) * (kQ + kK + kP) + sizeof(float) * kStats;
};

// This thread's two tile rows (g and g + 8 of its warp's 16) and their causal lengths.
struct RowPair {
  int row[2];
  int length[2];
};

template <int L, int R, int kStages>
struct Tile {
  static constexpr int E = L + R;
  static constexpr int kRow = Smem<L, R, kStages>::kRow;
  const MlaDecodeParams& p;
  const MlaTile& t;
  bf16* sQ;
  bf16* sK;

  // The copies of chunk `chunk` into stage `stage`: keys past the tile's length are zero-filled.
  __device__ void prefetch(int chunk, int stage, const int32_t* table) const {
    const int first = chunk * kMlaChunk;
    const int page = first / kMlaBlockSize;
    const int block = table[page];  // the block table is read here, two chunks ahead of its use
    const bf16* src = p.cache + (static_cast<size_t>(block) * kMlaBlockSize + first % kMlaBlockSize) * E;
    bf16* dst = sK + static_cast<size_t>(stage) * kMlaChunk * kRow;
    constexpr int kPieces = E / 8;  // 16-byte pieces per key
    for (int i = threadIdx.x; i < kMlaChunk * kPieces; i += kThreads) {
      const int key = i / kPieces, piece = i % kPieces;
      const bool valid = first + key < t.length;
      ptx::cpAsync16(dst + key * kRow + piece * 8, valid ? src + static_cast<size_t>(key) * E + piece * 8 : src, valid ? 16 : 0);
    }
  }

  // The tile's query rows into sQ (rows past the tile's rows are zero).
  __device__ void loadQ() const {
    constexpr int kPieces = E / 8;
    const int rows = t.numTokens * t.numHeads;
    for (int i = threadIdx.x; i < kMlaTileRows * kPieces; i += kThreads) {
      const int r = i / kPieces, piece = i % kPieces;
      const bool valid = r < rows;
      const int token = t.firstRow + (valid ? r / t.numHeads : 0), head = t.firstHead + (valid ? r % t.numHeads : 0);
      const size_t rh = static_cast<size_t>(token) * p.heads + head;
      const bf16* src = piece < L / 8 ? p.qLatent + rh * L + piece * 8 : p.qRope + rh * R + (piece - L / 8) * 8;
      ptx::cpAsync16(sQ + r * kRow + piece * 8, src, valid ? 16 : 0);
    }
  }
};

template <int L, int R, int kStages>
__global__ void __launch_bounds__(kThreads, 1) mlaDecodeKernel(MlaDecodeParams p) {
  static_assert(L % 32 == 0 && R % 16 == 0, "L must be a multiple of 32 and R of 16");
  static_assert(kStages == 2 || kStages == 3, "two or three chunk buffers");
  using S = Smem<L, R, kStages>;
  constexpr int kRow = S::kRow;
  constexpr int kNTiles = L / 2 / 8;  // n8 tiles of O per warp
  MLA_DYNAMIC_SHARED(unsigned char, smem);
  bf16* sQ = reinterpret_cast<bf16*>(smem);       // [64][kRow]
  bf16* sK = sQ + S::kQ;                          // [stages][32][kRow]
  bf16* sP = sK + S::kK;                          // [64][kPRow]
  float* sMax = reinterpret_cast<float*>(sP + S::kP);  // [2 halves][64]
  float* sSum = sMax + 2 * kMlaTileRows;               // [2 halves][64]

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int rowBase = 16 * (warp % 4), half = warp / 4;
  const MlaWorkSpan span = p.schedule.spans[blockIdx.x];
  const float scaleLog2 = p.scale * kLog2e;

  for (int ti = span.beginTile; ti <= span.endTile && ti < p.numTiles; ++ti) {
    const int c0 = ti == span.beginTile ? span.beginChunk : 0;
    const MlaTile tile = p.tiles[ti];
    const int chunks = (tile.length + kMlaChunk - 1) / kMlaChunk;
    const int c1 = ti == span.endTile ? span.endChunk : chunks;
    if (c0 >= c1) continue;
    const int split = ti == span.beginTile ? span.firstSplit : 0;
    const Tile<L, R, kStages> io{p, tile, sQ, sK};
    const int32_t* table = p.blockTables + static_cast<size_t>(tile.seq) * p.maxBlocksPerSeq;
    const int rows = tile.numTokens * tile.numHeads;
    const bool active = rowBase < rows;  // warp-uniform: warps with no rows skip the math, not the barriers
    RowPair rp;
    for (int i = 0; i < 2; ++i) {
      rp.row[i] = rowBase + g + 8 * i;
      rp.length[i] = rp.row[i] < rows ? p.rowLength[tile.firstRow + rp.row[i] / tile.numHeads] : 0;
    }

    // Q and the first chunk form copy group 0; with three stages the second chunk is group 1.
    io.loadQ();
    io.prefetch(c0, 0, table);
    ptx::cpAsyncCommit();
    if (kStages == 3) {
      if (c0 + 1 < c1) io.prefetch(c0 + 1, 1, table);
      ptx::cpAsyncCommit();
    }

    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // running max (log2 units) and sum
    float acc[kNTiles][4];
#pragma unroll
    for (int j = 0; j < kNTiles; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;

    for (int c = c0; c < c1; ++c) {
      const int stage = (c - c0) % kStages;
      ptx::cpAsyncWait<kStages - 2>();  // this chunk (and Q) have landed for this thread's copies
      __syncthreads();                  // ... and for everyone's; the stage of chunk c - 1 is free again
      constexpr int kAhead = kStages - 1;
      if (c + kAhead < c1) io.prefetch(c + kAhead, (c + kAhead - c0) % kStages, table);
      ptx::cpAsyncCommit();             // always, so the group count stays in step
      const bf16* kTile = sK + static_cast<size_t>(stage) * kMlaChunk * kRow;

      // S = Q Kᵀ for rows rowBase.., keys half * 16 ..: two n8 tiles over E / 16 k-steps.
      float s[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
      if (active) {
        const bf16* qRow = sQ + (rowBase + lane % 8 + ((lane / 8) & 1) * 8) * kRow + (lane / 16) * 8;
        const bf16* kRowPtr = kTile + (half * 16 + (lane / 16) * 8 + lane % 8) * kRow + ((lane / 8) & 1) * 8;
#pragma unroll 4
        for (int k0 = 0; k0 < S::E; k0 += 16) {
          uint32_t a[4], b[4];
          ptx::ldmatrixX4(a, qRow + k0);
          ptx::ldmatrixX4(b, kRowPtr + k0);
          const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
          ptx::mmaBf16(s[0], a, b0);
          ptx::mmaBf16(s[1], a, b1);
        }
      }
      // Scale to log2 units, mask keys past each row's length, this half's row maxima.
      float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int n = 0; n < 2; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = c * kMlaChunk + half * 16 + n * 8 + 2 * t4 + (e & 1);
          s[n][e] = key < rp.length[e / 2] ? s[n][e] * scaleLog2 : -INFINITY;
          mx[e / 2] = fmaxf(mx[e / 2], s[n][e]);
        }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 1));
        mx[i] = fmaxf(mx[i], __shfl_xor_sync(0xffffffffu, mx[i], 2));
      }
      if (t4 == 0) {
        sMax[half * kMlaTileRows + rp.row[0]] = mx[0];
        sMax[half * kMlaTileRows + rp.row[1]] = mx[1];
      }
      __syncthreads();
      float alpha[2], mUse[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float mNew = fmaxf(m[i], fmaxf(sMax[rp.row[i]], sMax[kMlaTileRows + rp.row[i]]));
        mUse[i] = mNew == -INFINITY ? 0.0f : mNew;  // a row with no key yet stays at zero weight
        alpha[i] = exp2f(m[i] - mUse[i]);
        m[i] = mNew;
      }
      // P = 2^(s - m) to shared memory as bf16, and this half's row sums.
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        float pe[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          pe[e] = exp2f(s[n][e] - mUse[e / 2]);
          sum[e / 2] += pe[e];
        }
        const int key = half * 16 + n * 8 + 2 * t4;
        *reinterpret_cast<__nv_bfloat162*>(sP + rp.row[0] * S::kPRow + key) = __floats2bfloat162_rn(pe[0], pe[1]);
        *reinterpret_cast<__nv_bfloat162*>(sP + rp.row[1] * S::kPRow + key) = __floats2bfloat162_rn(pe[2], pe[3]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        sum[i] += __shfl_xor_sync(0xffffffffu, sum[i], 1);
        sum[i] += __shfl_xor_sync(0xffffffffu, sum[i], 2);
      }
      if (t4 == 0) {
        sSum[half * kMlaTileRows + rp.row[0]] = sum[0];
        sSum[half * kMlaTileRows + rp.row[1]] = sum[1];
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < 2; ++i) l[i] = l[i] * alpha[i] + sSum[rp.row[i]] + sSum[kMlaTileRows + rp.row[i]];
      if (!active) continue;
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        acc[j][0] *= alpha[0];
        acc[j][1] *= alpha[0];
        acc[j][2] *= alpha[1];
        acc[j][3] *= alpha[1];
      }
      // O += P V for this half's L / 2 columns; V rows are the chunk's keys, their c_kv values.
      const bf16* pRow = sP + (rowBase + lane % 8 + ((lane / 8) & 1) * 8) * S::kPRow + (lane / 16) * 8;
      const bf16* vRow = kTile + (((lane / 8) & 1) * 8 + lane % 8) * kRow + half * (L / 2) + (lane / 16) * 8;
#pragma unroll
      for (int k0 = 0; k0 < kMlaChunk; k0 += 16) {
        uint32_t a[4];
        ptx::ldmatrixX4(a, pRow + k0);
#pragma unroll
        for (int j = 0; j < kNTiles; j += 2) {
          uint32_t b[4];
          ptx::ldmatrixX4Trans(b, vRow + k0 * kRow + j * 8);
          const uint32_t b0[2] = {b[0], b[1]}, b1[2] = {b[2], b[3]};
          ptx::mmaBf16(acc[j], a, b0);
          ptx::mmaBf16(acc[j + 1], a, b1);
        }
      }
    }
    ptx::cpAsyncWait<0>();  // nothing may land in shared memory after the next tile starts
    __syncthreads();        // every warp is done with sQ, sK and sP before the next tile's loads

    // Normalize and write: the final output, or this part of a shared tile with its log-sum-exp.
    const bool shared = p.schedule.tileSplits[ti] > 1;
    const int slot = shared ? p.schedule.tileSlot[ti] + split : 0;
    if (active) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = rp.row[i];
        if (r >= rows) continue;
        const float inv = l[i] > 0 ? 1.0f / l[i] : 0.0f;
        const int token = tile.firstRow + r / tile.numHeads, head = tile.firstHead + r % tile.numHeads;
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) {
          const int col = half * (L / 2) + j * 8 + 2 * t4;
          const float x0 = acc[j][2 * i] * inv, x1 = acc[j][2 * i + 1] * inv;
          if (shared) {
            float* o = p.partialOut + (static_cast<size_t>(slot) * kMlaTileRows + r) * L + col;
            o[0] = x0;
            o[1] = x1;
          } else {
            *reinterpret_cast<__nv_bfloat162*>(p.out + (static_cast<size_t>(token) * p.heads + head) * L + col) = __floats2bfloat162_rn(x0, x1);
          }
        }
        if (shared && half == 0 && t4 == 0) {
          p.partialLse[static_cast<size_t>(slot) * kMlaTileRows + r] = l[i] > 0 ? (m[i] + log2f(l[i])) / kLog2e : -INFINITY;
        }
      }
    }
  }
}

}  // namespace mla::cuda::detail
