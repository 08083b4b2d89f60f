// Backend construction: every backend is built here, by device name. The CUDA backend exists only
// in builds where CMake found CUDA and cuBLAS (factory/with_cuda.cpp; on the CPU emulator in its
// tests); elsewhere makeCudaBackend (factory/no_cuda.cpp) explains how to get one.
#pragma once
#include <memory>

#include "engine/engine.h"
#include "mla/backend.h"
#include "model/weights.h"

namespace mla {

// "cpu", "cuda" or "cuda:N"; anything else is an error naming what is accepted.
std::unique_ptr<Backend> makeBackend(const EngineOptions& options, const ModelConfig& config, const Weights& weights);

bool cudaBackendBuilt();
std::unique_ptr<Backend> makeCudaBackend(const ModelConfig& config, const Weights& weights, int device, const StepLimits& limits);

}  // namespace mla
