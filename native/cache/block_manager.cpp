#include "cache/block_manager.h"

#include "core/error.h"

namespace mla {

BlockManager::BlockManager(int numBlocks, int blockSize, bool enablePrefixCaching)
    : numBlocks_(numBlocks), blockSize_(blockSize), prefixCaching_(enablePrefixCaching), blocks_(static_cast<size_t>(numBlocks)) {
  check(numBlocks > 0 && blockSize > 0, "the cache needs at least one block");
  for (int b = 0; b < numBlocks; ++b) pushFree(b);
}

BlockManager::Sequence& BlockManager::sequence(int64_t seqId) {
  auto it = seqs_.find(seqId);
  check(it != seqs_.end(), "unknown sequence " + std::to_string(seqId));
  return it->second;
}

const BlockManager::Sequence& BlockManager::sequence(int64_t seqId) const {
  auto it = seqs_.find(seqId);
  check(it != seqs_.end(), "unknown sequence " + std::to_string(seqId));
  return it->second;
}

uint64_t BlockManager::hashBlock(uint64_t prev, const int32_t* tokens, int n) {
  uint64_t h = prev ^ 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < n; ++i) {
    h ^= static_cast<uint32_t>(tokens[i]);
    h *= 0x100000001b3ull;  // FNV-1a step, then a final mix
    h ^= h >> 29;
  }
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  return h ^ (h >> 32);
}

void BlockManager::pushFree(int b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  blk.prevFree = freeTail_;
  blk.nextFree = -1;
  if (freeTail_ >= 0) blocks_[static_cast<size_t>(freeTail_)].nextFree = b;
  else freeHead_ = b;
  freeTail_ = b;
  blk.inFreeList = true;
  ++numFree_;
}

void BlockManager::unlinkFree(int b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.prevFree >= 0) blocks_[static_cast<size_t>(blk.prevFree)].nextFree = blk.nextFree;
  else freeHead_ = blk.nextFree;
  if (blk.nextFree >= 0) blocks_[static_cast<size_t>(blk.nextFree)].prevFree = blk.prevFree;
  else freeTail_ = blk.prevFree;
  blk.prevFree = blk.nextFree = -1;
  blk.inFreeList = false;
  --numFree_;
}

int BlockManager::takeFreeBlock() {
  const int b = freeHead_;
  unlinkFree(b);
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.hashed) {  // evict its cached content
    auto it = hashToBlock_.find(blk.hash);
    if (it != hashToBlock_.end() && it->second == b) hashToBlock_.erase(it);
    blk.hashed = false;
    blk.tokens.clear();
  }
  blk.refCount = 1;
  return b;
}

void BlockManager::release(int b, std::vector<int>& freed) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (--blk.refCount == 0) {
    pushFree(b);
    if (!blk.hashed) freed.push_back(b);
  }
}

std::optional<int> BlockManager::lookup(uint64_t hash, const int32_t* tokens) const {
  auto it = hashToBlock_.find(hash);
  if (it == hashToBlock_.end()) return std::nullopt;
  const Block& blk = blocks_[static_cast<size_t>(it->second)];
  for (int i = 0; i < blockSize_; ++i) {
    if (blk.tokens[static_cast<size_t>(i)] != tokens[i]) return std::nullopt;
  }
  return it->second;
}

std::optional<int> BlockManager::allocate(int64_t seqId, const int32_t* tokens, int numTokens, bool usePrefixHits) {
  check(!seqs_.count(seqId), "sequence " + std::to_string(seqId) + " already has blocks");
  check(numTokens > 0, "allocate needs at least one token");
  const int total = blocksFor(numTokens);
  // Find reusable full blocks; the last token is always computed, so a block holding it is not reused.
  std::vector<int> hits;
  uint64_t chain = 0;  // hash of the last hit block
  if (prefixCaching_ && usePrefixHits) {
    for (int b = 0; (b + 1) * blockSize_ < numTokens; ++b) {
      const int32_t* blockTokens = tokens + static_cast<size_t>(b) * blockSize_;
      const uint64_t h = hashBlock(chain, blockTokens, blockSize_);
      auto hit = lookup(h, blockTokens);
      if (!hit) break;
      hits.push_back(*hit);
      chain = h;
    }
  }
  int freeHits = 0;
  for (int b : hits) freeHits += blocks_[static_cast<size_t>(b)].refCount == 0 ? 1 : 0;
  const int fresh = total - static_cast<int>(hits.size());
  if (fresh + freeHits > numFree_) return std::nullopt;

  Sequence seq;
  for (int b : hits) {
    Block& blk = blocks_[static_cast<size_t>(b)];
    if (blk.refCount == 0) unlinkFree(b);
    ++blk.refCount;
    seq.table.push_back(b);
  }
  for (int i = 0; i < fresh; ++i) seq.table.push_back(takeFreeBlock());
  const int cached = static_cast<int>(hits.size()) * blockSize_;
  seq.numComputed = cached;
  seq.lastHash = chain;
  prefixHitTokens_ += cached;
  prefixQueryTokens_ += numTokens;
  seqs_[seqId] = std::move(seq);
  return cached;
}

