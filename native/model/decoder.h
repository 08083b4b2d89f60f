// The model definition: the forward pass of every supported architecture, written once over the
// ops a backend implements (DecoderOps). Backends implement ops (projections, norms, RoPE with the
// cache write, attention, activation), not models; CPU and CUDA run the same sequence of ops.
//
// Architectures served: Llama-family decoders with GQA attention (Llama, Mistral's sliding window,
// Qwen2's q/k/v biases), TransMLA's latent GQA (k_up_proj / v_up_proj), and DeepSeek-V3's dense
// MLA layers. A new architecture adds its sequence here and the ops it lacks to DecoderOps.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "mla/backend.h"
#include "mla/batch.h"
#include "mla/config.h"

namespace mla {

// The activations of a step, each [T, width] with T = batch.numTokens; a backend keeps one buffer
// of each in its workspace, in whatever precision its ops want.
enum class Act {
  kX,      // the residual stream [T, hidden]
  kH,      // a sublayer's normed input [T, hidden]
  kDelta,  // a sublayer's output, added to the residual [T, hidden]
  kQ,      // queries [T, heads * qk_head]
  kK,      // GQA keys [T, kv_heads * head_dim]
  kV,      // GQA values [T, kv_heads * head_dim]
  kQA,     // MLA q_a [T, q_lora]
  kKvA,    // MLA kv_a [T, kv_lora + rope]: [c_kv | k_pe] before the latent norm and RoPE
  kAttn,   // attention output [T, heads * v_head]
  kGate,   // [T, ffn]
  kUp,     // [T, ffn]
  kFfn,    // silu(gate) * up [T, ffn]
};

// A layer's projection matrices ([out features, in features]; biases go with them) and norms.
enum class LayerMatrix { kQ, kK, kV, kQA, kQB, kKvA, kO, kGate, kUp, kDown };
enum class LayerNorm { kInput, kPostAttention, kQA, kKvA };

// One projection of a linear op: out = in · weight^T (+ the weight's bias).
struct Projection {
  LayerMatrix weight;
  Act out;
};

// How each sequence of a step runs MLA attention: absorbed[i] for batch.seqs[i] (else expanded).
struct MlaPlan {
  std::vector<uint8_t> absorbed;
};

class DecoderOps {
 public:
  virtual ~DecoderOps() = default;

  // The step's layout (positions, cache slots, block tables) and, for MLA, its plan. Clears the
  // logit rows of the previous step (finalNorm sets them).
  virtual void beginStep(const ForwardBatch& batch, const MlaPlan& plan) = 0;
  // Whether expanded MLA attention can hold a context of this many tokens (a workspace bound).
  virtual bool expandedFits(int contextLength) const { return true; }
  // Whether the checkpoint has this optional weight (q_a_proj, the latent norms).
  virtual bool hasMatrix(int layer, LayerMatrix m) const = 0;
  virtual bool hasNorm(int layer, LayerNorm n) const = 0;

  // x = embed[tokens].
  virtual void embed() = 0;
  // x += delta when addDelta; then h = rmsNorm(x) * weight (eps rms_norm_eps).
  virtual void residualNorm(int layer, LayerNorm norm, bool addDelta) = 0;
  // For each projection: out = in · W^T + bias. A backend that stores a group's weights together
  // (q|k|v, gate|up) runs the group as one product.
  virtual void linear(int layer, Act in, std::initializer_list<Projection> outs) = 0;
  // q_a = rmsNorm(q_a) * q_a_layernorm (eps 1e-6), where the layer has that norm.
  virtual void queryLatentNorm(int layer) = 0;
  // GQA: RoPE on q and k; the new tokens' [k | v] written to the layer's cache.
  virtual void ropeCacheGqa(int layer) = 0;
  // MLA: RoPE on each head's rope part of q and on k_pe; [kv_a_layernorm(c_kv) | k_pe] cached.
  virtual void ropeCacheMla(int layer) = 0;
  // attn from q and the cache: GQA (or latent GQA, through k_up / v_up).
  virtual void attentionGqa(int layer) = 0;
  // attn from q and the latent cache, each sequence in the form the step's plan chose.
  virtual void attentionMla(int layer) = 0;
  // ffn = silu(gate) * up.
  virtual void siluMul() = 0;
  // x += delta; then the final norm of batch.logitRows, kept for logits and sampling.
  virtual void finalNorm() = 0;
  // Hands `act` [T, width] to the observer as float32.
  virtual void observe(int layer, ObservePoint point, Act act, ActivationObserver& observer) = 0;
};

// The rule both backends follow for MLA attention: absorbed where it is cheaper (mla/mla_path.h)
// or where the expanded form's workspace cannot hold the context.
MlaPlan planMla(const ModelConfig& c, const DecoderOps& ops, const ForwardBatch& batch, MlaPath path);

// Runs the model over the batch through `ops` (Backend::forward of every backend).
void runDecoder(const ModelConfig& c, DecoderOps& ops, const ForwardBatch& batch, const ForwardOptions& options);

}  // namespace mla
