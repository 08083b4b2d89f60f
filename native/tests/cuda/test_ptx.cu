// The warp-level instructions our kernels use (cuda/ptx.cuh), against the fragment tables of NVIDIA's
// PTX ISA, and the programming model around them (barriers, shuffles, votes, atomics). Built twice:
// on the CPU emulator this tests the emulator; on a GPU (test_ptx) it tests the same tables against
// the hardware, so a wrong table cannot hide in both the kernels and the emulator.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "cuda/ptx.cuh"
#include "gpu_util.h"
#include "../harness.h"

using namespace gpu;
using namespace mla::cuda;

namespace {

// Small integers: exact in bf16, and their products and sums exact in fp32.
float aValue(int r, int c) { return static_cast<float>((r * 5 + c * 3) % 9 - 4); }
float bValue(int k, int n) { return static_cast<float>((k * 7 + n * 2) % 5 - 2); }
float cValue(int r, int n) { return static_cast<float>(r - n); }

__device__ uint32_t pack(float lo, float hi) {
  const bf16 l = __float2bfloat16(lo), h = __float2bfloat16(hi);
  uint16_t a, b;
  memcpy(&a, &l, 2);
  memcpy(&b, &h, 2);
  return static_cast<uint32_t>(a) | static_cast<uint32_t>(b) << 16;
}

// Each lane builds its fragments from the tables (lane = 4 g + t):
//   A reg j: A[g + 8 (j % 2)][2 t + 8 (j / 2) + {0, 1}]; B reg j: B[2 t + 8 j + {0, 1}][g];
//   C/D value i: [g + 8 (i / 2)][2 t + i % 2].
// The lanes' raw registers go out too, for the literal spot checks on the host.
__global__ void mmaKernel(const float* A, const float* B, const float* C, float* D, uint32_t* rawA, uint32_t* rawB) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t a[4], b[2];
  float d[4];
  for (int j = 0; j < 4; ++j) {
    const int r = g + 8 * (j % 2), c = 2 * t + 8 * (j / 2);
    a[j] = pack(A[r * 16 + c], A[r * 16 + c + 1]);
    rawA[lane * 4 + j] = a[j];
  }
  for (int j = 0; j < 2; ++j) {
    const int k = 2 * t + 8 * j;
    b[j] = pack(B[k * 8 + g], B[(k + 1) * 8 + g]);
    rawB[lane * 2 + j] = b[j];
  }
  for (int i = 0; i < 4; ++i) d[i] = C[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2];
  ptx::mmaBf16(d, a, b);
  for (int i = 0; i < 4; ++i) D[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = d[i];
}

// Shared rows: lane i gives the address of row rowOf[i]; each lane writes its registers out.
__global__ void ldmatrixKernel(const uint16_t* matrix, const int* rowOf, int matrices, bool trans, uint32_t* regs) {
  __shared__ __align__(16) uint16_t s[32 * 8];
  for (int i = threadIdx.x; i < 32 * 8; i += 32) s[i] = matrix[i];
  __syncthreads();
  const void* row = s + rowOf[threadIdx.x] * 8;
  uint32_t r[4] = {0, 0, 0, 0};
  if (matrices == 4) {
    uint32_t x[4];
    if (trans) ptx::ldmatrixX4Trans(x, row);
    else ptx::ldmatrixX4(x, row);
    for (int m = 0; m < 4; ++m) r[m] = x[m];
  } else {
    uint32_t x[2];
    if (trans) ptx::ldmatrixX2Trans(x, row);
    else ptx::ldmatrixX2(x, row);
    r[0] = x[0];
    r[1] = x[1];
  }
  for (int m = 0; m < 4; ++m) regs[threadIdx.x * 4 + m] = r[m];
}

// Thread i copies 16-byte chunk i with srcBytes[i]; chunks 0..15 form group 1, 16..31 group 2.
__global__ void cpAsyncKernel(const uint4* src, const int* srcBytes, uint4* afterFirst, uint4* afterAll) {
  __shared__ __align__(16) uint4 s[32];
  const int i = threadIdx.x;
  s[i] = make_uint4(0xAAAAAAAAu, 0xAAAAAAAAu, 0xAAAAAAAAu, 0xAAAAAAAAu);
  __syncthreads();
  if (i < 16) ptx::cpAsync16(&s[i], &src[i], srcBytes[i]);
  ptx::cpAsyncCommit();
  if (i >= 16) ptx::cpAsync16(&s[i], &src[i], srcBytes[i]);
  ptx::cpAsyncCommit();
  ptx::cpAsyncWait<1>();  // the first group has landed
  __syncthreads();
  if (i < 16) afterFirst[i] = s[i];
  ptx::cpAsyncWait<0>();
  __syncthreads();
  afterAll[i] = s[i];
}

__global__ void shuffleKernel(const int* in, int* out) {
  const int lane = threadIdx.x & 31, v = in[threadIdx.x];
  int* o = out + threadIdx.x * 10;
  o[0] = __shfl_sync(0xffffffffu, v, 5);
  o[1] = __shfl_sync(0xffffffffu, v, 3, 8);  // lane 3 of each group of 8
  o[2] = __shfl_xor_sync(0xffffffffu, v, 1);
  o[3] = __shfl_xor_sync(0xffffffffu, v, 16);
  o[4] = __shfl_up_sync(0xffffffffu, v, 2);
  o[5] = __shfl_down_sync(0xffffffffu, v, 3, 16);
  o[6] = static_cast<int>(__ballot_sync(0xffffffffu, v % 3 == 0));
  o[7] = __any_sync(0xffffffffu, lane == 31 && v > 0);
  o[8] = __all_sync(0xffffffffu, v >= 0);
  const double d = __shfl_xor_sync(0xffffffffu, static_cast<double>(v) + 0.25, 2);
  o[9] = static_cast<int>(d * 4);
}

// Every thread writes its slot, then reads its mirror's: right only with the barrier between.
__global__ void barrierKernel(int* out, bool withBarrier, int salt) {
  __shared__ int s[256];
  const int n = blockDim.x, i = threadIdx.x;
  s[i] = i * 3 + static_cast<int>(blockIdx.x) + salt;
  if (withBarrier) __syncthreads();
  out[blockIdx.x * n + i] = s[n - 1 - i];
}

__global__ void atomicKernel(int* counter, float* sum) {
  atomicAdd(counter, 1);
  atomicAdd(sum, 0.5f);
}

}  // namespace