bool BlockManager::ensureCapacity(int64_t seqId, int numTokens) {
  Sequence& seq = sequence(seqId);
  const int need = blocksFor(numTokens) - static_cast<int>(seq.table.size());
  if (need <= 0) return true;
  if (need > numFree_) return false;
  for (int i = 0; i < need; ++i) seq.table.push_back(takeFreeBlock());
  return true;
}

std::vector<int> BlockManager::free(int64_t seqId) {
  const Sequence& seq = sequence(seqId);
  std::vector<int> freed;
  // Release back to front, so a later sequence's reuse of this prefix finds the first blocks longest.
  for (auto b = seq.table.rbegin(); b != seq.table.rend(); ++b) release(*b, freed);
  seqs_.erase(seqId);
  return freed;
}

void BlockManager::markComputed(int64_t seqId, const int32_t* tokens, int count) {
  Sequence& seq = sequence(seqId);
  check(seq.numComputed + count <= static_cast<int>(seq.table.size()) * blockSize_,
        "sequence " + std::to_string(seqId) + " computed past its blocks");
  for (int i = 0; i < count; ++i) {
    seq.pending.push_back(tokens[i]);
    ++seq.numComputed;
    if (static_cast<int>(seq.pending.size()) < blockSize_) continue;
    seq.lastHash = hashBlock(seq.lastHash, seq.pending.data(), blockSize_);
    const int b = seq.table[static_cast<size_t>(seq.numComputed / blockSize_ - 1)];
    Block& blk = blocks_[static_cast<size_t>(b)];
    if (prefixCaching_ && !blk.hashed && !hashToBlock_.count(seq.lastHash)) {
      blk.hashed = true;
      blk.hash = seq.lastHash;
      blk.tokens = seq.pending;
      hashToBlock_[seq.lastHash] = b;
    }
    seq.pending.clear();
  }
}

const std::vector<int32_t>& BlockManager::blockTable(int64_t seqId) const { return sequence(seqId).table; }

int BlockManager::numComputedTokens(int64_t seqId) const { return sequence(seqId).numComputed; }

void BlockManager::checkIntegrity() const {
  std::vector<int> refs(static_cast<size_t>(numBlocks_), 0);
  for (const auto& [id, seq] : seqs_) {
    for (int b : seq.table) {
      check(b >= 0 && b < numBlocks_, "sequence " + std::to_string(id) + " holds an out-of-range block");
      ++refs[static_cast<size_t>(b)];
    }
  }
  int listed = 0;
  for (int b = freeHead_; b >= 0; b = blocks_[static_cast<size_t>(b)].nextFree) {
    check(blocks_[static_cast<size_t>(b)].refCount == 0, "block " + std::to_string(b) + " is in the free list but referenced");
    check(++listed <= numBlocks_, "the free list has a cycle");
  }
  check(listed == numFree_, "free list length " + std::to_string(listed) + " != free count " + std::to_string(numFree_));
  for (int b = 0; b < numBlocks_; ++b) {
    const Block& blk = blocks_[static_cast<size_t>(b)];
    check(blk.refCount == refs[static_cast<size_t>(b)], "block " + std::to_string(b) + " has reference count " +
                                                             std::to_string(blk.refCount) + " but " +
                                                             std::to_string(refs[static_cast<size_t>(b)]) + " holders");
    check(blk.inFreeList == (blk.refCount == 0), "block " + std::to_string(b) + " free-list membership is wrong");
    if (blk.hashed) {
      auto it = hashToBlock_.find(blk.hash);
      check(it != hashToBlock_.end() && it->second == b, "block " + std::to_string(b) + " hash is not indexed");
    }
  }
  for (const auto& [hash, b] : hashToBlock_) {
    check(blocks_[static_cast<size_t>(b)].hashed && blocks_[static_cast<size_t>(b)].hash == hash, "stale prefix index entry");
  }
}

}  // namespace mla
