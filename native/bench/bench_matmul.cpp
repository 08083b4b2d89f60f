// The CPU matmul (BF16 weights) at a 1 B Llama's shapes: GFLOP/s for prefill-sized m and GB/s of
// weights for decode-sized m, in each weight order (cpu/matmul.h).
//   bench_matmul [threads] [NxK ...]   (shapes: weight rows x columns; default a 1 B Llama's)
// The weights sit in huge pages, as the CPU backend holds them; BENCH_PAGES=4k: ordinary pages.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/huge_buffer.h"
#include "cpu/isa.h"
#include "cpu/matmul.h"

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  mla::ThreadPool pool(threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<std::pair<int, int>> shapes = {{2048, 2048}, {8192, 2048}, {2048, 8192}, {32000, 2048}};  // the last: an LM head, 4x the L3 here
  if (argc > 2) shapes.clear();
  for (int a = 2; a < argc; ++a) {
    int n = 0, k = 0;
    if (std::sscanf(argv[a], "%dx%d", &n, &k) != 2 || n <= 0 || k <= 0) {
      std::fprintf(stderr, "bench_matmul: shape '%s' is not NxK (e.g. 32000x2048)\n", argv[a]);
      return 2;
    }
    shapes.emplace_back(n, k);
  }
  const char* pages = std::getenv("BENCH_PAGES");
  const bool hugePages = !(pages && std::string(pages) == "4k");
  std::printf("threads %d, %s kernels, weights in %s pages\n  m     n     k | ms      | GFLOP/s | weight GB/s\n", pool.numThreads(),
              mla::cpu::isaName(mla::cpu::activeIsa()), hugePages ? "huge" : "4 KiB");
  for (auto [n, k] : shapes) {
    const size_t count = static_cast<size_t>(n) * k;
    std::vector<uint16_t> small(hugePages ? 0 : count);
    mla::HugeBuffer huge(hugePages ? count * sizeof(uint16_t) : 0);
    uint16_t* w = hugePages ? reinterpret_cast<uint16_t*>(huge.data()) : small.data();
    for (size_t i = 0; i < count; ++i) w[i] = mla::floatToBf16(normal(rng));
    const mla::Matrix m{w, mla::DType::kBF16, n, k};
    const mla::cpu::WeightStream tuned = mla::cpu::tuneWeightStream(pool, m);  // as a model's load would
    for (int rows : {1, 8, 64, 512}) {
      std::vector<float> x(static_cast<size_t>(rows) * k), y(static_cast<size_t>(rows) * n);
      for (auto& v : x) v = normal(rng);
      // m = 1 reads the weights in each order (cpu/matmul.h), interleaved; the rest as tuned.
      const std::vector<mla::cpu::WeightStream> streams = rows == 1 ? std::vector{mla::cpu::WeightStream::kOneRow, mla::cpu::WeightStream::kTwoRows}
                                                                   : std::vector{mla::cpu::weightStream(k)};
      std::vector<double> best(streams.size(), 1e9);
      for (int rep = 0; rep < (rows >= 512 ? 3 : 20); ++rep) {
        for (size_t s = 0; s < streams.size(); ++s) {
          const auto t0 = std::chrono::steady_clock::now();
          mla::cpu::matmul(pool, x.data(), rows, m, nullptr, y.data(), streams[s]);
          best[s] = std::min(best[s], std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
      }
      for (size_t s = 0; s < streams.size(); ++s) {
        std::printf("%4d %5d %5d | %7.3f | %7.1f | %6.1f%s%s\n", rows, n, k, best[s] * 1e3, 2.0 * rows * n * k / best[s] / 1e9, 2.0 * n * k / best[s] / 1e9,
                    rows == 1 ? "  " : "", rows == 1 ? mla::cpu::weightStreamName(streams[s]) : "");
      }
      if (rows == 1) std::printf("                  (tuned at load: %s)\n", mla::cpu::weightStreamName(tuned));
    }
  }
}
