#include "engine/statistics.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mla {

StatisticsCollector::StatisticsCollector(std::vector<StatRequest> requests, int numThreads)
    : requests_(std::move(requests)), results_(requests_.size()), pool_(numThreads) {}

int StatisticsCollector::lastLayer() const {
  int last = 0;
  for (const auto& r : requests_) last = std::max(last, r.layer);
  return last;
}

void StatisticsCollector::observe(int layer, const std::string& point, const float* x, int rows, int cols) {
  for (size_t i = 0; i < requests_.size(); ++i) {
    const StatRequest& r = requests_[i];
    if (r.layer != layer || r.point != point) continue;
    const int end = r.colEnd < 0 ? cols : r.colEnd;
    check(r.colBegin >= 0 && r.colBegin < end && end <= cols,
          "statistics: columns [" + std::to_string(r.colBegin) + ", " + std::to_string(end) + ") are outside " + point +
              "'s " + std::to_string(cols) + " columns at layer " + std::to_string(layer));
    const int n = end - r.colBegin + (r.appendOne && r.kind == StatRequest::Kind::kCovariance ? 1 : 0);
    StatResult& out = results_[i];
    if (out.data.empty()) {
      out.columns = n;
      out.data.assign(r.kind == StatRequest::Kind::kCovariance ? static_cast<size_t>(n) * n : 2 * static_cast<size_t>(n), 0.0);
    }
    if (r.kind == StatRequest::Kind::kCovariance) accumulateCovariance(r, out, x, rows, cols, r.colBegin, n);
    else accumulateRmsFit(r, out, x, rows, cols, r.colBegin, n);
    out.rows += rows;
  }
}

void StatisticsCollector::accumulateCovariance(const StatRequest& r, StatResult& out, const float* x, int rows, int cols, int begin, int n) {
  // Columns as contiguous float64 rows, then each entry (i, j >= i) is one dot product.
  const int given = r.appendOne ? n - 1 : n;
  std::vector<double> xt(static_cast<size_t>(n) * rows);
  for (int t = 0; t < rows; ++t)
    for (int j = 0; j < given; ++j) xt[static_cast<size_t>(j) * rows + t] = x[static_cast<size_t>(t) * cols + begin + j];
  if (r.appendOne) std::fill(xt.begin() + static_cast<long>(given) * rows, xt.end(), 1.0);
  double* c = out.data.data();
  pool_.parallelFor(n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double* xi = xt.data() + static_cast<size_t>(i) * rows;
      for (int64_t j = i; j < n; ++j) {
        const double* xj = xt.data() + static_cast<size_t>(j) * rows;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        int t = 0;
        for (; t + 4 <= rows; t += 4) {
          s0 += xi[t] * xj[t];
          s1 += xi[t + 1] * xj[t + 1];
          s2 += xi[t + 2] * xj[t + 2];
          s3 += xi[t + 3] * xj[t + 3];
        }
        for (; t < rows; ++t) s0 += xi[t] * xj[t];
        const double s = (s0 + s1) + (s2 + s3);
        c[static_cast<size_t>(i) * n + j] += s;
        if (j != i) c[static_cast<size_t>(j) * n + i] += s;
      }
    }
  });
}

void StatisticsCollector::accumulateRmsFit(const StatRequest& r, StatResult& out, const float* x, int rows, int cols, int begin, int n) {
  double* a = out.data.data();
  double* b = a + n;
  for (int t = 0; t < rows; ++t) {
    const float* xr = x + static_cast<size_t>(t) * cols + begin;
    double ms = 0;
    for (int j = 0; j < n; ++j) ms += static_cast<double>(xr[j]) * xr[j];
    const double rms = std::sqrt(ms / n + r.eps);
    for (int j = 0; j < n; ++j) {
      const double sq = static_cast<double>(xr[j]) * xr[j];
      a[j] += sq / rms;
      b[j] += sq / (rms * rms);
    }
  }
}

}  // namespace mla
