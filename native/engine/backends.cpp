#include "engine/backends.h"

#include <string>

#include "core/error.h"
#include "cpu/cpu_backend.h"

namespace mla {

namespace {

// "cuda" -> 0, "cuda:N" -> N.
int cudaDeviceIndex(const std::string& device) {
  if (device == "cuda") return 0;
  try {
    size_t used = 0;
    const int i = std::stoi(device.substr(5), &used);
    if (used == device.size() - 5 && i >= 0) return i;
  } catch (const std::exception&) {
  }
  throw Error("unsupported device \"" + device + "\" (expected cpu, cuda or cuda:N)");
}

}  // namespace

std::unique_ptr<Backend> makeBackend(const EngineOptions& options, const ModelConfig& config, const Weights& weights) {
  if (options.device == "cpu") return std::make_unique<cpu::CpuBackend>(config, weights, options.numThreads, options.cacheDtype);
  if (options.device.rfind("cuda", 0) == 0) {
    // Without a CUDA build, makeCudaBackend's explanation comes first.
    if (cudaBackendBuilt() && options.cacheDtype != DType::kBF16) throw Error("the CUDA backend keeps its KV cache in bf16: drop the f32 cache option");
    return makeCudaBackend(config, weights, cudaDeviceIndex(options.device), options.limits);
  }
  throw Error("unsupported device \"" + options.device + "\" (expected cpu, cuda or cuda:N)");
}

}  // namespace mla
