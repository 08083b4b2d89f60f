// The model config as the TypeScript layer sees it (engine.config()), declared once: one row per
// field, X(name, TypeScript type, value read from `const ModelConfig& c`, doc). napi/engine_wrap.cpp
// builds the JS object from these rows; scripts/gen_native_types.mjs writes the TypeScript
// interface from them (src/native/model_config.ts; a test fails when it is stale). Keep one row a
// line. Adding a field: a row here (and the ModelConfig member it reads), nothing else.
#pragma once
#include "mla/config.h"

namespace mla {

inline const char* attentionName(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kMla: return "mla";
    case AttentionKind::kLatentGqa: return "latent-gqa";
    default: return "gqa";
  }
}

inline const char* ropeScalingName(RopeScaling s) {
  switch (s) {
    case RopeScaling::kLinear: return "linear";
    case RopeScaling::kLlama3: return "llama3";
    default: return "none";
  }
}

}  // namespace mla

#define MLA_MODEL_CONFIG_FIELDS(X) \
  X(modelType, "string", c.modelType, "model_type as in config.json.") \
  X(attention, "\"gqa\" | \"mla\" | \"latent-gqa\"", attentionName(c.attention), "\"latent-gqa\": TransMLA's first format (GQA weights plus k_up_proj / v_up_proj).") \
  X(vocabSize, "number", c.vocabSize, "") \
  X(hiddenSize, "number", c.hiddenSize, "") \
  X(intermediateSize, "number", c.intermediateSize, "") \
  X(numLayers, "number", c.numLayers, "") \
  X(numHeads, "number", c.numHeads, "") \
  X(numKvHeads, "number", c.numKvHeads, "GQA only.") \
  X(headDim, "number", c.headDim, "GQA only: query/key/value head size.") \
  X(slidingWindow, "number", c.slidingWindow, "0: attend to the whole context.") \
  X(rmsNormEps, "number", c.rmsNormEps, "") \
  X(tieWordEmbeddings, "boolean", c.tieWordEmbeddings, "") \
  X(maxPositionEmbeddings, "number", c.maxPositionEmbeddings, "") \
  X(qLoraRank, "number", c.qLoraRank, "MLA: 0 when q_proj is one matrix.") \
  X(kvLoraRank, "number", c.kvLoraRank, "MLA: the latent's size.") \
  X(qkNopeHeadDim, "number", c.qkNopeHeadDim, "") \
  X(qkRopeHeadDim, "number", c.qkRopeHeadDim, "") \
  X(vHeadDim, "number", c.vHeadDim, "") \
  X(latentNorm, "boolean", c.latentNorm, "MLA: q_a_layernorm / kv_a_layernorm applied.") \
  X(softmaxScale, "number", c.softmaxScale, "Applied to q·k.") \
  X(ropeTheta, "number", c.rope.theta, "") \
  X(ropeDim, "number", c.rope.dim, "Rotary dimensions per head.") \
  X(ropeInterleaved, "boolean", c.rope.interleaved, "Pairs (2i, 2i+1) instead of (i, i + dim/2).") \
  X(ropeScaling, "\"none\" | \"linear\" | \"llama3\"", ropeScalingName(c.rope.scaling), "") \
  X(cacheEntrySize, "number", c.cacheEntrySize(), "Values cached per token per layer.")
