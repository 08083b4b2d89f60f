#include <cmath>

#include "core/error.h"
#include "core/json.h"
#include "mla/config.h"

namespace mla {

int ModelConfig::cacheEntrySize() const {
  return isMla() ? kvLoraRank + qkRopeHeadDim : 2 * numKvHeads * headDim;
}

std::vector<double> RopeConfig::inverseFrequencies() const {
  const double pi = 3.14159265358979323846;
  std::vector<double> inv(static_cast<size_t>(dim / 2));
  for (int i = 0; i < dim / 2; ++i) {
    // As Hugging Face: base ** (arange(0, dim, 2) / dim), computed in float32 there.
    double f = 1.0 / std::pow(theta, static_cast<double>(2 * i) / dim);
    if (scaling == RopeScaling::kLinear) {
      f /= factor;
    } else if (scaling == RopeScaling::kLlama3) {
      const double lowWavelen = originalMaxPositions / lowFreqFactor;
      const double highWavelen = originalMaxPositions / highFreqFactor;
      const double wavelen = 2 * pi / f;
      if (wavelen > lowWavelen) {
        f /= factor;
      } else if (wavelen >= highWavelen) {  // between: interpolate
        const double smooth = (originalMaxPositions / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
        f = (1 - smooth) * f / factor + smooth * f;
      }
    }
    inv[static_cast<size_t>(i)] = f;
  }
  return inv;
}

namespace {

// Field readers that name the field in every error.
class Fields {
 public:
  explicit Fields(const Json& j) : j_(j) {}

  int integer(const char* key) const {
    const Json* v = j_.find(key);
    if (!v || v->isNull()) throw Error(std::string("config.json: missing field ") + key);
    return checkedInt(key, *v);
  }
  int integerOr(const char* key, int fallback) const {
    const Json* v = j_.find(key);
    return (!v || v->isNull()) ? fallback : checkedInt(key, *v);
  }
  double numberOr(const char* key, double fallback) const {
    const Json* v = j_.find(key);
    if (!v || v->isNull()) return fallback;
    if (!v->isNumber()) throw Error(std::string("config.json: field ") + key + " must be a number");
    return v->number();
  }
  bool booleanOr(const char* key, bool fallback) const {
    const Json* v = j_.find(key);
    if (!v || v->isNull()) return fallback;
    if (!v->isBool()) throw Error(std::string("config.json: field ") + key + " must be true or false");
    return v->boolean();
  }
  std::string stringOr(const char* key, const std::string& fallback) const {
    const Json* v = j_.find(key);
    if (!v || v->isNull()) return fallback;
    if (!v->isString()) throw Error(std::string("config.json: field ") + key + " must be a string");
    return v->string();
  }
  const Json* find(const char* key) const { return j_.find(key); }

 private:
  static int checkedInt(const char* key, const Json& v) {
    if (!v.isNumber() || v.number() != std::floor(v.number()) || v.number() < 0 || v.number() > 2147483647.0) {
      throw Error(std::string("config.json: field ") + key + " must be a non-negative integer");
    }
    return static_cast<int>(v.number());
  }
  const Json& j_;
};

[[noreturn]] void refuse(const std::string& field, const std::string& value, const std::string& why) {
  throw Error("config.json: unsupported " + field + " = " + value + " (" + why + ")");
}

std::string show(const Json& v) {
  if (v.isString()) return "\"" + v.string() + "\"";
  if (v.isNumber()) {
    std::string s = std::to_string(v.number());
    return s;
  }
  if (v.isBool()) return v.boolean() ? "true" : "false";
  return v.isNull() ? "null" : "(object)";
}

void parseRopeScaling(const Fields& f, RopeConfig& rope) {
  const Json* rs = f.find("rope_scaling");
  if (!rs || rs->isNull()) return;
  if (!rs->isObject()) refuse("rope_scaling", show(*rs), "expected an object");
  const Json* type = rs->find("rope_type");
  if (!type) type = rs->find("type");
  const std::string kind = type && type->isString() ? type->string() : "";
  Fields s(*rs);
  if (kind == "default") return;
  if (kind == "linear") {
    rope.scaling = RopeScaling::kLinear;
    rope.factor = s.numberOr("factor", 1.0);
  } else if (kind == "llama3") {
    rope.scaling = RopeScaling::kLlama3;
    rope.factor = s.numberOr("factor", 8.0);
    rope.lowFreqFactor = s.numberOr("low_freq_factor", 1.0);
    rope.highFreqFactor = s.numberOr("high_freq_factor", 4.0);
    rope.originalMaxPositions = s.integerOr("original_max_position_embeddings", 8192);
  } else {
    refuse("rope_scaling.rope_type", "\"" + kind + "\"", "supported: linear, llama3");
  }
}

void parseCommon(const Fields& f, ModelConfig& c) {
  c.vocabSize = f.integer("vocab_size");
  c.hiddenSize = f.integer("hidden_size");
  c.intermediateSize = f.integer("intermediate_size");
  c.numLayers = f.integer("num_hidden_layers");
  c.numHeads = f.integer("num_attention_heads");
  c.rmsNormEps = static_cast<float>(f.numberOr("rms_norm_eps", 1e-6));
  if (!(c.rmsNormEps > 0) || !std::isfinite(c.rmsNormEps)) refuse("rms_norm_eps", std::to_string(f.numberOr("rms_norm_eps", 1e-6)), "must be a positive number");
  c.tieWordEmbeddings = f.booleanOr("tie_word_embeddings", false);
  c.maxPositionEmbeddings = f.integerOr("max_position_embeddings", 4096);
  c.rope.theta = f.numberOr("rope_theta", 10000.0);
  if (!(c.rope.theta > 1) || !std::isfinite(c.rope.theta)) refuse("rope_theta", std::to_string(c.rope.theta), "must be a number above 1");
  const std::string act = f.stringOr("hidden_act", "silu");
  if (act != "silu") refuse("hidden_act", "\"" + act + "\"", "supported: silu");
  if (c.hiddenSize == 0 || c.numHeads == 0 || c.numLayers == 0 || c.vocabSize == 0) {
    throw Error("config.json: hidden_size, num_attention_heads, num_hidden_layers and vocab_size must be positive");
  }
  parseRopeScaling(f, c.rope);
}

void parseGqa(const Fields& f, ModelConfig& c) {
  c.attention = AttentionKind::kGqa;
  c.numKvHeads = f.integerOr("num_key_value_heads", c.numHeads);
  c.headDim = f.integerOr("head_dim", c.hiddenSize / c.numHeads);
  if (c.numKvHeads == 0 || c.numHeads % c.numKvHeads != 0) {
    refuse("num_key_value_heads", std::to_string(c.numKvHeads),
           "must divide num_attention_heads = " + std::to_string(c.numHeads));
  }
  if (c.headDim % 2 != 0) refuse("head_dim", std::to_string(c.headDim), "must be even");
  const double partial = f.numberOr("partial_rotary_factor", 1.0);
  if (partial != 1.0) refuse("partial_rotary_factor", std::to_string(partial), "supported: 1.0");
  c.rope.dim = c.headDim;
  c.rope.interleaved = false;
  c.softmaxScale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.headDim)));
  if (c.modelType == "mistral") c.slidingWindow = f.integerOr("sliding_window", 0);
  if (c.modelType == "qwen2" && f.booleanOr("use_sliding_window", false)) {
    refuse("use_sliding_window", "true", "Qwen2 per-layer sliding windows are not supported");
  }
}

