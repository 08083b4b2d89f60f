// y = x · Wᵀ (+ bias): the dense projection behind every linear layer.
#pragma once
#include <vector>

#include "core/thread_pool.h"
#include "model/weights.h"

namespace mla::cpu {

// How a decode-sized matmul (fewer x rows than one register tile) reads its weights, which bounds
// its time: one row at a time (a single sequential stream per thread) or two rows at a time, each
// pair prefetching the next. Which is faster depends on the CPU (about 1.7x either way on the LM
// head of the machines measured: bench/RESULTS.md) and on the column count (on Zen 4 a k = 8192
// matrix, whose x fills L1, prefers two rows where the LM head prefers one), so it is measured at
// load per column count, not assumed. Both give the same sums in the same order: the choice
// changes speed only.
enum class WeightStream { kOneRow, kTwoRows };
const char* weightStreamName(WeightStream s);  // "rows1", "rows2"
// The order for matrices of `cols` columns, process-wide: MLA_CPU_STREAM ("rows1", "rows2") when
// set; else the one tuned for `cols`; else the last one tuned; else kOneRow. A later load retunes
// the column counts it has (speed only: the bits are the same).
WeightStream weightStream(int cols);
// Times m = 1 through `w` with each order, interleaved, four times, and keeps the faster for
// w.cols (unless MLA_CPU_STREAM fixes it); returns the order in use. 8 passes over w.
WeightStream tuneWeightStream(ThreadPool& pool, const Matrix& w);
// Tunes each column count of `matrices` on its largest one (a model's LM head and one layer's).
void tuneWeightStreams(ThreadPool& pool, const std::vector<Matrix>& matrices);

// y[m, n] = sum_k x[m, k] * w[n, k] + bias[n].   x: [m, w.cols], y: [m, w.rows], bias: [w.rows] or null.
// Each y[i, j] is reduced in the same order whatever m is, so batching never changes a result
// (the order is the kernels' ISA's, cpu/isa.h: AVX2 and AVX-512 differ in the last bits).
void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y);
// The same with the weight order given, not weightStream(w.cols)'s.
void matmul(ThreadPool& pool, const float* x, int m, const Matrix& w, const float* bias, float* y, WeightStream stream);

// The same as plain loops, single-threaded, accumulating in double: the reference for tests.
void matmulReference(const float* x, int m, const Matrix& w, const float* bias, float* y);

// One row of w widened to float: out[w.cols].
void loadRow(const Matrix& w, int row, float* out);

}  // namespace mla::cpu
