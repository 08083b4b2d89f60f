// Sampling, scoring and logits of the CUDA backend: logits in chunks of rows, then the kernels.
#include <algorithm>

#include "cuda/backend/cuda_backend.h"
#include "cuda/backend/workspace.h"
#include "cuda/kernels/sampling.cuh"

namespace mla::cuda {

namespace {
constexpr int kChunk = 64;  // logit rows at a time: bounds memory to 64 x vocab floats
}

struct SamplingHost {
  std::vector<SamplingParams> params;
  std::vector<int32_t> offsets{0}, tokens, counts;
  std::vector<uint64_t> counters;
  std::vector<int32_t> biasOffsets{0}, biasTokens, maskRow;
  std::vector<float> biasValues;
  std::vector<uint32_t> maskWords;

  void add(const SampleRequest& r, size_t words) {
    const LogitAdjust& a = r.adjust;
    biasTokens.insert(biasTokens.end(), a.biasTokens, a.biasTokens + a.numBias);
    biasValues.insert(biasValues.end(), a.biasValues, a.biasValues + a.numBias);
    biasOffsets.push_back(static_cast<int32_t>(biasTokens.size()));
    maskRow.push_back(a.allowed ? static_cast<int32_t>(maskWords.size() / words) : -1);
    if (a.allowed) maskWords.insert(maskWords.end(), a.allowed, a.allowed + words);
    const SamplingParams& p = *r.params;
    params.push_back(p);
    counters.push_back(r.counter);
    if (r.penalties && p.hasPenalties()) {
      // Unique tokens: every generated one with its count, and prompt tokens never generated (count 0).
      for (const auto& [t, n] : r.penalties->outputCounts) {
        tokens.push_back(t);
        counts.push_back(n);
      }
      if (p.repetitionPenalty != 1.0f) {
        for (int32_t t : r.penalties->promptTokens) {
          if (r.penalties->outputCounts.count(t)) continue;
          tokens.push_back(t);
          counts.push_back(0);
        }
      }
    }
    offsets.push_back(static_cast<int32_t>(tokens.size()));
  }
};

void CudaBackend::computeLogits(int first, int count) {
  const bf16* head = tiedHead_ ? embed_.get() : lmHead_.get();
  gemm_->linear(ws_->finalHidden.get() + static_cast<size_t>(first) * config_.hiddenSize, count, config_.hiddenSize, head, config_.vocabSize,
                ws_->logits.reserve(static_cast<size_t>(count) * config_.vocabSize), OutType::kF32, stream_);
}

void CudaBackend::sample(const std::vector<SampleRequest>& requests, int numTopLogprobs, std::vector<SampleResult>& results) {
  check(static_cast<int>(requests.size()) == numLogitRows_, "sample: one request per logit row is required");
  results.resize(requests.size());
  for (int first = 0; first < numLogitRows_; first += kChunk) {
    const int count = std::min(kChunk, numLogitRows_ - first);
    computeLogits(first, count);
    std::vector<SampleResult> chunk;
    sampleChunk(std::vector<SampleRequest>(requests.begin() + first, requests.begin() + first + count), 0, count, numTopLogprobs, chunk);
    std::move(chunk.begin(), chunk.end(), results.begin() + first);
  }
}

// Samples rows [0, count) of ws.logits (one chunk): requests[first + r] for row r.
void CudaBackend::sampleChunk(const std::vector<SampleRequest>& requests, int first, int count, int numTopLogprobs, std::vector<SampleResult>& results) {
  Workspace& w = *ws_;
  const int V = config_.vocabSize;
  results.resize(static_cast<size_t>(count));
  SamplingHost host;
  const size_t words = static_cast<size_t>(V + 31) / 32;
  for (int r = 0; r < count; ++r) host.add(requests[static_cast<size_t>(first + r)], words);
  SamplingKernelParams p;
  p.logits = w.logits.get();
  p.rows = count;
  p.vocab = V;
  p.params = w.sampling.upload(host.params, stream_);
  p.counter = w.counters.upload(host.counters, stream_);
  p.penaltyOffsets = w.penaltyOffsets.upload(host.offsets, stream_);
  p.penaltyTokens = w.penaltyTokens.upload(host.tokens.empty() ? std::vector<int32_t>{0} : host.tokens, stream_);
  p.penaltyCounts = w.penaltyCounts.upload(host.counts.empty() ? std::vector<int32_t>{0} : host.counts, stream_);
  p.biasOffsets = w.biasOffsets.upload(host.biasOffsets, stream_);
  p.biasTokens = w.biasTokens.upload(host.biasTokens.empty() ? std::vector<int32_t>{0} : host.biasTokens, stream_);
  p.biasValues = w.biasValues.upload(host.biasValues.empty() ? std::vector<float>{0} : host.biasValues, stream_);
  p.maskRow = w.maskRow.upload(host.maskRow, stream_);
  p.maskWords = w.maskWords.upload(host.maskWords.empty() ? std::vector<uint32_t>{0} : host.maskWords, stream_);
  p.numTopLogprobs = numTopLogprobs;
  p.scratch = w.scratch.reserve(static_cast<size_t>(count) * V);
  p.tokens = w.outTokens.reserve(static_cast<size_t>(count));
  p.logprobs = w.logprobs.reserve(static_cast<size_t>(count));
  p.topTokens = w.topTokens.reserve(static_cast<size_t>(std::max(1, count * numTopLogprobs)));
  p.topLogprobs = w.topLogprobs.reserve(static_cast<size_t>(std::max(1, count * numTopLogprobs)));
  sampleTokens(p, stream_);
  std::vector<int32_t> tokens(static_cast<size_t>(count)), topTokens(static_cast<size_t>(count) * numTopLogprobs);
  std::vector<float> logprobs(static_cast<size_t>(count)), topLogprobs(static_cast<size_t>(count) * numTopLogprobs);
  w.outTokens.download(tokens.data(), tokens.size(), stream_);
  w.logprobs.download(logprobs.data(), logprobs.size(), stream_);
  w.topTokens.download(topTokens.data(), topTokens.size(), stream_);
  w.topLogprobs.download(topLogprobs.data(), topLogprobs.size(), stream_);
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  for (int r = 0; r < count; ++r) {
    SampleResult& out = results[static_cast<size_t>(r)];
    out.token = tokens[static_cast<size_t>(r)];
    out.logprob = logprobs[static_cast<size_t>(r)];
    out.topTokens.assign(topTokens.begin() + r * numTopLogprobs, topTokens.begin() + (r + 1) * numTopLogprobs);
    out.topLogprobs.assign(topLogprobs.begin() + r * numTopLogprobs, topLogprobs.begin() + (r + 1) * numTopLogprobs);
  }
}

void CudaBackend::scoreTargets(const int32_t* targets, float* out, int numTop, int32_t* topIds, float* topLogprobs) {
  Workspace& w = *ws_;
  for (int first = 0; first < numLogitRows_; first += kChunk) {
    const int count = std::min(kChunk, numLogitRows_ - first);
    computeLogits(first, count);
    w.targets.upload(targets + first, static_cast<size_t>(count), stream_);
    targetLogprobs(w.logits.get(), w.targets.get(), count, config_.vocabSize, w.targetOut.reserve(static_cast<size_t>(count)), stream_);
    w.targetOut.download(out + first, static_cast<size_t>(count), stream_);
    if (numTop > 0) {
      // The sampling kernel's top log-probs, with greedy rows (the sampled token is not used).
      SamplingParams greedy;
      greedy.temperature = 0;
      std::vector<SampleRequest> requests(static_cast<size_t>(count), SampleRequest{&greedy, nullptr, 0, {}});
      std::vector<SampleResult> results;
      sampleChunk(requests, 0, count, numTop, results);
      for (int r = 0; r < count; ++r) {
        std::copy(results[static_cast<size_t>(r)].topTokens.begin(), results[static_cast<size_t>(r)].topTokens.end(), topIds + static_cast<size_t>(first + r) * numTop);
        std::copy(results[static_cast<size_t>(r)].topLogprobs.begin(), results[static_cast<size_t>(r)].topLogprobs.end(), topLogprobs + static_cast<size_t>(first + r) * numTop);
      }
    }
    MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
}

std::vector<float> CudaBackend::logits() {
  const size_t V = static_cast<size_t>(config_.vocabSize);
  std::vector<float> all(static_cast<size_t>(numLogitRows_) * V);
  for (int first = 0; first < numLogitRows_; first += kChunk) {
    const int count = std::min(kChunk, numLogitRows_ - first);
    computeLogits(first, count);
    ws_->logits.download(all.data() + static_cast<size_t>(first) * V, static_cast<size_t>(count) * V, stream_);
    MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  return all;
}

}  // namespace mla::cuda
