// The CUDA backend's per-step buffers (device), grown on demand. Private to cuda/backend/.
#pragma once
#include "cuda/backend/cuda_backend.h"
#include "mla/backend.h"

namespace mla::cuda {

struct CudaBackend::Workspace {
  // Reserves every buffer for the largest step within `limits`, so such steps never allocate.
  void reserveFor(const ModelConfig& c, const StepLimits& limits, int numSms);

  // The step's layout.
  DeviceArray<int32_t> tokens, positions, rowSeq, rowLength, blockTables, logitRows;
  DeviceArray<int64_t> slots;
  int maxBlocksPerSeq = 1;
  int maxRowLength = 0;
  // Activations.
  DeviceArray<float> x, delta, proj, kva, qa, gateUp, partialOut, partialLse, logits;
  DeviceArray<bf16> h, attn, q, qNope, qRope, qLatent, outLatent, ffn, qaNormed, finalHidden;
  // Sampling and scoring.
  DeviceArray<float> temperature, topP, minP, repetition, presence, frequency, scratch, logprobs, topLogprobs, targetOut;
  DeviceArray<int32_t> topK, penaltyOffsets, penaltyTokens, penaltyCounts, outTokens, topTokens, targets;
  DeviceArray<uint64_t> seeds, counters;
};

}  // namespace mla::cuda
