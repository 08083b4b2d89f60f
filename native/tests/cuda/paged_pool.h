// A paged cache pool for attention kernel tests: every slot NaN (bf16) until written, sequences on
// shuffled blocks, unused block-table entries out of range, so a stray read fails loudly.
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>

#include "gpu_util.h"

namespace gpu {

struct Pool {
  int blocks = 0, entry = 0;
  std::vector<uint16_t> bits;  // [blocks][64][entry]
  std::vector<std::vector<int32_t>> tables;
  int maxBlocks = 0;
  static constexpr int32_t kUnused = 1 << 29;  // far outside the pool

  Pool(const std::vector<int>& lengths, int entrySize) : entry(entrySize) {
    blocks = 3;  // spare blocks nobody owns: they stay NaN
    for (int len : lengths) blocks += (len + 63) / 64;
    bits.assign(static_cast<size_t>(blocks) * 64 * entry, 0xFFFF);
    std::vector<int32_t> ids(static_cast<size_t>(blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng());
    size_t next = 0;
    for (int len : lengths) {
      std::vector<int32_t> t;
      for (int b = 0; b < (len + 63) / 64; ++b) t.push_back(ids[next++]);
      maxBlocks = std::max<int>(maxBlocks, static_cast<int>(t.size()) + 2);
      tables.push_back(t);
    }
  }
  uint16_t* slot(int seq, int pos) { return bits.data() + (static_cast<size_t>(tables[seq][pos / 64]) * 64 + pos % 64) * entry; }
  // Random bf16 values in every slot a sequence owns up to its length (the rest of its last block stays NaN).
  void fill(const std::vector<int>& lengths, float scale = 1.0f) {
    for (size_t s = 0; s < lengths.size(); ++s)
      for (int t = 0; t < lengths[s]; ++t) {
        auto v = randn(static_cast<size_t>(entry), scale);
        const auto b = roundBf16(v);
        std::copy(b.begin(), b.end(), slot(static_cast<int>(s), t));
      }
  }
  std::vector<int32_t> flatTables() const {
    std::vector<int32_t> flat(tables.size() * static_cast<size_t>(maxBlocks), kUnused);
    for (size_t s = 0; s < tables.size(); ++s) std::copy(tables[s].begin(), tables[s].end(), flat.begin() + static_cast<long>(s * maxBlocks));
    return flat;
  }
};

}  // namespace gpu
