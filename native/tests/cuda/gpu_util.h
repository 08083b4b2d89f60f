// Helpers for the GPU tests: skip without a GPU, device buffers, bf16 rounding, error measures.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "cuda/backend/device_array.h"
#include "cuda/backend/gpu_probe.h"

namespace gpu {

using mla::cuda::bf16;
using mla::cuda::DeviceArray;

// Exits 77 (ctest's skip code) when the machine has no GPU; any other CUDA error (a driver too old
// for this toolkit, say) is a failure with its message, so a broken machine does not look green.
inline void requireGpu() {
  const mla::cuda::GpuProbe probe = mla::cuda::probeGpu();
  if (probe.state == mla::cuda::GpuProbe::State::kNoGpu) {
    std::printf("SKIP: %s\n", probe.message.c_str());
    std::exit(77);
  }
  if (probe.state == mla::cuda::GpuProbe::State::kBroken) {
    std::printf("FAIL: %s\n", probe.message.c_str());
    std::exit(1);
  }
}

inline std::mt19937& rng() {
  static std::mt19937 r(1234);
  return r;
}

inline std::vector<float> randn(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng());
  return v;
}

// Rounds in place to bf16 values; returns the bf16 bits.
inline std::vector<uint16_t> roundBf16(std::vector<float>& v) {
  std::vector<uint16_t> bits(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    bits[i] = mla::floatToBf16(v[i]);
    v[i] = mla::bf16ToFloat(bits[i]);
  }
  return bits;
}

template <typename T>
inline void upload(DeviceArray<T>& d, const std::vector<T>& h) {
  d.upload(h, nullptr);
  cudaDeviceSynchronize();
}

inline void uploadBits(DeviceArray<bf16>& d, const std::vector<uint16_t>& bits) {
  d.upload(reinterpret_cast<const bf16*>(bits.data()), bits.size(), nullptr);
  cudaDeviceSynchronize();
}

inline std::vector<float> downloadBf16(const DeviceArray<bf16>& d, size_t n) {
  std::vector<uint16_t> bits(n);
  d.download(reinterpret_cast<bf16*>(bits.data()), n, nullptr);
  cudaDeviceSynchronize();
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = mla::bf16ToFloat(bits[i]);
  return out;
}

template <typename T>
inline std::vector<T> download(const DeviceArray<T>& d, size_t n) {
  std::vector<T> out(n);
  d.download(out.data(), n, nullptr);
  cudaDeviceSynchronize();
  return out;
}

// ||a - b|| / ||b||; NaN anywhere gives infinity.
template <typename A, typename B>
inline double normErr(const std::vector<A>& a, const std::vector<B>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    if (std::isnan(static_cast<double>(a[i])) || std::isnan(static_cast<double>(b[i]))) return INFINITY;
    num += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

}  // namespace gpu
