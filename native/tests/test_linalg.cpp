// The float64 eigensolver and matrix product against known spectra and defining identities.
#include <algorithm>
#include <chrono>
#include <random>

#include "harness.h"
#include "linalg/dense.h"

using namespace mla;

static ThreadPool pool(2);

// max |A V - V Λ| / max|A| and max |Vᵀ V - I|
static void checkDecomposition(const std::vector<double>& a, int n, const linalg::Eigen& e, double tol) {
  double scale = 0;
  for (double v : a) scale = std::max(scale, std::fabs(v));
  double residual = 0, ortho = 0;
  for (int c = 0; c < n; ++c) {
    for (int i = 0; i < n; ++i) {
      double av = 0;
      for (int k = 0; k < n; ++k) av += a[static_cast<size_t>(i) * n + k] * e.vectors[static_cast<size_t>(k) * n + c];
      residual = std::max(residual, std::fabs(av - e.values[c] * e.vectors[static_cast<size_t>(i) * n + c]));
    }
    for (int d = c; d < n; ++d) {
      double dot = 0;
      for (int k = 0; k < n; ++k) dot += e.vectors[static_cast<size_t>(k) * n + c] * e.vectors[static_cast<size_t>(k) * n + d];
      ortho = std::max(ortho, std::fabs(dot - (c == d ? 1.0 : 0.0)));
    }
  }
  EXPECT_MSG(residual <= tol * std::max(scale, 1.0), "n=%d residual %g", n, residual);
  EXPECT_MSG(ortho <= tol, "n=%d orthogonality %g", n, ortho);
  EXPECT(std::is_sorted(e.values.begin(), e.values.end(), std::greater<double>()));
}

TEST(eigen_known_spectrum_of_the_second_difference_matrix) {
  for (int n : {1, 2, 3, 10, 57}) {
    std::vector<double> a(static_cast<size_t>(n) * n, 0.0);
    for (int i = 0; i < n; ++i) {
      a[static_cast<size_t>(i) * n + i] = 2;
      if (i + 1 < n) a[static_cast<size_t>(i) * n + i + 1] = a[static_cast<size_t>(i + 1) * n + i] = -1;
    }
    auto e = linalg::symmetricEigen(pool, a.data(), n);
    for (int k = 1; k <= n; ++k) {  // eigenvalues 2 - 2 cos(k pi / (n + 1)), descending
      const double expected = 2 - 2 * std::cos((n + 1 - k) * M_PI / (n + 1));
      EXPECT_MSG(std::fabs(e.values[k - 1] - expected) < 1e-12, "n=%d k=%d %g vs %g", n, k, e.values[k - 1], expected);
    }
    checkDecomposition(a, n, e, 1e-12);
  }
}

TEST(eigen_diagonal_and_repeated_eigenvalues) {
  const int n = 6;
  std::vector<double> a(n * n, 0.0);
  const double diag[n] = {3, -1, 3, 0, 7, 3};
  for (int i = 0; i < n; ++i) a[i * n + i] = diag[i];
  auto e = linalg::symmetricEigen(pool, a.data(), n);
  EXPECT(e.values == std::vector<double>({7, 3, 3, 3, 0, -1}));
  checkDecomposition(a, n, e, 1e-14);
}

TEST(eigen_random_symmetric_and_covariance_matrices) {
  std::mt19937 rng(3);
  std::normal_distribution<double> normal;
  for (int n : {5, 64, 200}) {
    std::vector<double> a(static_cast<size_t>(n) * n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j <= i; ++j) a[static_cast<size_t>(i) * n + j] = a[static_cast<size_t>(j) * n + i] = normal(rng);
    checkDecomposition(a, n, linalg::symmetricEigen(pool, a.data(), n), 1e-11);
    // A rank-deficient covariance XᵀX (rows < n): eigenvalues >= 0, and exactly n - rows zeros.
    const int rows = n / 2;
    std::vector<double> x(static_cast<size_t>(rows) * n);
    for (auto& v : x) v = normal(rng);
    auto cov = linalg::matmul(pool, x.data(), x.data(), n, rows, n, true, false);
    auto e = linalg::symmetricEigen(pool, cov.data(), n);
    checkDecomposition(cov, n, e, 1e-10);
    EXPECT(e.values[rows - 1] > 1e-6 && std::fabs(e.values[rows]) < 1e-9 * e.values[0]);
  }
}

TEST(matmul_transposes) {
  std::mt19937 rng(4);
  std::normal_distribution<double> normal;
  const int m = 7, k = 13, n = 5;
  std::vector<double> a(m * k), b(k * n), at(k * m), bt(n * k);
  for (int i = 0; i < m; ++i)
    for (int p = 0; p < k; ++p) at[p * m + i] = a[i * k + p] = normal(rng);
  for (int p = 0; p < k; ++p)
    for (int j = 0; j < n; ++j) bt[j * k + p] = b[p * n + j] = normal(rng);
  auto c = linalg::matmul(pool, a.data(), b.data(), m, k, n, false, false);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) s += a[i * k + p] * b[p * n + j];
      EXPECT(std::fabs(c[i * n + j] - s) < 1e-12);
    }
  EXPECT(linalg::matmul(pool, at.data(), b.data(), m, k, n, true, false) == c);
  auto c3 = linalg::matmul(pool, a.data(), bt.data(), m, k, n, false, true);
  auto c4 = linalg::matmul(pool, at.data(), bt.data(), m, k, n, true, true);
  for (int i = 0; i < m * n; ++i) EXPECT(std::fabs(c3[i] - c[i]) < 1e-12 && std::fabs(c4[i] - c[i]) < 1e-12);
}

TEST(eigen_rejects_nan) {
  std::vector<double> a = {1, NAN, NAN, 1};
  EXPECT_THROWS(linalg::symmetricEigen(pool, a.data(), 2), "NaN");
}

RUN_TESTS()
