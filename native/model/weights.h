// Model weights as views into the mapped checkpoint (F32 and BF16 stay mapped; F16 is widened).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/safetensors.h"
#include "mla/config.h"

namespace mla {

// A row-major weight matrix [rows, cols] (rows = output features), dtype F32 or BF16.
struct Matrix {
  const void* data = nullptr;
  DType dtype = DType::kF32;
  int rows = 0;
  int cols = 0;
  bool empty() const { return data == nullptr; }
  // Row r as raw bytes.
  const void* row(int r) const {
    return static_cast<const unsigned char*>(data) + static_cast<size_t>(r) * cols * dtypeSize(dtype);
  }
  // A view of rows [first, first + count).
  Matrix rowRange(int first, int count) const { return Matrix{row(first), dtype, count, cols}; }
};

struct LayerWeights {
  std::vector<float> inputNorm;          // [hidden]
  std::vector<float> postAttentionNorm;  // [hidden]
  // GQA: q [heads*head_dim, hidden], k and v [kv_heads*head_dim, hidden].
  // MLA: q [heads*(nope+rope), hidden], or qA [q_lora, hidden] + qANorm + qB [heads*(nope+rope), q_lora].
  Matrix q, k, v, qA, qB;
  std::vector<float> qBias;   // on q (or qB's output): [heads*qk_head]; empty when absent
  std::vector<float> qABias;  // [q_lora]
  std::vector<float> kBias, vBias;  // GQA: [kv_heads*head_dim]
  std::vector<float> qANorm;        // [q_lora], empty without latent norm
  Matrix kvA;                       // MLA: [kv_lora + rope, hidden]
  std::vector<float> kvABias;       // [kv_lora + rope]
  std::vector<float> kvANorm;       // [kv_lora], empty without latent norm
  Matrix kvB;                       // MLA: [heads*(nope+v), kv_lora]
  Matrix kUp, vUp;                  // latent GQA: [heads*head_dim, kv_heads*head_dim]
  Matrix o;                         // [hidden, heads*v_head]
  std::vector<float> oBias;
  Matrix gate, up, down;            // [ffn, hidden], [ffn, hidden], [hidden, ffn]
};

struct Weights {
  Matrix embed;   // [vocab, hidden]
  Matrix lmHead;  // [vocab, hidden]; the embedding when tied
  std::vector<float> finalNorm;  // [hidden]
  std::vector<LayerWeights> layers;
};

// Owns the mapping and any widened copies; `weights` points into both.
class LoadedWeights {
 public:
  // Loads and checks every tensor; may refine config.attention (kGqa -> kLatentGqa). `access`:
  // how the files' bytes are held (core/safetensors.h: resident for the CPU backend).
  static std::unique_ptr<LoadedWeights> load(const std::string& dir, ModelConfig& config, FileAccess access = FileAccess::kMapped);
  const Weights& weights() const { return weights_; }
  const SafetensorsSet& files() const { return *files_; }

 private:
  Matrix matrix(const std::string& name, int rows, int cols);
  std::vector<float> vector(const std::string& name, int size, bool required = true);
  void loadGqaAttention(const std::string& prefix, const ModelConfig& c, LayerWeights& w);
  void loadMlaAttention(const std::string& prefix, const ModelConfig& c, LayerWeights& w);

  std::unique_ptr<SafetensorsSet> files_;
  std::vector<std::unique_ptr<std::vector<float>>> widened_;
  Weights weights_;
};

}  // namespace mla
