// Sampling one token from a row of logits: penalties, temperature, top-k, top-p, min-p, seeded draw.
#pragma once
#include <cstdint>
#include <vector>

#include "mla/sampling.h"

namespace mla::cpu {

// Reused buffers, one per thread.
struct SamplerScratch {
  std::vector<float> adjusted;      // [vocab]
  std::vector<int32_t> candidates;  // token ids
};

// A uniform double in [0, 1) from (seed, counter): the same pair always gives the same number.
double uniformFromCounter(uint64_t seed, uint64_t counter);

// Samples req's token from logits [vocab] and fills out (token, its raw log-prob, top raw log-probs).
void sampleRow(const float* logits, int vocab, const SampleRequest& req, int numTopLogprobs, SampleResult& out,
               SamplerScratch& scratch);

// log p(target) under softmax(logits [vocab]), in double.
float targetLogprob(const float* logits, int vocab, int32_t target);

// The k most likely tokens of a logits row (ties: lower id first) and their log-probs.
void topLogprobsOf(const float* logits, int vocab, int k, int32_t* ids, float* logprobs);

}  // namespace mla::cpu
