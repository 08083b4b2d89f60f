#include "cpu/matmul.h"

#include <algorithm>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define MLA_AVX2 1
#endif

namespace mla::cpu {

void loadRow(const Matrix& w, int row, float* out) { toFloat(w.dtype, w.row(row), out, static_cast<size_t>(w.cols)); }

void matmulReference(const float* x, int m, const Matrix& w, const float* bias, float* y) {
  std::vector<float> row(static_cast<size_t>(w.cols));
  for (int j = 0; j < w.rows; ++j) {
    loadRow(w, j, row.data());
    for (int i = 0; i < m; ++i) {
      double sum = bias ? bias[j] : 0.0;
      for (int k = 0; k < w.cols; ++k) sum += static_cast<double>(x[static_cast<size_t>(i) * w.cols + k]) * row[k];
      y[static_cast<size_t>(i) * w.rows + j] = static_cast<float>(sum);
    }
  }
}

namespace {

#ifdef MLA_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#endif

inline float scalar(float v) { return v; }
inline float scalar(uint16_t v) { return bf16ToFloat(v); }

// Dot products of 4 weight rows with one x row: out[r] = x · w_r. Lane-wise partial sums over
// k in steps of 8, then a fixed horizontal sum, then the scalar tail: the same order for every call.
template <typename T>
inline void dot4(const float* x, const T* w0, const T* w1, const T* w2, const T* w3, int k, float* out) {
  int i = 0;
#ifdef MLA_AVX2
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (; i + 8 <= k; i += 8) {
    __m256 xv = load8(x + i);
    a0 = _mm256_fmadd_ps(xv, load8(w0 + i), a0);
    a1 = _mm256_fmadd_ps(xv, load8(w1 + i), a1);
    a2 = _mm256_fmadd_ps(xv, load8(w2 + i), a2);
    a3 = _mm256_fmadd_ps(xv, load8(w3 + i), a3);
  }
  float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
#else
  float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#endif
  for (; i < k; ++i) {
    s0 += x[i] * scalar(w0[i]);
    s1 += x[i] * scalar(w1[i]);
    s2 += x[i] * scalar(w2[i]);
    s3 += x[i] * scalar(w3[i]);
  }
  out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;
}

template <typename T>
void matmulRows(const float* x, int m, const T* w, int n, int k, const float* bias, float* y, int rowBegin, int rowEnd) {
  // Keep a block of x rows hot in L2 while 4 weight rows at a time stream past it.
  const int xBlock = std::max(1, static_cast<int>((256 * 1024) / (static_cast<size_t>(k) * sizeof(float))));
  for (int i0 = 0; i0 < m; i0 += xBlock) {
    const int i1 = std::min(m, i0 + xBlock);
    for (int j = rowBegin; j < rowEnd; j += 4) {
      const int j0 = j, j1 = std::min(j + 1, rowEnd - 1), j2 = std::min(j + 2, rowEnd - 1), j3 = std::min(j + 3, rowEnd - 1);
      const T* w0 = w + static_cast<size_t>(j0) * k;
      const T* w1 = w + static_cast<size_t>(j1) * k;
      const T* w2 = w + static_cast<size_t>(j2) * k;
      const T* w3 = w + static_cast<size_t>(j3) * k;
      const int count = std::min(4, rowEnd - j);
      for (int i = i0; i < i1; ++i) {
        float s[4];
        dot4(x + static_cast<size_t>(i) * k, w0, w1, w2, w3, k, s);
        float* yr = y + static_cast<size_t>(i) * n + j;
        for (int c = 0; c < count; ++c) yr[c] = s[c] + (bias ? bias[j + c] : 0.0f);
      }
    }
  }
}

}  // namespace

void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y) {
  const int n = w.rows, k = w.cols;
  // Split the weight rows (in multiples of 4) across threads: every thread reads its own weights once.
  const int64_t groups = (n + 3) / 4;
  const int64_t minGroups = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, static_cast<int64_t>(k) * m));
  pool.parallelFor(groups, [&](int64_t g0, int64_t g1) {
    const int r0 = static_cast<int>(g0 * 4), r1 = static_cast<int>(std::min<int64_t>(g1 * 4, n));
    if (w.dtype == DType::kBF16) matmulRows(x, m, static_cast<const uint16_t*>(w.data), n, k, bias, y, r0, r1);
    else matmulRows(x, m, static_cast<const float*>(w.data), n, k, bias, y, r0, r1);
  }, minGroups);
}

}  // namespace mla::cpu
