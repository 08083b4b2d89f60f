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
      uint8_t* base = tileAligned(scratch_.packed, panels * panelBytes);
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
  static constexpr int kMaxTiles = 2;  // weight tiles of one step (two panels' loop; one panel's: 1)

  // The `tiles` weight tiles from row j (16 rows each): the matrix itself where all 16 rows exist,
  // else a zero-padded copy of the rows that do (only the last tiles of a share; one copy a slot).
  void tilesFrom(int j, int rowEnd, int tiles, const uint16_t* a[kMaxTiles]) {
    const size_t tileValues = static_cast<size_t>(kTileRows) * k_;
    for (int t = 0; t < tiles; ++t) {
      const int j0 = j + t * kTileRows;
      if (j0 + kTileRows <= rowEnd) {
        a[t] = w_ + static_cast<size_t>(j0) * k_;
        continue;
      }
      if (scratch_.padded.size() < kMaxTiles * tileValues) scratch_.padded.resize(kMaxTiles * tileValues);
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
        const uint16_t* a[kMaxTiles];
        tilesFrom(j, rowEnd, 2, a);
        zeroAccumulators();
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
      const uint16_t* a[kMaxTiles];
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
