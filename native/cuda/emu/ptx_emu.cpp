// The emulator's warp-level matrix instructions and async copies, from the PTX ISA's fragment
// layouts (see cuda/ptx.cuh for the tables). Tested on their own in tests/cuda/test_ptx.cu, which
// also runs on a GPU: there it checks the same tables against the hardware.
#include <cstdlib>
#include <cstring>

#include "cuda/emu/block.h"
#include "cuda/ptx.cuh"

namespace cuemu {

namespace {

float lowBf16(uint32_t r) { return __uint_as_float(r << 16); }
float highBf16(uint32_t r) { return __uint_as_float(r & 0xffff0000u); }
float half(uint32_t r, int h) { return h ? highBf16(r) : lowBf16(r); }

// Words per lane in the collective: a[0..3], b[4..5], c/d[6..9].
void finishMma(Collective& c) {
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    const uint32_t* w = c.in[lane];
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) A[g + 8 * (j % 2)][2 * t + 8 * (j / 2) + h] = half(w[j], h);
    for (int j = 0; j < 2; ++j)
      for (int h = 0; h < 2; ++h) B[2 * t + 8 * j + h][g] = half(w[4 + j], h);
    for (int i = 0; i < 4; ++i) C[g + 8 * (i / 2)][2 * t + (i % 2)] = __uint_as_float(w[6 + i]);
  }
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
      // bf16 products are exact in fp32; the sum runs in fp32 like the tensor cores' accumulation.
      float acc = C[row][col];
      for (int k = 0; k < 16; ++k) acc += A[row][k] * B[k][col];
      c.out[lane][i] = __float_as_uint(acc);
    }
  }
}

int matricesOf(const Collective& c) { return static_cast<int>(c.in[0][0]); }

void finishLdmatrix(Collective& c) {
  const int count = matricesOf(c);
  const bool transpose = c.in[0][1] != 0;
  for (int m = 0; m < count; ++m) {
    uint16_t M[8][8];
    for (int r = 0; r < 8; ++r) std::memcpy(M[r], c.address[8 * m + r], 16);
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, t = lane % 4;
      const uint16_t lo = transpose ? M[2 * t][g] : M[g][2 * t];
      const uint16_t hi = transpose ? M[2 * t + 1][g] : M[g][2 * t + 1];
      c.out[lane][m] = static_cast<uint32_t>(lo) | static_cast<uint32_t>(hi) << 16;
    }
  }
}

// MLA_EMU_CP_ASYNC=eager performs each copy when issued (exposes a buffer overwritten while others
// still read it); the default performs it at the wait (exposes a missing wait or barrier).
bool eagerCopies() {
  static const bool eager = [] {
    const char* v = std::getenv("MLA_EMU_CP_ASYNC");
    return v && std::strcmp(v, "eager") == 0;
  }();
  return eager;
}

void perform(const AsyncCopy& k) {
  unsigned char tmp[16] = {};
  if (k.srcBytes > 0) std::memcpy(tmp, k.src, static_cast<size_t>(k.srcBytes));
  std::memcpy(k.dst, tmp, static_cast<size_t>(k.bytes));
}

}  // namespace

void mmaM16N8K16Bf16(float* d, const uint32_t* a, const uint32_t* b) {
  Block& blk = currentBlock();
  Collective& c = blk.enter("mma.sync.m16n8k16", 0xffffffffu, finishMma);
  const int lane = blk.current().lane;
  for (int j = 0; j < 4; ++j) c.in[lane][j] = a[j];
  c.in[lane][4] = b[0];
  c.in[lane][5] = b[1];
  for (int i = 0; i < 4; ++i) c.in[lane][6 + i] = __float_as_uint(d[i]);
  blk.arrive(c);
  for (int i = 0; i < 4; ++i) d[i] = __uint_as_float(c.out[lane][i]);
  blk.leave(c);
}

void ldmatrix(int matrices, bool transpose, uint32_t* regs, const void* rowAddress) {
  Block& blk = currentBlock();
  Collective& c = blk.enter(transpose ? "ldmatrix.trans" : "ldmatrix", 0xffffffffu, finishLdmatrix);
  const int lane = blk.current().lane;
  if (reinterpret_cast<uintptr_t>(rowAddress) % 16 != 0 && lane < 8 * matrices) blk.fail("ldmatrix: a row address is not 16-byte aligned");
  c.in[lane][0] = static_cast<uint32_t>(matrices);
  c.in[lane][1] = transpose ? 1u : 0u;
  c.address[lane] = rowAddress;
  blk.arrive(c);
  for (int m = 0; m < matrices; ++m) regs[m] = c.out[lane][m];
  blk.leave(c);
}

void cpAsync(void* dst, const void* src, int bytes, int srcBytes) {
  Block& blk = currentBlock();
  if (srcBytes < 0 || srcBytes > bytes) blk.fail("cp.async: src-size out of [0, 16]");
  if (reinterpret_cast<uintptr_t>(dst) % 16 != 0 || (srcBytes > 0 && reinterpret_cast<uintptr_t>(src) % 16 != 0)) {
    blk.fail("cp.async: a 16-byte copy needs 16-byte aligned addresses");
  }
  const AsyncCopy k{dst, src, bytes, srcBytes};
  if (eagerCopies()) perform(k);
  else blk.current().open.push_back(k);
}

void cpAsyncCommit() {
  Lane& l = currentBlock().current();
  l.groups.push_back(std::move(l.open));
  l.open.clear();
}

void cpAsyncWait(int newestPending) {
  Lane& l = currentBlock().current();
  while (static_cast<int>(l.groups.size()) > newestPending) {
    for (const AsyncCopy& k : l.groups.front()) perform(k);
    l.groups.erase(l.groups.begin());
  }
}

}  // namespace cuemu
