// What host and device code share: the bf16 type and CUDA error checks (host-safe).
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "core/error.h"

namespace mla::cuda {

using bf16 = __nv_bfloat16;

inline void checkCuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw Error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}
#define MLA_CUDA_CHECK(x) ::mla::cuda::checkCuda((x), #x)

}  // namespace mla::cuda
