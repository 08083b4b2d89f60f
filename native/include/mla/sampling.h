// The sampler's per-sequence state (token history for penalties) and its results; the per-row
// parameters are declared in mla/sampling_fields.h.
#pragma once
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "mla/sampling_fields.h"

namespace mla {

// Token history that penalties need; every sequence keeps it (its rows may set penalties any step).
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
  const SamplingParams* params = nullptr;   // this row's, from the step's sampling arrays
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
