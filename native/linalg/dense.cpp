#include "linalg/dense.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace mla::linalg {

std::vector<double> matmul(ThreadPool& pool, const double* a, const double* b, int m, int k, int n, bool transA, bool transB) {
  // Bring both operands to the layout where the inner loop is a contiguous axpy:
  // C[i, :] += A(i, p) * B(p, :).
  std::vector<double> bRows;
  const double* bp = b;
  if (transB) {
    bRows.resize(static_cast<size_t>(k) * n);
    for (int j = 0; j < n; ++j)
      for (int p = 0; p < k; ++p) bRows[static_cast<size_t>(p) * n + j] = b[static_cast<size_t>(j) * k + p];
    bp = bRows.data();
  }
  std::vector<double> c(static_cast<size_t>(m) * n, 0.0);
  constexpr int kBlock = 256;  // rows of B kept hot while a block of C rows accumulates
  pool.parallelFor(m, [&](int64_t i0, int64_t i1) {
    for (int p0 = 0; p0 < k; p0 += kBlock) {
      const int p1 = std::min(k, p0 + kBlock);
      for (int64_t i = i0; i < i1; ++i) {
        double* ci = c.data() + static_cast<size_t>(i) * n;
        for (int p = p0; p < p1; ++p) {
          const double aip = transA ? a[static_cast<size_t>(p) * m + i] : a[static_cast<size_t>(i) * k + p];
          if (aip == 0.0) continue;
          const double* bpRow = bp + static_cast<size_t>(p) * n;
          for (int j = 0; j < n; ++j) ci[j] += aip * bpRow[j];
        }
      }
    }
  });
  return c;
}

