// Sampling parameters and per-sequence state that the sampler reads.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace mla {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  float topP = 1.0f;         // (0, 1]
  int topK = 0;              // 0: whole vocabulary
  float minP = 0.0f;         // [0, 1]
  float repetitionPenalty = 1.0f;  // > 0; over prompt and output tokens
  float presencePenalty = 0.0f;    // over output tokens
  float frequencyPenalty = 0.0f;   // over output tokens
  uint64_t seed = 0;

  bool hasPenalties() const {
    return repetitionPenalty != 1.0f || presencePenalty != 0.0f || frequencyPenalty != 0.0f;
  }
};

// Token history that penalties need; kept only when the sequence has penalties.
struct PenaltyState {
  std::vector<int32_t> promptTokens;                // sorted, unique
  std::unordered_map<int32_t, int32_t> outputCounts;  // token -> times generated
};

// One row to sample: the logits row's parameters and history.
struct SampleRequest {
  const SamplingParams* params = nullptr;
  const PenaltyState* penalties = nullptr;  // may be null
  uint64_t counter = 0;  // index of the token being sampled in this sequence's output (RNG stream position)
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0;  // log p(token) under the model's raw distribution
  std::vector<int32_t> topTokens;    // [numTopLogprobs] most likely tokens, raw distribution
  std::vector<float> topLogprobs;    // [numTopLogprobs]
};

}  // namespace mla
