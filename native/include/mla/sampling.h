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

// What a row's logits processors decided (grammar, allowed tokens, bad words, min_tokens,
// logit_bias), applied to the logits before penalties, temperature, top-k, top-p and min-p.
struct LogitAdjust {
  const uint32_t* allowed = nullptr;  // [ceil(vocab / 32)] bit t set: token t may be sampled; null: all
  const int32_t* biasTokens = nullptr;  // [numBias]
  const float* biasValues = nullptr;    // [numBias] added to the logits (-inf: banned)
  int numBias = 0;
};

// One row to sample: the logits row's parameters and history.
struct SampleRequest {
  const SamplingParams* params = nullptr;
  const PenaltyState* penalties = nullptr;  // may be null
  uint64_t counter = 0;  // index of the token being sampled in this sequence's output (RNG stream position)
  LogitAdjust adjust;
};

struct SampleResult {
  int32_t token = 0;
  float logprob = 0;  // log p(token) under the model's raw distribution
  std::vector<int32_t> topTokens;    // [numTopLogprobs] most likely tokens, raw distribution
  std::vector<float> topLogprobs;    // [numTopLogprobs]
};

}  // namespace mla
