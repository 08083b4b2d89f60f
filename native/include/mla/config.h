// ModelConfig: the normalized shape of a checkpoint, whatever its model_type.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mla {

// How attention caches and computes.
enum class AttentionKind {
  kGqa,  // llama / mistral / qwen2: cache K and V heads; [K heads | V heads] per token
  kMla,  // deepseek_v3: cache [c_kv | k_pe] per token; absorbed decode
  // TransMLA's first format: a llama/qwen2 checkpoint whose attention also has k_up_proj and
  // v_up_proj. Caches the kv heads' K (RoPE'd per head block) and V as a latent, [K | V] like GQA;
  // every query head reads the whole latent through its rows of k_up_proj / v_up_proj.
  kLatentGqa,
};

enum class RopeScaling { kNone, kLinear, kLlama3 };

struct RopeConfig {
  double theta = 10000.0;
  int dim = 0;               // rotary dimensions per head (even)
  bool interleaved = false;  // pairs (2i, 2i+1) instead of (i, i + dim/2)
  RopeScaling scaling = RopeScaling::kNone;
  double factor = 1.0;             // linear and llama3
  double lowFreqFactor = 1.0;      // llama3
  double highFreqFactor = 4.0;     // llama3
  int originalMaxPositions = 8192; // llama3

  // Inverse frequency of each rotary pair, scaling applied: [dim / 2].
  std::vector<double> inverseFrequencies() const;
};

struct ModelConfig {
  std::string modelType;  // as in config.json
  AttentionKind attention = AttentionKind::kGqa;
  int vocabSize = 0;
  int hiddenSize = 0;
  int intermediateSize = 0;
  int numLayers = 0;
  int numHeads = 0;
  int numKvHeads = 0;   // GQA only
  int headDim = 0;      // GQA only: query/key/value head size
  int slidingWindow = 0;  // 0: attend to the whole context
  float rmsNormEps = 1e-6f;
  bool tieWordEmbeddings = false;
  int maxPositionEmbeddings = 0;

  // MLA (deepseek_v3) only.
  int qLoraRank = 0;  // 0: q_proj; else q_a_proj + q_a_layernorm + q_b_proj
  int kvLoraRank = 0;
  int qkNopeHeadDim = 0;
  int qkRopeHeadDim = 0;
  int vHeadDim = 0;
  bool latentNorm = true;  // q_a_layernorm / kv_a_layernorm applied (qk_latent_layernorm)
  // Stock DeepSeek-V3 folder (no qk_latent_layernorm field): computed as Hugging Face's
  // DeepseekV3ForCausalLM computes it: latent norms always (ones where a tensor is missing), biases
  // only on the modules HF builds with attention_bias (q_a, kv_a, o), none on q_proj / q_b_proj.
  // Otherwise mla-serve's own format: norms as qk_latent_layernorm says, every bias present read.
  bool stockMla = false;
  bool attentionBias = false;  // attention_bias (stock folders)

  float softmaxScale = 1.0f;  // applied to q·k
  RopeConfig rope;

  // Values cached per token per layer: kv_lora + rope (MLA) or 2 * kv_heads * head_dim (GQA).
  int cacheEntrySize() const;
  bool isMla() const { return attention == AttentionKind::kMla; }
  // Query-head size (what q·k runs over in the expanded form).
  int qkHeadDim() const { return isMla() ? qkNopeHeadDim + qkRopeHeadDim : headDim; }
  int valueHeadDim() const { return isMla() ? vHeadDim : headDim; }
};

// Parses config.json text. Throws mla::Error naming the field and value for anything unsupported.
ModelConfig parseModelConfig(const std::string& configJsonText);

}  // namespace mla
