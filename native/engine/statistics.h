// Calibration statistics: activations at named points of a forward pass, accumulated in float64
// without ever leaving the addon.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "mla/backend.h"

namespace mla {

struct StatRequest {
  enum class Kind {
    kCovariance,  // XᵀX over columns [colBegin, colEnd): [n, n]
    kRmsFit,      // per column j: sum x_j² / r and sum x_j² / r², r = sqrt(mean(x²) + eps) over the columns: [2, n]
    // The columns RMS-normalized (no weight), u = x / r, against the same layer's attention input
    // a (after input_layernorm) with a 1 appended: sum ã uᵀ [m + 1, n] over sum u uᵀ [n, n], so
    // data is [m + 1 + n, n] (m: the attention input's width). What a least-squares refit of the
    // projection after an RMSNorm needs.
    kNormalizedMoments,
  };
  int layer = 0;
  ObservePoint point = ObservePoint::kAttnNorm;
  int colBegin = 0;
  int colEnd = -1;  // -1: to the last column
  Kind kind = Kind::kCovariance;
  double eps = 1e-6;
  // Covariance only: append a constant 1 column, so the result also holds the column sums and
  // the row count (what a bias needs): [n + 1, n + 1].
  bool appendOne = false;
};

struct StatResult {
  int64_t rows = 0;          // activation rows (tokens) accumulated
  int columns = 0;           // n
  std::vector<double> data;  // [n, n] or [2, n]
};

class StatisticsCollector : public ActivationObserver {
 public:
  StatisticsCollector(std::vector<StatRequest> requests, int numThreads);
  void observe(int layer, ObservePoint point, const float* x, int rows, int cols) override;
  const std::vector<StatRequest>& requests() const { return requests_; }
  std::vector<StatResult>& results() { return results_; }
  // The highest layer any request needs (forward can stop there).
  int lastLayer() const;

 private:
  void accumulateCovariance(const StatRequest& r, StatResult& out, const float* x, int rows, int cols, int begin, int n);
  void accumulateRmsFit(const StatRequest& r, StatResult& out, const float* x, int rows, int cols, int begin, int n);
  void accumulateNormalizedMoments(const StatRequest& r, StatResult& out, const float* x, int rows, int cols, int begin, int n);

  // The last attention input seen per layer, for kNormalizedMoments requests: [rows, width].
  struct Input {
    std::vector<float> data;
    int rows = 0, width = 0;
  };
  std::vector<Input> inputs_;

  std::vector<StatRequest> requests_;
  std::vector<StatResult> results_;
  ThreadPool pool_;
};

}  // namespace mla
