#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "cpu/sampler.h"

namespace mla::cpu {

namespace {
constexpr int kLogitChunk = 32;  // logit rows computed at a time: bounds memory to 32 x vocab floats
constexpr float kLatentNormEps = 1e-6f;  // q_a_layernorm / kv_a_layernorm, as Hugging Face

const float* orNull(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// A workspace buffer holding `n` values: it keeps its largest allocation, so steps stop allocating
// (and faulting in fresh pages) once the largest step has run. Every value is written before read.
std::vector<float>& sized(std::vector<float>& buffer, size_t n) {
  buffer.resize(n);
  return buffer;
}
}  // namespace

CpuBackend::CpuBackend(const ModelConfig& config, const Weights& weights, int numThreads, DType cacheDtype)
    : config_(config), weights_(weights), pool_(numThreads), inverseFrequencies_(config.rope.inverseFrequencies()), cacheDtype_(cacheDtype) {
  check(cacheDtype == DType::kF32 || cacheDtype == DType::kBF16, "the CPU cache holds f32 or bf16 values");
}

namespace {
// Fills `count` cache values with NaN (what tests poison unused blocks with).
void fillNaN(unsigned char* p, size_t count, DType dtype) {
  if (dtype == DType::kBF16) std::fill_n(reinterpret_cast<uint16_t*>(p), count, static_cast<uint16_t>(0x7fc0));
  else std::fill_n(reinterpret_cast<float*>(p), count, std::numeric_limits<float>::quiet_NaN());
}
}  // namespace

void CpuBackend::allocateCache(int numBlocks, int blockSize, bool poison) {
  numBlocks_ = numBlocks;
  blockSize_ = blockSize;
  layerStride_ = static_cast<size_t>(numBlocks) * blockSize * config_.cacheEntrySize();
  const size_t total = layerStride_ * config_.numLayers;
  cache_.reset(new unsigned char[total * dtypeSize(cacheDtype_)]);  // left untouched: pages are committed as they are first written
  if (poison) fillNaN(cache_.get(), total, cacheDtype_);
}

void CpuBackend::copyBlock(int src, int dst) {
  const size_t blockBytes = static_cast<size_t>(blockSize_) * config_.cacheEntrySize() * dtypeSize(cacheDtype_);
  for (int l = 0; l < config_.numLayers; ++l) {
    unsigned char* base = cache_.get() + layerStride_ * dtypeSize(cacheDtype_) * l;
    std::memcpy(base + blockBytes * dst, base + blockBytes * src, blockBytes);
  }
}

void CpuBackend::poisonBlock(int block) {
  const size_t blockValues = static_cast<size_t>(blockSize_) * config_.cacheEntrySize();
  for (int l = 0; l < config_.numLayers; ++l) {
    fillNaN(cache_.get() + (layerStride_ * l + blockValues * block) * dtypeSize(cacheDtype_), blockValues, cacheDtype_);
  }
}

PagedLayer CpuBackend::cacheLayer(int layer) {
  return PagedLayer{cache_.get() + layerStride_ * dtypeSize(cacheDtype_) * layer, blockSize_, config_.cacheEntrySize(), cacheDtype_};
}

void CpuBackend::gqaLayer(int layer, const ForwardBatch& batch, const float* h, float* out, ActivationObserver* observer) {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int T = batch.numTokens, D = c.headDim, qDim = c.numHeads * D, kvDim = c.numKvHeads * D;
  std::vector<float>& q = sized(ws_.q, static_cast<size_t>(T) * qDim);
  std::vector<float>& k = sized(ws_.k, static_cast<size_t>(T) * kvDim);
  std::vector<float>& v = sized(ws_.v, static_cast<size_t>(T) * kvDim);
  matmul(pool_, h, T, w.q, orNull(w.qBias), q.data());
  matmul(pool_, h, T, w.k, orNull(w.kBias), k.data());
  matmul(pool_, h, T, w.v, orNull(w.vBias), v.data());
  if (observer) {
    observer->observe(layer, ObservePoint::kQ, q.data(), T, qDim);
    observer->observe(layer, ObservePoint::kK, k.data(), T, kvDim);
    observer->observe(layer, ObservePoint::kV, v.data(), T, kvDim);
  }
  const PagedLayer cache = cacheLayer(layer);
  std::vector<float> e(static_cast<size_t>(2) * kvDim);  // a cache entry: [K heads | V heads]
  for (const SeqSlice& seq : batch.seqs) {
    for (int i = 0; i < seq.numTokens; ++i) {
      const int row = seq.tokenOffset + i, pos = seq.start + i;
      for (int hd = 0; hd < c.numHeads; ++hd) applyRope(&q[static_cast<size_t>(row) * qDim + hd * D], pos, c.rope, inverseFrequencies_.data());
      std::copy_n(&k[static_cast<size_t>(row) * kvDim], kvDim, e.data());
      std::copy_n(&v[static_cast<size_t>(row) * kvDim], kvDim, e.data() + kvDim);
      for (int g = 0; g < c.numKvHeads; ++g) applyRope(e.data() + g * D, pos, c.rope, inverseFrequencies_.data());
      cache.write(seq.blockTable, pos, 0, e.data(), 2 * kvDim);
    }
  }
  if (c.attention == AttentionKind::kLatentGqa) latentGqaAttention(pool_, c, batch, q.data(), w.kUp, w.vUp, cache, out);
  else gqaAttention(pool_, c, batch, q.data(), cache, out);
}

void CpuBackend::mlaLayer(int layer, const ForwardBatch& batch, const float* h, float* out, MlaPath path,
                          ActivationObserver* observer) {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const int T = batch.numTokens, L = c.kvLoraRank, R = c.qkRopeHeadDim, qHead = c.qkNopeHeadDim + R;
  std::vector<float>& q = sized(ws_.q, static_cast<size_t>(T) * c.numHeads * qHead);
  std::vector<float>& kva = sized(ws_.k, static_cast<size_t>(T) * (L + R));
  if (!w.qA.empty()) {
    std::vector<float>& qa = sized(ws_.v, static_cast<size_t>(T) * c.qLoraRank);
    matmul(pool_, h, T, w.qA, orNull(w.qABias), qa.data());
    if (observer) observer->observe(layer, ObservePoint::kQA, qa.data(), T, c.qLoraRank);
    if (!w.qANorm.empty()) rmsNorm(qa.data(), w.qANorm.data(), T, c.qLoraRank, kLatentNormEps, qa.data());
    matmul(pool_, qa.data(), T, w.qB, orNull(w.qBias), q.data());
  } else {
    matmul(pool_, h, T, w.q, orNull(w.qBias), q.data());
  }
  matmul(pool_, h, T, w.kvA, orNull(w.kvABias), kva.data());
  if (observer) {
    observer->observe(layer, ObservePoint::kQ, q.data(), T, c.numHeads * qHead);
    observer->observe(layer, ObservePoint::kKvA, kva.data(), T, L + R);
  }
  const PagedLayer cache = cacheLayer(layer);
  std::vector<float> e(static_cast<size_t>(L + R));  // a cache entry: [c_kv | k_pe]
  for (const SeqSlice& seq : batch.seqs) {
    for (int i = 0; i < seq.numTokens; ++i) {
      const int row = seq.tokenOffset + i, pos = seq.start + i;
      for (int hd = 0; hd < c.numHeads; ++hd) {
        applyRope(&q[(static_cast<size_t>(row) * c.numHeads + hd) * qHead + c.qkNopeHeadDim], pos, c.rope, inverseFrequencies_.data());
      }
      const float* src = &kva[static_cast<size_t>(row) * (L + R)];
      if (!w.kvANorm.empty()) rmsNorm(src, w.kvANorm.data(), 1, L, kLatentNormEps, e.data());
      else std::copy_n(src, L, e.data());
      std::copy_n(src + L, R, e.data() + L);
      applyRope(e.data() + L, pos, c.rope, inverseFrequencies_.data());
      cache.write(seq.blockTable, pos, 0, e.data(), L + R);
    }
  }
  // Split the batch by attention form; both read the same q and write disjoint rows of out.
  ForwardBatch absorbed = batch, expanded = batch;
  absorbed.seqs.clear();
  expanded.seqs.clear();
  for (const SeqSlice& seq : batch.seqs) {
    (useAbsorbed(path, c, seq.numTokens, seq.start + seq.numTokens) ? absorbed : expanded).seqs.push_back(seq);
  }
  if (!absorbed.seqs.empty()) mlaAbsorbedAttention(pool_, c, absorbed, q.data(), w.kvB, cache, out);
  if (!expanded.seqs.empty()) mlaExpandedAttention(pool_, c, expanded, q.data(), w.kvB, cache, out);
}

void CpuBackend::mlpLayer(int layer, int T, const float* h, float* out) {
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  const size_t ffn = static_cast<size_t>(config_.intermediateSize);
  std::vector<float>& gate = sized(ws_.gate, T * ffn);
  std::vector<float>& up = sized(ws_.up, T * ffn);
  matmul(pool_, h, T, w.gate, nullptr, gate.data());
  matmul(pool_, h, T, w.up, nullptr, up.data());
  siluMul(gate.data(), up.data(), gate.size(), gate.data());
  matmul(pool_, gate.data(), T, w.down, nullptr, out);
}

void CpuBackend::forward(const ForwardBatch& batch, const ForwardOptions& options) {
  const ModelConfig& c = config_;
  ActivationObserver* observer = options.observer;
  const int lastLayer = options.lastLayer < 0 ? c.numLayers - 1 : std::min(options.lastLayer, c.numLayers - 1);
  check(cache_ != nullptr, "cache not allocated");
  const int T = batch.numTokens, hidden = c.hiddenSize;
  const size_t attnWidth = static_cast<size_t>(c.numHeads) * c.valueHeadDim();
  std::vector<float>& x = sized(ws_.x, static_cast<size_t>(T) * hidden);
  std::vector<float>& h = sized(ws_.h, x.size());
  std::vector<float>& attn = sized(ws_.attn, T * attnWidth);
  std::vector<float>& delta = sized(ws_.delta, x.size());
  embedTokens(weights_.embed, batch.tokenIds, T, x.data());
  for (int l = 0; l <= lastLayer; ++l) {
    const LayerWeights& w = weights_.layers[static_cast<size_t>(l)];
    rmsNorm(x.data(), w.inputNorm.data(), T, hidden, c.rmsNormEps, h.data());
    if (observer) observer->observe(l, ObservePoint::kAttnNorm, h.data(), T, hidden);
    if (l == lastLayer && options.stopAtAttentionInput) break;
    if (c.isMla()) mlaLayer(l, batch, h.data(), attn.data(), options.mlaPath, observer);
    else gqaLayer(l, batch, h.data(), attn.data(), observer);
    if (observer) observer->observe(l, ObservePoint::kAttnOut, attn.data(), T, static_cast<int>(attnWidth));
    matmul(pool_, attn.data(), T, w.o, orNull(w.oBias), delta.data());
    addInPlace(x.data(), delta.data(), x.size());
    rmsNorm(x.data(), w.postAttentionNorm.data(), T, hidden, c.rmsNormEps, h.data());
    if (observer) observer->observe(l, ObservePoint::kMlpNorm, h.data(), T, hidden);
    mlpLayer(l, T, h.data(), delta.data());
    addInPlace(x.data(), delta.data(), x.size());
  }
  numLogitRows_ = lastLayer == c.numLayers - 1 ? static_cast<int>(batch.logitRows.size()) : 0;
  finalHidden_.resize(static_cast<size_t>(numLogitRows_) * hidden);
  for (int r = 0; r < numLogitRows_; ++r) {
    const int row = batch.logitRows[static_cast<size_t>(r)];
    rmsNorm(&x[static_cast<size_t>(row) * hidden], weights_.finalNorm.data(), 1, hidden, c.rmsNormEps,
            &finalHidden_[static_cast<size_t>(r) * hidden]);
  }
}

void CpuBackend::forEachLogitChunk(const std::function<void(int first, int count)>& fn) {
  for (int first = 0; first < numLogitRows_; first += kLogitChunk) {
    const int count = std::min(kLogitChunk, numLogitRows_ - first);
    logitsChunk_.resize(static_cast<size_t>(count) * config_.vocabSize);
    matmul(pool_, &finalHidden_[static_cast<size_t>(first) * config_.hiddenSize], count, weights_.lmHead, nullptr,
           logitsChunk_.data());
    fn(first, count);
  }
}

void CpuBackend::sample(const std::vector<SampleRequest>& requests, int numTopLogprobs, std::vector<SampleResult>& results) {
  check(static_cast<int>(requests.size()) == numLogitRows_, "sample: one request per logit row is required");
  results.resize(requests.size());
  const int V = config_.vocabSize;
  forEachLogitChunk([&](int first, int count) {
    pool_.parallelFor(count, [&](int64_t begin, int64_t end) {
      SamplerScratch scratch;
      for (int64_t r = begin; r < end; ++r) {
        sampleRow(&logitsChunk_[static_cast<size_t>(r) * V], V, requests[static_cast<size_t>(first + r)], numTopLogprobs,
                  results[static_cast<size_t>(first + r)], scratch);
      }
    });
  });
}

void CpuBackend::scoreTargets(const int32_t* targets, float* out, int numTop, int32_t* topIds, float* topLogprobs) {
  const int V = config_.vocabSize;
  forEachLogitChunk([&](int first, int count) {
    pool_.parallelFor(count, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* row = &logitsChunk_[static_cast<size_t>(r) * V];
        out[first + r] = targetLogprob(row, V, targets[first + r]);
        if (numTop > 0) topLogprobsOf(row, V, numTop, topIds + (first + r) * numTop, topLogprobs + (first + r) * numTop);
      }
    });
  });
}

std::vector<float> CpuBackend::logits() {
  std::vector<float> all(static_cast<size_t>(numLogitRows_) * config_.vocabSize);
  forEachLogitChunk([&](int first, int) {
    std::copy(logitsChunk_.begin(), logitsChunk_.end(), all.begin() + static_cast<long>(first) * config_.vocabSize);
  });
  return all;
}

}  // namespace mla::cpu
