// Sampling on the GPU, one block per row: penalties, temperature, top-k, top-p, min-p, a seeded
// Philox draw (mla/philox.h, as the CPU sampler; or greedy), the sampled token's raw log-prob and the top raw log-probs.
#pragma once
#include <cstdint>

#include "cuda/common.h"
#include "mla/sampling_fields.h"

namespace mla::cuda {

struct SamplingKernelParams {
  const float* logits = nullptr;  // [rows, vocab]
  int rows = 0, vocab = 0;
  // Per row [rows]:
  const SamplingParams* params = nullptr;  // temperature <= 1e-5: greedy; topK 0: all
  const uint64_t* counter = nullptr;       // the token's index in its sequence's output (RNG stream position)
  // Penalty lists, unique tokens per row: the prompt's tokens and the generated ones.
  const int32_t* penaltyOffsets = nullptr;  // [rows + 1]
  const int32_t* penaltyTokens = nullptr;   // [nnz]
  const int32_t* penaltyCounts = nullptr;   // [nnz] times generated (0: prompt only)
  // Logits processors, applied first: biases per row (-inf bans), then allowed-token bitmasks (null: none).
  const int32_t* biasOffsets = nullptr;     // [rows + 1]
  const int32_t* biasTokens = nullptr;      // [nnz]
  const float* biasValues = nullptr;        // [nnz]
  const int32_t* maskRow = nullptr;         // [rows] row of maskWords, or -1
  const uint32_t* maskWords = nullptr;      // [masks, ceil(vocab / 32)]
  int numTopLogprobs = 0;                   // <= 20
  float* scratch = nullptr;                 // [rows, vocab]
  int32_t* tokens = nullptr;                // [rows] out
  float* logprobs = nullptr;                // [rows] out
  int32_t* topTokens = nullptr;             // [rows, numTopLogprobs] out
  float* topLogprobs = nullptr;             // [rows, numTopLogprobs] out
};

void sampleTokens(const SamplingKernelParams& p, cudaStream_t stream);

// out[r] = log softmax(logits[r])[targets[r]]
void targetLogprobs(const float* logits, const int32_t* targets, int rows, int vocab, float* out, cudaStream_t stream);

}  // namespace mla::cuda
