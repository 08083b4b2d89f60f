// Fused, absorbed MLA attention over the paged latent cache (decode, and prefill rows alike).
//
// Each query row (a decoding sequence's new token, or one prompt token) attends, for every head,
// to the first rowLength[row] cache entries [c_kv | k_pe] of its sequence, read through the block
// table. The query arrives already absorbed: qLatent = q_nope · W_UK (per head, L values) and
// qRope (R values, RoPE applied), so one latent "head" serves all query heads:
//   score_t = scale * (qLatent · c_t + qRope · kpe_t),  out = sum_t softmax(score)_t c_t   (L values)
// W_UV and o_proj come after, outside. Long rows are split over KV ranges (split-KV) whose
// partial results a combine kernel merges by their log-sum-exp, as FlashMLA does.
#pragma once
#include <cstdint>

#include "cuda/common.h"

namespace mla::cuda {

constexpr int kMlaBlockSize = 64;  // tokens per cache block (the pages)

struct MlaDecodeParams {
  const bf16* qLatent = nullptr;       // [rows, heads, L]
  const bf16* qRope = nullptr;         // [rows, heads, R]
  const bf16* cache = nullptr;         // [numBlocks, 64, L + R]: one layer's pool
  const int32_t* blockTables = nullptr;  // [numSeqs, maxBlocksPerSeq]
  const int32_t* rowSeq = nullptr;     // [rows] block-table row of each query row
  const int32_t* rowLength = nullptr;  // [rows] keys attended (causal: position + 1)
  int rows = 0;
  int heads = 0;
  int maxBlocksPerSeq = 0;
  float scale = 1.0f;
  int numSplits = 1;                   // KV ranges per row (>= 1)
  float* partialOut = nullptr;         // [rows, numSplits, heads, L] when numSplits > 1
  float* partialLse = nullptr;         // [rows, numSplits, heads]
  bf16* out = nullptr;                 // [rows, heads, L]
};

// Launches the kernel instantiated for (L, R); throws for shapes not in MLA_FOR_EACH_DECODE_SHAPE.
void mlaDecode(const MlaDecodeParams& p, int kvLoraRank, int qkRopeDim, cudaStream_t stream);

// Whether (L, R) has an instantiation.
bool mlaDecodeSupports(int kvLoraRank, int qkRopeDim);

// A split count that fills the GPU: enough CTAs for every SM, never more splits than pages.
int mlaDecodeSplits(int rows, int heads, int maxRowLength, int numSms);

// The most (row, split) pairs of partial results any step of at most maxRows rows can need.
size_t mlaDecodePartialRows(int maxRows, int heads, int maxRowLength, int numSms);

}  // namespace mla::cuda
