#include "engine/engine.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/safetensors.h"
#include "engine/backends.h"

namespace mla {

namespace {

ModelConfig loadConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  if (!isDirectory(dir)) throw Error("model folder not found: " + dir);
  if (!fileExists(path)) throw Error("model folder has no config.json: " + dir);
  return parseModelConfig(readTextFile(path));
}

}  // namespace

int64_t Engine::bytesPerBlock() const {
  return static_cast<int64_t>(config_.numLayers) * options_.blockSize * config_.cacheEntrySize() * backend_->cacheBytesPerValue();
}

int Engine::numBlocksFor() const {
  if (options_.numBlocks > 0) return options_.numBlocks;
  const int64_t gpuBudget = backend_->cacheMemoryBudget(options_.gpuMemoryUtilization);
  const int64_t budget = gpuBudget >= 0 ? gpuBudget : options_.cacheBytes;
  const int64_t n = budget / bytesPerBlock();
  if (n < 1) {
    throw Error("the cache memory (" + std::to_string(budget) + " bytes) holds no block of " + std::to_string(bytesPerBlock()) +
                " bytes" + (gpuBudget >= 0 ? ": raise --gpu-memory-utilization" : ": raise --kv-cache-memory"));
  }
  return static_cast<int>(std::min<int64_t>(n, 1 << 30));
}

std::unique_ptr<Engine> Engine::create(const EngineOptions& options) {
  check(options.blockSize > 0, "blockSize must be positive");
  ModelConfig config = loadConfig(options.modelDir);
  auto engine = std::unique_ptr<Engine>(new Engine(options, std::move(config)));
  // The CPU backend streams the weights from host memory at every step: read them into huge pages.
  // A CUDA backend copies them to the device: map them (the kernel may drop those pages).
  const FileAccess access = options.device == "cpu" ? FileAccess::kResident : FileAccess::kMapped;
  engine->weights_ = LoadedWeights::load(options.modelDir, engine->config_, access);
  engine->backend_ = makeBackend(options, engine->config_, engine->weights_->weights());
  engine->blocks_ = std::make_unique<BlockManager>(engine->numBlocksFor(), options.blockSize, options.enablePrefixCaching);
  engine->backend_->allocateCache(engine->blocks_->numBlocks(), options.blockSize, options.poisonCache);
  return engine;
}

std::optional<int> Engine::addSequence(int64_t seqId, const int32_t* tokens, int numTokens, int numPromptTokens, bool usePrefixHits) {
  check(!seqs_.count(seqId), "sequence " + std::to_string(seqId) + " already exists");
  check(numPromptTokens >= 0 && numPromptTokens <= numTokens, "numPromptTokens must be within [0, numTokens]");
  for (int i = 0; i < numTokens; ++i) {
    check(tokens[i] >= 0 && tokens[i] < config_.vocabSize,
          "token id " + std::to_string(tokens[i]) + " is outside the vocabulary [0, " + std::to_string(config_.vocabSize) + ")");
  }
  auto cached = blocks_->allocate(seqId, tokens, numTokens, usePrefixHits);
  if (!cached) return std::nullopt;
  Sequence seq;
  seq.numOutputTokens = static_cast<uint64_t>(numTokens - numPromptTokens);
  std::vector<int32_t>& prompt = seq.penalties.promptTokens;
  prompt.assign(tokens, tokens + numPromptTokens);
  std::sort(prompt.begin(), prompt.end());
  prompt.erase(std::unique(prompt.begin(), prompt.end()), prompt.end());
  for (int i = numPromptTokens; i < numTokens; ++i) ++seq.penalties.outputCounts[tokens[i]];
  seqs_[seqId] = std::move(seq);
  return cached;
}

bool Engine::ensureCapacity(int64_t seqId, int numTokens) {
  check(seqs_.count(seqId), "unknown sequence " + std::to_string(seqId));
  return blocks_->ensureCapacity(seqId, numTokens);
}

void Engine::freeSequence(int64_t seqId) {
  check(seqs_.count(seqId), "unknown sequence " + std::to_string(seqId));
  for (int b : blocks_->free(seqId)) {
    if (options_.poisonCache) backend_->poisonBlock(b);
  }
  seqs_.erase(seqId);
}

ForwardBatch Engine::buildBatch(const StepInput& in, LogitRows rows) {
  const size_t B = in.seqIds.size();
  check(in.startPositions.size() == B && in.numTokens.size() == B, "step: seqIds, startPositions and numTokens differ in length");
  check(rows != LogitRows::kSampled || in.sampleMask.size() == B, "step: sampleMask must have one entry per sequence");
  ForwardBatch batch;
  batch.tokenIds = in.tokenIds.data();
  int offset = 0;
  for (size_t i = 0; i < B; ++i) {
    const int64_t id = in.seqIds[i];
    check(seqs_.count(id), "step: unknown sequence " + std::to_string(id));
    for (size_t j = 0; j < i; ++j) check(in.seqIds[j] != id, "step: sequence " + std::to_string(id) + " appears twice");
    const int computed = blocks_->numComputedTokens(id);
    check(in.startPositions[i] == computed, "step: sequence " + std::to_string(id) + " starts at " +
                                                std::to_string(in.startPositions[i]) + " but has " + std::to_string(computed) +
                                                " computed tokens");
    check(in.numTokens[i] > 0, "step: every sequence needs at least one new token");
    const auto& table = blocks_->blockTable(id);
    const int end = computed + in.numTokens[i];
    check(end <= static_cast<int>(table.size()) * blocks_->blockSize(),
          "step: sequence " + std::to_string(id) + " needs cache for " + std::to_string(end) + " tokens but holds " +
              std::to_string(table.size() * static_cast<size_t>(blocks_->blockSize())));
    SeqSlice s;
    s.start = computed;
    s.numTokens = in.numTokens[i];
    s.tokenOffset = offset;
    s.blockTable = table.data();
    s.numBlocks = static_cast<int>(table.size());
    batch.seqs.push_back(s);
    if (rows == LogitRows::kAll) {
      for (int t = 0; t < s.numTokens; ++t) batch.logitRows.push_back(offset + t);
    } else if (rows == LogitRows::kSampled && in.sampleMask[i]) {
      batch.logitRows.push_back(offset + s.numTokens - 1);
    }
    offset += s.numTokens;
  }
  check(offset == static_cast<int>(in.tokenIds.size()), "step: tokenIds has " + std::to_string(in.tokenIds.size()) +
                                                             " entries but numTokens sums to " + std::to_string(offset));
  for (int32_t t : in.tokenIds) {
    check(t >= 0 && t < config_.vocabSize, "step: token id " + std::to_string(t) + " is outside the vocabulary");
  }
  batch.numTokens = offset;
  return batch;
}