TEST(mma_m16n8k16_follows_the_ptx_fragment_tables) {
  std::vector<float> A(256), B(128), C(128), ref(128);
  for (int r = 0; r < 16; ++r) for (int c = 0; c < 16; ++c) A[r * 16 + c] = aValue(r, c);
  for (int k = 0; k < 16; ++k) for (int n = 0; n < 8; ++n) B[k * 8 + n] = bValue(k, n);
  for (int r = 0; r < 16; ++r)
    for (int n = 0; n < 8; ++n) {
      float acc = cValue(r, n);
      for (int k = 0; k < 16; ++k) acc += A[r * 16 + k] * B[k * 8 + n];
      ref[r * 8 + n] = acc;
      C[r * 8 + n] = cValue(r, n);
    }
  DeviceArray<float> dA, dB, dC, dD(128);
  DeviceArray<uint32_t> rawA(128), rawB(64);
  upload(dA, A);
  upload(dB, B);
  upload(dC, C);
  MLA_LAUNCH(mmaKernel, 1, 32, 0, nullptr, dA.get(), dB.get(), dC.get(), dD.get(), rawA.get(), rawB.get());
  EXPECT(cudaDeviceSynchronize() == cudaSuccess);
  EXPECT(download(dD, 128) == ref);
  // Literal entries of the tables (PTX ISA figures for .m16n8k16 .bf16): lane 5 is g 1, t 1.
  auto bits = [](float v) { return static_cast<uint32_t>(mla::floatToBf16(v)); };
  auto both = [&](float lo, float hi) { return bits(lo) | bits(hi) << 16; };
  const auto a = download(rawA, 128), b = download(rawB, 64);
  EXPECT(a[0 * 4 + 0] == both(aValue(0, 0), aValue(0, 1)));      // lane 0, a0 a1: row 0, cols 0 1
  EXPECT(a[0 * 4 + 1] == both(aValue(8, 0), aValue(8, 1)));      // lane 0, a2 a3: row 8
  EXPECT(a[5 * 4 + 2] == both(aValue(1, 10), aValue(1, 11)));    // lane 5, a4 a5: row 1, cols 10 11
  EXPECT(a[31 * 4 + 3] == both(aValue(15, 14), aValue(15, 15))); // lane 31, a6 a7: row 15, cols 14 15
  EXPECT(b[5 * 2 + 1] == both(bValue(10, 1), bValue(11, 1)));    // lane 5, b2 b3: k 10 11, n 1
  EXPECT(b[30 * 2 + 0] == both(bValue(4, 7), bValue(5, 7)));     // lane 30 (g 7, t 2), b0 b1: k 4 5, n 7
}

TEST(ldmatrix_follows_the_ptx_tables) {
  std::vector<uint16_t> M(32 * 8);
  std::iota(M.begin(), M.end(), 1000);  // row r, col c holds 1000 + 8 r + c (raw bits)
  std::vector<int> rowOf(32);
  for (int i = 0; i < 32; ++i) rowOf[i] = (i * 13 + 7) % 32;  // lanes give rows in a scrambled order
  DeviceArray<uint16_t> dM;
  DeviceArray<int> dRows;
  DeviceArray<uint32_t> dRegs(128);
  upload(dM, M);
  upload(dRows, rowOf);
  for (int matrices : {2, 4}) {
    for (bool trans : {false, true}) {
      MLA_LAUNCH(ldmatrixKernel, 1, 32, 0, nullptr, dM.get(), dRows.get(), matrices, trans, dRegs.get());
      EXPECT(cudaDeviceSynchronize() == cudaSuccess);
      const auto regs = download(dRegs, 128);
      // Matrix m's row r is the row lane 8 m + r pointed at.
      auto at = [&](int m, int r, int c) { return static_cast<uint32_t>(M[static_cast<size_t>(rowOf[8 * m + r]) * 8 + c]); };
      for (int lane = 0; lane < 32; ++lane) {
        const int g = lane / 4, t = lane % 4;
        for (int m = 0; m < matrices; ++m) {
          const uint32_t want = trans ? (at(m, 2 * t, g) | at(m, 2 * t + 1, g) << 16) : (at(m, g, 2 * t) | at(m, g, 2 * t + 1) << 16);
          EXPECT_MSG(regs[lane * 4 + m] == want, "x%d%s lane %d matrix %d: %08x vs %08x", matrices, trans ? ".trans" : "", lane, m, regs[lane * 4 + m], want);
        }
      }
    }
  }
}

