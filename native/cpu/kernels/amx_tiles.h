// What the AMX kernels share (amx_matmul.h, amx_attention.h): the tile configuration, the tile
// registers' roles, and moving 16 x 16 blocks of dwords in and out of tile layout. Included by
// kernels_amx.cpp only, inside its target switch; include nothing here.

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

// 32 floats (a: the first 16, b: the next) as 32 bf16 high halves and 32 bf16 low halves:
// value = hi + lo + e with |e| <= 2^-18 |value| (the differences are exact in fp32).
struct Halves {
  __m512i hi, lo;
};
inline Halves splitHalves(__m512 a, __m512 b) {
  const __m512i hi = bitsOf(_mm512_cvtne2ps_pbh(b, a));  // a in the low half
  const __m512 hiA = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi)), 16));
  const __m512 hiB = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hi, 1)), 16));
  return {hi, bitsOf(_mm512_cvtne2ps_pbh(_mm512_sub_ps(b, hiB), _mm512_sub_ps(a, hiA)))};
}

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
      const Halves h = splitHalves(_mm512_loadu_ps(x[i] + kTileK * c), _mm512_loadu_ps(x[i] + kTileK * c + 16));
      v[2 * i] = h.hi;
      v[2 * i + 1] = h.lo;
    }
    transpose16(v);  // v[p] = tile row p: the pairs p of every column
    uint8_t* tile = out + static_cast<size_t>(c) * kTileBytes;
    for (int p = 0; p < 16; ++p) _mm512_storeu_si512(tile + 64 * p, v[p]);
  }
}

// A 64-byte-aligned start of `buffer`, grown to hold `bytes` from there.
inline uint8_t* tileAligned(std::vector<uint8_t>& buffer, size_t bytes) {
  if (buffer.size() < bytes + 64) buffer.resize(bytes + 64);
  return reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(buffer.data()) + 63) & ~uintptr_t{63});
}

// All 4 accumulator tiles zeroed (after the plain stores before it: packed operands, copies).
inline void zeroAccumulators() {
  compilerBarrier();
  _tile_zero(MLA_C0);
  _tile_zero(MLA_C1);
  _tile_zero(MLA_C2);
  _tile_zero(MLA_C3);
}

// Accumulator tile t (t < 4) stored as 16 rows of 16 floats (the tile macros take literals).
inline void storeAccumulator(int t, float* c) {
  switch (t) {
    case 0: _tile_stored(MLA_C0, c, 64); break;
    case 1: _tile_stored(MLA_C1, c, 64); break;
    case 2: _tile_stored(MLA_C2, c, 64); break;
    default: _tile_stored(MLA_C3, c, 64); break;
  }
  compilerBarrier();
}
// One C tile (16 weight rows x 8 x rows' hi and lo columns) out: y[i][j + r] = hi + lo (+ bias)
// for r < count, i < rows.
inline void storeTile(int tile, float* const* y, int rows, int j, int count, const float* bias) {
  alignas(64) float c[16 * 16];
  storeAccumulator(tile, c);
  const __mmask16 mask = static_cast<__mmask16>((1u << count) - 1);
  const __m512 b = bias ? _mm512_maskz_loadu_ps(mask, bias + j) : _mm512_setzero_ps();
  if (rows <= 2) {  // decode's one or two x rows: gather their columns, not transpose all 16
    const __m512i column = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(16));
    for (int i = 0; i < rows; ++i) {
      const __m512 hi = _mm512_i32gather_ps(_mm512_add_epi32(column, _mm512_set1_epi32(2 * i)), c, 4);
      const __m512 lo = _mm512_i32gather_ps(_mm512_add_epi32(column, _mm512_set1_epi32(2 * i + 1)), c, 4);
      _mm512_mask_storeu_ps(y[i] + j, mask, _mm512_add_ps(_mm512_add_ps(hi, lo), b));
    }
    return;
  }
  __m512i v[16];
  for (int r = 0; r < 16; ++r) v[r] = _mm512_load_si512(c + 16 * r);
  transpose16(v);  // v[col] lane r
  for (int i = 0; i < rows; ++i) {
    const __m512 s = _mm512_add_ps(_mm512_castsi512_ps(v[2 * i]), _mm512_castsi512_ps(v[2 * i + 1]));
    _mm512_mask_storeu_ps(y[i] + j, mask, _mm512_add_ps(s, b));
  }
}

}  // namespace

}  // namespace mla::cpu::MLA_KERNEL_NS
