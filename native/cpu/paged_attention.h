// Attention over the paged cache, blocked over keys (flash-attention style): each cache block is
// read once for all query rows of a sequence that attend to it (every head of a token, every token
// of a tile), scores for one block at a time, the softmax kept online (running max and sum). No
// buffer of the context's length is ever made; long contexts are split into chunks that run in
// parallel and are merged at the end. GQA, TransMLA's latent GQA and MLA (absorbed: all heads
// against the 576-value latent at once) are all this one loop with different head layouts.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace mla::cpu {

// One layer's pool of cache blocks: [numBlocks][blockSize][entrySize] values, F32 or BF16.
struct PagedLayer {
  void* base = nullptr;
  int blockSize = 64;
  int entrySize = 0;
  DType dtype = DType::kF32;

  size_t valueIndex(const int32_t* blockTable, int pos) const {
    const size_t block = static_cast<size_t>(blockTable[pos / blockSize]);
    return (block * static_cast<size_t>(blockSize) + static_cast<size_t>(pos % blockSize)) * static_cast<size_t>(entrySize);
  }
  // Writes values [offset, offset + count) of position pos's entry (rounded to bf16 in a BF16 pool).
  void write(const int32_t* blockTable, int pos, int offset, const float* src, int count) const;
  // Reads them back as floats.
  void read(const int32_t* blockTable, int pos, int offset, float* dst, int count) const;
  // Block `block`'s entries [blockSize][entrySize] as stored (T: float for F32, uint16_t for BF16).
  template <typename T>
  const T* blockData(int32_t block) const {
    return static_cast<const T*>(base) + static_cast<size_t>(block) * static_cast<size_t>(blockSize) * static_cast<size_t>(entrySize);
  }
};

// How query heads read a cache entry: query head h uses key/value head g = h / headsPerKv, whose
// key is dk values at kBase + g * kvStride and whose value is dv values at vBase + g * kvStride.
struct HeadLayout {
  int numHeads = 0;
  int headsPerKv = 1;
  int kBase = 0, vBase = 0, kvStride = 0;
  int dk = 0, dv = 0;
  float scale = 1;
  int window = 0;  // 0, or a token at pos sees only positions (pos - window, pos]
};

// One sequence's new tokens: rows tokenOffset .. tokenOffset + numTokens - 1 of q and out, at
// positions start .. start + numTokens - 1; the cache holds every position up to the last.
struct PagedQuery {
  const int32_t* blockTable = nullptr;
  int start = 0;
  int numTokens = 0;
  int tokenOffset = 0;
};

// out[row][h][0..dv) = softmax_t(q[row][h] · k_t · scale) · v_t over the positions the row sees.
// q: [rows][numHeads][dk], out: [rows][numHeads][dv]. What a row gets depends on its own sequence
// only (never on the rest of the batch or on the thread count).
void pagedAttention(ThreadPool& pool, const PagedLayer& cache, const HeadLayout& layout,
                    const std::vector<PagedQuery>& queries, const float* q, float* out);

}  // namespace mla::cpu
