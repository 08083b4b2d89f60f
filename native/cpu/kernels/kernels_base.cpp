// The kernels for the build's baseline ISA (AVX2/FMA on a portable x86-64-v3 build).
#include "cpu/kernels/kernel_prelude.h"
#include "cpu/kernels/kernels_impl.h"

namespace mla::cpu::isa_base {
extern const KernelTable kKernels = {matmulRows, pagedAttention};
}
