// The register-blocked inner loops that matmul and attention share, over cpu/vec.h's register.
// dotTile: MR rows of x against 4 rows of w (dot products). axpyTile: MR output rows each gain a
// weighted sum of the same rows of b (the P·V and fold form). Each output element is reduced in
// one fixed order whatever MR is, so how rows are grouped never changes a value.
#pragma once
#include <cmath>
#include <cstdint>

#include "cpu/vec.h"

namespace mla::cpu::MLA_KERNEL_NS {

// Rows of x per dotTile call in matmul and attention: as many as the registers hold
// (MR × 4 accumulators + MR x vectors + one w vector: 16 of AVX2's 16, 26 of AVX-512's 32).
constexpr int kRowTile = kLanes >= 16 ? 5 : 3;

// out[a][r] = x[a] · w[r] over k values, for a < MR, r < 4. Every (a, r) sums lane-wise over k in
// steps of kLanes, then a fixed horizontal sum, then the scalar tail. Each weight chunk is widened
// once and used MR times.
template <int MR, typename T>
inline void dotTile(const float* const* x, const T* const* w, int k, float out[][4]) {
  int i = 0;
  Vec acc[MR][4];
  for (int a = 0; a < MR; ++a)
    for (int r = 0; r < 4; ++r) acc[a][r] = vzero();
  for (; i + kLanes <= k; i += kLanes) {
    Vec xv[MR];
    for (int a = 0; a < MR; ++a) xv[a] = vload(x[a] + i);
    for (int r = 0; r < 4; ++r) {
      const Vec wv = vload(w[r] + i);
      for (int a = 0; a < MR; ++a) acc[a][r] = vfma(xv[a], wv, acc[a][r]);
    }
  }
  for (int a = 0; a < MR; ++a) vhsum4(acc[a], out[a]);
  for (; i < k; ++i) {
    for (int r = 0; r < 4; ++r) {
      const float wv = scalarOf(w[r][i]);
      for (int a = 0; a < MR; ++a) out[a][r] = std::fma(x[a][i], wv, out[a][r]);  // fma: never left to contraction
    }
  }
}

// How far ahead of its reads one row at a time prefetches its own stream (rows are consecutive in
// memory, so the line that far ahead is the one it reads next), into L2 only. Where x no longer
// fits in L1 beside the weights streaming through it (k = 8192: x is 32 KB, all of Zen 4's L1),
// every x line is reloaded from L2 and the weight misses wait behind them: the down projection
// read 15-20 GB/s on Zen 4; with this prefetch 24-35 GB/s, and a 1 B model's decode gained 14%.
constexpr size_t kStreamAheadBytes = 8192;

// The same sums as dotTile, in the same order, kRows rows of w at a time (1 or 2):
// out[a][r] = x[a] · w[r]. For few x rows, where the weights stream from memory. Which order reads
// faster depends on the CPU, and somewhat on the shape (cpu/matmul.h, WeightStream): on Zen 4 one
// row at a time (one sequential stream per thread, prefetched kStreamAheadBytes ahead: 38-40 GB/s
// on an LM head where 4 interleaved rows read 23-34); on a Xeon two rows with each pair
// prefetching the pair after it (22-28 GB/s against 14-17 one row at a time, measured before one
// row prefetched ahead). The pair after r = 0 is the tile's rows 2 and 3; after r = 2 the next
// tile's rows 0 and 1 (one past row 3: tiles are consecutive rows).
template <int MR, int kRows, typename T>
inline void dotRows(const float* const* x, const T* const* w, int k, float out[][4]) {
  static_assert(kRows == 1 || kRows == 2, "one or two rows at a time");
  for (int r = 0; r < 4; r += kRows) {
    // Addresses as integers: past the last tile they point outside the matrix, which a prefetch
    // may do (it never faults) but a pointer may not.
    const uintptr_t ahead = reinterpret_cast<uintptr_t>(r == 0 ? w[2] : w[3] + k);
    int i = 0;
    Vec acc[kRows][MR];
    for (int p = 0; p < kRows; ++p)
      for (int a = 0; a < MR; ++a) acc[p][a] = vzero();
    for (; i + kLanes <= k; i += kLanes) {
      if ((static_cast<size_t>(i) * sizeof(T)) % 64 < kLanes * sizeof(T)) {  // once per 64-byte line
        if (kRows == 2) {
          __builtin_prefetch(reinterpret_cast<const void*>(ahead + static_cast<size_t>(i) * sizeof(T)));
          __builtin_prefetch(reinterpret_cast<const void*>(ahead + (static_cast<size_t>(k) + i) * sizeof(T)));
        } else {
          __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(w[r] + i) + kStreamAheadBytes), 0, 2);  // into L2
        }
      }
      Vec wv[kRows];
      for (int p = 0; p < kRows; ++p) wv[p] = vload(w[r + p] + i);
      for (int a = 0; a < MR; ++a) {
        const Vec xv = vload(x[a] + i);
        for (int p = 0; p < kRows; ++p) acc[p][a] = vfma(xv, wv[p], acc[p][a]);
      }
    }
    for (int p = 0; p < kRows; ++p)
      for (int a = 0; a < MR; ++a) out[a][r + p] = vhsum(acc[p][a]);
    for (; i < k; ++i) {
      for (int p = 0; p < kRows; ++p) {
        const float wv = scalarOf(w[r + p][i]);
        for (int a = 0; a < MR; ++a) out[a][r + p] = std::fma(x[a][i], wv, out[a][r + p]);  // fma: never left to contraction
      }
    }
  }
}

