#include "cpu/attention.h"

#include <algorithm>
#include <vector>

#include "cpu/matmul.h"
#include "cpu/simd.h"

namespace mla::cpu {

namespace {

std::vector<PagedQuery> queriesOf(const ForwardBatch& batch) {
  std::vector<PagedQuery> queries;
  for (const SeqSlice& s : batch.seqs) queries.push_back({s.blockTable, s.start, s.numTokens, s.tokenOffset});
  return queries;
}

// The rows of the flat token arrays that the batch's sequences own.
std::vector<int> rowsOf(const ForwardBatch& batch) {
  std::vector<int> rows;
  for (const SeqSlice& s : batch.seqs)
    for (int i = 0; i < s.numTokens; ++i) rows.push_back(s.tokenOffset + i);
  return rows;
}

// Where a [rows][heads][width] tensor keeps (row, head): row * rowStride + head * headStride.
struct HeadRows {
  float* data;
  int rowStride, headStride;
  float* at(int row, int head) const { return data + static_cast<size_t>(row) * rowStride + static_cast<size_t>(head) * headStride; }
};

// A head's query folded into latent space, for every head and row at once, so each weight row is
// read once per step: out(row, h)[0..w.cols) = Σ_{i < count} in(row, h)[i] · W[h * headRows + first + i, :].
void foldHeads(ThreadPool& pool, const Matrix& w, int numHeads, int headRows, int first, int count,
               const std::vector<int>& rows, HeadRows in, HeadRows out) {
  const int L = w.cols;
  pool.parallelFor(numHeads, [&](int64_t h0, int64_t h1) {
    std::vector<float> wRow(static_cast<size_t>(L));
    for (int h = static_cast<int>(h0); h < h1; ++h) {
      for (int row : rows) std::fill(out.at(row, h), out.at(row, h) + L, 0.0f);
      for (int i = 0; i < count; ++i) {
        loadRow(w, h * headRows + first + i, wRow.data());
        for (int row : rows) simd::axpy(in.at(row, h)[i], wRow.data(), out.at(row, h), L);
      }
    }
  });
}

// A head's latent-space result expanded: out(row, h)[j] = W[h * headRows + first + j, :] · in(row, h)
// for j < count.
void expandHeads(ThreadPool& pool, const Matrix& w, int numHeads, int headRows, int first, int count,
                 const std::vector<int>& rows, HeadRows in, HeadRows out) {
  const int L = w.cols;
  pool.parallelFor(numHeads, [&](int64_t h0, int64_t h1) {
    std::vector<float> wRow(static_cast<size_t>(L));
    for (int h = static_cast<int>(h0); h < h1; ++h) {
      for (int j = 0; j < count; ++j) {
        loadRow(w, h * headRows + first + j, wRow.data());
        for (int row : rows) out.at(row, h)[j] = simd::dot(wRow.data(), in.at(row, h), L);
      }
    }
  });
}

}  // namespace

void gqaAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                  const PagedLayer& cache, float* out) {
  HeadLayout layout;
  layout.numHeads = c.numHeads;
  layout.headsPerKv = c.numHeads / c.numKvHeads;
  layout.kBase = 0;
  layout.vBase = c.numKvHeads * c.headDim;  // an entry is [K heads | V heads]
  layout.kvStride = c.headDim;
  layout.dk = layout.dv = c.headDim;
  layout.scale = c.softmaxScale;
  layout.window = c.slidingWindow;
  pagedAttention(pool, cache, layout, queriesOf(batch), q, out);
}

void latentGqaAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                        const Matrix& kUp, const Matrix& vUp, const PagedLayer& cache, float* out) {
  const int H = c.numHeads, D = c.headDim, L = c.numKvHeads * c.headDim;
  const std::vector<int> rows = rowsOf(batch);
  std::vector<float> qLatent(static_cast<size_t>(batch.numTokens) * H * L), outLatent(qLatent.size());
  // q_latent = k_up_hᵀ q_h: k_up's rows [h*D, h*D + D).
  foldHeads(pool, kUp, H, D, 0, D, rows, {const_cast<float*>(q), H * D, D}, {qLatent.data(), H * L, L});
  HeadLayout layout;  // one latent "head" [k_latent | v_latent] that every query head reads
  layout.numHeads = H;
  layout.headsPerKv = H;
  layout.vBase = L;
  layout.dk = layout.dv = L;
  layout.scale = c.softmaxScale;
  layout.window = c.slidingWindow;
  pagedAttention(pool, cache, layout, queriesOf(batch), qLatent.data(), outLatent.data());
  expandHeads(pool, vUp, H, D, 0, D, rows, {outLatent.data(), H * L, L}, {out, H * D, D});  // out_h = v_up_h · out_latent
}

void mlaAbsorbedAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                          const Matrix& kvB, const PagedLayer& cache, float* out) {
  const int H = c.numHeads, N = c.qkNopeHeadDim, R = c.qkRopeHeadDim, V = c.vHeadDim, L = c.kvLoraRank;
  const int qHead = N + R, kvHead = N + V, E = L + R;
  const std::vector<int> rows = rowsOf(batch);
  // qc [T][H][L + R] = [W_UKᵀ q_nope | q_pe]: W_UK is rows [h*kvHead, h*kvHead + N) of kv_b_proj.
  std::vector<float> qc(static_cast<size_t>(batch.numTokens) * H * E), outLatent(static_cast<size_t>(batch.numTokens) * H * L);
  const HeadRows qIn{const_cast<float*>(q), H * qHead, qHead}, qLatent{qc.data(), H * E, E};
  foldHeads(pool, kvB, H, kvHead, 0, N, rows, qIn, qLatent);
  for (int row : rows)
    for (int h = 0; h < H; ++h) std::copy_n(qIn.at(row, h) + N, R, qLatent.at(row, h) + L);
  HeadLayout layout;  // every head against the whole cached entry [c_kv | k_pe]; values are c_kv
  layout.numHeads = H;
  layout.headsPerKv = H;
  layout.dk = E;
  layout.dv = L;
  layout.scale = c.softmaxScale;
  pagedAttention(pool, cache, layout, queriesOf(batch), qc.data(), outLatent.data());
  // out = W_UV · out_latent: W_UV is rows [h*kvHead + N, h*kvHead + N + V).
  expandHeads(pool, kvB, H, kvHead, N, V, rows, {outLatent.data(), H * L, L}, {out, H * V, V});
}

void mlaExpandedAttention(ThreadPool& pool, const ModelConfig& c, const ForwardBatch& batch, const float* q,
                          const Matrix& kvB, const PagedLayer& cache, float* out) {
  const int H = c.numHeads, N = c.qkNopeHeadDim, R = c.qkRopeHeadDim, V = c.vHeadDim, L = c.kvLoraRank;
  const int kvHead = N + V, entry = H * (N + R + V), bs = cache.blockSize;
  // An expanded cache: per position, per head [k_nope | k_pe | v], in blocks laid end to end.
  std::vector<int32_t> tables;
  std::vector<int> firstBlock;
  int blocks = 0;
  for (const SeqSlice& seq : batch.seqs) {
    firstBlock.push_back(blocks);
    blocks += (seq.start + seq.numTokens + bs - 1) / bs;
  }
  for (int b = 0; b < blocks; ++b) tables.push_back(b);
  std::vector<float> expandedCache(static_cast<size_t>(blocks) * bs * entry);
  std::vector<float> latents, kv, kPe(static_cast<size_t>(R));
  for (size_t s = 0; s < batch.seqs.size(); ++s) {
    const SeqSlice& seq = batch.seqs[s];
    const int context = seq.start + seq.numTokens;
    latents.resize(static_cast<size_t>(context) * L);
    for (int t = 0; t < context; ++t) cache.read(seq.blockTable, t, 0, latents.data() + static_cast<size_t>(t) * L, L);
    kv.resize(static_cast<size_t>(context) * H * kvHead);
    matmul(pool, latents.data(), context, kvB, nullptr, kv.data());  // [context][H][k_nope | v]
    float* base = expandedCache.data() + static_cast<size_t>(firstBlock[s]) * bs * entry;
    for (int t = 0; t < context; ++t) {
      cache.read(seq.blockTable, t, L, kPe.data(), R);
      for (int h = 0; h < H; ++h) {
        const float* src = kv.data() + (static_cast<size_t>(t) * H + h) * kvHead;
        float* dst = base + static_cast<size_t>(t) * entry + static_cast<size_t>(h) * (N + R + V);
        std::copy_n(src, N, dst);
        std::copy_n(kPe.data(), R, dst + N);
        std::copy_n(src + N, V, dst + N + R);
      }
    }
  }
  const PagedLayer expanded{expandedCache.data(), bs, entry, DType::kF32};
  std::vector<PagedQuery> queries = queriesOf(batch);
  for (size_t s = 0; s < queries.size(); ++s) queries[s].blockTable = tables.data() + firstBlock[s];
  HeadLayout layout;  // ordinary multi-head attention over the expanded entries
  layout.numHeads = H;
  layout.headsPerKv = 1;
  layout.kBase = 0;
  layout.vBase = N + R;
  layout.kvStride = N + R + V;
  layout.dk = N + R;
  layout.dv = V;
  layout.scale = c.softmaxScale;
  pagedAttention(pool, expanded, layout, queries, q, out);
}

}  // namespace mla::cpu
