// MLA attention in expanded form for prompt chunks (the other half is cuBLAS products, see
// cuda/backend/cuda_mla_expanded.cpp): the decoupled RoPE key broadcast to every head, the query's
// two parts side by side, and the causal softmax of a score block.
#pragma once
#include <cstdint>

#include "cuda/common.h"

namespace mla::cuda {

// k[c, h, N + r] = latent[c, L + r] for every head h: the shared k_pe next to each head's k_nope.
//   latent [C, L + R], k [C, H, N + R] (its first N columns per head are written elsewhere)
void broadcastRopeKey(const bf16* latent, int C, int L, int R, int H, int N, bf16* k, cudaStream_t stream);

// q[i, h, :] = [qNope[i, h, :] | qRope[i, h, :]].   qNope [n, H, N], qRope [n, H, R], q [n, H, N + R]
void concatQuery(const bf16* qNope, const bf16* qRope, int n, int H, int N, int R, bf16* q, cudaStream_t stream);

// p[row, :] = softmax(scale * s[row, :]) over keys 0 .. firstPosition + (row % numQueries), zero after:
// the causal softmax of rows [heads][numQueries] of scores over C keys.   s [rows, C] fp32, p [rows, C] bf16
void causalSoftmax(const float* s, int rows, int numQueries, int C, int firstPosition, float scale, bf16* p, cudaStream_t stream);

}  // namespace mla::cuda
