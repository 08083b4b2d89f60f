// The matmul on Intel AMX (AMX-BF16: Sapphire Rapids and later), for BF16 weights. Included by
// kernels_amx.cpp only, after kernels_impl.h, inside its target switch; include nothing here.
//
// y = x · Wᵀ as Cᵀ = W · xᵀ: the weights are the tiles' A operand straight from the matrix
// (16 rows x 32 bf16 a tile, the matrix's own row stride: no copy, no relayout), x the B operand,
// packed per call. x is split into a high and a low bf16 part (x = hi + lo + e, |e| <= 2^-18 |x|,
// and each bf16 x bf16 product is exact in fp32), the two parts side by side as columns 2i and
// 2i + 1 of a B tile, so the sums keep fp32 activations' accuracy (x rounded to bf16 alone errs
// ~2e-3 relative, beyond the parity tests' 1e-3) at half the tiles' rate: still several times
// AVX-512's FMAs. A y element depends only on its weight row, its x row and k's fixed order of
// tiles (rows and columns of a tile never mix), so batching never changes a bit.

namespace mla::cpu::MLA_KERNEL_NS {

namespace {

constexpr int kTileK = 32;       // k values one A row holds (64 bytes of bf16)
constexpr int kTileRows = 16;    // weight rows of an A tile and of a C tile
constexpr int kPanelRows = 8;    // x rows of a B tile: row i's hi and lo parts are columns 2i, 2i + 1
constexpr int kTileBytes = 1024; // every tile: 16 rows of 64 bytes
// Tile registers (the tile macros paste the number into the instruction: literals only): 0-3
// accumulate (C), 4-5 hold weights (A), 6-7 x panels (B).
#define MLA_C0 0
#define MLA_C1 1
#define MLA_C2 2
#define MLA_C3 3
#define MLA_A0 4
#define MLA_A1 5
#define MLA_B0 6
#define MLA_B1 7

// The tile intrinsics are asm statements that tell the compiler nothing of the memory they read
// or write: this orders the plain loads and stores around them.
inline void compilerBarrier() { __asm__ volatile("" ::: "memory"); }

// The whole tile configuration (palette 1): all 8 tiles 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, startRow = 0;
  uint8_t reserved[14] = {};
  uint16_t colsBytes[16] = {};
  uint8_t rows[16] = {};
};

inline void configureTiles() {
  static const TileConfig config = [] {
    TileConfig c;
    for (int t = 0; t < 8; ++t) c.colsBytes[t] = 64, c.rows[t] = 16;
    return c;
  }();
  _tile_loadconfig(&config);
}

// 16 rows of 16 dwords transposed in registers: v[r] lane c -> v[c] lane r.
inline void transpose16(__m512i v[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {  // 32-bit pairs
    t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // 64-bit pairs
    v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // Now v[4a + b] lane (4q + c) holds row 4a + c, column 4q + b: 4 x 4 blocks of 128-bit lanes remain.
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_i32x4(v[i], v[i + 4], _MM_SHUFFLE(2, 0, 2, 0));
    t[i + 4] = _mm512_shuffle_i32x4(v[i], v[i + 4], _MM_SHUFFLE(3, 1, 3, 1));
    t[i + 8] = _mm512_shuffle_i32x4(v[i + 8], v[i + 12], _MM_SHUFFLE(2, 0, 2, 0));
    t[i + 12] = _mm512_shuffle_i32x4(v[i + 8], v[i + 12], _MM_SHUFFLE(3, 1, 3, 1));
  }
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], _MM_SHUFFLE(2, 0, 2, 0));
    v[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], _MM_SHUFFLE(3, 1, 3, 1));
    v[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], _MM_SHUFFLE(2, 0, 2, 0));
    v[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], _MM_SHUFFLE(3, 1, 3, 1));
  }
}

inline __m512i bitsOf(__m512bh v) { return (__m512i)v; }  // NOLINT: a vector's bits, no conversion

