// Whether this machine has a usable GPU, told apart from a broken one: no NVIDIA driver at all
// (libcuda.so.1 absent, as on CI machines) or no device is "no GPU"; a driver that answers with an
// error (too old for this CUDA runtime, say) is a failure with its message.
#pragma once
#include <string>

#include "cuda/common.h"

#if !defined(MLA_CUDA_EMULATION)
#include <dlfcn.h>
#endif

namespace mla::cuda {

struct GpuProbe {
  enum class State { kPresent, kNoGpu, kBroken } state;
  int count = 0;
  std::string message;  // why there is no GPU, or what is broken
};

inline GpuProbe probeGpu() {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e == cudaSuccess && count > 0) return {GpuProbe::State::kPresent, count, ""};
  if (e == cudaSuccess || e == cudaErrorNoDevice) return {GpuProbe::State::kNoGpu, 0, "no CUDA GPU is visible"};
#if !defined(MLA_CUDA_EMULATION)
  if (void* driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL)) {
    dlclose(driver);
  } else {
    return {GpuProbe::State::kNoGpu, 0, "no NVIDIA driver (libcuda.so.1 is not installed)"};
  }
#endif
  return {GpuProbe::State::kBroken, 0, std::string("the CUDA driver answers: ") + cudaGetErrorString(e) + " (error " + std::to_string(static_cast<int>(e)) + ")"};
}

}  // namespace mla::cuda
