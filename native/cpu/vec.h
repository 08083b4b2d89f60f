// One SIMD register of floats, for the ISA this translation unit compiles kernels for:
// AVX-512 (16 lanes) inside cpu/kernels/kernels_avx512.cpp, AVX2/FMA (8 lanes) on a baseline
// x86-64-v3 build, one plain float otherwise. Everything here lives in namespace
// mla::cpu::MLA_KERNEL_NS, so each ISA's copies of these inline functions are distinct symbols
// (the linker must never merge an AVX-512 copy into code that runs on an AVX2 machine).
#pragma once
#include <cmath>
#include <cstdint>

#include "core/dtype.h"

#if defined(MLA_KERNEL_AVX512) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

#ifndef MLA_KERNEL_NS
#define MLA_KERNEL_NS isa_base
#endif

namespace mla::cpu::MLA_KERNEL_NS {

#if defined(MLA_KERNEL_AVX512)
using Vec = __m512;
constexpr int kLanes = 16;
inline Vec vzero() { return _mm512_setzero_ps(); }
inline Vec vset1(float v) { return _mm512_set1_ps(v); }
inline Vec vload(const float* p) { return _mm512_loadu_ps(p); }
inline Vec vload(const uint16_t* p) {  // 16 bf16 widened: the 16 bits become a float's high half
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void vstore(float* p, Vec v) { _mm512_storeu_ps(p, v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm512_add_ps(a, b); }
inline Vec vmul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
inline Vec vmax(Vec a, Vec b) { return _mm512_max_ps(a, b); }
inline float vhsum(Vec v) {  // fixed tree: halves, then quarters, ...
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
inline float vhmax(Vec v) { return _mm512_reduce_max_ps(v); }
#define MLA_VEC_HSUM4 1
// vhsum(v[i]) for i < 4: the same additions of the same pairs (so the same bits), four sums side
// by side in each instruction instead of one (15 instructions instead of 32), kept in a register.
using Sums4 = __m128;
inline Sums4 vhsum4x(const Vec* v) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(v[0], v[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(v[2], v[3], _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_f32x4(v[2], v[3], _MM_SHUFFLE(3, 2, 3, 2)));
  // Quarter i of s: vector i's 16 lanes folded to 4 (its low 8 + high 8, then low 4 + high 4).
  __m512 s = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  s = _mm512_add_ps(s, _mm512_shuffle_ps(s, s, _MM_SHUFFLE(3, 2, 3, 2)));  // lanes 0, 1 of a quarter: s0 + s2, s1 + s3
  s = _mm512_add_ps(s, _mm512_shuffle_ps(s, s, _MM_SHUFFLE(1, 1, 1, 1)));  // lane 0: (s0 + s2) + (s1 + s3)
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), s));
}
// exp(x): x = n ln2 + r, exp(r) by a degree-6 polynomial; relative error ~2e-7. Below e^-87 (the
// smallest normal float) the result is 0: subnormals cost microcode assists in every sum they
// reach, and a masked logit (-inf) must weigh exactly 0.
inline Vec vexp(Vec x) {
  const __mmask16 normal = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_GE_OQ);
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
  // 2^n in two factors, so n = 128 (x near 88) stays representable.
  const __m512i ni = _mm512_cvtps_epi32(n);
  const __m512i half = _mm512_srai_epi32(ni, 1);
  const __m512 s1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, _mm512_set1_epi32(127)), 23));
  const __m512 s2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, half), _mm512_set1_epi32(127)), 23));
  return _mm512_maskz_mul_ps(normal, _mm512_mul_ps(p, s1), s2);
}

