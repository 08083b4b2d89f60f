// Gemm for the CUDA emulator: what cuBLAS computes (bf16 inputs, fp32 accumulation, fp32 or
// rounded bf16 out) as plain loops on the host memory the emulator hands out as device memory.
#include <vector>

#include "cuda/backend/gemm.h"

namespace mla::cuda {

namespace {

float toFloat(bf16 v) { return __bfloat162float(v); }

class ReferenceGemm : public Gemm {
 public:

  void batched(const BatchedProduct& p, cudaStream_t) override {
    std::vector<float> a(static_cast<size_t>(p.k)), b(static_cast<size_t>(p.k) * p.n);
    for (int batch = 0; batch < p.batch; ++batch) {
      const bf16* A = p.a + batch * p.strideA;
      const bf16* B = p.b + batch * p.strideB;
      // B as [n][k] floats, so each output is one contiguous dot product.
      for (int j = 0; j < p.n; ++j)
        for (int kk = 0; kk < p.k; ++kk) b[static_cast<size_t>(j) * p.k + kk] = toFloat(p.transB ? B[static_cast<size_t>(j) * p.ldb + kk] : B[static_cast<size_t>(kk) * p.ldb + j]);
      for (int i = 0; i < p.m; ++i) {
        for (int kk = 0; kk < p.k; ++kk) a[static_cast<size_t>(kk)] = toFloat(A[static_cast<size_t>(i) * p.lda + kk]);
        for (int j = 0; j < p.n; ++j) {
          const float* bj = &b[static_cast<size_t>(j) * p.k];
          float acc = 0.0f;
          for (int kk = 0; kk < p.k; ++kk) acc += a[static_cast<size_t>(kk)] * bj[kk];
          const size_t at = static_cast<size_t>(batch) * p.strideC + static_cast<size_t>(i) * p.ldc + j;
          if (p.out == OutType::kF32) static_cast<float*>(p.c)[at] = acc;
          else static_cast<bf16*>(p.c)[at] = __float2bfloat16(acc);
        }
      }
    }
  }
};

}  // namespace

std::unique_ptr<Gemm> makeGemm() { return std::make_unique<ReferenceGemm>(); }

}  // namespace mla::cuda
