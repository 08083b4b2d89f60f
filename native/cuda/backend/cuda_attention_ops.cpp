// The CUDA backend's attention ops: RoPE with the cache write, and GQA / MLA attention (the
// absorbed decode kernels here; the expanded MLA prefill in cuda_mla_expanded.cpp).
#include <algorithm>

#include "cuda/backend/cuda_backend.h"
#include "cuda/backend/workspace.h"
#include "cuda/kernels/elementwise.cuh"
#include "cuda/kernels/gqa_attention.cuh"
#include "cuda/kernels/mla_decode.cuh"
#include "cuda/kernels/rope_cache.cuh"

namespace mla::cuda {

void CudaBackend::ropeCacheGqa(int l) {
  const ModelConfig& c = config_;
  Workspace& w = *ws_;
  GqaRopeCacheParams rc;
  rc.qkv = w.proj.get();
  rc.tokens = {w.positions.get(), w.slots.get()};
  rc.rope = {inverseFrequencies_.get(), c.rope.dim, c.rope.interleaved};
  rc.numTokens = batch_->numTokens;
  rc.numHeads = c.numHeads;
  rc.numKvHeads = c.numKvHeads;
  rc.headDim = c.headDim;
  rc.q = w.q.reserve(static_cast<size_t>(batch_->numTokens) * c.numHeads * c.headDim);
  rc.cache = cacheLayer(l);
  gqaRopeCache(rc, stream_);
}

void CudaBackend::attentionGqa(int l) {
  const ModelConfig& c = config_;
  Workspace& w = *ws_;
  const int T = batch_->numTokens;
  GqaAttentionParams ap;
  ap.q = w.q.get();
  ap.cache = cacheLayer(l);
  ap.blockTables = w.blockTables.get();
  ap.rowSeq = w.rowSeq.get();
  ap.rowLength = w.rowLength.get();
  ap.rows = T;
  ap.heads = c.numHeads;
  ap.kvHeads = c.numKvHeads;
  ap.headDim = c.headDim;
  ap.blockSize = blockSize_;
  ap.maxBlocksPerSeq = w.maxBlocksPerSeq;
  ap.slidingWindow = c.slidingWindow;
  ap.scale = c.softmaxScale;
  ap.out = w.attn.reserve(static_cast<size_t>(T) * c.numHeads * c.headDim);
  gqaAttention(ap, stream_);
}

void CudaBackend::ropeCacheMla(int l) {
  const ModelConfig& c = config_;
  const DeviceLayer& d = layers_[static_cast<size_t>(l)];
  Workspace& w = *ws_;
  const int T = batch_->numTokens, H = c.numHeads;
  MlaRopeCacheParams rc;
  rc.q = w.proj.get();
  rc.kva = w.kva.get();
  rc.kvNorm = d.kvANorm.capacity() ? d.kvANorm.get() : nullptr;
  rc.tokens = {w.positions.get(), w.slots.get()};
  rc.rope = {inverseFrequencies_.get(), c.rope.dim, c.rope.interleaved};
  rc.numTokens = T;
  rc.numHeads = H;
  rc.nope = c.qkNopeHeadDim;
  rc.ropeDim = c.qkRopeHeadDim;
  rc.kvLoraRank = c.kvLoraRank;
  rc.qNope = w.qNope.reserve(static_cast<size_t>(T) * H * c.qkNopeHeadDim);
  rc.qRope = w.qRope.reserve(static_cast<size_t>(T) * H * c.qkRopeHeadDim);
  rc.cache = cacheLayer(l);
  mlaRopeCache(rc, stream_);
}

void CudaBackend::attentionMla(int l) {
  const ModelConfig& c = config_;
  const DeviceLayer& d = layers_[static_cast<size_t>(l)];
  Workspace& w = *ws_;
  const int T = batch_->numTokens, H = c.numHeads, N = c.qkNopeHeadDim, V = c.vHeadDim, L = c.kvLoraRank;
  // Absorb: q_latent[t, h, :] = q_nope[t, h, :] · W_UK_h, W_UK_h = kv_b rows [h (N+V), h (N+V) + N).
  BatchedProduct absorb;
  absorb.a = w.qNope.get();
  absorb.lda = H * N;
  absorb.strideA = N;
  absorb.b = d.kvB.get();
  absorb.ldb = L;
  absorb.strideB = static_cast<long long>(N + V) * L;
  absorb.c = w.qLatent.reserve(static_cast<size_t>(T) * H * L);
  absorb.ldc = H * L;
  absorb.strideC = L;
  absorb.out = OutType::kBF16;
  absorb.m = T;
  absorb.n = L;
  absorb.k = N;
  absorb.batch = H;
  gemm_->batched(absorb, stream_);

  w.outLatent.reserve(static_cast<size_t>(T) * H * L);
  if (w.numTiles > 0) mlaDecodeScheduled(mlaParams(l), L, c.qkRopeHeadDim, stream_);

  // out[t, h, :] = W_UV_h · out_latent[t, h, :], W_UV_h = kv_b rows [h (N+V) + N, (h+1)(N+V)).
  BatchedProduct expand;
  expand.a = w.outLatent.get();
  expand.lda = H * L;
  expand.strideA = L;
  expand.b = d.kvB.get() + static_cast<size_t>(N) * L;
  expand.ldb = L;
  expand.strideB = static_cast<long long>(N + V) * L;
  expand.transB = true;
  expand.c = w.attn.reserve(static_cast<size_t>(T) * H * V);
  expand.ldc = H * V;
  expand.strideC = V;
  expand.out = OutType::kBF16;
  expand.m = T;
  expand.n = V;
  expand.k = L;
  expand.batch = H;
  gemm_->batched(expand, stream_);
  // Rows of sequences in expanded form: computed apart, over the rows the products above wrote.
  for (const SeqSlice& s : w.expanded) attentionExpanded(l, s);
}

MlaDecodeParams CudaBackend::mlaParams(int l) const {
  const ModelConfig& c = config_;
  Workspace& w = *ws_;
  MlaDecodeParams p;
  p.qLatent = w.qLatent.get();
  p.qRope = w.qRope.get();
  p.cache = cacheLayer(l);
  p.blockTables = w.blockTables.get();
  p.rowLength = w.rowLength.get();
  p.tiles = w.tiles.get();
  p.numTiles = w.numTiles;
  p.heads = c.numHeads;
  p.maxBlocksPerSeq = w.maxBlocksPerSeq;
  p.scale = c.softmaxScale;
  p.schedule = {w.spans.get(), w.tileStart.get(), w.tileSplits.get(), w.tileSlot.get(), w.numCtas};
  p.partialOut = w.partialOut.get();
  p.partialLse = w.partialLse.get();
  p.out = w.outLatent.get();
  return p;
}

}  // namespace mla::cuda
