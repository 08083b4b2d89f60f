// The CPU kernels compiled once per ISA (cpu/isa.h): each variant fills one table of these
// functions, and callers go through kernels(), the active ISA's table.
#pragma once
#include <vector>

#include "core/thread_pool.h"
#include "cpu/matmul.h"
#include "cpu/paged_attention.h"
#include "model/weights.h"

namespace mla::cpu {

struct KernelTable {
  // y[m, rowBegin..rowEnd) = x · w[rowBegin..rowEnd)ᵀ (+ bias): matmul's share of one thread;
  // `stream` is how a decode-sized m reads the weights (the same sums either way).
  void (*matmulRows)(const float* x, int m, const Matrix& w, const float* bias, float* y, int rowBegin, int rowEnd, WeightStream stream);
  // pagedAttention (cpu/paged_attention.h) itself.
  void (*pagedAttention)(ThreadPool& pool, const PagedLayer& cache, const HeadLayout& layout,
                         const std::vector<PagedQuery>& queries, const float* q, float* out);
};

namespace isa_base {
extern const KernelTable kKernels;
}
namespace isa_avx512 {
extern const KernelTable kKernels;  // defined only where MLA_HAVE_AVX512_KERNELS
}
namespace isa_amx {
extern const KernelTable kKernels;  // defined only where MLA_HAVE_AMX_KERNELS
}

// The table of activeIsa().
const KernelTable& kernels();

}  // namespace mla::cpu
