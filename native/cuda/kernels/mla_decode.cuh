// Fused, absorbed MLA attention over the paged latent cache, for decode and prefill rows alike.
//
// Each query row (a token of the step) attends, for every head, to the first rowLength[row] cache
// entries [c_kv | k_pe] of its sequence, read through the block table. The query arrives absorbed:
// qLatent = q_nope · W_UK (per head, L values) and qRope (R values, RoPE applied), so one latent
// "head" serves all query heads:
//   score_t = scale * (qLatent · c_t + qRope · kpe_t),  out = sum_t softmax(score)_t c_t   (L values)
// W_UV and o_proj come after, outside.
//
// Work: the rows are folded into tiles of up to 64 query rows, heads x tokens of one sequence (64
// heads of one token, or 16 heads of 4 tokens, ...), so every cache page is read once per tile. A
// small scheduling kernel cuts the tiles' key chunks (32 keys, half a page) into equal spans, one
// per CTA of a persistent grid (FlashMLA's tile-scheduler metadata); a tile cut across CTAs leaves
// partial results that a log-sum-exp combine merges.
#pragma once
#include <cstdint>
#include <vector>

#include "cuda/common.h"

namespace mla::cuda {

constexpr int kMlaBlockSize = 64;  // tokens per cache block (the pages)
constexpr int kMlaTileRows = 64;   // query rows per tile (= per CTA at a time)
constexpr int kMlaChunk = 32;      // keys per pipeline stage

// Query rows tokens [firstRow, firstRow + numTokens) x heads [firstHead, firstHead + numHeads) of
// one sequence; tile row r is token firstRow + r / numHeads, head firstHead + r % numHeads.
struct MlaTile {
  int32_t seq;        // block-table row
  int32_t firstRow;
  int32_t numTokens;
  int32_t firstHead;
  int32_t numHeads;
  int32_t length;     // keys the tile reads: rowLength of its last token
};

// The chunks CTA i computes: from (beginTile, beginChunk) up to, not including, (endTile, endChunk);
// firstSplit is which part of beginTile this is (0: the CTA starts the tile).
struct MlaWorkSpan {
  int32_t beginTile, beginChunk, endTile, endChunk, firstSplit;
};

// What the scheduling kernel writes (device buffers the caller provides).
struct MlaSchedule {
  MlaWorkSpan* spans = nullptr;  // [numCtas]
  int32_t* tileStart = nullptr;  // [numTiles + 1] cost prefix (scratch)
  int32_t* tileSplits = nullptr; // [numTiles] CTAs that share the tile
  int32_t* tileSlot = nullptr;   // [numTiles] first partial slot of a shared tile
  int numCtas = 0;
};

struct MlaDecodeParams {
  const bf16* qLatent = nullptr;         // [rows, heads, L]
  const bf16* qRope = nullptr;           // [rows, heads, R]
  const bf16* cache = nullptr;           // [numBlocks, 64, L + R]: one layer's pool
  const int32_t* blockTables = nullptr;  // [numSeqs, maxBlocksPerSeq]
  const int32_t* rowLength = nullptr;    // [rows] keys attended (causal: position + 1)
  const MlaTile* tiles = nullptr;        // [numTiles]
  int numTiles = 0;
  int heads = 0;
  int maxBlocksPerSeq = 0;
  float scale = 1.0f;
  MlaSchedule schedule;
  float* partialOut = nullptr;           // [mlaPartialSlots(numCtas), 64, L]
  float* partialLse = nullptr;           // [mlaPartialSlots(numCtas), 64]
  bf16* out = nullptr;                   // [rows, heads, L]
};

// One sequence's rows in the step: rows [firstRow, firstRow + numTokens) of block-table row seq.
struct MlaSeqRows {
  int seq, firstRow, numTokens;
};

// The tiles of a step (host): each sequence's tokens in groups, heads in groups of up to 64.
std::vector<MlaTile> mlaTiles(const std::vector<MlaSeqRows>& seqs, const int32_t* rowLength, int heads);
// Most tiles a step of maxTokens tokens in maxSeqs sequences can have.
size_t mlaMaxTiles(int maxTokens, int maxSeqs, int heads);

// The persistent grid: CTAs per launch for shape (L, R) on a GPU with numSms SMs.
int mlaDecodeCtas(int kvLoraRank, int qkRopeDim, int numSms);
// Partial-result slots a launch of numCtas CTAs may fill (shared tiles get one per part).
inline size_t mlaPartialSlots(int numCtas) { return 2 * static_cast<size_t>(numCtas); }

// Schedules, runs and combines; throws for shapes not in MLA_FOR_EACH_DECODE_SHAPE.
void mlaDecode(const MlaDecodeParams& p, int kvLoraRank, int qkRopeDim, cudaStream_t stream);
// The two halves: the schedule depends only on the tiles, so the layers of a step share one.
void mlaSchedule(const MlaDecodeParams& p, cudaStream_t stream);
void mlaDecodeScheduled(const MlaDecodeParams& p, int kvLoraRank, int qkRopeDim, cudaStream_t stream);

// Whether (L, R) has an instantiation.
bool mlaDecodeSupports(int kvLoraRank, int qkRopeDim);

}  // namespace mla::cuda
