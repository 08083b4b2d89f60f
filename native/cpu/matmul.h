// y = x · Wᵀ (+ bias): the dense projection behind every linear layer.
#pragma once
#include "core/thread_pool.h"
#include "model/weights.h"

namespace mla::cpu {

// How a decode-sized matmul (fewer x rows than one register tile) reads its weights, which bounds
// its time: one row at a time (a single sequential stream per thread) or two rows at a time, each
// pair prefetching the next. Which is faster depends on the CPU (about 1.7x either way on the LM
// head of the machines measured: bench/RESULTS.md) and somewhat on the shape (on Zen 4 a k = 8192
// matrix prefers two rows where the LM head prefers one), so it is measured, not assumed, on the
// LM head, the largest matrix a step streams: tuneWeightStream. Both give the same sums in the
// same order, so the choice changes speed only.
enum class WeightStream { kOneRow, kTwoRows };
const char* weightStreamName(WeightStream s);  // "rows1", "rows2"
// The order in use, process-wide: the last setWeightStream or tuneWeightStream (which keeps
// MLA_CPU_STREAM, "rows1" or "rows2", when that is set); at first MLA_CPU_STREAM, else kOneRow.
// Engines loaded later retune it for all (speed only: the bits are the same).
WeightStream weightStream();
void setWeightStream(WeightStream s);
// Times m = 1 through `w` (the largest matrix a model streams: its LM head) with each order,
// interleaved, and selects the faster unless MLA_CPU_STREAM fixes it; returns the order in use.
// About 8 passes over w.
WeightStream tuneWeightStream(ThreadPool& pool, const Matrix& w);

// y[m, n] = sum_k x[m, k] * w[n, k] + bias[n].   x: [m, w.cols], y: [m, w.rows], bias: [w.rows] or null.
// Each y[i, j] is reduced in the same order whatever m is, so batching never changes a result
// (the order is the kernels' ISA's, cpu/isa.h: AVX2 and AVX-512 differ in the last bits).
void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y);
// The same with the weight order given, not weightStream()'s.
void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y, WeightStream stream);

// The same as plain loops, single-threaded, accumulating in double: the reference for tests.
void matmulReference(const float* x, int m, const Matrix& w, const float* bias, float* y);

// One row of w widened to float: out[w.cols].
void loadRow(const Matrix& w, int row, float* out);

}  // namespace mla::cpu
