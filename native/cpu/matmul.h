// y = x · Wᵀ (+ bias): the dense projection behind every linear layer.
#pragma once
#include "core/thread_pool.h"
#include "model/weights.h"

namespace mla::cpu {

// y[m, n] = sum_k x[m, k] * w[n, k] + bias[n].   x: [m, w.cols], y: [m, w.rows], bias: [w.rows] or null.
// Each y[i, j] is reduced in the same order whatever m is, so batching never changes a result
// (the order is the kernels' ISA's, cpu/isa.h: AVX2 and AVX-512 differ in the last bits).
void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y);

// The same as plain loops, single-threaded, accumulating in double: the reference for tests.
void matmulReference(const float* x, int m, const Matrix& w, const float* bias, float* y);

// One row of w widened to float: out[w.cols].
void loadRow(const Matrix& w, int row, float* out);

}  // namespace mla::cpu
