// What one forward pass computes: a flat run of new tokens from many sequences.
#pragma once
#include <cstdint>
#include <vector>

namespace mla {

// One sequence's share of a forward batch.
struct SeqSlice {
  int start = 0;        // position of the first new token (= tokens already in the cache)
  int numTokens = 0;    // new tokens this step
  int tokenOffset = 0;  // index of the first new token in ForwardBatch::tokenIds
  const int32_t* blockTable = nullptr;  // [numBlocks] cache blocks for positions [0, start + numTokens)
  int numBlocks = 0;
};

struct ForwardBatch {
  const int32_t* tokenIds = nullptr;  // [numTokens]
  int numTokens = 0;
  std::vector<SeqSlice> seqs;
  std::vector<int32_t> logitRows;  // token indices whose logits are wanted, in output order
};

// Attention path for MLA; kAuto picks by a cost model (absorbed for decode).
enum class MlaPath { kAuto, kAbsorbed, kExpanded };

}  // namespace mla
