// The warp-level matrix and async-copy instructions our kernels use, behind one small set of
// functions: inline PTX on the GPU (sm_80+), the emulator's implementations from the PTX ISA's
// fragment layouts when the sources compile as host C++ (MLA_CUDA_EMULATION).
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), for
// lane = 4 g + t (g = lane / 4, t = lane % 4); a .b32 register holds two bf16, the lower index in
// its low half:
//   A 16x16 (row-major), 4 registers: reg j holds A[g + 8 (j % 2)][2 t + 8 (j / 2) + {0, 1}]
//   B 16x8 (k x n, "col"), 2 registers: reg j holds B[2 t + 8 j + {0, 1}][g]
//   C, D 16x8 fp32, 4 values: value i is C[g + 8 (i / 2)][2 t + (i % 2)]
// ldmatrix .m8n8 .b16 (.x1 / .x2 / .x4 matrices): lanes 8 m .. 8 m + 7 give the row addresses
// (16 bytes each) of matrix m; register m of a lane holds matrix m's row g, columns 2 t + {0, 1};
// with .trans, column g of rows 2 t + {0, 1}.
#pragma once
#include <cstdint>

#include "cuda/common.h"

#if defined(MLA_CUDA_EMULATION)
namespace cuemu {
void mmaM16N8K16Bf16(float* d, const uint32_t* a, const uint32_t* b);
void ldmatrix(int matrices, bool transpose, uint32_t* regs, const void* rowAddress);
void cpAsync(void* sharedDst, const void* globalSrc, int bytes, int srcBytes);
void cpAsyncCommit();
void cpAsyncWait(int newestPending);
}  // namespace cuemu
#endif

namespace mla::cuda::ptx {

// d += A · B: mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 (fragments as above).
__device__ __forceinline__ void mmaBf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(MLA_CUDA_EMULATION)
  cuemu::mmaM16N8K16Bf16(d, a, b);
#elif defined(__CUDA_ARCH__)
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

#if !defined(MLA_CUDA_EMULATION)
__device__ __forceinline__ unsigned sharedAddress(const void* p) { return static_cast<unsigned>(__cvta_generic_to_shared(p)); }
#endif

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: four 8x8 matrices; `row` is this lane's row address.
__device__ __forceinline__ void ldmatrixX4(uint32_t (&r)[4], const void* row) {
#if defined(MLA_CUDA_EMULATION)
  cuemu::ldmatrix(4, false, r, row);
#elif defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sharedAddress(row)));
#endif
}
__device__ __forceinline__ void ldmatrixX4Trans(uint32_t (&r)[4], const void* row) {
#if defined(MLA_CUDA_EMULATION)
  cuemu::ldmatrix(4, true, r, row);
#elif defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(sharedAddress(row)));
#endif
}
__device__ __forceinline__ void ldmatrixX2(uint32_t (&r)[2], const void* row) {
#if defined(MLA_CUDA_EMULATION)
  cuemu::ldmatrix(2, false, r, row);
#elif defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(sharedAddress(row)));
#endif
}
__device__ __forceinline__ void ldmatrixX2Trans(uint32_t (&r)[2], const void* row) {
#if defined(MLA_CUDA_EMULATION)
  cuemu::ldmatrix(2, true, r, row);
#elif defined(__CUDA_ARCH__)
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(sharedAddress(row)));
#endif
}

// cp.async.cg.shared.global: 16 bytes from global to shared memory, of which the first `srcBytes`
// (0..16) are read and the rest zero-filled (srcBytes 0 reads nothing: a masked-out row).
__device__ __forceinline__ void cpAsync16(void* dst, const void* src, int srcBytes = 16) {
#if defined(MLA_CUDA_EMULATION)
  cuemu::cpAsync(dst, src, 16, srcBytes);
#elif defined(__CUDA_ARCH__)
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sharedAddress(dst)), "l"(src), "r"(srcBytes) : "memory");
#endif
}
// cp.async.commit_group: the copies issued since the last commit form a group.
__device__ __forceinline__ void cpAsyncCommit() {
#if defined(MLA_CUDA_EMULATION)
  cuemu::cpAsyncCommit();
#elif defined(__CUDA_ARCH__)
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// cp.async.wait_group N: waits until at most N of this thread's committed groups are pending. Other
// threads see the data only after a barrier that follows their producers' waits.
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
#if defined(MLA_CUDA_EMULATION)
  cuemu::cpAsyncWait(N);
#elif defined(__CUDA_ARCH__)
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace mla::cuda::ptx
