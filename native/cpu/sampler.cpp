#include "cpu/sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cpu/simd.h"
#include "mla/philox.h"

namespace mla::cpu {

namespace {

// log(sum(exp(x))) over logits; `scratch` receives exp(x - max).
double logSumExp(const float* x, int n, std::vector<float>& scratch) {
  scratch.resize(static_cast<size_t>(n));
  const float m = simd::maxOf(x, n);
  return std::log(simd::expShifted(x, m, scratch.data(), n)) + m;
}

// Logits processors first: biases (logit_bias, bans), then the allowed-token mask (grammar).
void applyAdjust(const LogitAdjust& a, float* z, int vocab) {
  for (int i = 0; i < a.numBias; ++i) z[a.biasTokens[i]] += a.biasValues[i];
  if (!a.allowed) return;
  // A word at a time: grammar masks are mostly all-allowed or all-banned words.
  for (int w = 0; w * 32 < vocab; ++w) {
    const uint32_t bits = a.allowed[w];
    if (bits == 0xFFFFFFFFu) continue;
    const int end = std::min(vocab, w * 32 + 32);
    for (int t = w * 32; t < end; ++t) {
      if (!((bits >> (t & 31)) & 1u)) z[t] = -INFINITY;
    }
  }
}

void applyPenalties(const SampleRequest& req, float* z, int vocab) {
  const SamplingParams& p = *req.params;
  if (!req.penalties || !p.hasPenalties()) return;
  const PenaltyState& st = *req.penalties;
  auto repeat = [&](int32_t t) {
    if (t < 0 || t >= vocab) return;
    z[t] = z[t] > 0 ? z[t] / p.repetitionPenalty : z[t] * p.repetitionPenalty;
  };
  if (p.repetitionPenalty != 1.0f) {
    for (int32_t t : st.promptTokens) {
      if (!st.outputCounts.count(t)) repeat(t);
    }
    for (const auto& [t, count] : st.outputCounts) repeat(t);
  }
  for (const auto& [t, count] : st.outputCounts) {
    if (t < 0 || t >= vocab) continue;
    z[t] -= p.frequencyPenalty * static_cast<float>(count) + (count > 0 ? p.presencePenalty : 0.0f);
  }
}

int32_t argmax(const float* z, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i) {
    if (z[i] > z[best]) best = i;
  }
  return best;
}

// Orders token ids by a score, high first, ties by id: a total, deterministic order.
struct ByScore {
  const float* s;
  bool operator()(int32_t a, int32_t b) const { return s[a] > s[b] || (s[a] == s[b] && a < b); }
};

// Keeps the shortest prefix (in ByScore order) of `cand` whose weight reaches topP of the
// candidates' total. Weights are positive floats, whose bit patterns sort like their values, so a
// histogram over the top 11 bits finds the boundary bucket in one pass; only the candidates at or
// above it are sorted. O(V + k log k) for V candidates and a nucleus of about k.
void keepTopP(std::vector<int32_t>& cand, const float* weight, float topP) {
  constexpr int kShift = 20, kBuckets = 1 << (31 - kShift);
  auto bucketOf = [&](int32_t t) {
    uint32_t bits;
    std::memcpy(&bits, &weight[t], 4);
    return static_cast<int>(bits >> kShift);
  };
  std::vector<double> mass(kBuckets, 0.0);
  double total = 0;
  for (int32_t t : cand) {
    mass[static_cast<size_t>(bucketOf(t))] += weight[t];
    total += weight[t];
  }
  const double target = topP * total;
  int boundary = kBuckets - 1;
  for (double cum = 0; boundary > 0; --boundary) {
    cum += mass[static_cast<size_t>(boundary)];
    if (cum >= target) break;
  }
  std::vector<int32_t> kept;
  for (int32_t t : cand) {
    if (bucketOf(t) >= boundary) kept.push_back(t);
  }
  std::sort(kept.begin(), kept.end(), ByScore{weight});
  double cum = 0;
  for (size_t i = 0; i < kept.size(); ++i) {
    cum += weight[kept[i]];
    if (cum >= target) {
      kept.resize(i + 1);
      break;
    }
  }
  cand.swap(kept);
}

void topLogprobs(const float* logits, int vocab, double lse, int k, SampleResult& out, std::vector<int32_t>& ids) {
  out.topTokens.clear();
  out.topLogprobs.clear();
  if (k <= 0) return;
  k = std::min(k, vocab);
  ids.resize(static_cast<size_t>(vocab));
  for (int i = 0; i < vocab; ++i) ids[static_cast<size_t>(i)] = i;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), ByScore{logits});
  for (int i = 0; i < k; ++i) {
    out.topTokens.push_back(ids[static_cast<size_t>(i)]);
    out.topLogprobs.push_back(static_cast<float>(logits[ids[static_cast<size_t>(i)]] - lse));
  }
}