// x rows [0, rows) (rows <= 8; the rest of the panel zeros) of k = kChunks * 32 values packed as
// kChunks B tiles: tile c, row p, dword 2i = row i's hi bf16 pair (x[i][32c + 2p], x[i][32c + 2p + 1]),
// dword 2i + 1 its lo pair.
inline void packPanel(const float* const* x, int rows, int kChunks, uint8_t* out) {
  for (int c = 0; c < kChunks; ++c) {
    __m512i v[16];
    for (int i = 0; i < kPanelRows; ++i) {
      if (i >= rows) {
        v[2 * i] = v[2 * i + 1] = _mm512_setzero_si512();
        continue;
      }
      const __m512 a = _mm512_loadu_ps(x[i] + kTileK * c), b = _mm512_loadu_ps(x[i] + kTileK * c + 16);
      const __m512i hi = bitsOf(_mm512_cvtne2ps_pbh(b, a));  // a in the low half
      const __m512 hiA = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi)), 16));
      const __m512 hiB = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hi, 1)), 16));
      v[2 * i] = hi;
      v[2 * i + 1] = bitsOf(_mm512_cvtne2ps_pbh(_mm512_sub_ps(b, hiB), _mm512_sub_ps(a, hiA)));  // the differences are exact
    }
    transpose16(v);  // v[p] = tile row p: the pairs p of every column
    uint8_t* tile = out + static_cast<size_t>(c) * kTileBytes;
    for (int p = 0; p < 16; ++p) _mm512_storeu_si512(tile + 64 * p, v[p]);
  }
}

// One C tile (16 weight rows x 8 x rows' hi and lo columns) out: y[i][j + r] = hi + lo (+ bias)
// for r < count, i < rows.
inline void storeTile(int tile, float* const* y, int rows, int j, int count, const float* bias) {
  alignas(64) float c[16 * 16];
  switch (tile) {  // tile numbers must be constants
    case 0: _tile_stored(MLA_C0, c, 64); break;
    case 1: _tile_stored(MLA_C1, c, 64); break;
    case 2: _tile_stored(MLA_C2, c, 64); break;
    default: _tile_stored(MLA_C3, c, 64); break;
  }
  compilerBarrier();
  __m512i v[16];
  for (int r = 0; r < 16; ++r) v[r] = _mm512_load_si512(c + 16 * r);
  transpose16(v);  // v[col] lane r
  const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1);
  const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + j) : _mm512_setzero_ps();
  for (int i = 0; i < rows; ++i) {
    const __m512 s = _mm512_add_ps(_mm512_castsi512_ps(v[2 * i]), _mm512_castsi512_ps(v[2 * i + 1]));
    _mm512_mask_storeu_ps(y[i] + j, mask, _mm512_add_ps(s, b));
  }
}

// A thread's buffers, kept between calls: x packed, and zero-padded copies of partial weight tiles.
struct AmxScratch {
  std::vector<uint8_t> packed;
  std::vector<uint16_t> padded;
};

class AmxMatmul {
 public:
  AmxMatmul(const uint16_t* w, int n, int k, const float* bias, AmxScratch& scratch)
      : w_(w), n_(n), k_(k), chunks_(k / kTileK), bias_(bias), scratch_(scratch) {}

