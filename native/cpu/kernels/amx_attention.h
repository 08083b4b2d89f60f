// Attention on AMX tiles where every head reads one shared entry (MLA's absorbed latent, a latent
// GQA: one KV group) from a BF16 cache. Included by kernels_amx.cpp only, after kernels_impl.h
// and amx_tiles.h, inside its target switch; include nothing here.
//
// Per cache block (its entries as the A tiles straight from the cache: 16 keys x 32 values a
// tile, the entry's own stride):
//   scoresᵀ [16 keys x 16 columns] = keys · qᵀ, q packed as matmul packs x (8 rows a panel, each
//     row's hi and lo bf16 halves as two columns: fp32 accuracy);
//   the online softmax of kernels_impl.h's runItem on each row's visible keys;
//   acc += P · V with P as the A tiles (rows 2i, 2i + 1: row i's hi and lo halves, 32 keys) and V
//     as B tiles, pairs of entries interleaved (VNNI order), keys no row sees zeroed (an unwritten
//     entry may hold anything).
// Each score and each value sum depends only on its own row and the block's keys in a fixed
// order, so batching never changes a bit.

namespace mla::cpu::MLA_KERNEL_NS {

namespace {

constexpr int kKeysPerGroup = 4 * kTileRows;  // keys of one pass of the 4 accumulator tiles

// A thread's buffers for one item: q packed, a block's scores, P and V packed.
struct AmxAttentionScratch {
  std::vector<uint8_t> q, p, v;
  std::vector<float> scores;
};


// Accumulator tile t (t < 4) of a runtime index: the tile macros take literals.
inline void dpInto(int t, bool secondA) {
  if (secondA) {
    switch (t) {
      case 0: _tile_dpbf16ps(MLA_C0, MLA_A1, MLA_B0); break;
      case 1: _tile_dpbf16ps(MLA_C1, MLA_A1, MLA_B0); break;
      case 2: _tile_dpbf16ps(MLA_C2, MLA_A1, MLA_B0); break;
      default: _tile_dpbf16ps(MLA_C3, MLA_A1, MLA_B0); break;
    }
    return;
  }
  switch (t) {
    case 0: _tile_dpbf16ps(MLA_C0, MLA_A0, MLA_B0); break;
    case 1: _tile_dpbf16ps(MLA_C1, MLA_A0, MLA_B0); break;
    case 2: _tile_dpbf16ps(MLA_C2, MLA_A0, MLA_B0); break;
    default: _tile_dpbf16ps(MLA_C3, MLA_A0, MLA_B0); break;
  }
}

// C_t += A0 · (B0 for even t, B1 for odd).
inline void dpValues(int t) {
  switch (t) {
    case 0: _tile_dpbf16ps(MLA_C0, MLA_A0, MLA_B0); break;
    case 1: _tile_dpbf16ps(MLA_C1, MLA_A0, MLA_B1); break;
    case 2: _tile_dpbf16ps(MLA_C2, MLA_A0, MLA_B0); break;
    default: _tile_dpbf16ps(MLA_C3, MLA_A0, MLA_B1); break;
  }
}


// P rows [0, rows) (rows <= 8) of 32 keys from column `key` as one A tile: row 2i = row i's hi
// bf16 halves, 2i + 1 its lo; the other rows zero.
inline void packProbabilities(const float* const* p, int rows, int key, uint8_t* tile) {
  for (int i = 0; i < kPanelRows; ++i) {
    if (i >= rows) {
      _mm512_storeu_si512(tile + 128 * i, _mm512_setzero_si512());
      _mm512_storeu_si512(tile + 128 * i + 64, _mm512_setzero_si512());
      continue;
    }
    const Halves h = splitHalves(_mm512_loadu_ps(p[i] + key), _mm512_loadu_ps(p[i] + key + 16));
    _mm512_storeu_si512(tile + 128 * i, h.hi);
    _mm512_storeu_si512(tile + 128 * i + 64, h.lo);
  }
}

constexpr int kSuperBlocks = 4;  // cache blocks a step of the tiles' online softmax spans

// scores[r][col0 + key] = q_r · key for every key of one cache block and rows r < rows (row stride
// W; keys past the written ones are masked by the caller): two q panels at a time against 32 keys
// (each key tile then serves two panels), a last odd panel against 64. The block's entries are
// the A tiles straight from the cache (stride E values; keys from value kBase, dkChunks tiles).
inline void scoreBlock(const uint16_t* entries, int E, int kBase, int bs, int dkChunks, int col0, const uint8_t* qPacked, int panels,
                       int rows, int W, float* scores, BlockPrefetch& ahead) {
  const size_t qPanelBytes = static_cast<size_t>(dkChunks) * kTileBytes;
  const int strideBytes = E * 2;
  auto keyTile = [&](int key, int c) { return entries + static_cast<size_t>(key) * E + kBase + kTileK * c; };
  auto scoreRows = [&](int p, float** sr) {
    const int count = std::min(kPanelRows, rows - p * kPanelRows);
    for (int a = 0; a < count; ++a) sr[a] = scores + static_cast<size_t>(p * kPanelRows + a) * W + col0;
    return count;
  };
  int p = 0;
  for (; p + 2 <= panels; p += 2) {
    const uint8_t* q0p = qPacked + p * qPanelBytes;
    const uint8_t* q1p = q0p + qPanelBytes;
    float* sr0[kPanelRows];
    float* sr1[kPanelRows];
    const int count0 = scoreRows(p, sr0), count1 = scoreRows(p + 1, sr1);
    for (int k0 = 0; k0 < bs; k0 += 2 * kTileRows) {
      zeroAccumulators();
      for (int c = 0; c < dkChunks; ++c) {
        ahead.step();
        _tile_loadd(MLA_A0, keyTile(k0, c), strideBytes);
        _tile_loadd(MLA_B0, q0p + c * kTileBytes, 64);
        _tile_dpbf16ps(MLA_C0, MLA_A0, MLA_B0);
        _tile_loadd(MLA_A1, keyTile(k0 + kTileRows, c), strideBytes);
        _tile_dpbf16ps(MLA_C1, MLA_A1, MLA_B0);
        _tile_loadd(MLA_B1, q1p + c * kTileBytes, 64);
        _tile_dpbf16ps(MLA_C2, MLA_A0, MLA_B1);
        _tile_dpbf16ps(MLA_C3, MLA_A1, MLA_B1);
      }
      storeTile(0, sr0, count0, k0, kTileRows, nullptr);
      storeTile(1, sr0, count0, k0 + kTileRows, kTileRows, nullptr);
      storeTile(2, sr1, count1, k0, kTileRows, nullptr);
      storeTile(3, sr1, count1, k0 + kTileRows, kTileRows, nullptr);
    }
  }
  if (p < panels) {
    const uint8_t* qp = qPacked + p * qPanelBytes;
    float* sr[kPanelRows];
    const int count = scoreRows(p, sr);
    for (int k0 = 0; k0 < bs; k0 += kKeysPerGroup) {
      const int tiles = std::min(4, (bs - k0) / kTileRows);
      zeroAccumulators();
      for (int c = 0; c < dkChunks; ++c) {
        ahead.step();
        _tile_loadd(MLA_B0, qp + c * kTileBytes, 64);
        if (tiles == 4) {  // three tiles for keys in turn (B1 is free here): a load waits less on the product before it
          _tile_loadd(MLA_A0, keyTile(k0, c), strideBytes);
          _tile_dpbf16ps(MLA_C0, MLA_A0, MLA_B0);
          _tile_loadd(MLA_A1, keyTile(k0 + kTileRows, c), strideBytes);
          _tile_dpbf16ps(MLA_C1, MLA_A1, MLA_B0);
          _tile_loadd(MLA_B1, keyTile(k0 + 2 * kTileRows, c), strideBytes);
          _tile_dpbf16ps(MLA_C2, MLA_B1, MLA_B0);
          _tile_loadd(MLA_A0, keyTile(k0 + 3 * kTileRows, c), strideBytes);
          _tile_dpbf16ps(MLA_C3, MLA_A0, MLA_B0);
          continue;
        }
        for (int t = 0; t < tiles; ++t) {
          if (t % 2 == 0) _tile_loadd(MLA_A0, keyTile(k0 + t * kTileRows, c), strideBytes);
          else _tile_loadd(MLA_A1, keyTile(k0 + t * kTileRows, c), strideBytes);
          dpInto(t, t % 2 == 1);
        }
      }
      for (int t = 0; t < tiles; ++t) storeTile(t, sr, count, k0 + t * kTileRows, kTileRows, nullptr);
    }
  }
}

// From 4 heads: with fewer, a panel's 8 rows are mostly padding (bench_attention 2 decode "mla 4",
// the bundled model's 4 heads, 4,096 x 8: 0.30-0.31 ms a layer on the tiles, 0.32-0.34 on
// AVX-512, alternated 3x; 32 heads of 512 + 64: 5.0 against 12.2).
bool Attention::amxApplies() const {
  const HeadLayout& lay = layout_;
  return cache_.dtype == DType::kBF16 && lay.headsPerKv == lay.numHeads && lay.numHeads >= 4 &&
         lay.dk % kTileK == 0 && lay.dv % 16 == 0 && cache_.blockSize % kTileK == 0;
}

void Attention::runItemAmx(const Item& item) {
  const HeadLayout& lay = layout_;
  const PagedQuery& query = queries_[static_cast<size_t>(item.query)];
  const int H = lay.numHeads, bs = cache_.blockSize, E = cache_.entrySize;
  const int rows = (item.tok1 - item.tok0) * H, panels = (rows + kPanelRows - 1) / kPanelRows;
  const int dkChunks = lay.dk / kTileK, keyChunks = bs / kTileK, dvTiles = lay.dv / 16;
  float *m, *l, *acc;
  resetState(item, rows, m, l, acc);

  thread_local AmxAttentionScratch scratch;
  // A step of the online softmax spans kSuperBlocks cache blocks (W keys): P · V's accumulator
  // tiles are stored and added into acc, and acc rescaled, once a step, not once a block.
  const int W = kSuperBlocks * bs, superChunks = kSuperBlocks * keyChunks;
  const size_t qPanelBytes = static_cast<size_t>(dkChunks) * kTileBytes, pPanelBytes = static_cast<size_t>(superChunks) * kTileBytes;
  uint8_t* qPacked = tileAligned(scratch.q, panels * qPanelBytes);
  uint8_t* pPacked = tileAligned(scratch.p, panels * pPanelBytes);
  uint8_t* vPacked = tileAligned(scratch.v, static_cast<size_t>(superChunks) * dvTiles * kTileBytes);
  scratch.scores.resize(static_cast<size_t>(rows) * W);
  float* scores = scratch.scores.data();

  // Rows r = token i * H + head h are consecutive rows of q.
  const float* q0 = q_ + static_cast<size_t>(query.tokenOffset + item.tok0) * H * lay.dk;
  for (int p = 0; p < panels; ++p) {
    const float* qr[kPanelRows];
    const int count = std::min(kPanelRows, rows - p * kPanelRows);
    for (int a = 0; a < count; ++a) qr[a] = q0 + static_cast<size_t>(p * kPanelRows + a) * lay.dk;
    packPanel(qr, count, dkChunks, qPacked + p * qPanelBytes);
  }

  configureTiles();
  const int tileFirst = firstPos(query, item.tok0), tileLast = lastPos(query, item.tok1 - 1);
  const size_t blockLines = static_cast<size_t>(bs) * E * sizeof(uint16_t) / 64;
  const int scoreSteps = dkChunks * ((panels / 2) * (bs / (2 * kTileRows)) + (panels % 2) * ((bs + kKeysPerGroup - 1) / kKeysPerGroup));
  for (int s0 = item.block0; s0 < item.block1; s0 += kSuperBlocks) {
    const int blocks = std::min(kSuperBlocks, item.block1 - s0);
    int t0[kSuperBlocks], t1[kSuperBlocks];  // each block's written range [t0, t1) (empty: t0 == t1)
    bool any = false;
    for (int g = 0; g < blocks; ++g) {
      const int pos0 = (s0 + g) * bs;
      t0[g] = std::max(0, tileFirst - pos0), t1[g] = std::min(bs, tileLast + 1 - pos0);  // never past the last written entry
      if (t1[g] <= t0[g]) t0[g] = t1[g] = 0;
      any = any || t1[g] > t0[g];
    }
    if (!any) continue;

    for (int g = 0; g < blocks; ++g) {
      const int b = s0 + g;
      if (t1[g] == 0) continue;
      const uint16_t* entries = cache_.blockData<uint16_t>(query.blockTable[b]);
      // The next block into L2 while the scores work on this one, a share at each of their steps
      // (all at once, the prefetches queued behind each other: 19% of a 32-head layer's time).
      BlockPrefetch ahead;
      if (b + 1 < item.block1) ahead = BlockPrefetch(cache_.blockData<uint16_t>(query.blockTable[b + 1]), blockLines, scoreSteps);
      scoreBlock(entries, E, lay.kBase, bs, dkChunks, g * bs, qPacked, panels, rows, W, scores, ahead);
    }

    // The online softmax over each row's visible keys of these blocks; P zero elsewhere.
    for (int r = 0; r < rows; ++r) {
      const int token = item.tok0 + r / H;
      float* s = scores + static_cast<size_t>(r) * W;
      int v0[kSuperBlocks], v1[kSuperBlocks];
      float stepMax = kMinusInf;
      for (int g = 0; g < blocks; ++g) {
        const int pos0 = (s0 + g) * bs;
        v0[g] = std::clamp(firstPos(query, token) - pos0, t0[g], t1[g]), v1[g] = std::clamp(lastPos(query, token) + 1 - pos0, v0[g], t1[g]);
        simd::scale(s + g * bs + v0[g], lay.scale, v1[g] - v0[g]);
        if (v1[g] > v0[g]) stepMax = std::max(stepMax, simd::maxOf(s + g * bs + v0[g], v1[g] - v0[g]));
      }
      if (stepMax == kMinusInf) {  // nothing of these blocks is visible to the row
        std::fill(s, s + W, 0.0f);
        continue;
      }
      const float mNew = std::max(m[r], stepMax);
      const float alpha = m[r] == kMinusInf ? 0.0f : std::exp(m[r] - mNew);
      double sum = 0;
      for (int g = 0; g < kSuperBlocks; ++g) {
        float* sb = s + g * bs;
        if (g >= blocks || v1[g] <= v0[g]) {
          std::fill(sb, sb + bs, 0.0f);
          continue;
        }
        sum += simd::expShifted(sb + v0[g], mNew, sb + v0[g], v1[g] - v0[g]);
        std::fill(sb, sb + v0[g], 0.0f);
        std::fill(sb + v1[g], sb + bs, 0.0f);
      }
      l[r] = l[r] * alpha + static_cast<float>(sum);
      m[r] = mNew;
      if (alpha != 1.0f) simd::scale(acc + static_cast<size_t>(r) * lay.dv, alpha, lay.dv);
    }

    // V of the key chunks that hold written keys, pairs of entries interleaved; keys outside
    // [t0, t1) zero.
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                                23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    int kc0[kSuperBlocks], kc1[kSuperBlocks];
    for (int g = 0; g < blocks; ++g) {
      kc0[g] = t0[g] / kTileK, kc1[g] = (t1[g] + kTileK - 1) / kTileK;
      const uint16_t* entries = t1[g] > 0 ? cache_.blockData<uint16_t>(query.blockTable[s0 + g]) : nullptr;
      for (int kc = kc0[g]; kc < kc1[g]; ++kc) {
        uint8_t* chunk = vPacked + static_cast<size_t>(g * keyChunks + kc) * dvTiles * kTileBytes;
        for (int pair = 0; pair < kTileRows; ++pair) {
          const int k = kc * kTileK + 2 * pair;
          const bool first = k >= t0[g] && k < t1[g], second = k + 1 >= t0[g] && k + 1 < t1[g];
          const uint16_t* e0 = entries + static_cast<size_t>(k) * E + lay.vBase;
          const uint16_t* e1 = e0 + E;
          for (int dt = 0; dt < dvTiles; ++dt) {
            const __m256i a = first ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e0 + 16 * dt)) : _mm256_setzero_si256();
            const __m256i c = second ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e1 + 16 * dt)) : _mm256_setzero_si256();
            const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(a), c, 1);
            _mm512_storeu_si512(chunk + static_cast<size_t>(dt) * kTileBytes + 64 * pair, _mm512_permutexvar_epi16(interleave, both));
          }
        }
      }
    }

    // acc += P · V over these blocks, panel by panel, 4 value tiles (64 values) at a time.
    for (int p = 0; p < panels; ++p) {
      const int count = std::min(kPanelRows, rows - p * kPanelRows);
      const float* pr[kPanelRows];
      for (int a = 0; a < count; ++a) pr[a] = scores + static_cast<size_t>(p * kPanelRows + a) * W;
      uint8_t* pp = pPacked + p * pPanelBytes;
      for (int g = 0; g < blocks; ++g)
        for (int kc = kc0[g]; kc < kc1[g]; ++kc) packProbabilities(pr, count, g * bs + kc * kTileK, pp + (g * keyChunks + kc) * kTileBytes);
      compilerBarrier();
      for (int d0 = 0; d0 < dvTiles; d0 += 4) {
        const int tiles = std::min(4, dvTiles - d0);
        zeroAccumulators();
        for (int g = 0; g < blocks; ++g) {
          for (int kc = kc0[g]; kc < kc1[g]; ++kc) {
            const int chunk = g * keyChunks + kc;
            _tile_loadd(MLA_A0, pp + chunk * kTileBytes, 64);
            for (int t = 0; t < tiles; ++t) {  // value tiles alternate between B0 and B1: a load need not wait on the last product
              const uint8_t* vt = vPacked + (static_cast<size_t>(chunk) * dvTiles + d0 + t) * kTileBytes;
              if (t % 2 == 0) _tile_loadd(MLA_B0, vt, 64);
              else _tile_loadd(MLA_B1, vt, 64);
              dpValues(t);
            }
          }
        }
        for (int t = 0; t < tiles; ++t) {
          alignas(64) float c[16 * 16];
          storeAccumulator(t, c);
          for (int a = 0; a < count; ++a) {
            float* dst = acc + static_cast<size_t>(p * kPanelRows + a) * lay.dv + 16 * (d0 + t);
            const __m512 sum = _mm512_add_ps(_mm512_load_ps(c + 32 * a), _mm512_load_ps(c + 32 * a + 16));
            _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), sum));
          }
        }
      }
    }
  }
  _tile_release();
}

}  // namespace

}  // namespace mla::cpu::MLA_KERNEL_NS