TEST(cp_async_zero_fills_and_waits_by_group) {
  std::vector<uint32_t> src(32 * 4);
  std::iota(src.begin(), src.end(), 1);
  std::vector<int> srcBytes(32);
  for (int i = 0; i < 32; ++i) srcBytes[i] = (i % 3 == 0) ? 16 : (i % 3 == 1 ? 8 : 0);
  DeviceArray<uint32_t> dSrc, dFirst(16 * 4), dAll(32 * 4);
  DeviceArray<int> dBytes;
  upload(dSrc, src);
  upload(dBytes, srcBytes);
  MLA_LAUNCH(cpAsyncKernel, 1, 32, 0, nullptr, reinterpret_cast<const uint4*>(dSrc.get()), dBytes.get(), reinterpret_cast<uint4*>(dFirst.get()),
             reinterpret_cast<uint4*>(dAll.get()));
  EXPECT(cudaDeviceSynchronize() == cudaSuccess);
  const auto first = download(dFirst, 16 * 4), all = download(dAll, 32 * 4);
  for (int i = 0; i < 32; ++i) {
    for (int w = 0; w < 4; ++w) {
      const uint32_t want = w * 4 < srcBytes[i] ? src[i * 4 + w] : 0u;  // bytes past srcBytes are zero
      EXPECT_MSG(all[i * 4 + w] == want, "chunk %d word %d", i, w);
      if (i < 16) EXPECT_MSG(first[i * 4 + w] == want, "first group, chunk %d word %d", i, w);
    }
  }
}

TEST(shuffles_votes_and_widths) {
  std::vector<int> in(64);
  for (int i = 0; i < 64; ++i) in[i] = i * 7 % 64;
  DeviceArray<int> dIn, dOut(64 * 10);
  upload(dIn, in);
  MLA_LAUNCH(shuffleKernel, 1, 64, 0, nullptr, dIn.get(), dOut.get());
  EXPECT(cudaDeviceSynchronize() == cudaSuccess);
  const auto out = download(dOut, 64 * 10);
  for (int i = 0; i < 64; ++i) {
    const int w = i / 32 * 32, lane = i % 32;
    auto v = [&](int l) { return in[w + l]; };
    const int* o = &out[i * 10];
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l) if (v(l) % 3 == 0) ballot |= 1u << l;
    EXPECT(o[0] == v(5));
    EXPECT(o[1] == v(lane / 8 * 8 + 3));
    EXPECT(o[2] == v(lane ^ 1));
    EXPECT(o[3] == v(lane ^ 16));
    EXPECT(o[4] == (lane >= 2 ? v(lane - 2) : v(lane)));
    EXPECT(o[5] == (lane % 16 + 3 < 16 ? v(lane + 3) : v(lane)));
    EXPECT(static_cast<unsigned>(o[6]) == ballot);
    EXPECT(o[7] == (v(31) > 0 ? 1 : 0));
    EXPECT(o[8] == 1);
    EXPECT(o[9] == v(lane ^ 2) * 4 + 1);
  }
}

TEST(barriers_and_atomics) {
  const int n = 256, blocks = 3;
  DeviceArray<int> dOut(n * blocks), dCount(1);
  DeviceArray<float> dSum(1);
  MLA_LAUNCH(barrierKernel, blocks, n, 0, nullptr, dOut.get(), true, 0);
  EXPECT(cudaDeviceSynchronize() == cudaSuccess);
  const auto out = download(dOut, n * blocks);
  for (int b = 0; b < blocks; ++b)
    for (int i = 0; i < n; ++i) EXPECT(out[b * n + i] == (n - 1 - i) * 3 + b);
  cudaMemset(dCount.get(), 0, 4);
  cudaMemset(dSum.get(), 0, 4);
  MLA_LAUNCH(atomicKernel, 40, 128, 0, nullptr, dCount.get(), dSum.get());
  EXPECT(cudaDeviceSynchronize() == cudaSuccess);
  EXPECT(download(dCount, 1)[0] == 40 * 128);
  EXPECT(download(dSum, 1)[0] == 40 * 128 * 0.5f);
}

#if defined(MLA_CUDA_EMULATION)
#include "test_emulator_only.h"
#endif

int main() {
#if defined(MLA_CUDA_EMULATION)
  setenv("MLA_EMU_DEVICES", "2", 0);  // two emulated devices: per-device state is tested
#endif
  requireGpu();
  return harness::runAll();
}
