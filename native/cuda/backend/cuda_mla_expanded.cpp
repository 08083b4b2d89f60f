// MLA attention in expanded form on the GPU, for prompt chunks the cost rule (mla/mla_path.h) sends
// there: the context's latents are gathered from the pages once and decompressed through kv_b_proj
// into per-head keys and values (cuBLAS), then scores, a causal softmax and the values per head.
// The prefix is read once per chunk of up to kQueryFloats / (heads x context) query tokens.
#include <algorithm>

#include "cuda/backend/cuda_backend.h"
#include "cuda/backend/workspace.h"
#include "cuda/kernels/elementwise.cuh"
#include "cuda/kernels/mla_expanded.cuh"

namespace mla::cuda {

namespace {
constexpr size_t kScoreFloats = size_t(32) << 20;  // one block of scores: 128 MiB of fp32
}

int CudaBackend::Workspace::expandedQueryChunk(const ModelConfig& c, int contextLength) {
  return static_cast<int>(std::max<size_t>(1, kScoreFloats / (static_cast<size_t>(c.numHeads) * std::max(1, contextLength))));
}

bool CudaBackend::expandedFits(int contextLength) const { return contextLength <= ws_->expandedMaxContext; }

void CudaBackend::attentionExpanded(int l, const SeqSlice& seq) {
  const ModelConfig& c = config_;
  const DeviceLayer& d = layers_[static_cast<size_t>(l)];
  Workspace& w = *ws_;
  const int H = c.numHeads, N = c.qkNopeHeadDim, R = c.qkRopeHeadDim, V = c.vHeadDim, L = c.kvLoraRank;
  const int C = seq.start + seq.numTokens, n = seq.numTokens, QK = N + R;
  // The context's [c_kv | k_pe] rows, gathered from the pages.
  std::vector<int32_t> slots(static_cast<size_t>(C));
  for (int pos = 0; pos < C; ++pos) slots[static_cast<size_t>(pos)] = seq.blockTable[pos / blockSize_] * blockSize_ + pos % blockSize_;
  w.expSlots.upload(slots, stream_);
  bf16* latent = w.expLatent.reserve(static_cast<size_t>(C) * (L + R));
  gatherRowsBf16(cacheLayer(l), w.expSlots.get(), C, L + R, latent, stream_);
  // k[c, h, :N] = W_UK_h c_kv[c], v[c, h, :] = W_UV_h c_kv[c]; then k_pe into each head's last R.
  bf16* k = w.expK.reserve(static_cast<size_t>(C) * H * QK);
  bf16* v = w.expV.reserve(static_cast<size_t>(C) * H * V);
  BatchedProduct up;
  up.a = latent;
  up.lda = L + R;
  up.strideA = 0;  // every head reads the same latents
  up.b = d.kvB.get();
  up.ldb = L;
  up.strideB = static_cast<long long>(N + V) * L;
  up.transB = true;
  up.c = k;
  up.ldc = H * QK;
  up.strideC = QK;
  up.out = OutType::kBF16;
  up.m = C;
  up.n = N;
  up.k = L;
  up.batch = H;
  gemm_->batched(up, stream_);
  up.b = d.kvB.get() + static_cast<size_t>(N) * L;
  up.c = v;
  up.ldc = H * V;
  up.strideC = V;
  up.n = V;
  gemm_->batched(up, stream_);
  broadcastRopeKey(latent, C, L, R, H, N, k, stream_);
  bf16* q = w.expQ.reserve(static_cast<size_t>(n) * H * QK);
  concatQuery(w.qNope.get() + static_cast<size_t>(seq.tokenOffset) * H * N, w.qRope.get() + static_cast<size_t>(seq.tokenOffset) * H * R, n, H, N, R, q, stream_);
  const int chunk = Workspace::expandedQueryChunk(c, C);
  for (int q0 = 0; q0 < n; q0 += chunk) {
    const int nq = std::min(chunk, n - q0);
    // s[h, i, j] = q[q0 + i, h] · k[j, h]
    float* s = w.expS.reserve(static_cast<size_t>(H) * nq * C);
    BatchedProduct scores;
    scores.a = q + static_cast<size_t>(q0) * H * QK;
    scores.lda = H * QK;
    scores.strideA = QK;
    scores.b = k;
    scores.ldb = H * QK;
    scores.strideB = QK;
    scores.transB = true;
    scores.c = s;
    scores.ldc = C;
    scores.strideC = static_cast<long long>(nq) * C;
    scores.out = OutType::kF32;
    scores.m = nq;
    scores.n = C;
    scores.k = QK;
    scores.batch = H;
    gemm_->batched(scores, stream_);
    bf16* p = w.expP.reserve(static_cast<size_t>(H) * nq * C);
    causalSoftmax(s, H * nq, nq, C, seq.start + q0, c.softmaxScale, p, stream_);
    // attn[row, h, :] = p[h, i, :] · v[:, h, :]
    BatchedProduct values;
    values.a = p;
    values.lda = C;
    values.strideA = static_cast<long long>(nq) * C;
    values.b = v;
    values.ldb = H * V;
    values.strideB = V;
    values.c = w.attn.get() + static_cast<size_t>(seq.tokenOffset + q0) * H * V;
    values.ldc = H * V;
    values.strideC = V;
    values.out = OutType::kBF16;
    values.m = nq;
    values.n = V;
    values.k = C;
    values.batch = H;
    gemm_->batched(values, stream_);
  }
}

}  // namespace mla::cuda
