// The CPU kernels, written once over cpu/vec.h's register and compiled once per ISA
// (kernels_base.cpp, kernels_avx512.cpp). Include kernel_prelude.h first; include nothing here.
#include "cpu/microkernels.h"
#include "cpu/simd.h"

namespace mla::cpu::MLA_KERNEL_NS {

namespace {

// The next 4 weight rows (contiguous: `bytes` from p) into L2 while x's tiles work on these: the
// hardware's prefetchers, following 4 rows at once and only as each tile's first pass reads them,
// left an LM head of 32,000 x 256 at m = 8 waiting on memory (+25-40% with this, Zen 3; resident
// matrices unchanged).
inline void prefetchRows(const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  for (size_t line = 0; line < bytes; line += 64) __builtin_prefetch(c + line, 0, 2);
}

// rows (< MR + 1) rows of x against 4 rows of w in one dotTile<rows>: store(a, sums of row a).
template <int MR, typename T, typename Store>
void tailRows(const float* const* x, int rows, const T* const* w, int k, Store store) {
  if constexpr (MR > 0) {
    if (rows < MR) return tailRows<MR - 1>(x, rows, w, k, store);
    float s[MR][4];
    dotTile<MR>(x, w, k, s);
    for (int a = 0; a < MR; ++a) store(a, s[a]);
  }
}

template <typename T>
void matmulRowsOf(const float* x, int m, const T* w, int n, int k, const float* bias, float* y, int rowBegin, int rowEnd, WeightStream stream) {
  // Keep a block of x rows hot in L2 while 4 weight rows at a time stream past it.
  constexpr int MR = kRowTile;
  const int xBlock = std::max(MR, static_cast<int>((192 * 1024) / (static_cast<size_t>(k) * sizeof(float))) / MR * MR);
  for (int i0 = 0; i0 < m; i0 += xBlock) {
    const int i1 = std::min(m, i0 + xBlock);
    const bool streaming = i1 - i0 < MR;  // one x row tile or less: the weights' bandwidth bounds the time
    for (int j = rowBegin; j < rowEnd; j += 4) {
      const int count = std::min(4, rowEnd - j);
      const T* wr[4];
      for (int r = 0; r < 4; ++r) wr[r] = w + static_cast<size_t>(std::min(j + r, rowEnd - 1)) * k;
      auto store = [&](int row, const float* s) {
        float* yr = y + static_cast<size_t>(row) * n + j;
        for (int c = 0; c < count; ++c) yr[c] = s[c] + (bias ? bias[j + c] : 0.0f);
      };
      if (!streaming && j + 4 < rowEnd) prefetchRows(w + static_cast<size_t>(j + 4) * k, static_cast<size_t>(std::min(4, rowEnd - j - 4)) * k * sizeof(T));
      int i = i0;
      for (; i + MR <= i1; i += MR) {
        const float* xr[MR];
        for (int a = 0; a < MR; ++a) xr[a] = x + static_cast<size_t>(i + a) * k;
        float s[MR][4];
        dotTile<MR>(xr, wr, k, s);
        for (int a = 0; a < MR; ++a) store(i + a, s[a]);
      }
      if (!streaming && i < i1) {  // the last rows (fewer than a tile's) in one call: w read once more, not once a row
        const float* xr[MR];
        for (int a = 0; a < i1 - i; ++a) xr[a] = x + static_cast<size_t>(i + a) * k;
        tailRows<MR - 1>(xr, i1 - i, wr, k, [&](int a, const float* s) { store(i + a, s); });
        i = i1;
      }
      for (; i < i1; ++i) {
        const float* xr[1] = {x + static_cast<size_t>(i) * k};
        float s[1][4];
        if (stream == WeightStream::kTwoRows) dotRows<1, 2>(xr, wr, k, s);
        else dotRows<1, 1>(xr, wr, k, s);
        store(i, s[0]);
      }
    }
  }
}

void matmulRows(const float* x, int m, const Matrix& w, const float* bias, float* y, int rowBegin, int rowEnd, WeightStream stream) {
  if (w.dtype == DType::kBF16) matmulRowsOf(x, m, static_cast<const uint16_t*>(w.data), w.rows, w.cols, bias, y, rowBegin, rowEnd, stream);
  else matmulRowsOf(x, m, static_cast<const float*>(w.data), w.rows, w.cols, bias, y, rowBegin, rowEnd, stream);
}

constexpr int kTileTokens = 16;  // query tokens of one work item
constexpr int kChunkBlocks = 8;  // a one-tile query's context is split into chunks of this many blocks
constexpr float kMinusInf = -std::numeric_limits<float>::infinity();
constexpr int kPrefetchKeys = 4;  // keys of the scores per share of the next block's prefetch

// A tile of one query's tokens against a range of cache blocks. Its state: m [rows], l [rows],
// acc [rows][dv] with rows = tile tokens × heads (row (i, h) = i * heads + h).
struct Item {
  int query, tok0, tok1, block0, block1;
  size_t state;
};

// The items of one tile, consecutive, merged in order.
struct Tile {
  int query, tok0, tok1, firstItem, numItems;
};

// Runs fn(i) for i in [0, n) on every thread of the pool, each taking the next index as it frees.
template <typename Fn>
void forEachDynamic(ThreadPool& pool, int n, Fn fn) {
  std::atomic<int> next{0};
  pool.parallelFor(std::min(n, pool.numThreads()), [&](int64_t, int64_t) {
    for (int i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
  });
}

// Prefetches a cache block of `lines` 64-byte lines into L2 in `shares` parts (the last may be
// shorter), the next part at each step(). The part's size is fixed once: no division per step.
class BlockPrefetch {
 public:
  BlockPrefetch() = default;
  BlockPrefetch(const void* base, size_t lines, int shares)
      : next_(static_cast<const char*>(base)), end_(next_ + 64 * lines), partBytes_(64 * ((lines + shares - 1) / shares)) {}
  void step() {
    const char* stop = next_ + std::min<size_t>(partBytes_, static_cast<size_t>(end_ - next_));
    for (; next_ < stop; next_ += 64) __builtin_prefetch(next_, 0, 2);
  }

 private:
  const char* next_ = nullptr;
  const char* end_ = nullptr;
  size_t partBytes_ = 0;
};

class Attention {
 public:
  Attention(const PagedLayer& cache, const HeadLayout& layout, const std::vector<PagedQuery>& queries, const float* q)
      : cache_(cache), layout_(layout), queries_(queries), q_(q) {}

  void plan() {
    const int H = layout_.numHeads, bs = cache_.blockSize;
    size_t state = 0;
    for (int qi = 0; qi < static_cast<int>(queries_.size()); ++qi) {
      const PagedQuery& query = queries_[static_cast<size_t>(qi)];
      const bool oneTile = query.numTokens <= kTileTokens;
      for (int tok0 = 0; tok0 < query.numTokens; tok0 += kTileTokens) {
        const int tok1 = std::min(query.numTokens, tok0 + kTileTokens);
        const int block0 = firstPos(query, tok0) / bs, block1 = lastPos(query, tok1 - 1) / bs + 1;
        const int step = oneTile ? kChunkBlocks : block1 - block0;
        tiles_.push_back({qi, tok0, tok1, static_cast<int>(items_.size()), 0});
        for (int b = block0; b < block1; b += step) {
          items_.push_back({qi, tok0, tok1, b, std::min(block1, b + step), state});
          state += static_cast<size_t>(tok1 - tok0) * H * (layout_.dv + 2);
          ++tiles_.back().numItems;
        }
      }
    }
    states_.resize(state);
  }

  void run(ThreadPool& pool, float* out) {
    const int n = static_cast<int>(items_.size());
    // The largest items are last: start them first. A BF16 cache is read as it is, widened in registers.
#ifdef MLA_KERNEL_AMX
    const bool tiles = amxApplies();
#endif
    forEachDynamic(pool, n, [&](int i) {
      const Item& item = items_[static_cast<size_t>(n - 1 - i)];
#ifdef MLA_KERNEL_AMX
      if (tiles) return runItemAmx(item);
#endif
      if (cache_.dtype == DType::kBF16) runItem<uint16_t>(item);
      else runItem<float>(item);
    });
    forEachDynamic(pool, static_cast<int>(tiles_.size()), [&](int t) { merge(tiles_[static_cast<size_t>(t)], out); });
  }

 private:
  int lastPos(const PagedQuery& query, int token) const { return query.start + token; }
  int firstPos(const PagedQuery& query, int token) const {
    return layout_.window > 0 ? std::max(0, lastPos(query, token) - layout_.window + 1) : 0;
  }

  // An item's softmax state, emptied: m [rows] (-inf), l [rows] and acc [rows][dv] (zeros).
  void resetState(const Item& item, int rows, float*& m, float*& l, float*& acc) {
    m = states_.data() + item.state;
    l = m + rows;
    acc = l + rows;
    std::fill(m, m + rows, kMinusInf);
    std::fill(l, l + rows, 0.0f);
    std::fill(acc, acc + static_cast<size_t>(rows) * layout_.dv, 0.0f);
  }

#ifdef MLA_KERNEL_AMX
  // The tiles' form (amx_attention.h): every head of a token against one shared entry (MLA's
  // absorbed latent, a latent GQA), a BF16 cache, whole tiles of keys and values.
  bool amxApplies() const;
  void runItemAmx(const Item& item);
#endif

  template <typename T>
  void runItem(const Item& item) {
    const HeadLayout& lay = layout_;
    const PagedQuery& query = queries_[static_cast<size_t>(item.query)];
    const int H = lay.numHeads, hpk = lay.headsPerKv, groups = H / hpk, bs = cache_.blockSize, E = cache_.entrySize;
    const int tokens = item.tok1 - item.tok0, rows = tokens * H, groupRows = tokens * hpk;
    float *m, *l, *acc;
    resetState(item, rows, m, l, acc);

    std::vector<float> scores(static_cast<size_t>(groupRows) * bs);
    std::vector<const float*> qRows(static_cast<size_t>(groupRows));
    std::vector<const T*> keys(static_cast<size_t>(bs)), values(static_cast<size_t>(bs));
    std::vector<const float*> coefRows(static_cast<size_t>(groupRows));
    std::vector<float*> accRows(static_cast<size_t>(groupRows));
    std::vector<int> rowOf(static_cast<size_t>(groupRows));  // group row -> tile row

    const int tileFirst = firstPos(query, item.tok0), tileLast = lastPos(query, item.tok1 - 1);
    const size_t blockLines = static_cast<size_t>(bs) * E * sizeof(T) / 64;
    BlockPrefetch firstBlock(cache_.blockData<T>(query.blockTable[item.block0]), blockLines, 1);
    firstBlock.step();  // all at once (nothing to overlap it with), in memory order
    for (int b = item.block0; b < item.block1; ++b) {
      const int pos0 = b * bs;
      const int t0 = std::max(0, tileFirst - pos0), t1 = std::min(bs, tileLast + 1 - pos0);  // never past the last written entry
      if (t1 <= t0) continue;
      const int n = t1 - t0;
      const T* entries = cache_.blockData<T>(query.blockTable[b]);
      // The next block into L2 while this one is worked on, a share per kPrefetchKeys keys of the
      // scores: the groups read a block in strides (a group's key and value of every entry), which
      // the hardware's prefetchers do not follow.
      BlockPrefetch ahead;
      if (b + 1 < item.block1) ahead = BlockPrefetch(cache_.blockData<T>(query.blockTable[b + 1]), blockLines, groups * ((n + kPrefetchKeys - 1) / kPrefetchKeys));
      for (int g = 0; g < groups; ++g) {
        for (int t = 0; t < n; ++t) {
          const T* e = entries + static_cast<size_t>(t0 + t) * E + static_cast<size_t>(g) * lay.kvStride;
          keys[static_cast<size_t>(t)] = e + lay.kBase;
          values[static_cast<size_t>(t)] = e + lay.vBase;
        }
        for (int i = 0; i < tokens; ++i) {
          for (int j = 0; j < hpk; ++j) {
            const int gr = i * hpk + j, r = i * H + g * hpk + j;
            rowOf[static_cast<size_t>(gr)] = r;
            qRows[static_cast<size_t>(gr)] = q_ + ((static_cast<size_t>(query.tokenOffset + item.tok0 + i)) * H + g * hpk + j) * lay.dk;
            accRows[static_cast<size_t>(gr)] = acc + static_cast<size_t>(r) * lay.dv;
            coefRows[static_cast<size_t>(gr)] = scores.data() + static_cast<size_t>(gr) * bs;
          }
        }
        blockScores(qRows.data(), groupRows, keys.data(), n, scores.data(), bs, ahead);
        for (int gr = 0; gr < groupRows; ++gr) {
          const int r = rowOf[static_cast<size_t>(gr)], token = item.tok0 + gr / hpk;
          const int last = lastPos(query, token), first = firstPos(query, token);
          float* s = scores.data() + static_cast<size_t>(gr) * bs;
          simd::scale(s, lay.scale, n);
          const int visible0 = std::clamp(first - (pos0 + t0), 0, n), visible1 = std::clamp(last + 1 - (pos0 + t0), visible0, n);
          std::fill(s, s + visible0, kMinusInf);  // positions before the window, and after the row's own
          std::fill(s + visible1, s + n, kMinusInf);
          const float blockMax = simd::maxOf(s, n);
          if (blockMax == kMinusInf) {  // nothing of this block is visible to the row
            std::fill(s, s + n, 0.0f);
            continue;
          }
          const float mNew = std::max(m[r], blockMax);
          const float alpha = m[r] == kMinusInf ? 0.0f : std::exp(m[r] - mNew);
          const float sum = static_cast<float>(simd::expShifted(s, mNew, s, n));
          l[r] = l[r] * alpha + sum;
          m[r] = mNew;
          if (alpha != 1.0f) {
            float* a = acc + static_cast<size_t>(r) * lay.dv;
            for (int d = 0; d < lay.dv; ++d) a[d] *= alpha;
          }
        }
        blockValues(coefRows.data(), groupRows, values.data(), n, accRows.data());
      }
    }
  }

  // acc[r] += Σ_t coef[r][t] · v[t] for r < rows, t < n.
  template <typename T>
  void blockValues(const float* const* coef, int rows, const T* const* v, int n, float* const* acc) const {
    int r = 0;
    for (; r + kAxpyTile <= rows; r += kAxpyTile) axpyTile<kAxpyTile>(coef + r, v, n, acc + r, layout_.dv);
    for (; r < rows; ++r) axpyTile<1>(coef + r, v, n, acc + r, layout_.dv);
  }

  // scores[r][t] = q[r] · k[t] for r < rows, t < n (row stride `stride`), in tiles of MR rows x NK
  // keys (microkernels.h: kScoreRows for a few rows, kRowTile for many).
  template <typename T>
  void blockScores(const float* const* q, int rows, const T* const* k, int n, float* scores, int stride, BlockPrefetch& ahead) const {
    if (rows >= kManyRows) blockScoresOf<kRowTile, 4>(q, rows, k, n, scores, stride, ahead);  // matmul's tile
    else blockScoresOf<kScoreRows, kScoreKeys>(q, rows, k, n, scores, stride, ahead);
  }

  template <int MR, int NK, typename T>
  void blockScoresOf(const float* const* q, int rows, const T* const* k, int n, float* scores, int stride, BlockPrefetch& ahead) const {
    static_assert(kPrefetchKeys % NK == 0, "a prefetch share is a whole number of steps");
    for (int t = 0; t < n; t += NK) {
      if (t % kPrefetchKeys == 0) ahead.step();
      const int count = std::min(NK, n - t);
      const T* kt[NK];
      for (int c = 0; c < NK; ++c) kt[c] = k[std::min(t + c, n - 1)];
      // Scores unscaled (the row's softmax pass scales). All NK of a step are written where the
      // row has room (a key past n repeats the last one; the softmax reads n), else only count.
      int r = 0;
      if (t + NK <= stride) {
        float* dst[MR];
        for (; r + MR <= rows; r += MR) {
          for (int a = 0; a < MR; ++a) dst[a] = scores + static_cast<size_t>(r + a) * stride + t;
          dotTileTo<MR, NK>(q + r, kt, layout_.dk, dst);
        }
        for (int a = 0; a < rows - r; ++a) dst[a] = scores + static_cast<size_t>(r + a) * stride + t;
        tailScores<MR - 1, NK>(q + r, rows - r, kt, dst);
        continue;
      }
      for (; r < rows; r += MR) {  // a block size not a multiple of NK: the tile's rows one call each, as many keys as there are
        const int tileRows = std::min(MR, rows - r);
        float s[MR][NK];
        const float* qr[MR];
        for (int a = 0; a < MR; ++a) qr[a] = q[r + std::min(a, tileRows - 1)];
        dotTile<MR, NK>(qr, kt, layout_.dk, s);
        for (int a = 0; a < tileRows; ++a) std::copy_n(s[a], count, scores + static_cast<size_t>(r + a) * stride + t);
      }
    }
  }

  // The last rows (fewer than a tile's) against the same keys in one dotTile, so each key chunk
  // is widened once for all of them.
  template <int MR, int NK, typename T>
  void tailScores(const float* const* q, int rows, const T* const* kt, float* const* dst) const {
    if constexpr (MR > 0) {
      if (rows < MR) return tailScores<MR - 1, NK>(q, rows, kt, dst);
      dotTileTo<MR, NK>(q, kt, layout_.dk, dst);
    }
  }

  // out = the tile's chunks merged: Σ acc_c e^(m_c - M) / Σ l_c e^(m_c - M), M = max m_c.
  void merge(const Tile& tile, float* out) const {
    const PagedQuery& query = queries_[static_cast<size_t>(tile.query)];
    const int H = layout_.numHeads, dv = layout_.dv, rows = (tile.tok1 - tile.tok0) * H;
    float* o = out + (static_cast<size_t>(query.tokenOffset + tile.tok0)) * H * dv;
    for (int r = 0; r < rows; ++r) {
      float M = kMinusInf;
      for (int c = 0; c < tile.numItems; ++c) M = std::max(M, states_[items_[static_cast<size_t>(tile.firstItem + c)].state + r]);
      float* orow = o + static_cast<size_t>(r) * dv;
      std::fill(orow, orow + dv, 0.0f);
      double denom = 0;
      for (int c = 0; c < tile.numItems; ++c) {
        const float* m = states_.data() + items_[static_cast<size_t>(tile.firstItem + c)].state;
        if (m[r] == kMinusInf) continue;
        const float w = std::exp(m[r] - M);
        denom += static_cast<double>(m[rows + r]) * w;
        simd::axpy(w, m + 2 * static_cast<size_t>(rows) + static_cast<size_t>(r) * dv, orow, dv);
      }
      const float inv = static_cast<float>(1.0 / denom);
      for (int d = 0; d < dv; ++d) orow[d] *= inv;
    }
  }

  const PagedLayer& cache_;
  const HeadLayout& layout_;
  const std::vector<PagedQuery>& queries_;
  const float* q_;
  std::vector<Item> items_;
  std::vector<Tile> tiles_;
  std::vector<float> states_;
};

void pagedAttention(ThreadPool& pool, const PagedLayer& cache, const HeadLayout& layout,
                    const std::vector<PagedQuery>& queries, const float* q, float* out) {
  Attention attention(cache, layout, queries, q);
  attention.plan();
  attention.run(pool, out);
}

}  // namespace

}  // namespace mla::cpu::MLA_KERNEL_NS
