// The CUDA backend: the whole model on one GPU. Weights in bf16; dense products through Gemm
// (cuBLAS); everything else our kernels (native/cuda/kernels). The paged cache holds bf16.
#pragma once
#include <memory>
#include <vector>

#include "cuda/backend/device_array.h"
#include "cuda/backend/gemm.h"
#include "cuda/kernels/mla_decode.cuh"
#include "mla/backend.h"
#include "model/decoder.h"
#include "model/weights.h"

namespace mla::cuda {

struct DeviceLayer {
  DeviceArray<bf16> inputNorm, postNorm;  // [hidden]
  DeviceArray<bf16> qkv;                  // GQA: [(H + 2 Hkv) D, hidden]
  DeviceArray<float> qkvBias;             // GQA: [(H + 2 Hkv) D] (empty: none)
  DeviceArray<bf16> q, qA, qANorm, qB;    // MLA query: q [H (N+R), hidden] or qA [qr, hidden] + norm + qB [H (N+R), qr]
  DeviceArray<float> qBias, qABias;       // on q / qB, on qA
  DeviceArray<bf16> kvA, kvANorm, kvB;    // MLA: [L+R, hidden], [L], [H (N+V), L]
  DeviceArray<float> kvABias;
  DeviceArray<bf16> o;                    // [hidden, H Vd]
  DeviceArray<float> oBias;
  DeviceArray<bf16> gateUp, down;         // [2 F, hidden], [hidden, F]
  bool hasQkvBias = false, hasQBias = false, hasQABias = false, hasKvABias = false, hasOBias = false;

  // The device weight of a projection, or of a group stored as one matrix (q|k|v, gate|up); null
  // weight: this layer stores no such matrix. rows: the product's output width.
  struct Matrix { const bf16* weight = nullptr; const float* bias = nullptr; int rows = 0; };
  Matrix matrix(LayerMatrix m, int cols) const;
  Matrix group(const std::vector<LayerMatrix>& names, int cols) const;  // one name: matrix(name)
};

// Backend: what the engine drives. DecoderOps: the ops the model definition (model/decoder.h) runs.
class CudaBackend : public Backend, private DecoderOps {
 public:
  CudaBackend(const ModelConfig& config, const Weights& weights, int device, const StepLimits& limits);
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  int cacheBytesPerValue() const override { return 2; }
  int64_t cacheMemoryBudget(double utilization) const override;
  void allocateCache(int numBlocks, int blockSize, bool poison) override;
  void poisonBlock(int block) override;
  void forward(const ForwardBatch& batch, const ForwardOptions& options) override;
  void sample(const std::vector<SampleRequest>& requests, int numTopLogprobs, std::vector<SampleResult>& results) override;
  void scoreTargets(const int32_t* targets, float* out, int numTop, int32_t* topIds, float* topLogprobs) override;
  std::vector<float> logits() override;

 private:
  struct Workspace;
  // DecoderOps (model/decoder.h documents each).
  void beginStep(const ForwardBatch& batch, const MlaPlan& plan) override;
  bool expandedFits(int contextLength) const override;
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

  // Where an activation lives: `cols` values per row from `data` (+ `offset`), rows `ld` apart.
  struct ActView {
    const void* data = nullptr;
    bool isBf16 = false;
    int cols = 0, ld = 0, offset = 0;
  };
  ActView view(Act act) const;
  // x += delta (when addDelta); h = rmsNorm(x) * weight.
  void normInto(const bf16* weight, bool addDelta);
  void uploadWeights(const Weights& w);
  MlaDecodeParams mlaParams(int layer) const;
  // One sequence's attention in expanded form (cuda_mla_expanded.cpp), into its rows of ws.attn.
  void attentionExpanded(int layer, const SeqSlice& seq);
  bf16* cacheLayer(int layer) const;
  // Logits of logit rows [first, first + count) into ws.logits.
  void computeLogits(int first, int count);
  // Samples the chunk in ws.logits (rows [0, count)) with requests[first + r].
  void sampleChunk(const std::vector<SampleRequest>& requests, int first, int count, int numTopLogprobs, std::vector<SampleResult>& results);

  const ModelConfig& config_;
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  int numSms_ = 0;

  DeviceArray<bf16> embed_, lmHead_, finalNorm_;
  bool tiedHead_ = false;
  std::vector<DeviceLayer> layers_;
  DeviceArray<double> inverseFrequencies_;

  DeviceArray<bf16> cache_;  // [layers][blocks][blockSize][entry]
  size_t layerStride_ = 0;
  int numBlocks_ = 0, blockSize_ = 64;

  std::unique_ptr<Workspace> ws_;
  const ForwardBatch* batch_ = nullptr;  // the step being run
  int numLogitRows_ = 0;
};

}  // namespace mla::cuda
