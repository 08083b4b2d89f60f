// The CPU backend: the readable reference that every other backend is tested against.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "mla/backend.h"
#include "model/weights.h"

namespace mla::cpu {

class CpuBackend : public Backend {
 public:
  // cacheDtype: kBF16 (half the bytes, as the CUDA backend) or kF32.
  CpuBackend(const ModelConfig& config, const Weights& weights, int numThreads, DType cacheDtype = DType::kBF16);

  std::string name() const override { return "cpu"; }
  int cacheBytesPerValue() const override { return static_cast<int>(dtypeSize(cacheDtype_)); }
  void allocateCache(int numBlocks, int blockSize, bool poison) override;
  void copyBlock(int src, int dst) override;
  void poisonBlock(int block) override;
  void forward(const ForwardBatch& batch, const ForwardOptions& options) override;
  void sample(const std::vector<SampleRequest>& requests, int numTopLogprobs, std::vector<SampleResult>& results) override;
  void scoreTargets(const int32_t* targets, float* out, int numTop, int32_t* topIds, float* topLogprobs) override;
  std::vector<float> logits() override;
  void endOfStep() override { pool_.park(); }

 private:
  // Attention sublayer: h [T, hidden] (normed) -> out [T, heads * v_head]; writes the new cache entries.
  // gqaLayer also serves the latent GQA format (k_up_proj / v_up_proj).
  void gqaLayer(int layer, const ForwardBatch& batch, const float* h, float* out, ActivationObserver* observer);
  void mlaLayer(int layer, const ForwardBatch& batch, const float* h, float* out, MlaPath path, ActivationObserver* observer);
  void mlpLayer(int layer, int numTokens, const float* h, float* out);
  PagedLayer cacheLayer(int layer);
  // For each chunk of at most kLogitChunk logit rows [first, first + count): computes their logits
  // into logitsChunk_ [count, vocab], then calls fn(first, count).
  void forEachLogitChunk(const std::function<void(int first, int count)>& fn);

  const ModelConfig& config_;
  const Weights& weights_;
  ThreadPool pool_;
  std::vector<double> inverseFrequencies_;  // [rope.dim / 2]

  DType cacheDtype_;
  std::unique_ptr<unsigned char[]> cache_;  // [layers][blocks][blockSize][entry] values of cacheDtype_
  size_t layerStride_ = 0;                  // values per layer
  int numBlocks_ = 0;
  int blockSize_ = 64;

  // Activations of one step, allocated once (grown to the largest step): x, h, delta [T, hidden];
  // attn [T, heads * v_head]; q, k, v the attention projections (MLA: q, kv_a in k, q_a in v);
  // gate, up [T, ffn].
  struct Workspace {
    std::vector<float> x, h, attn, delta, q, k, v, gate, up;
  } ws_;

  std::vector<float> finalHidden_;  // [logit rows, hidden], final norm applied
  int numLogitRows_ = 0;
  std::vector<float> logitsChunk_;  // [chunk rows, vocab]
};

}  // namespace mla::cpu
