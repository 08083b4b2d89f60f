// The CUDA backend factory of builds with one.
#include "cuda/backend/cuda_backend.h"
#include "engine/backends.h"

namespace mla {

bool cudaBackendBuilt() { return true; }

std::unique_ptr<Backend> makeCudaBackend(const ModelConfig& config, const Weights& weights, int device, const StepLimits& limits) {
  return std::make_unique<cuda::CudaBackend>(config, weights, device, limits);
}

}  // namespace mla
