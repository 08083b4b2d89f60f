// Element types of checkpoint tensors and conversions to float.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>

namespace mla {

enum class DType { kF32, kF16, kBF16 };

size_t dtypeSize(DType dtype);
const char* dtypeName(DType dtype);

inline float bf16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even, as PyTorch does; NaN stays NaN.
inline uint16_t floatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float f16ToFloat(uint16_t h);
uint16_t floatToF16(float f);

// Converts `count` elements of `dtype` at `src` (any alignment) to float.
void toFloat(DType dtype, const void* src, float* dst, size_t count);

// Values that are NaN or infinite among `count` values of `dtype` (their exponent bits all set).
size_t countNonFinite(DType dtype, const void* src, size_t count);

}  // namespace mla
