// Time of the float64 symmetric eigensolver on random covariance matrices: bench_eigen [n ...]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "linalg/dense.h"

int main(int argc, char** argv) {
  std::vector<int> sizes;
  for (int i = 1; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty()) sizes = {500, 1000, 2000};
  mla::ThreadPool pool(0);
  std::mt19937 rng(1);
  std::normal_distribution<double> normal;
  std::printf("threads %d\n", pool.numThreads());
  for (int n : sizes) {
    std::vector<double> a(static_cast<size_t>(n) * n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j <= i; ++j) a[static_cast<size_t>(i) * n + j] = a[static_cast<size_t>(j) * n + i] = normal(rng);
    auto t0 = std::chrono::steady_clock::now();
    auto e = mla::linalg::symmetricEigen(pool, a.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("n=%5d  %.2f s  (largest eigenvalue %.4f)\n", n, s, e.values[0]);
  }
  return 0;
}
