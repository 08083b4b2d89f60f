// The kernels for AVX-512 (F, BW, VL, DQ): the same source as kernels_base.cpp, compiled for
// 16-float registers. Only the functions defined after the target switch use AVX-512; they run
// only where cpu/isa.cpp found it on the CPU.
#include "cpu/isa.h"

#ifdef MLA_HAVE_AVX512_KERNELS
#include "cpu/kernels/kernel_prelude.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,bmi,bmi2")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on the intrinsics' own _mm512_undefined_*
#define MLA_KERNEL_AVX512 1
#define MLA_KERNEL_NS isa_avx512
#include "cpu/kernels/kernels_impl.h"
namespace mla::cpu::isa_avx512 {
extern const KernelTable kKernels = {matmulRows, pagedAttention};
}
#pragma GCC pop_options
#endif