namespace {

// Householder reduction of the symmetric s [n, n] (overwritten) to tridiagonal form: diag d,
// off-diagonal e (e[i] couples i and i+1), and qt = Qᵀ with s = Q T Qᵀ. Step k reflects row k's
// entries right of the diagonal onto e_{k+1}; one pass over the trailing block both applies step
// k's rank-2 update and computes step k+1's product p = beta A22 v, so memory is read once a step.
void tridiagonalize(ThreadPool& pool, std::vector<double>& s, int n, std::vector<double>& d, std::vector<double>& e, std::vector<double>& qt) {
  auto row = [&](int i) { return s.data() + static_cast<size_t>(i) * n; };
  d.assign(static_cast<size_t>(n), 0.0);
  e.assign(static_cast<size_t>(n), 0.0);
  std::vector<double> vs(static_cast<size_t>(n) * n, 0.0), betas(static_cast<size_t>(n), 0.0);  // Householder vectors
  std::vector<double> p(static_cast<size_t>(n), 0.0), w(static_cast<size_t>(n), 0.0);
  // Makes step k's reflector from row k (already up to date); returns beta (0: nothing to do).
  auto reflector = [&](int k) {
    const int m = n - k - 1;
    double* v = vs.data() + static_cast<size_t>(k) * n;
    const double* rk = row(k) + k + 1;
    double norm2 = 0;
    for (int i = 0; i < m; ++i) {
      v[i] = rk[i];
      norm2 += v[i] * v[i];
    }
    d[static_cast<size_t>(k)] = row(k)[k];
    const double x0 = v[0];
    if (norm2 - x0 * x0 == 0.0) {  // already tridiagonal in this row
      e[static_cast<size_t>(k)] = x0;
      return 0.0;
    }
    const double alpha = x0 >= 0 ? -std::sqrt(norm2) : std::sqrt(norm2);
    e[static_cast<size_t>(k)] = alpha;
    v[0] = x0 - alpha;
    const double beta = 2.0 / (norm2 - x0 * x0 + v[0] * v[0]);
    betas[static_cast<size_t>(k)] = beta;
    return beta;
  };
  if (n > 2) {
    const double beta = reflector(0);
    const double* v = vs.data();
    pool.parallelFor(n - 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const double* r = row(1 + static_cast<int>(i)) + 1;
        double sum = 0;
        for (int j = 0; j < n - 1; ++j) sum += r[j] * v[j];
        p[static_cast<size_t>(i)] = beta * sum;
      }
    }, 32);
  }
  for (int k = 0; k + 2 < n; ++k) {
    const int m = n - k - 1;
    const double beta = betas[static_cast<size_t>(k)];
    const double* v = vs.data() + static_cast<size_t>(k) * n;
    if (beta != 0.0) {  // w = p - (beta/2)(pᵀv) v
      double pv = 0;
      for (int i = 0; i < m; ++i) pv += p[static_cast<size_t>(i)] * v[i];
      const double kappa = 0.5 * beta * pv;
      for (int i = 0; i < m; ++i) w[static_cast<size_t>(i)] = p[static_cast<size_t>(i)] - kappa * v[i];
      double* r = row(k + 1) + k + 1;  // the block's first row, then the next reflector from it
      for (int j = 0; j < m; ++j) r[j] -= v[0] * w[static_cast<size_t>(j)] + w[0] * v[j];
    }
    const bool next = k + 3 < n;
    const double nextBeta = next ? reflector(k + 1) : 0.0;
    const double* nv = vs.data() + static_cast<size_t>(k + 1) * n;
    pool.parallelFor(m - 1, [&](int64_t i0, int64_t i1) {  // rows k+2 .. n-1
      for (int64_t ii = i0; ii < i1; ++ii) {
        const int i = static_cast<int>(ii) + 1;  // index within the block
        double* r = row(k + 1 + i) + k + 1;
        if (beta != 0.0) {
          const double vi = v[i], wi = w[static_cast<size_t>(i)];
          for (int j = 0; j < m; ++j) r[j] -= vi * w[static_cast<size_t>(j)] + wi * v[j];
        }
        if (nextBeta != 0.0) {
          double sum = 0;
          for (int j = 1; j < m; ++j) sum += r[j] * nv[j - 1];
          p[static_cast<size_t>(i - 1)] = nextBeta * sum;
        }
      }
    }, 32);
  }
  if (n >= 2) {
    d[static_cast<size_t>(n - 2)] = row(n - 2)[n - 2];
    e[static_cast<size_t>(n - 2)] = row(n - 2)[n - 1];
  }
  d[static_cast<size_t>(n - 1)] = row(n - 1)[n - 1];
  // Q = H_0 H_1 ... H_{n-3}, accumulated from the right end: Q <- H_k Q on rows/cols k+1..n-1.
  std::vector<double> q(static_cast<size_t>(n) * n, 0.0);
  for (int i = 0; i < n; ++i) q[static_cast<size_t>(i) * n + i] = 1.0;
  std::vector<double> t(static_cast<size_t>(n));
  for (int k = n - 3; k >= 0; --k) {
    const double beta = betas[static_cast<size_t>(k)];
    if (beta == 0.0) continue;
    const int m = n - k - 1;
    const double* v = vs.data() + static_cast<size_t>(k) * n;
    pool.parallelFor(m, [&](int64_t j0, int64_t j1) {  // columns k+1+j
      for (int64_t j = j0; j < j1; ++j) t[static_cast<size_t>(j)] = 0;
      for (int i = 0; i < m; ++i) {
        const double* qr = q.data() + static_cast<size_t>(k + 1 + i) * n + k + 1;
        for (int64_t j = j0; j < j1; ++j) t[static_cast<size_t>(j)] += v[i] * qr[j];
      }
      for (int i = 0; i < m; ++i) {
        double* qr = q.data() + static_cast<size_t>(k + 1 + i) * n + k + 1;
        const double f = beta * v[i];
        for (int64_t j = j0; j < j1; ++j) qr[j] -= f * t[static_cast<size_t>(j)];
      }
    }, 16);
  }
  qt.resize(q.size());
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) qt[static_cast<size_t>(j) * n + i] = q[static_cast<size_t>(i) * n + j];
}

