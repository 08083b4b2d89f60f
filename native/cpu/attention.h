// Attention over the paged KV cache on the CPU: GQA, and MLA in its absorbed and expanded forms.
#pragma once
#include <cstdint>

#include "core/thread_pool.h"
#include "cpu/paged_attention.h"
#include "mla/batch.h"
#include "mla/config.h"
#include "mla/mla_path.h"
#include "model/weights.h"

namespace mla::cpu {

// GQA: q [T, heads*head_dim] (RoPE applied) attends to the cached K/V of each sequence's
// positions [window start, pos]; out [T, heads*head_dim]. New tokens' K/V must already be cached.
void gqaAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                  const PagedLayer& cache, float* out);

// Latent GQA (TransMLA's first format): q [T, heads*head_dim] (RoPE applied) is folded through
// each head's rows of k_up [heads*head_dim, kv_heads*head_dim] into the latent; the cache holds
// [k_latent | v_latent] (kv_heads*head_dim each, k RoPE'd per head block); v_up maps the latent
// result back to the head. out [T, heads*head_dim].
void latentGqaAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                        const Matrix& kUp, const Matrix& vUp, const PagedLayer& cache, float* out);

// MLA absorbed: q [T, heads*(nope+rope)] (RoPE applied to each head's rope part) is folded
// through W_UK into the latent space, attends to the cached [c_kv | k_pe], and the latent result
// goes through W_UV. out [T, heads*v_head]. kvB: [heads*(nope+v), kv_lora].
void mlaAbsorbedAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                          const Matrix& kvB, const PagedLayer& cache, float* out);

// MLA expanded: each sequence's cached latents are expanded through kv_b_proj into per-head K
// and V, then ordinary multi-head attention (the same blocked loop over a cache of expanded
// entries). Same inputs and output as the absorbed form.
void mlaExpandedAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                          const Matrix& kvB, const PagedLayer& cache, float* out);
}  // namespace mla::cpu
