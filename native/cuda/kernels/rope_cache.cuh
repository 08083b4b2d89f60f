// RoPE fused with the cache write: the projected q/k/v (or MLA's q and kv_a) of each new token go
// into the query buffers and the paged cache in one pass (vLLM's concat_and_cache_mla).
#pragma once
#include <cstdint>

#include "cuda/common.h"

namespace mla::cuda {

// Where each new token goes: its position and its cache slot (block * blockSize + offset).
struct TokenSlots {
  const int32_t* positions = nullptr;  // [T]
  const int64_t* slots = nullptr;      // [T] flat slot index in the layer's pool
};

struct RopeTable {
  const double* inverseFrequencies = nullptr;  // [rotaryDim / 2]
  int rotaryDim = 0;
  bool interleaved = false;  // pairs (2i, 2i+1) instead of (i, i + dim/2)
};

struct GqaRopeCacheParams {
  const float* qkv = nullptr;     // [T, (H + 2 Hkv) * D]: q heads, k heads, v heads (biases already added)
  TokenSlots tokens;
  RopeTable rope;
  int numTokens = 0, numHeads = 0, numKvHeads = 0, headDim = 0;
  bf16* q = nullptr;              // [T, H, D] out, RoPE applied
  bf16* cache = nullptr;          // layer pool [slots, 2 Hkv D]: [K heads | V heads]
};
void gqaRopeCache(const GqaRopeCacheParams& p, cudaStream_t stream);

struct MlaRopeCacheParams {
  const float* q = nullptr;       // [T, H * (N + R)] (bias added)
  const float* kva = nullptr;     // [T, L + R] kv_a output (bias added)
  const bf16* kvNorm = nullptr;   // [L] kv_a_layernorm weight, or null (no latent norm)
  float normEps = 1e-6f;
  TokenSlots tokens;
  RopeTable rope;
  int numTokens = 0, numHeads = 0, nope = 0, ropeDim = 0, kvLoraRank = 0;
  bf16* qNope = nullptr;          // [T, H, N] out
  bf16* qRope = nullptr;          // [T, H, R] out, RoPE applied
  bf16* cache = nullptr;          // layer pool [slots, L + R]: [c_kv (normed) | k_pe (RoPE)]
};
void mlaRopeCache(const MlaRopeCacheParams& p, cudaStream_t stream);

}  // namespace mla::cuda
