// Element-wise and row-wise CPU ops: plain loops over rows, each row independent.
#pragma once
#include <cstdint>
#include <vector>

#include "mla/config.h"
#include "model/weights.h"

namespace mla::cpu {

// out[i, :] = embed[tokens[i], :] as float.  out: [n, hidden]
void embedTokens(const Matrix& embed, const int32_t* tokens, int n, float* out);

// out[i, :] = x[i, :] / rms(x[i, :]) * weight, computed in float (as Hugging Face).  x, out: [n, dim]
void rmsNorm(const float* x, const float* weight, int n, int dim, float eps, float* out);

// x[i, :] += y[i, :]
void addInPlace(float* x, const float* y, size_t count);

// out[i, j] = silu(gate[i, j]) * up[i, j]; gate and up are [n, ffn] (out may alias gate).
void siluMul(const float* gate, const float* up, size_t count, float* out);

// Rotary embedding on one vector `x` of `rope.dim` values at position `pos`, using the
// precomputed inverse frequencies ([dim / 2]). Half-split pairs (i, i + dim/2) or interleaved (2i, 2i+1).
void applyRope(float* x, int pos, const RopeConfig& rope, const double* inverseFrequencies);

}  // namespace mla::cpu
