#include "cpu/matmul.h"

#include <algorithm>
#include <cstring>

#include "cpu/microkernels.h"

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

template <typename T>
void matmulRows(const float* x, int m, const T* w, int n, int k, const float* bias, float* y, int rowBegin, int rowEnd) {
  // Keep a block of x rows hot in L2 while 4 weight rows at a time stream past it.
  const int xBlock = std::max(3, static_cast<int>((192 * 1024) / (static_cast<size_t>(k) * sizeof(float))) / 3 * 3);
  for (int i0 = 0; i0 < m; i0 += xBlock) {
    const int i1 = std::min(m, i0 + xBlock);
    for (int j = rowBegin; j < rowEnd; j += 4) {
      const int count = std::min(4, rowEnd - j);
      const T* wr[4];
      for (int r = 0; r < 4; ++r) wr[r] = w + static_cast<size_t>(std::min(j + r, rowEnd - 1)) * k;
      auto store = [&](int row, const float* s) {
        float* yr = y + static_cast<size_t>(row) * n + j;
        for (int c = 0; c < count; ++c) yr[c] = s[c] + (bias ? bias[j + c] : 0.0f);
      };
      int i = i0;
      for (; i + 3 <= i1; i += 3) {
        const float* xr[3] = {x + static_cast<size_t>(i) * k, x + static_cast<size_t>(i + 1) * k, x + static_cast<size_t>(i + 2) * k};
        float s[3][4];
        dotTile<3>(xr, wr, k, s);
        for (int a = 0; a < 3; ++a) store(i + a, s[a]);
      }
      for (; i < i1; ++i) {
        const float* xr[1] = {x + static_cast<size_t>(i) * k};
        float s[1][4];
        dotTile<1>(xr, wr, k, s);
        store(i, s[0]);
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
