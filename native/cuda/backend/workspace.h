// The CUDA backend's per-step buffers (device), grown on demand. Private to cuda/backend/.
#pragma once
#include "cuda/backend/cuda_backend.h"
#include "cuda/kernels/mla_decode.cuh"
#include "mla/backend.h"

namespace mla::cuda {

struct CudaBackend::Workspace {
  // Reserves every buffer for the largest step within `limits`, so such steps never allocate.
  void reserveFor(const ModelConfig& c, const StepLimits& limits, int numSms);

  // The step's layout.
  DeviceArray<int32_t> tokens, positions, rowSeq, rowLength, blockTables, logitRows;
  DeviceArray<int64_t> slots;
  int maxBlocksPerSeq = 1;
  // MLA: the step's tiles and their schedule on the persistent grid (one per step, all layers).
  DeviceArray<MlaTile> tiles;
  DeviceArray<MlaWorkSpan> spans;
  DeviceArray<int32_t> tileStart, tileSplits, tileSlot;
  int numTiles = 0, numCtas = 0;
  // MLA expanded prefill (sequences the cost rule sends there, context up to expandedMaxContext).
  std::vector<SeqSlice> expanded;
  DeviceArray<bf16> expLatent, expK, expV, expQ, expP;
  DeviceArray<float> expS;
  DeviceArray<int32_t> expSlots;
  int expandedMaxContext = 0;
  // Query tokens per block of scores for a context of `contextLength` keys.
  static int expandedQueryChunk(const ModelConfig& c, int contextLength);
  // Activations.
  DeviceArray<float> x, delta, proj, kva, qa, gateUp, partialOut, partialLse, logits;
  DeviceArray<bf16> h, attn, q, qNope, qRope, qLatent, outLatent, ffn, qaNormed, finalHidden;
  // Sampling and scoring.
  DeviceArray<SamplingParams> sampling;
  DeviceArray<float> scratch, logprobs, topLogprobs, targetOut;
  DeviceArray<int32_t> penaltyOffsets, penaltyTokens, penaltyCounts, outTokens, topTokens, targets;
  DeviceArray<uint64_t> counters;
  DeviceArray<int32_t> biasOffsets, biasTokens, maskRow;
  DeviceArray<float> biasValues;
  DeviceArray<uint32_t> maskWords;
};

}  // namespace mla::cuda
