// The CUDA backend's step workspace, reserved at load for the step limits.
#include <algorithm>

#include "cuda/backend/workspace.h"
#include "cuda/kernels/mla_decode.cuh"

namespace mla::cuda {

namespace {
constexpr size_t kLogitChunk = 64;  // logit rows per chunk (cuda_sampling.cpp)
constexpr size_t kMaxTopLogprobs = 20;
}  // namespace

void CudaBackend::Workspace::reserveFor(const ModelConfig& c, const StepLimits& limits, int numSms) {
  const size_t T = static_cast<size_t>(std::max(1, limits.maxTokens));
  const size_t S = static_cast<size_t>(std::max(1, limits.maxSeqs));
  const int maxLen = limits.maxModelLen > 0 ? limits.maxModelLen : std::max(1, c.maxPositionEmbeddings);
  const size_t blocksPerSeq = static_cast<size_t>(maxLen + kMlaBlockSize - 1) / kMlaBlockSize;
  const size_t hidden = static_cast<size_t>(c.hiddenSize), H = static_cast<size_t>(c.numHeads), F = static_cast<size_t>(c.intermediateSize);
  const size_t V = static_cast<size_t>(c.vocabSize);
  tokens.reserve(T);
  positions.reserve(T);
  rowSeq.reserve(T);
  rowLength.reserve(T);
  slots.reserve(T);
  logitRows.reserve(T);
  blockTables.reserve(S * blocksPerSeq);
  x.reserve(T * hidden);
  delta.reserve(T * hidden);
  h.reserve(T * hidden);
  finalHidden.reserve(T * hidden);
  gateUp.reserve(T * 2 * F);
  ffn.reserve(T * F);
  attn.reserve(T * H * static_cast<size_t>(c.valueHeadDim()));
  if (c.isMla()) {
    const size_t N = static_cast<size_t>(c.qkNopeHeadDim), R = static_cast<size_t>(c.qkRopeHeadDim), L = static_cast<size_t>(c.kvLoraRank);
    proj.reserve(T * H * (N + R));
    kva.reserve(T * (L + R));
    if (c.qLoraRank > 0) {
      qa.reserve(T * static_cast<size_t>(c.qLoraRank));
      qaNormed.reserve(T * static_cast<size_t>(c.qLoraRank));
    }
    qNope.reserve(T * H * N);
    qRope.reserve(T * H * R);
    qLatent.reserve(T * H * L);
    outLatent.reserve(T * H * L);
    numCtas = mlaDecodeCtas(c.kvLoraRank, c.qkRopeHeadDim, numSms);
    const size_t maxTiles = mlaMaxTiles(static_cast<int>(T), static_cast<int>(S), c.numHeads);
    tiles.reserve(maxTiles);
    tileStart.reserve(maxTiles + 1);
    tileSplits.reserve(maxTiles);
    tileSlot.reserve(maxTiles);
    spans.reserve(static_cast<size_t>(numCtas));
    partialOut.reserve(mlaPartialSlots(numCtas) * kMlaTileRows * L);
    partialLse.reserve(mlaPartialSlots(numCtas) * kMlaTileRows);
    // Expanded prefill: contexts up to one step's tokens (a prompt's first chunk); longer ones go absorbed.
    expandedMaxContext = static_cast<int>(T);
    const size_t C = T, qk = N + R, chunk = static_cast<size_t>(expandedQueryChunk(c, static_cast<int>(C)));
    expSlots.reserve(C);
    expLatent.reserve(C * (L + R));
    expK.reserve(C * H * qk);
    expV.reserve(C * H * static_cast<size_t>(c.vHeadDim));
    expQ.reserve(T * H * qk);
    expS.reserve(H * std::min(chunk, T) * C);
    expP.reserve(H * std::min(chunk, T) * C);
  } else {
    const size_t D = static_cast<size_t>(c.headDim);
    proj.reserve(T * (H + 2 * static_cast<size_t>(c.numKvHeads)) * D);
    q.reserve(T * H * D);
  }
  logits.reserve(kLogitChunk * V);
  scratch.reserve(kLogitChunk * V);
  sampling.reserve(kLogitChunk);
  for (auto* a : {&logprobs, &targetOut}) a->reserve(kLogitChunk);
  for (auto* a : {&outTokens, &targets}) a->reserve(kLogitChunk);
  counters.reserve(kLogitChunk);
  penaltyOffsets.reserve(kLogitChunk + 1);
  // Penalty lists hold each row's distinct prompt and output tokens.
  const size_t penalties = kLogitChunk * std::min<size_t>(static_cast<size_t>(maxLen), V);
  penaltyTokens.reserve(penalties);
  penaltyCounts.reserve(penalties);
  // Logits processors: a bitmask per row, and a bias list per row (logit_bias has at most 300 entries).
  maskRow.reserve(kLogitChunk);
  maskWords.reserve(kLogitChunk * ((V + 31) / 32));
  biasOffsets.reserve(kLogitChunk + 1);
  biasTokens.reserve(kLogitChunk * 1024);
  biasValues.reserve(kLogitChunk * 1024);
  topTokens.reserve(kLogitChunk * kMaxTopLogprobs);
  topLogprobs.reserve(kLogitChunk * kMaxTopLogprobs);
}

}  // namespace mla::cuda
