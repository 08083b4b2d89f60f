// The kernels for AVX-512 with AMX-BF16 (Intel Sapphire Rapids and later): AVX-512's kernels
// (the same source as kernels_avx512.cpp, its own copies), except the matmul of BF16 weights
// (amx_matmul.h) and the attention of one shared entry for all heads (amx_attention.h), which
// run on the tiles. They run only where cpu/isa.cpp found AMX on the CPU
// and the kernel granted the process its tile state.
#include "cpu/isa.h"

#ifdef MLA_HAVE_AMX_KERNELS
#include "cpu/kernels/kernel_prelude.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,amx-tile,amx-bf16,avx2,fma,f16c,bmi,bmi2")
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC 12 on the intrinsics' own _mm512_undefined_*
#pragma GCC diagnostic ignored "-Wuninitialized"        // likewise
#define MLA_KERNEL_AVX512 1
#define MLA_KERNEL_AMX 1
#define MLA_KERNEL_NS isa_amx
#include "cpu/kernels/kernels_impl.h"
#include "cpu/kernels/amx_tiles.h"
#include "cpu/kernels/amx_matmul.h"
#include "cpu/kernels/amx_attention.h"
namespace mla::cpu::isa_amx {
extern const KernelTable kKernels = {matmulRowsAmx, pagedAttention};
}
#pragma GCC pop_options
#endif
