#include "cpu/ops.h"

#include <cmath>

namespace mla::cpu {

void embedTokens(const Matrix& embed, const int32_t* tokens, int n, float* out) {
  for (int i = 0; i < n; ++i) {
    toFloat(embed.dtype, embed.row(tokens[i]), out + static_cast<size_t>(i) * embed.cols, static_cast<size_t>(embed.cols));
  }
}

void rmsNorm(const float* x, const float* weight, int n, int dim, float eps, float* out) {
  for (int i = 0; i < n; ++i) {
    const float* xr = x + static_cast<size_t>(i) * dim;
    float* yr = out + static_cast<size_t>(i) * dim;
    float sumSquares = 0;
    for (int j = 0; j < dim; ++j) sumSquares += xr[j] * xr[j];
    const float inv = 1.0f / std::sqrt(sumSquares / static_cast<float>(dim) + eps);
    for (int j = 0; j < dim; ++j) yr[j] = weight[j] * (xr[j] * inv);
  }
}

void addInPlace(float* x, const float* y, size_t count) {
  for (size_t i = 0; i < count; ++i) x[i] += y[i];
}

void siluMul(const float* gate, const float* up, size_t count, float* out) {
  for (size_t i = 0; i < count; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void applyRope(float* x, int pos, const RopeConfig& rope, const double* inverseFrequencies) {
  const int half = rope.dim / 2;
  for (int i = 0; i < half; ++i) {
    const double angle = static_cast<double>(pos) * inverseFrequencies[i];
    const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
    const int a = rope.interleaved ? 2 * i : i;
    const int b = rope.interleaved ? 2 * i + 1 : i + half;
    const float xa = x[a], xb = x[b];
    x[a] = xa * c - xb * s;
    x[b] = xb * c + xa * s;
  }
}

}  // namespace mla::cpu
