// The Backend interface: CPU and CUDA implement it; the engine drives it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "mla/batch.h"
#include "mla/config.h"
#include "mla/sampling.h"

namespace mla {

// Where a forward pass shows its activations (calibration statistics): the attention input (after
// input_layernorm), the attention projections' outputs (q; GQA's k and v; MLA's q_a and kv_a before
// their norms), the attention output (before o_proj), the MLP input (after its norm).
enum class ObservePoint { kAttnNorm, kQ, kK, kV, kQA, kKvA, kAttnOut, kMlpNorm };

inline const char* observePointName(ObservePoint p) {
  switch (p) {
    case ObservePoint::kAttnNorm: return "attn_norm";
    case ObservePoint::kQ: return "q";
    case ObservePoint::kK: return "k";
    case ObservePoint::kV: return "v";
    case ObservePoint::kQA: return "q_a";
    case ObservePoint::kKvA: return "kv_a";
    case ObservePoint::kAttnOut: return "attn_out";
    case ObservePoint::kMlpNorm: return "mlp_norm";
  }
  return "?";
}

// The point called `name`; false when there is none.
inline bool observePointNamed(const std::string& name, ObservePoint& point) {
  for (int i = 0; i <= static_cast<int>(ObservePoint::kMlpNorm); ++i) {
    if (name == observePointName(static_cast<ObservePoint>(i))) {
      point = static_cast<ObservePoint>(i);
      return true;
    }
  }
  return false;
}

// Receives activations at the observation points during a forward pass (calibration statistics).
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  // x is [rows, cols], row-major float32, valid only during the call.
  virtual void observe(int layer, ObservePoint point, const float* x, int rows, int cols) = 0;
};

// The largest step a backend must run without allocating (the scheduler's limits): tokens and
// sequences per step, and the context length (block-table width, penalty history).
struct StepLimits {
  int maxTokens = 2048;
  int maxSeqs = 256;
  int maxModelLen = 0;  // 0: the model's max_position_embeddings
};

struct ForwardOptions {
  MlaPath mlaPath = MlaPath::kAuto;
  ActivationObserver* observer = nullptr;  // may be null
  // Stop after this layer (calibration of early layers); -1: the whole model. When it stops
  // early, no logits are computed.
  int lastLayer = -1;
  // With lastLayer: stop once lastLayer's attention input (the attn_norm point) is observed.
  bool stopAtAttentionInput = false;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Bytes of one cached value (fp32 on the CPU, bf16 on the GPU).
  virtual int cacheBytesPerValue() const = 0;
  // Device memory left for the cache when the whole instance may use `utilization` of the device
  // (weights and workspace already counted); -1 where the backend does not size by memory.
  virtual int64_t cacheMemoryBudget(double utilization) const { return -1; }

  // Allocates the paged KV pool: [numLayers][numBlocks][blockSize][cacheEntrySize].
  virtual void allocateCache(int numBlocks, int blockSize, bool poison) = 0;
  // Fills a block with NaN (tests: a stray read of a free block shows up as NaN).
  virtual void poisonBlock(int block) = 0;

  // Runs the model over the batch, writing new tokens' cache entries and keeping the final hidden
  // state of batch.logitRows for sample() / scoreTargets().
  virtual void forward(const ForwardBatch& batch, const ForwardOptions& options) = 0;
  // Samples one token per logit row of the last forward.
  virtual void sample(const std::vector<SampleRequest>& requests, int numTopLogprobs,
                      std::vector<SampleResult>& results) = 0;
  // log p(targets[i]) for each logit row of the last forward: out[i]; with numTop > 0 also each
  // row's numTop most likely tokens and their log-probs: topIds / topLogprobs [rows, numTop].
  virtual void scoreTargets(const int32_t* targets, float* out, int numTop, int32_t* topIds, float* topLogprobs) = 0;
  // Logits of the logit rows of the last forward: [rows, vocab] (tests and tools).
  virtual std::vector<float> logits() = 0;
  // The step is over (its results are out): release resources held between its parts.
  virtual void endOfStep() {}
};

}  // namespace mla
