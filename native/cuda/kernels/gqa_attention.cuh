// GQA attention over the paged cache (decode and prefill rows alike), for serving the original
// models on the same engine. Each query row attends to keys [windowStart, rowLength) of its
// sequence; the cache holds [K heads | V heads] per token.
#pragma once
#include <cstdint>

#include "cuda/common.h"

namespace mla::cuda {

struct GqaAttentionParams {
  const bf16* q = nullptr;             // [rows, heads, D], RoPE applied
  const bf16* cache = nullptr;         // [numBlocks, blockSize, 2 * kvHeads * D]
  const int32_t* blockTables = nullptr;  // [numSeqs, maxBlocksPerSeq]
  const int32_t* rowSeq = nullptr;     // [rows]
  const int32_t* rowLength = nullptr;  // [rows] keys up to and including the row's position
  int rows = 0, heads = 0, kvHeads = 0, headDim = 0, blockSize = 64, maxBlocksPerSeq = 0;
  int slidingWindow = 0;               // 0: none
  float scale = 1.0f;
  bf16* out = nullptr;                 // [rows, heads, D]
};

void gqaAttention(const GqaAttentionParams& p, cudaStream_t stream);

}  // namespace mla::cuda
