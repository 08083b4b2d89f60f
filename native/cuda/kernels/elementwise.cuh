// Small row-wise kernels: embedding gather, SwiGLU, bias, conversions, row gathers.
#pragma once
#include <cstdint>

#include "cuda/common.h"

namespace mla::cuda {

// x[i, :] = float(embed[tokens[i], :]).   embed [vocab, hidden] bf16, x [n, hidden] fp32
void embedTokens(const bf16* embed, const int32_t* tokens, int n, int hidden, float* x, cudaStream_t stream);

// out[i, j] = bf16(silu(gateUp[i, j]) * gateUp[i, ffn + j]).   gateUp [n, 2 * ffn] fp32, out [n, ffn]
void swiglu(const float* gateUp, int n, int ffn, bf16* out, cudaStream_t stream);

// x[i, j] += bias[j]   x [n, cols] fp32
void addBias(float* x, const float* bias, int n, int cols, cudaStream_t stream);

// out = bf16(in), count values
void toBf16(const float* in, size_t count, bf16* out, cudaStream_t stream);

// out[r, :] = in[rows[r], :]   in [*, cols], out [count, cols]
void gatherRows(const float* in, const int32_t* rows, int count, int cols, float* out, cudaStream_t stream);
void gatherRowsBf16(const bf16* in, const int32_t* rows, int count, int cols, bf16* out, cudaStream_t stream);

}  // namespace mla::cuda
