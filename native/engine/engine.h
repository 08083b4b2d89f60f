// Engine: one model on one backend with its paged cache and its sequences. The napi layer and the
// C++ tests and benchmarks drive it; it never touches JavaScript.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/block_manager.h"
#include "mla/backend.h"
#include "model/weights.h"

namespace mla {

struct EngineOptions {
  std::string modelDir;
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:N"
  int numThreads = 0;        // 0: all cores
  int numBlocks = 0;         // cache blocks; 0: derive from cacheBytes
  int64_t cacheBytes = 256ll << 20;   // CPU cache size
  double gpuMemoryUtilization = 0.9;  // CUDA: fraction of the GPU for weights, workspace and cache
  int blockSize = 64;
  bool enablePrefixCaching = true;
  bool poisonCache = false;  // tests: fill unused cache with NaN
  DType cacheDtype = DType::kBF16;  // the KV cache's values: bf16 (both backends) or f32 (CPU only)
  MlaPath mlaPath = MlaPath::kAuto;
  StepLimits limits;  // the CUDA workspace is sized for these at load
};

// One step's work, as the scheduler decided it.
struct StepInput {
  std::vector<int64_t> seqIds;          // [B]
  std::vector<int32_t> startPositions;  // [B] tokens already computed (must match the engine's count)
  std::vector<int32_t> numTokens;       // [B] new tokens per sequence
  std::vector<int32_t> tokenIds;        // [sum numTokens]
  std::vector<uint8_t> sampleMask;      // [B] sample after this sequence's last new token
  std::vector<SamplingParams> sampling;  // [R] parameters of the sampled rows (R: rows with sampleMask set, in order)
  int numTopLogprobs = 0;
  // Logits processors of the sampled rows (R: rows with sampleMask set, in order); empty: none.
  std::vector<int32_t> maskRow;       // [R] row of maskWords, or -1
  std::vector<uint32_t> maskWords;    // [masks, ceil(vocab / 32)] allowed-token bitmasks
  std::vector<int32_t> biasOffsets;   // [R + 1]
  std::vector<int32_t> biasTokens;    // [nnz]
  std::vector<float> biasValues;      // [nnz]
};

class Engine {
 public:
  static std::unique_ptr<Engine> create(const EngineOptions& options);

  const ModelConfig& config() const { return config_; }
  const EngineOptions& options() const { return options_; }
  const BlockManager& blocks() const { return *blocks_; }
  Backend& backend() { return *backend_; }
  int64_t bytesPerBlock() const;

  // Registers a sequence and gives it cache blocks for tokens[0, numTokens); the first
  // numPromptTokens are its prompt, the rest its earlier output (re-admission after preemption).
  // Returns the number of leading tokens already cached, or nothing if the blocks do not suffice.
  std::optional<int> addSequence(int64_t seqId, const int32_t* tokens, int numTokens, int numPromptTokens,
                                 bool usePrefixHits = true);
  bool ensureCapacity(int64_t seqId, int numTokens);
  void freeSequence(int64_t seqId);
  bool hasSequence(int64_t seqId) const { return seqs_.count(seqId) != 0; }

  // Runs one step and samples a token for each masked sequence (results in mask order).
  std::vector<SampleResult> step(const StepInput& input, std::vector<float>* logitsOut = nullptr);
  // Runs one step over the input and returns log p(targets[i]) for every new token i, and with
  // numTop > 0 each position's numTop most likely tokens and their log-probs.
  struct Scores {
    std::vector<float> logprobs;     // [tokens]
    std::vector<int32_t> topIds;     // [tokens, numTop]
    std::vector<float> topLogprobs;  // [tokens, numTop]
  };
  Scores score(const StepInput& input, const int32_t* targets, int numTop = 0);
  // Runs the input through layers [0, lastLayer] (-1: all) for the observer; no logits. With
  // stopAtAttentionInput, lastLayer runs only up to its attention input ("attn_norm").
  void calibrate(const StepInput& input, ActivationObserver& observer, int lastLayer, bool stopAtAttentionInput);

 private:
  struct Sequence {
    PenaltyState penalties;  // its prompt's and output's tokens, for rows that set penalties
    uint64_t numOutputTokens = 0;
  };
  Engine(const EngineOptions& options, ModelConfig config) : options_(options), config_(std::move(config)) {}
  int numBlocksFor() const;
  enum class LogitRows { kSampled, kAll, kNone };  // which tokens' logits the step needs
  ForwardBatch buildBatch(const StepInput& input, LogitRows rows);
  void markComputed(const StepInput& input);
  // Runs the batch through the backend and records its tokens as computed in the cache.
  void forward(const StepInput& input, const ForwardBatch& batch, ForwardOptions options);

  EngineOptions options_;
  ModelConfig config_;
  std::unique_ptr<LoadedWeights> weights_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<BlockManager> blocks_;
  std::unordered_map<int64_t, Sequence> seqs_;
};

}  // namespace mla
