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

}  // namespace

CpuBackend::CpuBackend(const ModelConfig& config, const Weights& weights, int numThreads, DType cacheDtype)
    : config_(config), weights_(weights), pool_(numThreads), inverseFrequencies_(config.rope.inverseFrequencies()), cacheDtype_(cacheDtype) {
  check(cacheDtype == DType::kF32 || cacheDtype == DType::kBF16, "the CPU cache holds f32 or bf16 values");
  // Decode's weight order, measured on this CPU per column count (cpu/matmul.h): the LM head and
  // the first layer's matrices stand for every layer's.
  if (!weights.layers.empty()) {
    const LayerWeights& l = weights.layers[0];
    tuneWeightStreams(pool_, {weights.lmHead, l.q, l.k, l.v, l.qA, l.qB, l.kvA, l.kvB, l.kUp, l.vUp, l.o, l.gate, l.up, l.down});
  } else {
    tuneWeightStream(pool_, weights.lmHead);
  }
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

void CpuBackend::poisonBlock(int block) {
  const size_t blockValues = static_cast<size_t>(blockSize_) * config_.cacheEntrySize();
  for (int l = 0; l < config_.numLayers; ++l) {
    fillNaN(cache_.get() + (layerStride_ * l + blockValues * block) * dtypeSize(cacheDtype_), blockValues, cacheDtype_);
  }
}

PagedLayer CpuBackend::cacheLayer(int layer) {
  return PagedLayer{cache_.get() + layerStride_ * dtypeSize(cacheDtype_) * layer, blockSize_, config_.cacheEntrySize(), cacheDtype_};
}

// ---- DecoderOps: the model definition (model/decoder.h) runs these ----

namespace {
constexpr int kNumActs = static_cast<int>(Act::kFfn) + 1;
// kFfn is written over kGate (silu(gate) * up).
size_t slotOf(Act act) { return static_cast<size_t>(act == Act::kFfn ? Act::kGate : act); }
}  // namespace

float* CpuBackend::resize(Act act, int width) {
  Buffer& b = acts_[slotOf(act)];
  b.width = width;
  b.values.resize(static_cast<size_t>(batch_->numTokens) * width);
  return b.values.data();
}

float* CpuBackend::data(Act act) { return acts_[slotOf(act)].values.data(); }

void CpuBackend::forward(const ForwardBatch& batch, const ForwardOptions& options) {
  check(cache_ != nullptr, "cache not allocated");
  runDecoder(config_, *this, batch, options);
}

void CpuBackend::beginStep(const ForwardBatch& batch, const MlaPlan& plan) {
  batch_ = &batch;
  acts_.resize(kNumActs);
  numLogitRows_ = 0;
  // The two forms' sequences (the attention reads tokenIds, numTokens and seqs, not the logit rows).
  for (ForwardBatch* part : {&absorbed_, &expanded_}) {
    part->tokenIds = batch.tokenIds;
    part->numTokens = batch.numTokens;
    part->seqs.clear();
    part->logitRows.clear();
  }
  for (size_t i = 0; i < plan.absorbed.size(); ++i) (plan.absorbed[i] ? absorbed_ : expanded_).seqs.push_back(batch.seqs[i]);
}

const Matrix& CpuBackend::matrix(int layer, LayerMatrix m) const {
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  switch (m) {
    case LayerMatrix::kQ: return w.q;
    case LayerMatrix::kK: return w.k;
    case LayerMatrix::kV: return w.v;
    case LayerMatrix::kQA: return w.qA;
    case LayerMatrix::kQB: return w.qB;
    case LayerMatrix::kKvA: return w.kvA;
    case LayerMatrix::kO: return w.o;
    case LayerMatrix::kGate: return w.gate;
    case LayerMatrix::kUp: return w.up;
    case LayerMatrix::kDown: return w.down;
  }
  throw Error("unknown layer matrix");
}

const std::vector<float>& CpuBackend::bias(int layer, LayerMatrix m) const {
  static const std::vector<float> kNone;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  switch (m) {
    case LayerMatrix::kQ: case LayerMatrix::kQB: return w.qBias;  // q_proj's, or q_b_proj's (the query's last product)
    case LayerMatrix::kK: return w.kBias;
    case LayerMatrix::kV: return w.vBias;
    case LayerMatrix::kQA: return w.qABias;
    case LayerMatrix::kKvA: return w.kvABias;
    case LayerMatrix::kO: return w.oBias;
    default: return kNone;
  }
}

const std::vector<float>& CpuBackend::norm(int layer, LayerNorm n) const {
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  switch (n) {
    case LayerNorm::kInput: return w.inputNorm;
    case LayerNorm::kPostAttention: return w.postAttentionNorm;
    case LayerNorm::kQA: return w.qANorm;
    case LayerNorm::kKvA: return w.kvANorm;
  }
  throw Error("unknown layer norm");
}

bool CpuBackend::hasMatrix(int layer, LayerMatrix m) const { return !matrix(layer, m).empty(); }
bool CpuBackend::hasNorm(int layer, LayerNorm n) const { return !norm(layer, n).empty(); }

void CpuBackend::embed() { embedTokens(weights_.embed, batch_->tokenIds, batch_->numTokens, resize(Act::kX, config_.hiddenSize)); }

void CpuBackend::residualNorm(int layer, LayerNorm n, bool addDelta) {
  const int T = batch_->numTokens, hidden = config_.hiddenSize;
  float* x = data(Act::kX);
  if (addDelta) addInPlace(x, data(Act::kDelta), static_cast<size_t>(T) * hidden);
  rmsNorm(x, norm(layer, n).data(), T, hidden, config_.rmsNormEps, resize(Act::kH, hidden));
}

void CpuBackend::linear(int layer, Act in, std::initializer_list<Projection> outs) {
  for (const Projection& p : outs) {
    const Matrix& w = matrix(layer, p.weight);
    matmul(pool_, data(in), batch_->numTokens, w, orNull(bias(layer, p.weight)), resize(p.out, w.rows));
  }
}

void CpuBackend::queryLatentNorm(int layer) {
  const std::vector<float>& weight = norm(layer, LayerNorm::kQA);
  float* qa = data(Act::kQA);
  if (!weight.empty()) rmsNorm(qa, weight.data(), batch_->numTokens, config_.qLoraRank, kLatentNormEps, qa);
}

void CpuBackend::ropeCacheGqa(int layer) {
  const ModelConfig& c = config_;
  const int D = c.headDim, qDim = c.numHeads * D, kvDim = c.numKvHeads * D;
  float* q = data(Act::kQ);
  const float* k = data(Act::kK);
  const float* v = data(Act::kV);
  const PagedLayer cache = cacheLayer(layer);
  std::vector<float> e(static_cast<size_t>(2) * kvDim);  // a cache entry: [K heads | V heads]
  for (const SeqSlice& seq : batch_->seqs) {
    for (int i = 0; i < seq.numTokens; ++i) {
      const int row = seq.tokenOffset + i, pos = seq.start + i;
      for (int hd = 0; hd < c.numHeads; ++hd) applyRope(&q[static_cast<size_t>(row) * qDim + hd * D], pos, c.rope, inverseFrequencies_.data());
      std::copy_n(&k[static_cast<size_t>(row) * kvDim], kvDim, e.data());
      std::copy_n(&v[static_cast<size_t>(row) * kvDim], kvDim, e.data() + kvDim);
      for (int g = 0; g < c.numKvHeads; ++g) applyRope(e.data() + g * D, pos, c.rope, inverseFrequencies_.data());
      cache.write(seq.blockTable, pos, 0, e.data(), 2 * kvDim);
    }
  }
}

void CpuBackend::ropeCacheMla(int layer) {
  const ModelConfig& c = config_;
  const int L = c.kvLoraRank, R = c.qkRopeHeadDim, qHead = c.qkNopeHeadDim + R;
  float* q = data(Act::kQ);
  const float* kva = data(Act::kKvA);
  const std::vector<float>& kvNorm = norm(layer, LayerNorm::kKvA);
  const PagedLayer cache = cacheLayer(layer);
  std::vector<float> e(static_cast<size_t>(L + R));  // a cache entry: [c_kv | k_pe]
  for (const SeqSlice& seq : batch_->seqs) {
    for (int i = 0; i < seq.numTokens; ++i) {
      const int row = seq.tokenOffset + i, pos = seq.start + i;
      for (int hd = 0; hd < c.numHeads; ++hd) {
        applyRope(&q[(static_cast<size_t>(row) * c.numHeads + hd) * qHead + c.qkNopeHeadDim], pos, c.rope, inverseFrequencies_.data());
      }
      const float* src = &kva[static_cast<size_t>(row) * (L + R)];
      if (!kvNorm.empty()) rmsNorm(src, kvNorm.data(), 1, L, kLatentNormEps, e.data());
      else std::copy_n(src, L, e.data());
      std::copy_n(src + L, R, e.data() + L);
      applyRope(e.data() + L, pos, c.rope, inverseFrequencies_.data());
      cache.write(seq.blockTable, pos, 0, e.data(), L + R);
    }
  }
}

void CpuBackend::attentionGqa(int layer) {
  const ModelConfig& c = config_;
  const LayerWeights& w = weights_.layers[static_cast<size_t>(layer)];
  float* out = resize(Act::kAttn, c.numHeads * c.valueHeadDim());
  if (c.attention == AttentionKind::kLatentGqa) latentGqaAttention(pool_, c, *batch_, data(Act::kQ), w.kUp, w.vUp, cacheLayer(layer), out);
  else gqaAttention(pool_, c, *batch_, data(Act::kQ), cacheLayer(layer), out);
}

void CpuBackend::attentionMla(int layer) {
  // Both forms read the same q and write disjoint rows of attn.
  const ModelConfig& c = config_;
  const Matrix& kvB = weights_.layers[static_cast<size_t>(layer)].kvB;
  float* out = resize(Act::kAttn, c.numHeads * c.valueHeadDim());
  if (!absorbed_.seqs.empty()) mlaAbsorbedAttention(pool_, c, absorbed_, data(Act::kQ), kvB, cacheLayer(layer), out);
  if (!expanded_.seqs.empty()) mlaExpandedAttention(pool_, c, expanded_, data(Act::kQ), kvB, cacheLayer(layer), out);
}

void CpuBackend::siluMul() {
  const size_t n = static_cast<size_t>(batch_->numTokens) * config_.intermediateSize;
  float* gate = data(Act::kGate);
  cpu::siluMul(gate, data(Act::kUp), n, gate);
}

void CpuBackend::finalNorm() {
  const int hidden = config_.hiddenSize;
  float* x = data(Act::kX);
  addInPlace(x, data(Act::kDelta), static_cast<size_t>(batch_->numTokens) * hidden);
  numLogitRows_ = static_cast<int>(batch_->logitRows.size());
  finalHidden_.resize(static_cast<size_t>(numLogitRows_) * hidden);
  for (int r = 0; r < numLogitRows_; ++r) {
    const int row = batch_->logitRows[static_cast<size_t>(r)];
    rmsNorm(&x[static_cast<size_t>(row) * hidden], weights_.finalNorm.data(), 1, hidden, config_.rmsNormEps,
            &finalHidden_[static_cast<size_t>(r) * hidden]);
  }
}

void CpuBackend::observe(int layer, ObservePoint point, Act act, ActivationObserver& observer) {
  observer.observe(layer, point, data(act), batch_->numTokens, acts_[slotOf(act)].width);
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
