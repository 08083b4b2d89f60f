#include "cpu/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "core/huge_buffer.h"
#include "cpu/simd.h"

namespace mla::cpu {

double readBandwidth(ThreadPool& pool, size_t bytes, int reps) {
  const size_t n = bytes / sizeof(float);
  // In huge pages, as the CPU backend holds its weights and cache: the floor is the best plain read.
  HugeBuffer buffer(n * sizeof(float));
  float* data = reinterpret_cast<float*>(buffer.data());
  pool.parallelFor(static_cast<int64_t>(n), [&](int64_t b, int64_t e) { std::fill(data + b, data + e, 1.0f); });
  std::vector<float> sums(static_cast<size_t>(pool.numThreads()));
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallelFor(pool.numThreads(), [&](int64_t part, int64_t) {
      const size_t chunk = n / static_cast<size_t>(pool.numThreads());
      const float* p = data + chunk * static_cast<size_t>(part);
      float s = 0;
      for (size_t i = 0; i + 4096 <= chunk; i += 4096) s += simd::dot(p + i, p + i, 4096) * 0.0f + p[i];
      sums[static_cast<size_t>(part)] = s;
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n / pool.numThreads() * pool.numThreads()) * sizeof(float) / seconds);
  }
  volatile float sink = sums[0];
  (void)sink;
  return best;
}

}  // namespace mla::cpu
