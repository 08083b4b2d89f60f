// Backend construction. The CUDA backend exists only in builds where CMake found CUDA and cuBLAS
// (or on the CPU emulator, in its tests); elsewhere makeCudaBackend (factory/no_cuda.cpp) explains
// how to get one.
#pragma once
#include <memory>

#include "mla/backend.h"
#include "model/weights.h"

namespace mla {

bool cudaBackendBuilt();
std::unique_ptr<Backend> makeCudaBackend(const ModelConfig& config, const Weights& weights, int device, const StepLimits& limits);

}  // namespace mla
