// The CPU backend: the readable reference that every other backend is tested against.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/attention.h"
#include "mla/backend.h"
#include "model/decoder.h"
#include "model/weights.h"

namespace mla::cpu {

// Backend: what the engine drives. DecoderOps: the ops the model definition (model/decoder.h) runs.
class CpuBackend : public Backend, private DecoderOps {
 public:
  // cacheDtype: kBF16 (half the bytes, as the CUDA backend) or kF32.
  CpuBackend(const ModelConfig& config, const Weights& weights, int numThreads, DType cacheDtype = DType::kBF16);

  std::string name() const override { return "cpu"; }
  int cacheBytesPerValue() const override { return static_cast<int>(dtypeSize(cacheDtype_)); }
  void allocateCache(int numBlocks, int blockSize, bool poison) override;
  void poisonBlock(int block) override;
  void forward(const ForwardBatch& batch, const ForwardOptions& options) override;
  void sample(const std::vector<SampleRequest>& requests, int numTopLogprobs, std::vector<SampleResult>& results) override;
  void scoreTargets(const int32_t* targets, float* out, int numTop, int32_t* topIds, float* topLogprobs) override;
  std::vector<float> logits() override;
  void endOfStep() override { pool_.park(); }

 private:
  // DecoderOps (model/decoder.h documents each).
  void beginStep(const ForwardBatch& batch, const MlaPlan& plan) override;
  bool hasMatrix(int layer, LayerMatrix m) const override;
  bool hasNorm(int layer, LayerNorm n) const override;
  void embed() override;
  void residualNorm(int layer, LayerNorm norm, bool addDelta) override;
  void linear(int layer, Act in, std::initializer_list<Projection> outs) override;
  void queryLatentNorm(int layer) override;
  void ropeCacheGqa(int layer) override;
  void ropeCacheMla(int layer) override;
  void attentionGqa(int layer) override;
  void attentionMla(int layer) override;
  void siluMul() override;
  void finalNorm() override;
  void observe(int layer, ObservePoint point, Act act, ActivationObserver& observer) override;

  const Matrix& matrix(int layer, LayerMatrix m) const;
  const std::vector<float>& bias(int layer, LayerMatrix m) const;  // empty: none
  const std::vector<float>& norm(int layer, LayerNorm n) const;    // empty: none
  // The buffer of `act`, sized to [T, width] (keeps its largest allocation: steps stop allocating).
  float* resize(Act act, int width);
  float* data(Act act);
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

  // The step's activations (model/decoder.h's Act), allocated once and grown to the largest step.
  // kFfn shares kGate's buffer: silu(gate) * up is written over gate.
  struct Buffer {
    std::vector<float> values;  // [T, width]
    int width = 0;
  };
  std::vector<Buffer> acts_;
  const ForwardBatch* batch_ = nullptr;  // the step being run
  ForwardBatch absorbed_, expanded_;     // MLA: the step's sequences by the plan's form

  std::vector<float> finalHidden_;  // [logit rows, hidden], final norm applied
  int numLogitRows_ = 0;
  std::vector<float> logitsChunk_;  // [chunk rows, vocab]
};

}  // namespace mla::cpu