// Draws from the weights (unnormalized probabilities) of `cand` by the inverse CDF in token-id order
// (`cand` is sorted by id here), as the CUDA sampler does: the same seed picks the same token.
int32_t draw(std::vector<int32_t>& cand, const float* weight, double u) {
  std::sort(cand.begin(), cand.end());
  double total = 0;
  for (int32_t t : cand) total += weight[t];
  const double target = u * total;
  double cum = 0;
  for (int32_t t : cand) {
    cum += weight[t];
    if (target < cum) return t;
  }
  return cand.back();
}

}  // namespace

double uniformFromCounter(uint64_t seed, uint64_t counter) { return philoxUniform(seed, counter); }

void topLogprobsOf(const float* logits, int vocab, int k, int32_t* ids, float* logprobs) {
  std::vector<float> scratch;
  std::vector<int32_t> order;
  SampleResult r;
  topLogprobs(logits, vocab, logSumExp(logits, vocab, scratch), k, r, order);
  std::copy(r.topTokens.begin(), r.topTokens.end(), ids);
  std::copy(r.topLogprobs.begin(), r.topLogprobs.end(), logprobs);
}

float targetLogprob(const float* logits, int vocab, int32_t target) {
  std::vector<float> scratch;
  return static_cast<float>(logits[target] - logSumExp(logits, vocab, scratch));
}

void sampleRow(const float* logits, int vocab, const SampleRequest& req, int numTopLogprobs, SampleResult& out,
               SamplerScratch& scratch) {
  const SamplingParams& p = *req.params;
  std::vector<float>& z = scratch.adjusted;
  z.assign(logits, logits + vocab);
  applyAdjust(req.adjust, z.data(), vocab);
  applyPenalties(req, z.data(), vocab);

  int32_t token;
  if (p.temperature <= 1e-5f) {
    token = argmax(z.data(), vocab);
  } else {
    const float invT = 1.0f / p.temperature;
    for (float& v : z) v *= invT;
    // z becomes the unnormalized probabilities exp(z - zmax): the most likely token weighs 1.
    simd::expShifted(z.data(), simd::maxOf(z.data(), vocab), z.data(), vocab);
    std::vector<int32_t>& cand = scratch.candidates;
    cand.clear();
    for (int i = 0; i < vocab; ++i) {
      const float w = z[static_cast<size_t>(i)];
      if (w > 0.0f && w >= p.minP) cand.push_back(i);  // min-p: p >= min_p * p_max; masked tokens weigh 0
    }
    if (p.topK > 0 && static_cast<size_t>(p.topK) < cand.size()) {
      std::nth_element(cand.begin(), cand.begin() + p.topK - 1, cand.end(), ByScore{z.data()});
      cand.resize(static_cast<size_t>(p.topK));
      std::sort(cand.begin(), cand.end(), ByScore{z.data()});
    }
    if (p.topP < 1.0f) keepTopP(cand, z.data(), p.topP);
    token = draw(cand, z.data(), uniformFromCounter(p.seed, req.counter));
  }
  const double lse = logSumExp(logits, vocab, z);
  out.token = token;
  out.logprob = static_cast<float>(logits[token] - lse);
  topLogprobs(logits, vocab, lse, numTopLogprobs, out, scratch.candidates);
}

}  // namespace mla::cpu
