#include "model/decoder.h"

#include <algorithm>

#include "mla/mla_path.h"

namespace mla {

namespace {

// Calls the observer at a point, when there is one.
struct Observe {
  DecoderOps& ops;
  ActivationObserver* observer;
  void operator()(int layer, ObservePoint point, Act act) const {
    if (observer) ops.observe(layer, point, act, *observer);
  }
};

// GQA (and latent GQA): h -> q, k, v -> RoPE, cache -> attn.
void gqaAttention(DecoderOps& ops, int l, const Observe& see) {
  ops.linear(l, Act::kH, {{LayerMatrix::kQ, Act::kQ}, {LayerMatrix::kK, Act::kK}, {LayerMatrix::kV, Act::kV}});
  see(l, ObservePoint::kQ, Act::kQ);
  see(l, ObservePoint::kK, Act::kK);
  see(l, ObservePoint::kV, Act::kV);
  ops.ropeCacheGqa(l);
  ops.attentionGqa(l);
}

// MLA: h -> q (directly, or through q_a and its norm), kv_a -> RoPE, latent cache -> attn.
void mlaAttention(DecoderOps& ops, int l, const Observe& see) {
  if (ops.hasMatrix(l, LayerMatrix::kQA)) {
    ops.linear(l, Act::kH, {{LayerMatrix::kQA, Act::kQA}});
    see(l, ObservePoint::kQA, Act::kQA);
    ops.queryLatentNorm(l);
    ops.linear(l, Act::kQA, {{LayerMatrix::kQB, Act::kQ}});
  } else {
    ops.linear(l, Act::kH, {{LayerMatrix::kQ, Act::kQ}});
  }
  ops.linear(l, Act::kH, {{LayerMatrix::kKvA, Act::kKvA}});
  see(l, ObservePoint::kQ, Act::kQ);
  see(l, ObservePoint::kKvA, Act::kKvA);
  ops.ropeCacheMla(l);
  ops.attentionMla(l);
}

// The gated MLP: h -> silu(gate) * up -> down, into delta.
void mlp(DecoderOps& ops, int l) {
  ops.linear(l, Act::kH, {{LayerMatrix::kGate, Act::kGate}, {LayerMatrix::kUp, Act::kUp}});
  ops.siluMul();
  ops.linear(l, Act::kFfn, {{LayerMatrix::kDown, Act::kDelta}});
}

}  // namespace

MlaPlan planMla(const ModelConfig& c, const DecoderOps& ops, const ForwardBatch& batch, MlaPath path) {
  MlaPlan plan;
  if (!c.isMla()) return plan;
  for (const SeqSlice& s : batch.seqs) {
    const int context = s.start + s.numTokens;
    plan.absorbed.push_back(useAbsorbed(path, c, s.numTokens, context) || !ops.expandedFits(context));
  }
  return plan;
}

void runDecoder(const ModelConfig& c, DecoderOps& ops, const ForwardBatch& batch, const ForwardOptions& options) {
  const int lastLayer = options.lastLayer < 0 ? c.numLayers - 1 : std::min(options.lastLayer, c.numLayers - 1);
  const Observe see{ops, options.observer};
  ops.beginStep(batch, planMla(c, ops, batch, options.mlaPath));
  ops.embed();
  for (int l = 0; l <= lastLayer; ++l) {
    ops.residualNorm(l, LayerNorm::kInput, /*addDelta=*/l > 0);
    see(l, ObservePoint::kAttnNorm, Act::kH);
    if (l == lastLayer && options.stopAtAttentionInput) return;
    if (c.isMla()) mlaAttention(ops, l, see);
    else gqaAttention(ops, l, see);
    see(l, ObservePoint::kAttnOut, Act::kAttn);
    ops.linear(l, Act::kAttn, {{LayerMatrix::kO, Act::kDelta}});
    ops.residualNorm(l, LayerNorm::kPostAttention, /*addDelta=*/true);
    see(l, ObservePoint::kMlpNorm, Act::kH);
    mlp(ops, l);
  }
  if (lastLayer == c.numLayers - 1) ops.finalNorm();
}

}  // namespace mla
