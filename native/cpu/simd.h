// Small vector helpers over cpu/vec.h's register (AVX-512, AVX2/FMA or plain floats, whichever
// this translation unit compiles kernels for). Each reduces in a fixed order (lane-wise, then a
// fixed tree), so a result never depends on its caller, only on the ISA.
#pragma once
#include <cmath>
#include <cstddef>

#include "cpu/vec.h"

namespace mla::cpu::MLA_KERNEL_NS::simd {

inline float dot(const float* a, const float* b, int n) {
  int i = 0;
  Vec acc0 = vzero(), acc1 = vzero();
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    acc0 = vfma(vload(a + i), vload(b + i), acc0);
    acc1 = vfma(vload(a + i + kLanes), vload(b + i + kLanes), acc1);
  }
  for (; i + kLanes <= n; i += kLanes) acc0 = vfma(vload(a + i), vload(b + i), acc0);
  float s = vhsum(vadd(acc0, acc1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y += alpha * x
inline void axpy(float alpha, const float* x, float* y, int n) {
  int i = 0;
  const Vec va = vset1(alpha);
  for (; i + kLanes <= n; i += kLanes) vstore(y + i, vfma(va, vload(x + i), vload(y + i)));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

// x *= alpha
inline void scale(float* x, float alpha, int n) {
  int i = 0;
  const Vec va = vset1(alpha);
  for (; i + kLanes <= n; i += kLanes) vstore(x + i, vmul(vload(x + i), va));
  for (; i < n; ++i) x[i] *= alpha;
}

inline float maxOf(const float* x, int n) {
  int i = 0;
  Vec vm = vset1(-INFINITY);
  for (; i + kLanes <= n; i += kLanes) vm = vmax(vm, vload(x + i));
  float m = vhmax(vm);
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// out[i] = exp(x[i] - shift); returns the sum, accumulated in double every 256 values (out may alias x).
inline double expShifted(const float* x, float shift, float* out, int n) {
  int i = 0;
  double sum = 0;
  const Vec vs = vset1(-shift);
  while (i + kLanes <= n) {
    Vec acc = vzero();
    for (int end = i + 256 < n ? i + 256 : n; i + kLanes <= end; i += kLanes) {
      const Vec e = vexp(vadd(vload(x + i), vs));
      vstore(out + i, e);
      acc = vadd(acc, e);
    }
    sum += vhsum(acc);
  }
  for (; i < n; ++i) sum += out[i] = std::exp(x[i] - shift);
  return sum;
}

}  // namespace mla::cpu::MLA_KERNEL_NS::simd

namespace mla::cpu {
namespace simd = MLA_KERNEL_NS::simd;
}
