// Paged-cache bookkeeping: which blocks each sequence owns, reference counts, prefix sharing.
// Holds no cache memory itself: the backend owns [layers][blocks][blockSize][entry].
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace mla {

class BlockManager {
 public:
  BlockManager(int numBlocks, int blockSize, bool enablePrefixCaching);

  int numBlocks() const { return numBlocks_; }
  int blockSize() const { return blockSize_; }
  int numFreeBlocks() const { return numFree_; }
  int blocksFor(int numTokens) const { return (numTokens + blockSize_ - 1) / blockSize_; }
  bool hasSequence(int64_t seqId) const { return seqs_.count(seqId) != 0; }

  // Gives a new sequence blocks for tokens[0, numTokens), reusing cached blocks whose tokens match
  // a prefix when prefix caching is on. Returns the number of leading tokens whose cache entries
  // are already computed (a multiple of the block size, always < numTokens), or nothing when the
  // free blocks do not suffice (then nothing changes).
  // usePrefixHits false: no cached block is reused (scoring needs every position computed).
  std::optional<int> allocate(int64_t seqId, const int32_t* tokens, int numTokens, bool usePrefixHits = true);
  // Grows the sequence's table to hold numTokens; false (and no change) when blocks run out.
  bool ensureCapacity(int64_t seqId, int numTokens);
  // Drops the sequence; returns the blocks that became free and hold no reusable prefix (tests
  // poison them).
  std::vector<int> free(int64_t seqId);
  // Records that the sequence computed `count` more tokens (ids given); blocks that become full
  // are registered for prefix sharing.
  void markComputed(int64_t seqId, const int32_t* tokens, int count);

  const std::vector<int32_t>& blockTable(int64_t seqId) const;
  int numComputedTokens(int64_t seqId) const;
  int64_t prefixHitTokens() const { return prefixHitTokens_; }
  int64_t prefixQueryTokens() const { return prefixQueryTokens_; }
  // Throws mla::Error if reference counts, the free list, the prefix index and tables disagree.
  void checkIntegrity() const;

 private:
  struct Block {
    int refCount = 0;
    bool hashed = false;
    uint64_t hash = 0;
    std::vector<int32_t> tokens;  // the block's token ids while hashed (to rule out collisions)
    int prevFree = -1, nextFree = -1;  // links in the free list while refCount == 0
    bool inFreeList = false;
  };
  struct Sequence {
    std::vector<int32_t> table;
    int numComputed = 0;
    uint64_t lastHash = 0;         // hash of the last full block (chain)
    std::vector<int32_t> pending;  // tokens of the partly filled block, computed so far
  };

  // The sequence's state; throws "unknown sequence N" for an id without blocks.
  Sequence& sequence(int64_t seqId);
  const Sequence& sequence(int64_t seqId) const;
  static uint64_t hashBlock(uint64_t prev, const int32_t* tokens, int n);
  std::optional<int> lookup(uint64_t hash, const int32_t* tokens) const;
  int takeFreeBlock();  // pops the least recently freed block, evicting its hash
  void pushFree(int block);
  void unlinkFree(int block);
  void release(int block, std::vector<int>& freed);

  int numBlocks_, blockSize_;
  bool prefixCaching_;
  std::vector<Block> blocks_;
  int freeHead_ = -1, freeTail_ = -1, numFree_ = 0;
  std::unordered_map<uint64_t, int> hashToBlock_;
  std::unordered_map<int64_t, Sequence> seqs_;
  int64_t prefixHitTokens_ = 0, prefixQueryTokens_ = 0;
};

}  // namespace mla