  // y[m, rowBegin..rowEnd) of y[m, n].
  void run(const float* x, int m, float* y, int rowBegin, int rowEnd) {
    configureTiles();
    // x in blocks of panels whose packed form (4 bytes a value) fills about half of L2, each
    // block against all of this thread's weight rows: the weights stream from memory once a block.
    const size_t panelBytes = static_cast<size_t>(chunks_) * kTileBytes;
    const int blockPanels = static_cast<int>(std::max<size_t>(1, (size_t{1} << 20) / panelBytes));
    for (int i0 = 0; i0 < m; i0 += blockPanels * kPanelRows) {
      const int i1 = std::min(m, i0 + blockPanels * kPanelRows);
      const int panels = (i1 - i0 + kPanelRows - 1) / kPanelRows;
      if (scratch_.packed.size() < panels * panelBytes + 64) scratch_.packed.resize(panels * panelBytes + 64);
      uint8_t* base = alignUp(scratch_.packed.data());
      for (int p = 0; p < panels; ++p) {
        const int r0 = i0 + p * kPanelRows, rows = std::min(kPanelRows, i1 - r0);
        const float* xr[kPanelRows];
        for (int a = 0; a < rows; ++a) xr[a] = x + static_cast<size_t>(r0 + a) * k_;
        packPanel(xr, rows, chunks_, base + p * panelBytes);
      }
      runBlock(base, panels, i0, i1, y, rowBegin, rowEnd);
    }
    _tile_release();
  }

