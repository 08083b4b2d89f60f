#include "cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/matmul.h"
#include "cpu/simd.h"

namespace mla::cpu {

namespace {

// A (token, head) work item of one batch.
struct TokenRef {
  int seq;  // index into batch.seqs
  int pos;  // absolute position of the token
  int row;  // row in the flat token arrays
};

std::vector<TokenRef> tokenRefs(const ForwardBatch& batch) {
  std::vector<TokenRef> refs;
  refs.reserve(static_cast<size_t>(batch.numTokens));
  for (int s = 0; s < static_cast<int>(batch.seqs.size()); ++s) {
    const SeqSlice& seq = batch.seqs[static_cast<size_t>(s)];
    for (int i = 0; i < seq.numTokens; ++i) refs.push_back({s, seq.start + i, seq.tokenOffset + i});
  }
  return refs;
}

// In place: scores[0..n) -> softmax probabilities.
void softmax(float* scores, int n) {
  const double sum = simd::expShifted(scores, simd::maxOf(scores, n), scores, n);
  const float inv = static_cast<float>(1.0 / sum);
  for (int t = 0; t < n; ++t) scores[t] *= inv;
}

using simd::axpy;
using simd::dot;

// First position a token at `pos` attends to (sliding-window models see only the last window).
int firstVisible(const ModelConfig& c, int pos) { return c.slidingWindow > 0 ? std::max(0, pos - c.slidingWindow + 1) : 0; }

// out[0..L) = Σ_i x[i] · W[firstRow + i, :] for i < count: a head's query folded into latent space.
void foldRows(const Matrix& w, int firstRow, int count, const float* x, float* row, float* out, int L) {
  std::fill(out, out + L, 0.0f);
  for (int i = 0; i < count; ++i) {
    loadRow(w, firstRow + i, row);
    axpy(x[i], row, out, L);
  }
}

// out[j] = W[firstRow + j, :] · latent for j < count: a head's latent-space output expanded.
void expandRows(const Matrix& w, int firstRow, int count, const float* latent, float* row, float* out, int L) {
  for (int j = 0; j < count; ++j) {
    loadRow(w, firstRow + j, row);
    out[j] = dot(row, latent, L);
  }
}

}  // namespace

void gqaAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                  const PagedLayer& cache, float* out) {
  const std::vector<TokenRef> refs = tokenRefs(batch);
  const int H = c.numHeads, D = c.headDim, group = c.numHeads / c.numKvHeads, kvDim = c.numKvHeads * c.headDim;
  pool.parallelFor(static_cast<int64_t>(refs.size()) * H, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const TokenRef& ref = refs[static_cast<size_t>(item / H)];
      const int h = static_cast<int>(item % H), g = h / group;
      const SeqSlice& seq = batch.seqs[static_cast<size_t>(ref.seq)];
      const int first = firstVisible(c, ref.pos);
      const int n = ref.pos + 1 - first;
      const float* qh = q + static_cast<size_t>(ref.row) * H * D + static_cast<size_t>(h) * D;
      scores.resize(static_cast<size_t>(n));
      for (int t = 0; t < n; ++t) {
        const float* k = cache.entry(seq.blockTable, first + t) + g * D;
        scores[static_cast<size_t>(t)] = dot(qh, k, D) * c.softmaxScale;
      }
      softmax(scores.data(), n);
      float* oh = out + static_cast<size_t>(ref.row) * H * D + static_cast<size_t>(h) * D;
      std::fill(oh, oh + D, 0.0f);
      for (int t = 0; t < n; ++t) {
        const float* v = cache.entry(seq.blockTable, first + t) + kvDim + g * D;
        axpy(scores[static_cast<size_t>(t)], v, oh, D);
      }
    }
  });
}

void latentGqaAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                        const Matrix& kUp, const Matrix& vUp, const PagedLayer& cache, float* out) {
  const std::vector<TokenRef> refs = tokenRefs(batch);
  const int H = c.numHeads, D = c.headDim, L = c.numKvHeads * c.headDim;
  pool.parallelFor(static_cast<int64_t>(refs.size()) * H, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, qLatent(static_cast<size_t>(L)), outLatent(static_cast<size_t>(L)), wRow(static_cast<size_t>(L));
    for (int64_t item = begin; item < end; ++item) {
      const TokenRef& ref = refs[static_cast<size_t>(item / H)];
      const int h = static_cast<int>(item % H);
      const SeqSlice& seq = batch.seqs[static_cast<size_t>(ref.seq)];
      const float* qh = q + static_cast<size_t>(ref.row) * H * D + static_cast<size_t>(h) * D;
      foldRows(kUp, h * D, D, qh, wRow.data(), qLatent.data(), L);  // q_latent = k_up_hᵀ q_h
      const int first = firstVisible(c, ref.pos);
      const int n = ref.pos + 1 - first;
      scores.resize(static_cast<size_t>(n));
      for (int t = 0; t < n; ++t) scores[static_cast<size_t>(t)] = dot(qLatent.data(), cache.entry(seq.blockTable, first + t), L) * c.softmaxScale;
      softmax(scores.data(), n);
      std::fill(outLatent.begin(), outLatent.end(), 0.0f);
      for (int t = 0; t < n; ++t) axpy(scores[static_cast<size_t>(t)], cache.entry(seq.blockTable, first + t) + L, outLatent.data(), L);
      float* oh = out + static_cast<size_t>(ref.row) * H * D + static_cast<size_t>(h) * D;
      expandRows(vUp, h * D, D, outLatent.data(), wRow.data(), oh, L);  // out_h = v_up_h · out_latent
    }
  });
}

void mlaAbsorbedAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                          const Matrix& kvB, const PagedLayer& cache, float* out) {
  const std::vector<TokenRef> refs = tokenRefs(batch);
  const int H = c.numHeads, N = c.qkNopeHeadDim, R = c.qkRopeHeadDim, V = c.vHeadDim, L = c.kvLoraRank;
  const int qHead = N + R, kvHead = N + V;
  pool.parallelFor(static_cast<int64_t>(refs.size()) * H, [&](int64_t begin, int64_t end) {
    std::vector<float> scores, qLatent(static_cast<size_t>(L)), outLatent(static_cast<size_t>(L)), wRow(static_cast<size_t>(L));
    for (int64_t item = begin; item < end; ++item) {
      const TokenRef& ref = refs[static_cast<size_t>(item / H)];
      const int h = static_cast<int>(item % H);
      const SeqSlice& seq = batch.seqs[static_cast<size_t>(ref.seq)];
      const float* qNope = q + static_cast<size_t>(ref.row) * H * qHead + static_cast<size_t>(h) * qHead;
      const float* qPe = qNope + N;
      // q_latent = W_UKᵀ q_nope: W_UK is rows [h*kvHead, h*kvHead + N) of kv_b_proj.
      foldRows(kvB, h * kvHead, N, qNope, wRow.data(), qLatent.data(), L);
      const int n = ref.pos + 1;
      scores.resize(static_cast<size_t>(n));
      for (int t = 0; t < n; ++t) {
        const float* e = cache.entry(seq.blockTable, t);  // [c_kv (L) | k_pe (R)]
        scores[static_cast<size_t>(t)] = (dot(qLatent.data(), e, L) + dot(qPe, e + L, R)) * c.softmaxScale;
      }
      softmax(scores.data(), n);
      std::fill(outLatent.begin(), outLatent.end(), 0.0f);
      for (int t = 0; t < n; ++t) axpy(scores[static_cast<size_t>(t)], cache.entry(seq.blockTable, t), outLatent.data(), L);
      // out = W_UV · out_latent: W_UV is rows [h*kvHead + N, h*kvHead + N + V).
      float* oh = out + static_cast<size_t>(ref.row) * H * V + static_cast<size_t>(h) * V;
      expandRows(kvB, h * kvHead + N, V, outLatent.data(), wRow.data(), oh, L);
    }
  });
}

void mlaExpandedAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                          const Matrix& kvB, const PagedLayer& cache, float* out) {
  const int H = c.numHeads, N = c.qkNopeHeadDim, R = c.qkRopeHeadDim, V = c.vHeadDim, L = c.kvLoraRank;
  const int qHead = N + R, kvHead = N + V;
  std::vector<float> latents, kv, scores;
  for (const SeqSlice& seq : batch.seqs) {
    const int context = seq.start + seq.numTokens;
    // Gather this sequence's latents [context, L] and expand them: kv [context, H*(N+V)].
    latents.resize(static_cast<size_t>(context) * L);
    for (int t = 0; t < context; ++t) std::copy_n(cache.entry(seq.blockTable, t), L, latents.data() + static_cast<size_t>(t) * L);
    kv.resize(static_cast<size_t>(context) * H * kvHead);
    matmul(pool, latents.data(), context, kvB, nullptr, kv.data());
    pool.parallelFor(static_cast<int64_t>(seq.numTokens) * H, [&](int64_t begin, int64_t end) {
      std::vector<float> s;
      for (int64_t item = begin; item < end; ++item) {
        const int i = static_cast<int>(item / H), h = static_cast<int>(item % H);
        const int row = seq.tokenOffset + i, pos = seq.start + i, n = pos + 1;
        const float* qh = q + static_cast<size_t>(row) * H * qHead + static_cast<size_t>(h) * qHead;
        s.resize(static_cast<size_t>(n));
        for (int t = 0; t < n; ++t) {
          const float* kNope = kv.data() + (static_cast<size_t>(t) * H + h) * kvHead;
          const float* kPe = cache.entry(seq.blockTable, t) + L;
          s[static_cast<size_t>(t)] = (dot(qh, kNope, N) + dot(qh + N, kPe, R)) * c.softmaxScale;
        }
        softmax(s.data(), n);
        float* oh = out + static_cast<size_t>(row) * H * V + static_cast<size_t>(h) * V;
        std::fill(oh, oh + V, 0.0f);
        for (int t = 0; t < n; ++t) axpy(s[static_cast<size_t>(t)], kv.data() + (static_cast<size_t>(t) * H + h) * kvHead + N, oh, V);
      }
    });
  }
}

}  // namespace mla::cpu
