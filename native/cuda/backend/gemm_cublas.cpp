// Gemm through cuBLAS (cublasGemmEx / cublasGemmStridedBatchedEx): bf16 in, fp32 compute.
// Row-major C = A · op(B) is computed as column-major Cᵀ = op(B)ᵀ · Aᵀ.
#include <cublas_v2.h>

#include <string>

#include "cuda/backend/device_array.h"
#include "cuda/backend/gemm.h"

namespace mla::cuda {

namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLAS: ") + what + " failed with status " + std::to_string(static_cast<int>(s)));
}

class CublasGemm : public Gemm {
 public:
  // cuBLAS gets its workspace up front, so no product allocates device memory during a step.
  CublasGemm() : workspace_(kWorkspaceBytes) {
    check(cublasCreate(&handle_), "cublasCreate");
    check(cublasSetWorkspace(handle_, workspace_.get(), kWorkspaceBytes), "cublasSetWorkspace");
  }
  ~CublasGemm() override { cublasDestroy(handle_); }


  void batched(const BatchedProduct& p, cudaStream_t stream) override {
    if (p.m == 0 || p.batch == 0) return;
    check(cublasSetStream(handle_, stream), "cublasSetStream");
    const float alpha = 1.0f, beta = 0.0f;
    const cudaDataType_t cType = p.out == OutType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
    // Column-major: Cᵀ[n, m] = op(B)ᵀ[n, k] · Aᵀ[k, m]. Row-major B [k, n] is column-major
    // Bᵀ [n, k] (no transpose); row-major B [n, k] (transB) is column-major [k, n], transposed.
    const cublasOperation_t opB = p.transB ? CUBLAS_OP_T : CUBLAS_OP_N;
    check(cublasGemmStridedBatchedEx(handle_, opB, CUBLAS_OP_N, p.n, p.m, p.k, &alpha, p.b, CUDA_R_16BF, p.ldb, p.strideB, p.a,
                                     CUDA_R_16BF, p.lda, p.strideA, &beta, p.c, cType, p.ldc, p.strideC, p.batch, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx");
  }

 private:
  static constexpr size_t kWorkspaceBytes = size_t(32) << 20;
  DeviceArray<char> workspace_;
  cublasHandle_t handle_ = nullptr;
};

}  // namespace

std::unique_ptr<Gemm> makeGemm() { return std::make_unique<CublasGemm>(); }

}  // namespace mla::cuda