void Engine::markComputed(const StepInput& in) {
  int offset = 0;
  for (size_t i = 0; i < in.seqIds.size(); ++i) {
    blocks_->markComputed(in.seqIds[i], in.tokenIds.data() + offset, in.numTokens[i]);
    offset += in.numTokens[i];
  }
}

void Engine::forward(const StepInput& in, const ForwardBatch& batch, ForwardOptions options) {
  options.mlaPath = options_.mlaPath;
  backend_->forward(batch, options);
  markComputed(in);
}

// The logits processors' arrays fit the vocabulary (sizes against the sampled rows are checked in napi).
static void checkAdjustments(const StepInput& in, int vocab) {
  const size_t words = static_cast<size_t>(vocab + 31) / 32;
  check(in.maskWords.size() % words == 0, "step: logit masks must be whole rows of ceil(vocab / 32) words");
  const int64_t masks = static_cast<int64_t>(in.maskWords.size() / words);
  for (int32_t r : in.maskRow) check(r >= -1 && r < masks, "step: a logit mask row index is out of range");
  for (int32_t t : in.biasTokens) check(t >= 0 && t < vocab, "step: logit bias token " + std::to_string(t) + " is outside the vocabulary");
  for (float v : in.biasValues) check(!std::isnan(v) && v != INFINITY, "step: logit bias values must be finite or -inf");
}

std::vector<SampleResult> Engine::step(const StepInput& in, std::vector<float>* logitsOut) {
  checkAdjustments(in, config_.vocabSize);
  const size_t rows = static_cast<size_t>(std::count_if(in.sampleMask.begin(), in.sampleMask.end(), [](uint8_t m) { return m != 0; }));
  check(in.sampling.size() == rows, "step: sampling must have one entry per sampled row");
  forward(in, buildBatch(in, LogitRows::kSampled), ForwardOptions{});
  std::vector<SampleRequest> requests;
  std::vector<Sequence*> sampled;
  for (size_t i = 0; i < in.seqIds.size(); ++i) {
    if (!in.sampleMask[i]) continue;
    Sequence& seq = seqs_.at(in.seqIds[i]);
    const size_t r = requests.size(), words = static_cast<size_t>(config_.vocabSize + 31) / 32;
    SampleRequest req{&in.sampling[r], &seq.penalties, seq.numOutputTokens, {}};
    if (!in.maskRow.empty() && in.maskRow[r] >= 0) req.adjust.allowed = in.maskWords.data() + static_cast<size_t>(in.maskRow[r]) * words;
    if (!in.biasOffsets.empty()) {
      req.adjust.biasTokens = in.biasTokens.data() + in.biasOffsets[r];
      req.adjust.biasValues = in.biasValues.data() + in.biasOffsets[r];
      req.adjust.numBias = in.biasOffsets[r + 1] - in.biasOffsets[r];
    }
    requests.push_back(req);
    sampled.push_back(&seq);
  }
  std::vector<SampleResult> results;
  if (logitsOut) *logitsOut = backend_->logits();
  backend_->sample(requests, in.numTopLogprobs, results);
  for (size_t r = 0; r < results.size(); ++r) {
    ++sampled[r]->numOutputTokens;
    ++sampled[r]->penalties.outputCounts[results[r].token];
  }
  backend_->endOfStep();
  return results;
}

Engine::Scores Engine::score(const StepInput& in, const int32_t* targets, int numTop) {
  check(numTop >= 0 && numTop <= 20, "score: numTop must be within [0, 20]");
  ForwardBatch batch = buildBatch(in, LogitRows::kAll);
  for (int i = 0; i < batch.numTokens; ++i) {
    check(targets[i] >= 0 && targets[i] < config_.vocabSize, "score: target id " + std::to_string(targets[i]) + " is outside the vocabulary");
  }
  forward(in, batch, ForwardOptions{});
  Scores out;
  const size_t n = static_cast<size_t>(batch.numTokens);
  out.logprobs.resize(n);
  out.topIds.resize(n * static_cast<size_t>(numTop));
  out.topLogprobs.resize(n * static_cast<size_t>(numTop));
  backend_->scoreTargets(targets, out.logprobs.data(), numTop, out.topIds.data(), out.topLogprobs.data());
  backend_->endOfStep();
  return out;
}

void Engine::calibrate(const StepInput& in, ActivationObserver& observer, int lastLayer, bool stopAtAttentionInput) {
  ForwardOptions fo;
  fo.observer = &observer;
  fo.lastLayer = lastLayer;
  fo.stopAtAttentionInput = stopAtAttentionInput;
  forward(in, buildBatch(in, LogitRows::kNone), fo);
}

}  // namespace mla
