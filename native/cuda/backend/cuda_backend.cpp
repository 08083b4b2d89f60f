// The CUDA backend's construction and paged cache. Its DecoderOps: cuda_ops.cpp and
// cuda_attention_ops.cpp; sampling and logits: cuda_sampling.cpp; weights: cuda_weights.cpp.
#include "cuda/backend/cuda_backend.h"

#include <algorithm>

#include "cuda/backend/gpu_probe.h"
#include "cuda/backend/workspace.h"
#include "cuda/kernels/mla_decode.cuh"

namespace mla::cuda {

CudaBackend::CudaBackend(const ModelConfig& config, const Weights& weights, int device, const StepLimits& limits) : config_(config), device_(device) {
  const GpuProbe probe = probeGpu();
  if (probe.state != GpuProbe::State::kPresent) throw Error("--device cuda: " + probe.message);
  const int count = probe.count;
  if (device < 0 || device >= count) throw Error("--device cuda: GPU " + std::to_string(device) + " does not exist");
  MLA_CUDA_CHECK(cudaSetDevice(device));
  if (config.attention == AttentionKind::kLatentGqa) {
    throw Error("the CUDA backend does not serve TransMLA's first (k_up_proj) format yet: use --device cpu, or convert without --exact");
  }
  if (config.isMla() && !mlaDecodeSupports(config.kvLoraRank, config.qkRopeHeadDim)) {
    throw Error("the CUDA MLA decode kernel is not built for kv_lora_rank " + std::to_string(config.kvLoraRank) + " with qk_rope_head_dim " +
                std::to_string(config.qkRopeHeadDim) + " (native/include/mla/kernel_shapes.h lists the shapes)");
  }
  MLA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  MLA_CUDA_CHECK(cudaDeviceGetAttribute(&numSms_, cudaDevAttrMultiProcessorCount, device));
  gemm_ = makeGemm();
  ws_ = std::make_unique<Workspace>();
  uploadWeights(weights);
  ws_->reserveFor(config, limits, numSms_);
  const std::vector<double> inv = config.rope.inverseFrequencies();
  inverseFrequencies_.upload(inv, stream_);
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaBackend::~CudaBackend() {
  ws_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

int64_t CudaBackend::cacheMemoryBudget(double utilization) const {
  size_t freeBytes = 0, totalBytes = 0;
  MLA_CUDA_CHECK(cudaMemGetInfo(&freeBytes, &totalBytes));
  // Weights and the step workspace (sized for the step limits) are allocated already; keep a margin
  // for the CUDA context's own allocations and fragmentation.
  const int64_t reserve = int64_t(256) << 20;
  const int64_t used = static_cast<int64_t>(totalBytes - freeBytes);
  return std::max<int64_t>(0, static_cast<int64_t>(utilization * static_cast<double>(totalBytes)) - used - reserve);
}

bf16* CudaBackend::cacheLayer(int layer) const { return cache_.get() + layerStride_ * static_cast<size_t>(layer); }

void CudaBackend::allocateCache(int numBlocks, int blockSize, bool poison) {
  check(blockSize == kMlaBlockSize, "the CUDA backend needs cache blocks of 64 tokens");
  numBlocks_ = numBlocks;
  blockSize_ = blockSize;
  layerStride_ = static_cast<size_t>(numBlocks) * blockSize * config_.cacheEntrySize();
  cache_.reserve(layerStride_ * config_.numLayers);
  if (poison) MLA_CUDA_CHECK(cudaMemsetAsync(cache_.get(), 0xFF, layerStride_ * config_.numLayers * sizeof(bf16), stream_));  // bf16 NaN
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::poisonBlock(int b) {
  const size_t block = static_cast<size_t>(blockSize_) * config_.cacheEntrySize();
  for (int l = 0; l < config_.numLayers; ++l) MLA_CUDA_CHECK(cudaMemsetAsync(cacheLayer(l) + block * b, 0xFF, block * sizeof(bf16), stream_));
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

}  // namespace mla::cuda
