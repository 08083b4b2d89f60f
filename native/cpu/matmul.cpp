#include "cpu/matmul.h"

#include <algorithm>
#include <cstring>

#include "cpu/kernels/kernels.h"

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


void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y) {
  const int n = w.rows, k = w.cols;
  // Split the weight rows (in multiples of 4) across threads: every thread reads its own weights once.
  const int64_t groups = (n + 3) / 4;
  const int64_t minGroups = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, static_cast<int64_t>(k) * m));
  const KernelTable& kernel = kernels();
  pool.parallelFor(groups, [&](int64_t g0, int64_t g1) {
    kernel.matmulRows(x, m, w, bias, y, static_cast<int>(g0 * 4), static_cast<int>(std::min<int64_t>(g1 * 4, n)));
  }, minGroups);
}

}  // namespace mla::cpu
