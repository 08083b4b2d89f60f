#include "model/weights.h"

#include <cstdint>

#include "core/error.h"

namespace mla {

namespace {
std::string shapeOf(int64_t rows, int64_t cols) {
  return "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
}

// A NaN or infinite weight poisons every output it touches: refuse the checkpoint at load.
void requireFinite(const std::string& name, const TensorView& t) {
  const size_t bad = countNonFinite(t.dtype, t.data, static_cast<size_t>(t.numElements()));
  if (bad) throw Error(name + ": " + std::to_string(bad) + " of " + std::to_string(t.numElements()) + " values are NaN or infinite (a damaged checkpoint)");
}
}  // namespace

Matrix LoadedWeights::matrix(const std::string& name, int rows, int cols) {
  const TensorView& t = files_->get(name);
  if (t.shape.size() != 2 || t.shape[0] != rows || t.shape[1] != cols) {
    throw Error(name + ": expected shape " + shapeOf(rows, cols) + ", found " + t.shapeString());
  }
  requireFinite(name, t);
  Matrix m{t.data, t.dtype, rows, cols};
  const bool aligned = reinterpret_cast<uintptr_t>(t.data) % dtypeSize(t.dtype) == 0;
  if (t.dtype == DType::kF16 || !aligned) {  // widen (F16) or realign into owned float storage
    auto copy = std::make_unique<std::vector<float>>(static_cast<size_t>(rows) * cols);
    toFloat(t.dtype, t.data, copy->data(), copy->size());
    m = Matrix{copy->data(), DType::kF32, rows, cols};
    widened_.push_back(std::move(copy));
  }
  return m;
}

std::vector<float> LoadedWeights::vector(const std::string& name, int size, bool required) {
  if (!files_->has(name)) {
    if (required) throw Error("checkpoint has no tensor " + name);
    return {};
  }
  const TensorView& t = files_->get(name);
  if (t.shape.size() != 1 || t.shape[0] != size) {
    throw Error(name + ": expected shape [" + std::to_string(size) + "], found " + t.shapeString());
  }
  requireFinite(name, t);
  std::vector<float> v(static_cast<size_t>(size));
  toFloat(t.dtype, t.data, v.data(), v.size());
  return v;
}

void LoadedWeights::loadGqaAttention(const std::string& p, const ModelConfig& c, LayerWeights& w) {
  const int qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
  w.q = matrix(p + "q_proj.weight", qDim, c.hiddenSize);
  w.k = matrix(p + "k_proj.weight", kvDim, c.hiddenSize);
  w.v = matrix(p + "v_proj.weight", kvDim, c.hiddenSize);
  w.qBias = vector(p + "q_proj.bias", qDim, false);
  w.kBias = vector(p + "k_proj.bias", kvDim, false);
  w.vBias = vector(p + "v_proj.bias", kvDim, false);
  w.o = matrix(p + "o_proj.weight", c.hiddenSize, qDim);
  w.oBias = vector(p + "o_proj.bias", c.hiddenSize, false);
  if (c.attention == AttentionKind::kLatentGqa) {
    w.kUp = matrix(p + "k_up_proj.weight", qDim, kvDim);
    w.vUp = matrix(p + "v_up_proj.weight", qDim, kvDim);
  }
}

// A stock DeepSeek-V3 folder is read as Hugging Face builds the model: a bias only where HF makes
// one (q_a, kv_a and o with attention_bias; never q_proj, q_b_proj, kv_b), a missing latent norm
// as HF initialises it (ones). mla-serve's own format reads every bias it has.
void LoadedWeights::loadMlaAttention(const std::string& p, const ModelConfig& c, LayerWeights& w) {
  const int qHead = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const bool biasModules = !c.stockMla || c.attentionBias;  // q_a, kv_a, o
  const bool queryBias = !c.stockMla;                        // q_proj, q_b_proj
  auto norm = [&](const std::string& name, int n) {
    std::vector<float> v = vector(name, n, !c.stockMla);
    if (v.empty()) v.assign(static_cast<size_t>(n), 1.0f);
    return v;
  };
  if (c.qLoraRank > 0) {
    w.qA = matrix(p + "q_a_proj.weight", c.qLoraRank, c.hiddenSize);
    if (biasModules) w.qABias = vector(p + "q_a_proj.bias", c.qLoraRank, false);
    if (c.latentNorm) w.qANorm = norm(p + "q_a_layernorm.weight", c.qLoraRank);
    w.qB = matrix(p + "q_b_proj.weight", c.numHeads * qHead, c.qLoraRank);
    if (queryBias) w.qBias = vector(p + "q_b_proj.bias", c.numHeads * qHead, false);
  } else {
    w.q = matrix(p + "q_proj.weight", c.numHeads * qHead, c.hiddenSize);
    if (queryBias) w.qBias = vector(p + "q_proj.bias", c.numHeads * qHead, false);
  }
  w.kvA = matrix(p + "kv_a_proj_with_mqa.weight", c.kvLoraRank + c.qkRopeHeadDim, c.hiddenSize);
  if (biasModules) w.kvABias = vector(p + "kv_a_proj_with_mqa.bias", c.kvLoraRank + c.qkRopeHeadDim, false);
  if (c.latentNorm) w.kvANorm = norm(p + "kv_a_layernorm.weight", c.kvLoraRank);
  w.kvB = matrix(p + "kv_b_proj.weight", c.numHeads * (c.qkNopeHeadDim + c.vHeadDim), c.kvLoraRank);
  w.o = matrix(p + "o_proj.weight", c.hiddenSize, c.numHeads * c.vHeadDim);
  if (biasModules) w.oBias = vector(p + "o_proj.bias", c.hiddenSize, false);
}

std::unique_ptr<LoadedWeights> LoadedWeights::load(const std::string& dir, ModelConfig& c, FileAccess access) {
  auto lw = std::unique_ptr<LoadedWeights>(new LoadedWeights());
  lw->files_ = SafetensorsSet::open(dir, access);
  // TransMLA's first format is a GQA checkpoint with up-projections: the weights say which.
  if (c.attention == AttentionKind::kGqa && lw->files_->has("model.layers.0.self_attn.k_up_proj.weight")) {
    c.attention = AttentionKind::kLatentGqa;
  }
  Weights& w = lw->weights_;
  w.embed = lw->matrix("model.embed_tokens.weight", c.vocabSize, c.hiddenSize);
  if (c.tieWordEmbeddings || !lw->files_->has("lm_head.weight")) {
    if (!c.tieWordEmbeddings) throw Error("checkpoint has no tensor lm_head.weight (and tie_word_embeddings is false)");
    w.lmHead = w.embed;
  } else {
    w.lmHead = lw->matrix("lm_head.weight", c.vocabSize, c.hiddenSize);
  }
  w.finalNorm = lw->vector("model.norm.weight", c.hiddenSize);
  w.layers.resize(static_cast<size_t>(c.numLayers));
  for (int i = 0; i < c.numLayers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    l.inputNorm = lw->vector(p + "input_layernorm.weight", c.hiddenSize);
    l.postAttentionNorm = lw->vector(p + "post_attention_layernorm.weight", c.hiddenSize);
    if (c.isMla()) lw->loadMlaAttention(p + "self_attn.", c, l);
    else lw->loadGqaAttention(p + "self_attn.", c, l);
    l.gate = lw->matrix(p + "mlp.gate_proj.weight", c.intermediateSize, c.hiddenSize);
    l.up = lw->matrix(p + "mlp.up_proj.weight", c.intermediateSize, c.hiddenSize);
    l.down = lw->matrix(p + "mlp.down_proj.weight", c.hiddenSize, c.intermediateSize);
  }
  return lw;
}

}  // namespace mla
