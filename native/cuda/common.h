// What host and device code share: the bf16 type, CUDA error checks (host-safe), and the two
// spellings that differ between nvcc and the CPU emulator (kernel launches, dynamic shared memory).
#pragma once
#if defined(MLA_CUDA_EMULATION)
#include "cuda/emu/cuda_emu.h"
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
// kernel<<<grid, block, shared, stream>>>(args...), written so that host C++ can parse it too.
#define MLA_LAUNCH(kernel, grid, block, shared, stream, ...) (kernel)<<<(grid), (block), (shared), (stream)>>>(__VA_ARGS__)
// The block's dynamic shared memory as a T array.
#define MLA_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) unsigned char name##Bytes_[]; T* name = reinterpret_cast<T*>(name##Bytes_)
#endif

#include <string>

#include "core/error.h"

namespace mla::cuda {

using bf16 = __nv_bfloat16;

inline void checkCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
#define MLA_CUDA_CHECK(x) ::mla::cuda::checkCuda((x), #x)

}  // namespace mla::cuda
