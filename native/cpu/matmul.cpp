#include "cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>

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

namespace {

WeightStream parseStream(const char* name) {
  for (WeightStream s : {WeightStream::kOneRow, WeightStream::kTwoRows})
    if (std::strcmp(name, weightStreamName(s)) == 0) return s;
  throw std::invalid_argument(std::string("MLA_CPU_STREAM=") + name + ": choose rows1 or rows2");
}

// MLA_CPU_STREAM, read once; null when unset.
const WeightStream* forcedStream() {
  static const std::optional<WeightStream> forced = []() -> std::optional<WeightStream> {
    const char* name = std::getenv("MLA_CPU_STREAM");
    if (!name || !*name) return std::nullopt;
    return parseStream(name);
  }();
  return forced ? &*forced : nullptr;
}

// The tuned orders: one per column count (x's length decides how much of L1 x takes), and the
// last tuned one for column counts never tuned (or past the slots). Written at load, read by
// every matmul without a lock.
struct TunedOrders {
  static constexpr int kSlots = 16;  // a model has a handful of column counts
  std::atomic<int> cols[kSlots] = {};
  std::atomic<int> order[kSlots] = {};
  std::atomic<int> used{0};
  std::atomic<int> fallback{static_cast<int>(WeightStream::kOneRow)};
};

TunedOrders& tuned() {
  static TunedOrders t;
  return t;
}

void record(int cols, WeightStream s) {
  TunedOrders& t = tuned();
  t.fallback.store(static_cast<int>(s));
  const int used = t.used.load();
  int slot = 0;
  while (slot < used && t.cols[slot].load() != cols) ++slot;
  if (slot == TunedOrders::kSlots) return;  // full: the fallback serves it
  t.order[slot].store(static_cast<int>(s));
  t.cols[slot].store(cols);
  if (slot == used) t.used.store(used + 1);  // published after its entry
}

}  // namespace

const char* weightStreamName(WeightStream s) { return s == WeightStream::kTwoRows ? "rows2" : "rows1"; }

WeightStream weightStream(int cols) {
  if (forcedStream()) return *forcedStream();
  const TunedOrders& t = tuned();
  const int used = t.used.load();
  for (int slot = 0; slot < used; ++slot)
    if (t.cols[slot].load(std::memory_order_relaxed) == cols) return static_cast<WeightStream>(t.order[slot].load(std::memory_order_relaxed));
  return static_cast<WeightStream>(t.fallback.load(std::memory_order_relaxed));
}

WeightStream tuneWeightStream(ThreadPool& pool, const Matrix& w) {
  if (forcedStream()) return *forcedStream();
  std::vector<float> x(static_cast<size_t>(w.cols), 0.01f), y(static_cast<size_t>(w.rows));
  double best[2] = {1e30, 1e30};
  for (int rep = 0; rep < 4; ++rep) {
    for (WeightStream s : {WeightStream::kOneRow, WeightStream::kTwoRows}) {
      const auto t0 = std::chrono::steady_clock::now();
      matmul(pool, x.data(), 1, w, nullptr, y.data(), s);
      double& b = best[static_cast<int>(s)];
      b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  const WeightStream faster = best[1] < best[0] ? WeightStream::kTwoRows : WeightStream::kOneRow;
  record(w.cols, faster);
  return faster;
}

void tuneWeightStreams(ThreadPool& pool, const std::vector<Matrix>& matrices) {
  std::map<int, const Matrix*> largest;  // per column count, the matrix with the most rows
  for (const Matrix& m : matrices) {
    if (!m.data || m.rows == 0 || m.cols == 0) continue;
    const Matrix*& best = largest[m.cols];
    if (!best || m.rows > best->rows) best = &m;
  }
  for (const auto& [cols, m] : largest) tuneWeightStream(pool, *m);
}

void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y) {
  matmul(pool, x, m, w, bias, y, weightStream(w.cols));
}

void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y, WeightStream stream) {
  const int n = w.rows, k = w.cols;
  // Split the weight rows (in multiples of 4) across threads: every thread reads its own weights once.
  const int64_t groups = (n + 3) / 4;
  const int64_t minGroups = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, static_cast<int64_t>(k) * m));
  const KernelTable& kernel = kernels();
  pool.parallelFor(groups, [&](int64_t g0, int64_t g1) {
    kernel.matmulRows(x, m, w, bias, y, static_cast<int>(g0 * 4), static_cast<int>(std::min<int64_t>(g1 * 4, n)), stream);
  }, minGroups);
}

}  // namespace mla::cpu
