#include "core/dtype.h"

#include <cmath>

namespace mla {

size_t dtypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
  }
  return 0;
}

const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

float f16ToFloat(uint16_t h) {
  uint32_t sign = (h >> 15) & 1u, exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  float value;
  if (exponent == 0) value = std::ldexp(static_cast<float>(mantissa), -24);           // subnormal or zero
  else if (exponent == 31) value = mantissa ? NAN : INFINITY;
  else value = std::ldexp(static_cast<float>(mantissa | 0x400u), static_cast<int>(exponent) - 25);
  return sign ? -value : value;
}

uint16_t floatToF16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  float a = std::fabs(f);
  if (std::isnan(f)) return static_cast<uint16_t>(sign | 0x7e00u);
  if (a >= 65520.0f) return static_cast<uint16_t>(sign | 0x7c00u);
  if (a < 6.103515625e-05f) {  // subnormal: multiples of 2^-24, round to nearest even
    float q = std::nearbyint(a * 16777216.0f);
    return static_cast<uint16_t>(sign | static_cast<uint16_t>(q));
  }
  int exponent;
  float m = std::frexp(a, &exponent);  // a = m * 2^exponent, m in [0.5, 1)
  float scaled = std::nearbyint(m * 2048.0f);  // 11 significant bits
  if (scaled >= 2048.0f) { scaled /= 2.0f; ++exponent; }
  uint32_t e = static_cast<uint32_t>(exponent + 14);
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);
  return static_cast<uint16_t>(sign | (e << 10) | (static_cast<uint32_t>(scaled) & 0x3ffu));
}

void toFloat(DType dtype, const void* src, float* dst, size_t count) {
  const unsigned char* bytes = static_cast<const unsigned char*>(src);
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, count * 4);
      return;
    case DType::kBF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        dst[i] = bf16ToFloat(h);
      }
      return;
    case DType::kF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        dst[i] = f16ToFloat(h);
      }
      return;
  }
}

size_t countNonFinite(DType dtype, const void* src, size_t count) {
  size_t bad = 0;
  if (dtype == DType::kF32) {
    const auto* u = static_cast<const uint32_t*>(src);
    for (size_t i = 0; i < count; ++i) bad += (u[i] & 0x7f800000u) == 0x7f800000u;
  } else {
    const uint16_t mask = dtype == DType::kBF16 ? 0x7f80 : 0x7c00;
    const auto* u = static_cast<const uint16_t*>(src);
    for (size_t i = 0; i < count; ++i) bad += (u[i] & mask) == mask;
  }
  return bad;
}

}  // namespace mla