void parseMla(const Fields& f, ModelConfig& c) {
  c.attention = AttentionKind::kMla;
  // A missing field takes the default of Hugging Face's DeepseekV3Config (null q_lora_rank: q_proj).
  const Json* qLora = f.find("q_lora_rank");
  c.qLoraRank = !qLora ? 1536 : qLora->isNull() ? 0 : f.integer("q_lora_rank");
  c.kvLoraRank = f.integerOr("kv_lora_rank", 512);
  c.qkNopeHeadDim = f.integerOr("qk_nope_head_dim", 128);
  c.qkRopeHeadDim = f.integerOr("qk_rope_head_dim", 64);
  c.vHeadDim = f.integerOr("v_head_dim", 128);
  c.stockMla = f.find("qk_latent_layernorm") == nullptr;
  c.latentNorm = c.stockMla || f.booleanOr("qk_latent_layernorm", true);
  c.attentionBias = f.booleanOr("attention_bias", false);
  c.numKvHeads = c.numHeads;
  if (c.qkRopeHeadDim % 2 != 0) refuse("qk_rope_head_dim", std::to_string(c.qkRopeHeadDim), "must be even");
  if (c.kvLoraRank == 0) refuse("kv_lora_rank", "0", "must be positive");
  c.rope.dim = c.qkRopeHeadDim;
  c.rope.interleaved = f.booleanOr("rope_interleave", true);
  c.softmaxScale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.qkNopeHeadDim + c.qkRopeHeadDim)));
  // Dense MLP in every layer only: layers from first_k_dense_replace on (Hugging Face's default: 3)
  // are mixture-of-experts layers, which are refused.
  const int firstDense = f.integerOr("first_k_dense_replace", 3);
  if (firstDense < c.numLayers) {
    refuse("first_k_dense_replace", f.find("first_k_dense_replace") ? std::to_string(firstDense) : "3 (the default)",
           "layers from it on are mixture-of-experts layers, which are not supported; need first_k_dense_replace >= num_hidden_layers = " +
               std::to_string(c.numLayers));
  }
}

}  // namespace

ModelConfig parseModelConfig(const std::string& text) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const Error& e) {
    throw Error(std::string("config.json: ") + e.what());
  }
  if (!j.isObject()) throw Error("config.json: not a JSON object");
  Fields f(j);
  ModelConfig c;
  const Json* type = j.find("model_type");
  if (!type || !type->isString()) throw Error("config.json: missing field model_type");
  c.modelType = type->string();
  if (c.modelType != "llama" && c.modelType != "mistral" && c.modelType != "qwen2" && c.modelType != "deepseek_v3") {
    refuse("model_type", "\"" + c.modelType + "\"", "supported: llama, mistral, qwen2, deepseek_v3");
  }
  parseCommon(f, c);
  if (c.modelType == "deepseek_v3") parseMla(f, c);
  else parseGqa(f, c);
  return c;
}

}  // namespace mla
