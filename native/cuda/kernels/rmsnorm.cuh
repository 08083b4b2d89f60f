// RMSNorm fused with the residual add: residual += delta; out = rmsnorm(residual) * weight.
#pragma once
#include "cuda/common.h"

namespace mla::cuda {

struct RmsNormParams {
  float* residual = nullptr;             // [rows, dim] fp32, updated in place when delta is given
  const float* delta = nullptr;          // [rows, dim] fp32 or null (no add)
  const __nv_bfloat16* weight = nullptr; // [dim]
  __nv_bfloat16* out = nullptr;          // [rows, dim]
  int rows = 0;
  int dim = 0;
  float eps = 1e-6f;
};

void rmsNormResidual(const RmsNormParams& params, cudaStream_t stream);

}  // namespace mla::cuda
