// The register-blocked inner loops that matmul and attention share.
// dotTile: MR rows of x against 4 rows of w (dot products). axpyTile: MR output rows each gain a
// weighted sum of the same rows of b (the P·V and fold form). Each output element is reduced in
// one fixed order whatever MR is, so how rows are grouped never changes a value.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "cpu/simd.h"

namespace mla::cpu {

inline float scalarOf(float v) { return v; }
inline float scalarOf(uint16_t v) { return bf16ToFloat(v); }

#ifdef MLA_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
#endif

// out[a][r] = x[a] · w[r] over k values, for a < MR, r < 4. Every (a, r) sums lane-wise over k in
// steps of 8, then a fixed horizontal sum, then the scalar tail. Each weight chunk is widened once
// and used MR times.
template <int MR, typename T>
inline void dotTile(const float* const* x, const T* const* w, int k, float out[][4]) {
  int i = 0;
#ifdef MLA_AVX2
  __m256 acc[MR][4];
  for (int a = 0; a < MR; ++a)
    for (int r = 0; r < 4; ++r) acc[a][r] = _mm256_setzero_ps();
  for (; i + 8 <= k; i += 8) {
    __m256 xv[MR];
    for (int a = 0; a < MR; ++a) xv[a] = _mm256_loadu_ps(x[a] + i);
    for (int r = 0; r < 4; ++r) {
      const __m256 wv = load8(w[r] + i);
      for (int a = 0; a < MR; ++a) acc[a][r] = _mm256_fmadd_ps(xv[a], wv, acc[a][r]);
    }
  }
  for (int a = 0; a < MR; ++a)
    for (int r = 0; r < 4; ++r) out[a][r] = simd::hsum(acc[a][r]);
#else
  for (int a = 0; a < MR; ++a)
    for (int r = 0; r < 4; ++r) out[a][r] = 0;
#endif
  for (; i < k; ++i) {
    for (int r = 0; r < 4; ++r) {
      const float wv = scalarOf(w[r][i]);
      for (int a = 0; a < MR; ++a) out[a][r] += x[a][i] * wv;
    }
  }
}

// y[a][0..n) += Σ_t coef[a][t] · b[t][0..n) for a < MR, t < count, summed over t in order.
// b[t] is a row of at least n values (float, or bf16 widened as it is read); coef[a] has `count`
// weights; y[a] n floats.
template <int MR, typename T>
inline void axpyTile(const float* const* coef, const T* const* b, int count, float* const* y, int n) {
  int j = 0;
#ifdef MLA_AVX2
  for (; j + 32 <= n; j += 32) {
    __m256 acc[MR][4];
    for (int a = 0; a < MR; ++a)
      for (int v = 0; v < 4; ++v) acc[a][v] = _mm256_loadu_ps(y[a] + j + 8 * v);
    for (int t = 0; t < count; ++t) {
      const T* bt = b[t] + j;
      const __m256 b0 = load8(bt), b1 = load8(bt + 8), b2 = load8(bt + 16), b3 = load8(bt + 24);
      for (int a = 0; a < MR; ++a) {
        const __m256 c = _mm256_set1_ps(coef[a][t]);
        acc[a][0] = _mm256_fmadd_ps(c, b0, acc[a][0]);
        acc[a][1] = _mm256_fmadd_ps(c, b1, acc[a][1]);
        acc[a][2] = _mm256_fmadd_ps(c, b2, acc[a][2]);
        acc[a][3] = _mm256_fmadd_ps(c, b3, acc[a][3]);
      }
    }
    for (int a = 0; a < MR; ++a)
      for (int v = 0; v < 4; ++v) _mm256_storeu_ps(y[a] + j + 8 * v, acc[a][v]);
  }
  for (; j + 8 <= n; j += 8) {
    __m256 acc[MR];
    for (int a = 0; a < MR; ++a) acc[a] = _mm256_loadu_ps(y[a] + j);
    for (int t = 0; t < count; ++t) {
      const __m256 bv = load8(b[t] + j);
      for (int a = 0; a < MR; ++a) acc[a] = _mm256_fmadd_ps(_mm256_set1_ps(coef[a][t]), bv, acc[a]);
    }
    for (int a = 0; a < MR; ++a) _mm256_storeu_ps(y[a] + j, acc[a]);
  }
#endif
  for (; j < n; ++j) {
    for (int a = 0; a < MR; ++a) {
      float s = y[a][j];
      for (int t = 0; t < count; ++t) s = std::fma(coef[a][t], scalarOf(b[t][j]), s);
      y[a][j] = s;
    }
  }
}

}  // namespace mla::cpu