#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int kLanes = 8;
inline Vec vzero() { return _mm256_setzero_ps(); }
inline Vec vset1(float v) { return _mm256_set1_ps(v); }
inline Vec vload(const float* p) { return _mm256_loadu_ps(p); }
inline Vec vload(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline void vstore(float* p, Vec v) { _mm256_storeu_ps(p, v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return _mm256_add_ps(a, b); }
inline Vec vmul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
inline Vec vmax(Vec a, Vec b) { return _mm256_max_ps(a, b); }
inline float vhsum(Vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
inline float vhmax(Vec v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#define MLA_VEC_HSUM4 1
// out[i] = vhsum(v[i]) for i < 4, the same additions of the same pairs as vhsum (so the same
// bits), two or four sums side by side in each instruction (15 instructions instead of 24), kept
// in a register.
using Sums4 = __m128;
inline Sums4 vhsum4x(const Vec* v) {
  // Halves folded: a = [v0 lo + v0 hi | v1 lo + v1 hi], b the same for v2, v3.
  const __m256 a = _mm256_add_ps(_mm256_permute2f128_ps(v[0], v[1], 0x20), _mm256_permute2f128_ps(v[0], v[1], 0x31));
  const __m256 b = _mm256_add_ps(_mm256_permute2f128_ps(v[2], v[3], 0x20), _mm256_permute2f128_ps(v[2], v[3], 0x31));
  // Each 128-bit lane [s0 s1 s2 s3] of a and b to (s0 + s2, s1 + s3): c = [a: v0 v0 b: v2 v2 | a: v1 v1 b: v3 v3].
  const __m256 c = _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  // (s0 + s2) + (s1 + s3): d = [v0 v2 v0 v2 | v1 v3 v1 v3].
  const __m256 d = _mm256_add_ps(_mm256_shuffle_ps(c, c, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(c, c, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m128 lo = _mm256_castps256_ps128(d), hi = _mm256_extractf128_ps(d, 1);
  return _mm_unpacklo_ps(lo, hi);
}
inline Vec vexp(Vec x) {  // as the AVX-512 version above
  const __m256 normal = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_GE_OQ);
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  for (float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i half = _mm256_srai_epi32(ni, 1);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, _mm256_set1_epi32(127)), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), _mm256_set1_epi32(127)), 23));
  return _mm256_and_ps(_mm256_mul_ps(_mm256_mul_ps(p, s1), s2), normal);
}

#else
using Vec = float;
constexpr int kLanes = 1;
inline Vec vzero() { return 0.0f; }
inline Vec vset1(float v) { return v; }
inline Vec vload(const float* p) { return *p; }
inline Vec vload(const uint16_t* p) { return bf16ToFloat(*p); }
inline void vstore(float* p, Vec v) { *p = v; }
inline Vec vfma(Vec a, Vec b, Vec c) { return std::fma(a, b, c); }
inline Vec vadd(Vec a, Vec b) { return a + b; }
inline Vec vmul(Vec a, Vec b) { return a * b; }
inline Vec vmax(Vec a, Vec b) { return a > b ? a : b; }
inline float vhsum(Vec v) { return v; }
inline float vhmax(Vec v) { return v; }
inline Vec vexp(Vec x) { return x < -87.0f ? 0.0f : std::exp(x); }
#endif

// Four sums (vhsum4x) stored: all four, or the first or last two. Storing straight from the
// register matters: a wide store to the stack read back as narrow loads stalls store-to-load
// forwarding (8% of the bundled MLA model's attention on Zen 3).
#ifdef MLA_VEC_HSUM4
inline void storeSums(float* p, Sums4 s) { _mm_storeu_ps(p, s); }
inline void storeSumsLo(float* p, Sums4 s) { _mm_storel_pi(reinterpret_cast<__m64*>(p), s); }
inline void storeSumsHi(float* p, Sums4 s) { _mm_storeh_pi(reinterpret_cast<__m64*>(p), s); }
#else
struct Sums4 {
  float v[4];
};
inline Sums4 vhsum4x(const Vec* v) { return {{vhsum(v[0]), vhsum(v[1]), vhsum(v[2]), vhsum(v[3])}}; }
inline void storeSums(float* p, Sums4 s) { for (int i = 0; i < 4; ++i) p[i] = s.v[i]; }
inline void storeSumsLo(float* p, Sums4 s) { p[0] = s.v[0], p[1] = s.v[1]; }
inline void storeSumsHi(float* p, Sums4 s) { p[0] = s.v[2], p[1] = s.v[3]; }
#endif
#undef MLA_VEC_HSUM4
// out[i] = vhsum(v[i]) for i < 4.
inline void vhsum4(const Vec* v, float* out) { storeSums(out, vhsum4x(v)); }

// One value of a row as a float (the scalar tails).
inline float scalarOf(float v) { return v; }
inline float scalarOf(uint16_t v) { return bf16ToFloat(v); }

}  // namespace mla::cpu::MLA_KERNEL_NS