// Rows per axpyTile call in attention's P·V: MR × 4 accumulators + 4 b vectors + a coefficient
// (21 of AVX-512's 32 registers at 4; 17 of AVX2's 16 at 3, one spilled).
constexpr int kAxpyTile = kLanes >= 16 ? 4 : 3;

// y[a][0..n) += Σ_t coef[a][t] · b[t][0..n) for a < MR, t < count, summed over t in order.
// b[t] is a row of at least n values (float, or bf16 widened as it is read); coef[a] has `count`
// weights; y[a] n floats.
template <int MR, typename T>
inline void axpyTile(const float* const* coef, const T* const* b, int count, float* const* y, int n) {
  constexpr int W = 4 * kLanes;  // columns per pass: 4 registers a row
  int j = 0;
  for (; j + W <= n; j += W) {
    Vec acc[MR][4];
    for (int a = 0; a < MR; ++a)
      for (int v = 0; v < 4; ++v) acc[a][v] = vload(y[a] + j + kLanes * v);
    for (int t = 0; t < count; ++t) {
      const T* bt = b[t] + j;
      const Vec b0 = vload(bt), b1 = vload(bt + kLanes), b2 = vload(bt + 2 * kLanes), b3 = vload(bt + 3 * kLanes);
      for (int a = 0; a < MR; ++a) {
        const Vec c = vset1(coef[a][t]);
        acc[a][0] = vfma(c, b0, acc[a][0]);
        acc[a][1] = vfma(c, b1, acc[a][1]);
        acc[a][2] = vfma(c, b2, acc[a][2]);
        acc[a][3] = vfma(c, b3, acc[a][3]);
      }
    }
    for (int a = 0; a < MR; ++a)
      for (int v = 0; v < 4; ++v) vstore(y[a] + j + kLanes * v, acc[a][v]);
  }
  for (; j + kLanes <= n; j += kLanes) {
    Vec acc[MR];
    for (int a = 0; a < MR; ++a) acc[a] = vload(y[a] + j);
    for (int t = 0; t < count; ++t) {
      const Vec bv = vload(b[t] + j);
      for (int a = 0; a < MR; ++a) acc[a] = vfma(vset1(coef[a][t]), bv, acc[a]);
    }
    for (int a = 0; a < MR; ++a) vstore(y[a] + j, acc[a]);
  }
  for (; j < n; ++j) {
    for (int a = 0; a < MR; ++a) {
      float s = y[a][j];
      for (int t = 0; t < count; ++t) s = std::fma(coef[a][t], scalarOf(b[t][j]), s);
      y[a][j] = s;
    }
  }
}

}  // namespace mla::cpu::MLA_KERNEL_NS