 private:
  static uint8_t* alignUp(uint8_t* p) { return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63}); }

  // The 4 weight tiles from row j (16 rows each): the matrix itself where all 16 rows exist, else
  // a zero-padded copy of the rows that do (only the last tiles of a share; one copy per slot).
  void tilesFrom(int j, int rowEnd, int tiles, const uint16_t* a[4]) {
    const size_t tileValues = static_cast<size_t>(kTileRows) * k_;
    for (int t = 0; t < tiles; ++t) {
      const int j0 = j + t * kTileRows;
      if (j0 + kTileRows <= rowEnd) {
        a[t] = w_ + static_cast<size_t>(j0) * k_;
        continue;
      }
      if (scratch_.padded.size() < 4 * tileValues) scratch_.padded.resize(4 * tileValues);
      uint16_t* copy = scratch_.padded.data() + t * tileValues;
      const int count = std::clamp(rowEnd - j0, 0, kTileRows);
      if (count > 0) std::copy_n(w_ + static_cast<size_t>(j0) * k_, static_cast<size_t>(count) * k_, copy);
      std::fill(copy + static_cast<size_t>(count) * k_, copy + tileValues, uint16_t{0});
      a[t] = copy;
    }
  }

  void runBlock(const uint8_t* packed, int panels, int i0, int i1, float* y, int rowBegin, int rowEnd) {
    const size_t panelBytes = static_cast<size_t>(chunks_) * kTileBytes;
    const int strideBytes = k_ * 2;
    int p = 0;
    // Two panels at a time (16 x rows) against 32 weight rows: 4 loads feed 4 products a step.
    for (; p + 2 <= panels; p += 2) {
      const uint8_t* b0 = packed + p * panelBytes;
      const uint8_t* b1 = b0 + panelBytes;
      for (int j = rowBegin; j < rowEnd; j += 2 * kTileRows) {
        const uint16_t* a[4];
        tilesFrom(j, rowEnd, 2, a);
        compilerBarrier();
        _tile_zero(MLA_C0);
        _tile_zero(MLA_C1);
        _tile_zero(MLA_C2);
        _tile_zero(MLA_C3);
        for (int c = 0; c < chunks_; ++c) {
          _tile_loadd(MLA_A0, a[0] + kTileK * c, strideBytes);
          _tile_loadd(MLA_B0, b0 + c * kTileBytes, 64);
          _tile_dpbf16ps(MLA_C0, MLA_A0, MLA_B0);
          _tile_loadd(MLA_B1, b1 + c * kTileBytes, 64);
          _tile_dpbf16ps(MLA_C1, MLA_A0, MLA_B1);
          _tile_loadd(MLA_A1, a[1] + kTileK * c, strideBytes);
          _tile_dpbf16ps(MLA_C2, MLA_A1, MLA_B0);
          _tile_dpbf16ps(MLA_C3, MLA_A1, MLA_B1);
        }
        store(0, p, i0, i1, y, j, rowEnd);
        store(1, p + 1, i0, i1, y, j, rowEnd);
        store(2, p, i0, i1, y, j + kTileRows, rowEnd);
        store(3, p + 1, i0, i1, y, j + kTileRows, rowEnd);
      }
    }
    // One panel left (or decode's only one): one weight tile at a time, against it.
    if (p < panels) onePanel(packed + p * panelBytes, p, i0, i1, y, rowBegin, rowEnd);
  }

  // Weight tiles one at a time against one x panel: where few x rows make the weights' stream
  // the bound, its 16 rows are as many streams as are open at once (4 tiles' 64 streams read
  // 13-16 GB/s of a 1 GB matrix where one reads 31, bench_matmul 2 65536x8192), and the tile after
  // is prefetched into L2 in memory order (it is one contiguous block), a share at each step.
  // One accumulator chain still keeps up with memory (57 GB/s from L2 on one core).
  void onePanel(const uint8_t* b0, int p, int i0, int i1, float* y, int rowBegin, int rowEnd) {
    const int strideBytes = k_ * 2;
    for (int j = rowBegin; j < rowEnd; j += kTileRows) {
      const uint16_t* a[4];
      tilesFrom(j, rowEnd, 1, a);
      compilerBarrier();
      _tile_zero(MLA_C0);
      for (int c = 0; c < chunks_; ++c) {
        prefetchNextTile(j, c, rowEnd);
        _tile_loadd(MLA_B0, b0 + c * kTileBytes, 64);
        _tile_loadd(MLA_A0, a[0] + kTileK * c, strideBytes);
        _tile_dpbf16ps(MLA_C0, MLA_A0, MLA_B0);
      }
      store(0, p, i0, i1, y, j, rowEnd);
    }
  }

  // Step c's share of the 16 rows after the tile at row j.
  void prefetchNextTile(int j, int c, int rowEnd) const {
    const int next = j + kTileRows, count = std::min(kTileRows, rowEnd - next);
    if (count <= 0) return;
    const size_t lines = static_cast<size_t>(count) * k_ * 2 / 64, share = (lines + chunks_ - 1) / chunks_;
    const char* base = reinterpret_cast<const char*>(w_ + static_cast<size_t>(next) * k_);
    const size_t first = share * c, last = std::min(lines, first + share);
    for (size_t l = first; l < last; ++l) _mm_prefetch(base + 64 * l, _MM_HINT_T1);
  }

  // C tile `tile` (weight rows j.., x panel p of the block starting at x row i0) into y.
  void store(int tile, int p, int i0, int i1, float* y, int j, int rowEnd) const {
    const int count = std::min(kTileRows, rowEnd - j);
    if (count <= 0) return;
    const int r0 = i0 + p * kPanelRows, rows = std::min(kPanelRows, i1 - r0);
    float* yr[kPanelRows];
    for (int a = 0; a < rows; ++a) yr[a] = y + static_cast<size_t>(r0 + a) * n_;
    storeTile(tile, yr, rows, j, count, bias_);
  }

  const uint16_t* w_;
  int n_, k_, chunks_;
  const float* bias_;
  AmxScratch& scratch_;
};

// The AMX matmul where it applies (BF16 weights, k a whole number of tiles), else AVX-512's.
void matmulRowsAmx(const float* x, int m, const Matrix& w, const float* bias, float* y, int rowBegin, int rowEnd, WeightStream stream) {
  if (w.dtype != DType::kBF16 || w.cols % kTileK != 0) return matmulRows(x, m, w, bias, y, rowBegin, rowEnd, stream);
  thread_local AmxScratch scratch;
  AmxMatmul(static_cast<const uint16_t*>(w.data), w.rows, w.cols, bias, scratch).run(x, m, y, rowBegin, rowEnd);
}

}  // namespace

}  // namespace mla::cpu::MLA_KERNEL_NS

#undef MLA_C0
#undef MLA_C1
#undef MLA_C2
#undef MLA_C3
#undef MLA_A0
#undef MLA_A1
#undef MLA_B0
#undef MLA_B1