// Implicit QL on the tridiagonal (d, e), in two phases: first the iteration on d and e alone,
// recording every Givens rotation; then all rotations applied to the rows of zt (eigenvectors
// as rows), one column block at a time so each block stays in cache. d ends as the eigenvalues.
void tridiagonalQL(ThreadPool& pool, std::vector<double>& d, std::vector<double>& e, std::vector<double>& zt, int n) {
  const double eps = std::ldexp(1.0, -52);
  double shiftSum = 0, tst1 = 0;
  e[static_cast<size_t>(n - 1)] = 0;
  struct Sweep { int l, m; size_t first; };  // rotations i = m-1 .. l stored from `first`
  std::vector<Sweep> sweeps;
  std::vector<double> cs, ss;
  for (int l = 0; l < n; ++l) {
    tst1 = std::max(tst1, std::fabs(d[static_cast<size_t>(l)]) + std::fabs(e[static_cast<size_t>(l)]));
    int m = l;
    while (m < n - 1 && std::fabs(e[static_cast<size_t>(m)]) > eps * tst1) ++m;
    if (m > l) {
      int iterations = 0;
      do {
        if (++iterations > 60) throw Error("symmetric eigensolver: QL iteration did not converge");
        double g = d[static_cast<size_t>(l)];
        double p = (d[static_cast<size_t>(l + 1)] - g) / (2.0 * e[static_cast<size_t>(l)]);
        double r = std::hypot(p, 1.0);
        if (p < 0) r = -r;
        d[static_cast<size_t>(l)] = e[static_cast<size_t>(l)] / (p + r);
        d[static_cast<size_t>(l + 1)] = e[static_cast<size_t>(l)] * (p + r);
        const double dl1 = d[static_cast<size_t>(l + 1)];
        double h = g - d[static_cast<size_t>(l)];
        for (int i = l + 2; i < n; ++i) d[static_cast<size_t>(i)] -= h;
        shiftSum += h;
        p = d[static_cast<size_t>(m)];
        double c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
        const double el1 = e[static_cast<size_t>(l + 1)];
        sweeps.push_back({l, m, cs.size()});
        for (int i = m - 1; i >= l; --i) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[static_cast<size_t>(i)];
          h = c * p;
          r = std::hypot(p, e[static_cast<size_t>(i)]);
          e[static_cast<size_t>(i + 1)] = s * r;
          s = e[static_cast<size_t>(i)] / r;
          c = p / r;
          p = c * d[static_cast<size_t>(i)] - s * g;
          d[static_cast<size_t>(i + 1)] = h + s * (c * g + s * d[static_cast<size_t>(i)]);
          cs.push_back(c);
          ss.push_back(s);
        }
        p = -s * s2 * c3 * el1 * e[static_cast<size_t>(l)] / dl1;
        e[static_cast<size_t>(l)] = s * p;
        d[static_cast<size_t>(l)] = c * p;
      } while (std::fabs(e[static_cast<size_t>(l)]) > eps * tst1);
    }
    d[static_cast<size_t>(l)] += shiftSum;
    e[static_cast<size_t>(l)] = 0;
  }
  constexpr int64_t kBlock = 32;  // n x 32 doubles of zt: about 512 KiB for n = 2,000
  pool.parallelFor((n + kBlock - 1) / kBlock, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t k0 = b * kBlock, k1 = std::min<int64_t>(n, k0 + kBlock);
      for (const Sweep& sw : sweeps) {
        size_t idx = sw.first;
        for (int i = sw.m - 1; i >= sw.l; --i, ++idx) {
          const double ci = cs[idx], si = ss[idx];
          double* zi = zt.data() + static_cast<size_t>(i) * n;
          double* zi1 = zi + n;
          for (int64_t k = k0; k < k1; ++k) {
            const double zk1 = zi1[k];
            zi1[k] = si * zi[k] + ci * zk1;
            zi[k] = ci * zi[k] - si * zk1;
          }
        }
      }
    }
  });
}

}  // namespace

Eigen symmetricEigen(ThreadPool& pool, const double* a, int n) {
  check(n > 0, "symmetricEigen: empty matrix");
  for (size_t i = 0; i < static_cast<size_t>(n) * n; ++i) check(std::isfinite(a[i]), "symmetricEigen: the matrix has NaN or infinite entries");
  Eigen out;
  if (n == 1) {
    out.values = {a[0]};
    out.vectors = {1.0};
    return out;
  }
  // Symmetrize (the average of both triangles), so rounding asymmetry cannot bias the result.
  std::vector<double> s(static_cast<size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) s[static_cast<size_t>(i) * n + j] = 0.5 * (a[static_cast<size_t>(i) * n + j] + a[static_cast<size_t>(j) * n + i]);
  std::vector<double> d, e, zt;
  tridiagonalize(pool, s, n, d, e, zt);
  tridiagonalQL(pool, d, e, zt, n);
  std::vector<int> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int x, int y) { return d[static_cast<size_t>(x)] > d[static_cast<size_t>(y)]; });
  out.values.resize(static_cast<size_t>(n));
  out.vectors.resize(static_cast<size_t>(n) * n);
  for (int c = 0; c < n; ++c) {
    const int src = order[static_cast<size_t>(c)];
    out.values[static_cast<size_t>(c)] = d[static_cast<size_t>(src)];
    for (int i = 0; i < n; ++i) out.vectors[static_cast<size_t>(i) * n + c] = zt[static_cast<size_t>(src) * n + i];
  }
  return out;
}

}  // namespace mla::linalg
