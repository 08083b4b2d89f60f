// Dense products on the GPU: bf16 inputs, fp32 accumulation. The backend only sees this
// interface; gemm_cublas.cpp implements it with cuBLAS (built when CMake finds cuBLAS).
#pragma once

#include <memory>

#include "cuda/common.h"

namespace mla::cuda {

enum class OutType { kF32, kBF16 };

// One row-major product, C[m, n] = A[m, k] · (transB ? B[n, k]ᵀ : B[k, n]), repeated `batch` times
// with A, B and C advanced by their strides (in elements). lda/ldb/ldc are row strides.
struct BatchedProduct {
  const bf16* a = nullptr;
  int lda = 0;
  long long strideA = 0;
  const bf16* b = nullptr;
  int ldb = 0;
  long long strideB = 0;
  bool transB = false;
  void* c = nullptr;
  int ldc = 0;
  long long strideC = 0;
  OutType out = OutType::kF32;
  int m = 0, n = 0, k = 0, batch = 1;
};

class Gemm {
 public:
  virtual ~Gemm() = default;
  // y[m, n] = x[m, k] · w[n, k]ᵀ: a linear layer with row-major weights [out, in] (one product).
  void linear(const bf16* x, int m, int k, const bf16* w, int n, void* y, OutType out, cudaStream_t stream) {
    if (m == 0) return;
    BatchedProduct p;
    p.a = x;
    p.lda = k;
    p.b = w;
    p.ldb = k;
    p.transB = true;
    p.c = y;
    p.ldc = n;
    p.out = out;
    p.m = m;
    p.n = n;
    p.k = k;
    batched(p, stream);
  }
  virtual void batched(const BatchedProduct& p, cudaStream_t stream) = 0;
};

// The cuBLAS implementation; throws when this build has none.
std::unique_ptr<Gemm> makeGemm();

}  // namespace mla::cuda
