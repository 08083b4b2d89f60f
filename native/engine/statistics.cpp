#include "engine/statistics.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace mla {

StatisticsCollector::StatisticsCollector(std::vector<StatRequest> requests, int numThreads)
    : requests_(std::move(requests)), results_(requests_.size()), pool_(numThreads) {
  int layers = 0;
  for (const auto& r : requests_) layers = std::max(layers, r.layer + 1);
  inputs_.resize(static_cast<size_t>(layers));
}

int StatisticsCollector::lastLayer() const {
  int last = 0;
  for (const auto& r : requests_) last = std::max(last, r.layer);
  return last;
}

void StatisticsCollector::observe(int layer, ObservePoint point, const float* x, int rows, int cols) {
  if (point == ObservePoint::kAttnNorm) {
    for (const auto& r : requests_) {
      if (r.layer != layer || r.kind != StatRequest::Kind::kNormalizedMoments) continue;
      Input& in = inputs_[static_cast<size_t>(layer)];
      in.data.assign(x, x + static_cast<size_t>(rows) * cols);
      in.rows = rows;
      in.width = cols;
      break;
    }
  }
  for (size_t i = 0; i < requests_.size(); ++i) {
    const StatRequest& r = requests_[i];
    if (r.layer != layer || r.point != point) continue;
    const int end = r.colEnd < 0 ? cols : r.colEnd;
    check(r.colBegin >= 0 && r.colBegin < end && end <= cols,
          "statistics: columns [" + std::to_string(r.colBegin) + ", " + std::to_string(end) + ") are outside " + observePointName(point) +
              "'s " + std::to_string(cols) + " columns at layer " + std::to_string(layer));
    const int n = end - r.colBegin + (r.appendOne && r.kind == StatRequest::Kind::kCovariance ? 1 : 0);
    StatResult& out = results_[i];
    if (out.data.empty()) {
      out.columns = n;
      size_t size = 2 * static_cast<size_t>(n);
      if (r.kind == StatRequest::Kind::kCovariance) size = static_cast<size_t>(n) * n;
      if (r.kind == StatRequest::Kind::kNormalizedMoments) size = static_cast<size_t>(inputs_[static_cast<size_t>(layer)].width + 1 + n) * n;
      out.data.assign(size, 0.0);
    }
    if (r.kind == StatRequest::Kind::kCovariance) accumulateCovariance(r, out, x, rows, cols, r.colBegin, n);
    else if (r.kind == StatRequest::Kind::kRmsFit) accumulateRmsFit(r, out, x, rows, cols, r.colBegin, n);
    else accumulateNormalizedMoments(r, out, x, rows, cols, r.colBegin, n);
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

void StatisticsCollector::accumulateNormalizedMoments(const StatRequest& r, StatResult& out, const float* x, int rows, int cols, int begin, int n) {
  const Input& in = inputs_[static_cast<size_t>(r.layer)];
  check(in.rows == rows && in.width > 0, "statistics: " + std::string(observePointName(r.point)) + " at layer " + std::to_string(r.layer) +
                                             " came without its attention input (normalized moments)");
  const int m = in.width;
  check(out.data.size() == static_cast<size_t>(m + 1 + n) * n, "statistics: the attention input's width changed between batches");
  // Rows as contiguous float64 columns: ã (m + 1) and u (n), then every entry is one dot product.
  std::vector<double> at(static_cast<size_t>(m + 1) * rows), ut(static_cast<size_t>(n) * rows);
  for (int t = 0; t < rows; ++t) {
    const float* a = in.data.data() + static_cast<size_t>(t) * m;
    for (int i = 0; i < m; ++i) at[static_cast<size_t>(i) * rows + t] = a[i];
    at[static_cast<size_t>(m) * rows + t] = 1.0;
    const float* xr = x + static_cast<size_t>(t) * cols + begin;
    double ms = 0;
    for (int j = 0; j < n; ++j) ms += static_cast<double>(xr[j]) * xr[j];
    const double inv = 1.0 / std::sqrt(ms / n + r.eps);
    for (int j = 0; j < n; ++j) ut[static_cast<size_t>(j) * rows + t] = xr[j] * inv;
  }
  auto dot = [rows](const double* p, const double* q) {
    double s0 = 0, s1 = 0;
    int t = 0;
    for (; t + 2 <= rows; t += 2) {
      s0 += p[t] * q[t];
      s1 += p[t + 1] * q[t + 1];
    }
    for (; t < rows; ++t) s0 += p[t] * q[t];
    return s0 + s1;
  };
  double* c = out.data.data();
  pool_.parallelFor(m + 1 + n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double* p = i <= m ? at.data() + static_cast<size_t>(i) * rows : ut.data() + static_cast<size_t>(i - m - 1) * rows;
      for (int j = 0; j < n; ++j) c[static_cast<size_t>(i) * n + j] += dot(p, ut.data() + static_cast<size_t>(j) * rows);
    }
  });
}

}  // namespace mla
