// The CUDA backend factory of builds without one.
#include "core/error.h"
#include "engine/backends.h"

namespace mla {

bool cudaBackendBuilt() { return false; }

std::unique_ptr<Backend> makeCudaBackend(const ModelConfig&, const Weights&, int, const StepLimits&) {
  throw Error("this build has no CUDA backend: rebuild on a machine where CMake finds the CUDA toolkit and cuBLAS "
              "(set MLA_CUBLAS_ROOT for the pip nvidia-cublas package), or use --device cpu");
}

}  // namespace mla
