// The register-blocked inner loops that matmul and attention share, over cpu/vec.h's register.
// dotTile: MR rows of x against NK rows of w (dot products). axpyTile: MR output rows each gain a
// weighted sum of the same rows of b (the P·V and fold form). Each output element is reduced in
// one fixed order whatever MR and NK are, so how rows are grouped never changes a value.
#pragma once
#include <cmath>
#include <cstdint>

#include "cpu/vec.h"

namespace mla::cpu::MLA_KERNEL_NS {

// Rows of x per dotTile call in matmul (and in attention from kManyRows rows): as many as the
// registers hold (MR × 4 accumulators + MR x vectors + one w vector: 16 of AVX2's 16, 26 of
// AVX-512's 32).
constexpr int kRowTile = kLanes >= 16 ? 5 : 3;

// out[a][r] = x[a] · w[r] over k values, for a < MR, r < NK. Every (a, r) sums lane-wise over k
// in steps of kLanes, then a fixed horizontal sum, then the scalar tail, so neither MR nor NK
// changes a value. Each weight chunk is widened once and used MR times.
// dotTile's lane-wise sums: acc[a * NK + r] over the first k - k % kLanes values (returned).
template <int MR, int NK, typename T>
inline int dotLanes(const float* const* x, const T* const* w, int k, Vec* acc) {
  int i = 0;
  for (int c = 0; c < MR * NK; ++c) acc[c] = vzero();
  for (; i + kLanes <= k; i += kLanes) {
    Vec xv[MR];
    for (int a = 0; a < MR; ++a) xv[a] = vload(x[a] + i);
    for (int r = 0; r < NK; ++r) {
      const Vec wv = vload(w[r] + i);
      for (int a = 0; a < MR; ++a) acc[a * NK + r] = vfma(xv[a], wv, acc[a * NK + r]);
    }
  }
  return i;
}

template <int MR, int NK = 4, typename T>
inline void dotTile(const float* const* x, const T* const* w, int k, float out[][NK]) {
  Vec acc[MR * NK];  // (a, r) at a * NK + r
  int i = dotLanes<MR, NK>(x, w, k, acc);
  float sums[MR * NK];
  int c = 0;
  for (; c + 4 <= MR * NK; c += 4) vhsum4(acc + c, sums + c);
  for (; c < MR * NK; ++c) sums[c] = vhsum(acc[c]);
  for (int a = 0; a < MR; ++a)
    for (int r = 0; r < NK; ++r) out[a][r] = sums[a * NK + r];
  for (; i < k; ++i) {
    for (int r = 0; r < NK; ++r) {
      const float wv = scalarOf(w[r][i]);
      for (int a = 0; a < MR; ++a) out[a][r] = std::fma(x[a][i], wv, out[a][r]);  // fma: never left to contraction
    }
  }
}

// The same sums as dotTile, written to out[a][0..NK) for a < MR. Where k is a whole number of
// registers and the sums come four to a register as rows of NK (NK = 4, or 2 with MR even), they
// are stored from the register, not through a buffer on the stack.
template <int MR, int NK, typename T>
inline void dotTileTo(const float* const* x, const T* const* w, int k, float* const* out) {
  constexpr bool direct = NK == 4 || (NK == 2 && MR % 2 == 0);
  if (direct && k % kLanes == 0) {
    Vec acc[MR * NK];
    dotLanes<MR, NK>(x, w, k, acc);
    for (int c = 0; c < MR * NK; c += 4) {
      const Sums4 s = vhsum4x(acc + c);
      if constexpr (NK == 4) storeSums(out[c / 4], s);
      else storeSumsLo(out[c / 2], s), storeSumsHi(out[c / 2 + 1], s);
    }
    return;
  }
  float s[MR][NK];
  dotTile<MR, NK>(x, w, k, s);
  for (int a = 0; a < MR; ++a)
    for (int r = 0; r < NK; ++r) out[a][r] = s[a][r];
}

// Attention's score tile for a few rows (a decode token's heads of one KV group): rows x keys per
// dotTile call. AVX-512: 5 x 4, as matmul. AVX2: 4 x 2 (8 accumulators, 4 q and a key: 13 of 16
// registers), so 4 heads share each key's widening in one call; at 3 x 4 they took a 3-row and a
// 1-row call, widening every key twice (the widening competes with the FMAs for Zen 3's vector
// pipes). Many rows (MLA's 32 heads) keep kRowTile x 4: their q outgrows L1 and is read again at
// every step of keys, so fewer steps read less of L2.
constexpr int kScoreRows = kLanes >= 16 ? 5 : 4;
constexpr int kScoreKeys = kLanes >= 16 ? 4 : 2;
constexpr int kManyRows = 8;  // a group's rows from which its scores take kRowTile x 4

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

// Rows per axpyTile call in attention's P·V, and registers of columns per pass: MR × C
// accumulators + C b vectors + a coefficient, within the register file (AVX-512: 4 x 4, 21 of 32;
// AVX2: 4 x 2, 11 of 16 — at 3 x 4, 17 registers, one accumulator lived in memory and every
// step waited on its store and reload: 24% of the MLA decode's time on Zen 3).
constexpr int kAxpyTile = 4;
constexpr int kAxpyCols = kLanes >= 16 ? 4 : 2;

// y[a][0..n) += Σ_t coef[a][t] · b[t][0..n) for a < MR, t < count, summed over t in order.
// b[t] is a row of at least n values (float, or bf16 widened as it is read); coef[a] has `count`
// weights; y[a] n floats.
template <int MR, typename T>
inline void axpyTile(const float* const* coef, const T* const* b, int count, float* const* y, int n) {
  constexpr int C = kAxpyCols, W = C * kLanes;  // columns per pass
  int j = 0;
  for (; j + W <= n; j += W) {
    Vec acc[MR][C];
    for (int a = 0; a < MR; ++a)
      for (int v = 0; v < C; ++v) acc[a][v] = vload(y[a] + j + kLanes * v);
    for (int t = 0; t < count; ++t) {
      const T* bt = b[t] + j;
      Vec bv[C];
      for (int v = 0; v < C; ++v) bv[v] = vload(bt + kLanes * v);
      for (int a = 0; a < MR; ++a) {
        const Vec c = vset1(coef[a][t]);
        for (int v = 0; v < C; ++v) acc[a][v] = vfma(c, bv[v], acc[a][v]);
      }
    }
    for (int a = 0; a < MR; ++a)
      for (int v = 0; v < C; ++v) vstore(y[a] + j + kLanes * v, acc[a][v]);
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
