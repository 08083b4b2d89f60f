#include "cuda/backend/cuda_backend.h"
#include "cuda/backend/workspace.h"
#include "cuda/backend/gpu_probe.h"

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "cuda/kernels/elementwise.cuh"
#include "cuda/kernels/gqa_attention.cuh"
#include "cuda/kernels/mla_decode.cuh"
#include "cuda/kernels/rmsnorm.cuh"
#include "cuda/kernels/rope_cache.cuh"

namespace mla::cuda {


CudaBackend::CudaBackend(const ModelConfig& config, const Weights& weights, int device, const StepLimits& limits) : config_(config), device_(device) {
  const GpuProbe probe = probeGpu();
  if (probe.state != GpuProbe::State::kPresent) throw Error("--device cuda: " + probe.message);
  const int count = probe.count;
  if (device < 0 || device >= count) throw Error("--device cuda: GPU " + std::to_string(device) + " does not exist");
  MLA_CUDA_CHECK(cudaSetDevice(device));
  if (config.attention == AttentionKind::kLatentGqa) {
    throw Error("the CUDA backend does not serve TransMLA's first (k_up_proj) format yet: use --device cpu, or convert without --exact");
  }
  if (config.isMla() && !mlaDecodeSupports(config.kvLoraRank, config.qkRopeHeadDim)) {
    throw Error("the CUDA MLA decode kernel is not built for kv_lora_rank " + std::to_string(config.kvLoraRank) + " with qk_rope_head_dim " +
                std::to_string(config.qkRopeHeadDim) + " (native/include/mla/kernel_shapes.h lists the shapes)");
  }
  MLA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  MLA_CUDA_CHECK(cudaDeviceGetAttribute(&numSms_, cudaDevAttrMultiProcessorCount, device));
  gemm_ = makeGemm();
  ws_ = std::make_unique<Workspace>();
  uploadWeights(weights);
  ws_->reserveFor(config, limits, numSms_);
  const std::vector<double> inv = config.rope.inverseFrequencies();
  inverseFrequencies_.upload(inv, stream_);
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

CudaBackend::~CudaBackend() {
  ws_.reset();
  if (stream_) cudaStreamDestroy(stream_);
}

int64_t CudaBackend::cacheMemoryBudget(double utilization) const {
  size_t freeBytes = 0, totalBytes = 0;
  MLA_CUDA_CHECK(cudaMemGetInfo(&freeBytes, &totalBytes));
  // Weights and the step workspace (sized for the step limits) are allocated already; keep a margin
  // for the CUDA context's own allocations and fragmentation.
  const int64_t reserve = int64_t(256) << 20;
  const int64_t used = static_cast<int64_t>(totalBytes - freeBytes);
  return std::max<int64_t>(0, static_cast<int64_t>(utilization * static_cast<double>(totalBytes)) - used - reserve);
}

bf16* CudaBackend::cacheLayer(int layer) const { return cache_.get() + layerStride_ * static_cast<size_t>(layer); }

void CudaBackend::allocateCache(int numBlocks, int blockSize, bool poison) {
  check(blockSize == kMlaBlockSize, "the CUDA backend needs cache blocks of 64 tokens");
  numBlocks_ = numBlocks;
  blockSize_ = blockSize;
  layerStride_ = static_cast<size_t>(numBlocks) * blockSize * config_.cacheEntrySize();
  cache_.reserve(layerStride_ * config_.numLayers);
  if (poison) MLA_CUDA_CHECK(cudaMemsetAsync(cache_.get(), 0xFF, layerStride_ * config_.numLayers * sizeof(bf16), stream_));  // bf16 NaN
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::copyBlock(int src, int dst) {
  const size_t block = static_cast<size_t>(blockSize_) * config_.cacheEntrySize();
  for (int l = 0; l < config_.numLayers; ++l) {
    MLA_CUDA_CHECK(cudaMemcpyAsync(cacheLayer(l) + block * dst, cacheLayer(l) + block * src, block * sizeof(bf16), cudaMemcpyDeviceToDevice, stream_));
  }
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::poisonBlock(int b) {
  const size_t block = static_cast<size_t>(blockSize_) * config_.cacheEntrySize();
  for (int l = 0; l < config_.numLayers; ++l) MLA_CUDA_CHECK(cudaMemsetAsync(cacheLayer(l) + block * b, 0xFF, block * sizeof(bf16), stream_));
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

// ---- DecoderOps: the model definition (model/decoder.h) runs these ----

void CudaBackend::forward(const ForwardBatch& batch, const ForwardOptions& options) {
  check(cache_.get() != nullptr, "cache not allocated");
  MLA_CUDA_CHECK(cudaSetDevice(device_));
  runDecoder(config_, *this, batch, options);
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::beginStep(const ForwardBatch& batch, const MlaPlan& plan) {
  const ModelConfig& c = config_;
  Workspace& w = *ws_;
  batch_ = &batch;
  numLogitRows_ = 0;
  const int T = batch.numTokens;
  // The step's layout: per token its position, cache slot, sequence and causal length.
  std::vector<int32_t> positions(T), rowSeq(T), rowLength(T);
  std::vector<int64_t> slots(T);
  int maxBlocks = 1;
  for (const SeqSlice& s : batch.seqs) maxBlocks = std::max(maxBlocks, s.numBlocks);
  std::vector<int32_t> tables(batch.seqs.size() * static_cast<size_t>(maxBlocks), numBlocks_);  // unused: out of range
  for (size_t si = 0; si < batch.seqs.size(); ++si) {
    const SeqSlice& s = batch.seqs[si];
    std::copy_n(s.blockTable, s.numBlocks, tables.begin() + static_cast<long>(si * maxBlocks));
    for (int i = 0; i < s.numTokens; ++i) {
      const int row = s.tokenOffset + i, pos = s.start + i;
      positions[row] = pos;
      rowSeq[row] = static_cast<int32_t>(si);
      rowLength[row] = pos + 1;
      slots[row] = static_cast<int64_t>(s.blockTable[pos / blockSize_]) * blockSize_ + pos % blockSize_;
    }
  }
  w.maxBlocksPerSeq = maxBlocks;
  w.tokens.upload(batch.tokenIds, T, stream_);
  w.positions.upload(positions, stream_);
  w.rowSeq.upload(rowSeq, stream_);
  w.rowLength.upload(rowLength, stream_);
  w.slots.upload(slots, stream_);
  w.blockTables.upload(tables, stream_);
  if (c.isMla()) {
    // The absorbed sequences' tiles and their schedule serve every layer of the step.
    std::vector<MlaSeqRows> seqRows;
    w.expanded.clear();
    for (size_t si = 0; si < batch.seqs.size(); ++si) {
      const SeqSlice& s = batch.seqs[si];
      if (plan.absorbed[si]) seqRows.push_back({static_cast<int>(si), s.tokenOffset, s.numTokens});
      else w.expanded.push_back(s);
    }
    const std::vector<MlaTile> tiles = mlaTiles(seqRows, rowLength.data(), c.numHeads);
    w.numTiles = static_cast<int>(tiles.size());
    w.tiles.upload(tiles, stream_);
    w.tileStart.reserve(tiles.size() + 1);
    w.tileSplits.reserve(tiles.size());
    w.tileSlot.reserve(tiles.size());
    mlaSchedule(mlaParams(0), stream_);
  }
}

bool CudaBackend::hasMatrix(int layer, LayerMatrix m) const {
  const DeviceLayer& d = layers_[static_cast<size_t>(layer)];
  switch (m) {
    case LayerMatrix::kQA: return d.qA.capacity() > 0;
    case LayerMatrix::kQB: return d.qB.capacity() > 0;
    case LayerMatrix::kQ: return config_.isMla() ? d.q.capacity() > 0 : true;
    default: return true;  // required by every format this backend serves
  }
}

bool CudaBackend::hasNorm(int layer, LayerNorm n) const {
  const DeviceLayer& d = layers_[static_cast<size_t>(layer)];
  if (n == LayerNorm::kQA) return d.qANorm.capacity() > 0;
  if (n == LayerNorm::kKvA) return d.kvANorm.capacity() > 0;
  return true;
}

void CudaBackend::embed() {
  const int T = batch_->numTokens, hidden = config_.hiddenSize;
  Workspace& w = *ws_;
  w.delta.reserve(static_cast<size_t>(T) * hidden);
  w.h.reserve(static_cast<size_t>(T) * hidden);
  embedTokens(embed_.get(), w.tokens.get(), T, hidden, w.x.reserve(static_cast<size_t>(T) * hidden), stream_);
}

void CudaBackend::normInto(const bf16* weight, bool addDelta) {
  RmsNormParams np;
  np.residual = ws_->x.get();
  np.delta = addDelta ? ws_->delta.get() : nullptr;
  np.weight = weight;
  np.out = ws_->h.get();
  np.rows = batch_->numTokens;
  np.dim = config_.hiddenSize;
  np.eps = config_.rmsNormEps;
  rmsNormResidual(np, stream_);
}

void CudaBackend::residualNorm(int layer, LayerNorm norm, bool addDelta) {
  const DeviceLayer& d = layers_[static_cast<size_t>(layer)];
  check(norm == LayerNorm::kInput || norm == LayerNorm::kPostAttention, "residualNorm: a residual norm is required");
  normInto(norm == LayerNorm::kInput ? d.inputNorm.get() : d.postNorm.get(), addDelta);
}

void CudaBackend::finalNorm() {
  Workspace& w = *ws_;
  const int hidden = config_.hiddenSize;
  normInto(finalNorm_.get(), true);
  numLogitRows_ = static_cast<int>(batch_->logitRows.size());
  w.logitRows.upload(batch_->logitRows, stream_);
  gatherRowsBf16(w.h.get(), w.logitRows.get(), numLogitRows_, hidden,
                 w.finalHidden.reserve(static_cast<size_t>(std::max(1, numLogitRows_)) * hidden), stream_);
}

void CudaBackend::linear(int layer, Act in, std::initializer_list<Projection> outs) {
  const ModelConfig& c = config_;
  const DeviceLayer& d = layers_[static_cast<size_t>(layer)];
  Workspace& w = *ws_;
  const int T = batch_->numTokens, hidden = c.hiddenSize;
  // The product's input: the bf16 form of `in`.
  const bf16* a = nullptr;
  int k = 0;
  switch (in) {
    case Act::kH: a = w.h.get(), k = hidden; break;
    case Act::kAttn: a = w.attn.get(), k = c.numHeads * c.valueHeadDim(); break;
    case Act::kFfn: a = w.ffn.get(), k = c.intermediateSize; break;
    case Act::kQA: a = w.qaNormed.get(), k = c.qLoraRank; break;  // written by queryLatentNorm
    default: throw Error("the CUDA backend has no bf16 form of this activation for a product");
  }
  // The weights (groups as uploaded together: q|k|v, gate|up), the output and its bias.
  const bf16* weight = nullptr;
  const float* bias = nullptr;
  int n = 0;
  float* out = nullptr;
  const LayerMatrix first = outs.begin()->weight;
  const int H = c.numHeads, qkHead = c.qkNopeHeadDim + c.qkRopeHeadDim;
  auto group = [&](std::initializer_list<LayerMatrix> names) {
    if (outs.size() != names.size()) return false;
    auto name = names.begin();
    for (const Projection& p : outs) if (p.weight != *name++) return false;
    return true;
  };
  if (outs.size() > 1) {
    if (group({LayerMatrix::kQ, LayerMatrix::kK, LayerMatrix::kV})) {
      n = (c.numHeads + 2 * c.numKvHeads) * c.headDim;
      weight = d.qkv.get(), bias = d.hasQkvBias ? d.qkvBias.get() : nullptr, out = w.proj.reserve(static_cast<size_t>(T) * n);
    } else if (group({LayerMatrix::kGate, LayerMatrix::kUp})) {
      n = 2 * c.intermediateSize;
      weight = d.gateUp.get(), out = w.gateUp.reserve(static_cast<size_t>(T) * n);
    } else {
      throw Error("the CUDA backend stores no such group of projections together");
    }
  } else {
    switch (first) {
      case LayerMatrix::kQ: n = H * qkHead, weight = d.q.get(), bias = d.hasQBias ? d.qBias.get() : nullptr; break;
      case LayerMatrix::kQB: n = H * qkHead, weight = d.qB.get(), bias = d.hasQBias ? d.qBias.get() : nullptr; break;
      case LayerMatrix::kQA: n = c.qLoraRank, weight = d.qA.get(), bias = d.hasQABias ? d.qABias.get() : nullptr; break;
      case LayerMatrix::kKvA: n = c.kvLoraRank + c.qkRopeHeadDim, weight = d.kvA.get(), bias = d.hasKvABias ? d.kvABias.get() : nullptr; break;
      case LayerMatrix::kO: n = hidden, weight = d.o.get(), bias = d.hasOBias ? d.oBias.get() : nullptr; break;
      case LayerMatrix::kDown: n = hidden, weight = d.down.get(); break;
      default: throw Error("the CUDA backend runs this projection only in its group");
    }
    switch (outs.begin()->out) {
      case Act::kQ: out = w.proj.reserve(static_cast<size_t>(T) * n); break;
      case Act::kQA: out = w.qa.reserve(static_cast<size_t>(T) * n); break;
      case Act::kKvA: out = w.kva.reserve(static_cast<size_t>(T) * n); break;
      case Act::kDelta: out = w.delta.get(); break;
      default: throw Error("the CUDA backend keeps no f32 buffer for this projection's output");
    }
  }
  gemm_->linear(a, T, k, weight, n, out, OutType::kF32, stream_);
  if (bias) addBias(out, bias, T, n, stream_);
}

void CudaBackend::queryLatentNorm(int layer) {
  const DeviceLayer& d = layers_[static_cast<size_t>(layer)];
  Workspace& w = *ws_;
  const int T = batch_->numTokens, qr = config_.qLoraRank;
  bf16* normed = w.qaNormed.reserve(static_cast<size_t>(T) * qr);
  if (d.qANorm.capacity()) {
    RmsNormParams np;
    np.residual = w.qa.get();
    np.weight = d.qANorm.get();
    np.out = normed;
    np.rows = T;
    np.dim = qr;
    np.eps = 1e-6f;
    rmsNormResidual(np, stream_);
  } else {
    toBf16(w.qa.get(), static_cast<size_t>(T) * qr, normed, stream_);
  }
}

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

void CudaBackend::siluMul() {
  const int T = batch_->numTokens, F = config_.intermediateSize;
  swiglu(ws_->gateUp.get(), T, F, ws_->ffn.reserve(static_cast<size_t>(T) * F), stream_);
}

CudaBackend::ActView CudaBackend::view(Act act) const {
  const ModelConfig& c = config_;
  const Workspace& w = *ws_;
  const int hidden = c.hiddenSize, F = c.intermediateSize;
  const int qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim, qkv = qDim + 2 * kvDim;
  switch (act) {
    case Act::kX: return {w.x.get(), false, hidden, hidden, 0};
    case Act::kH: return {w.h.get(), true, hidden, hidden, 0};
    case Act::kDelta: return {w.delta.get(), false, hidden, hidden, 0};
    case Act::kQ: {
      if (!c.isMla()) return {w.proj.get(), false, qDim, qkv, 0};  // q|k|v from one product
      const int width = c.numHeads * (c.qkNopeHeadDim + c.qkRopeHeadDim);
      return {w.proj.get(), false, width, width, 0};
    }
    case Act::kK: return {w.proj.get(), false, kvDim, qkv, qDim};
    case Act::kV: return {w.proj.get(), false, kvDim, qkv, qDim + kvDim};
    case Act::kQA: return {w.qa.get(), false, c.qLoraRank, c.qLoraRank, 0};
    case Act::kKvA: return {w.kva.get(), false, c.kvLoraRank + c.qkRopeHeadDim, c.kvLoraRank + c.qkRopeHeadDim, 0};
    case Act::kAttn: {
      const int width = c.numHeads * c.valueHeadDim();
      return {w.attn.get(), true, width, width, 0};
    }
    case Act::kGate: return {w.gateUp.get(), false, F, 2 * F, 0};
    case Act::kUp: return {w.gateUp.get(), false, F, 2 * F, F};
    case Act::kFfn: return {w.ffn.get(), true, F, F, 0};
  }
  throw Error("unknown activation");
}

void CudaBackend::observe(int layer, ObservePoint point, Act act, ActivationObserver& observer) {
  const ActView v = view(act);
  const int rows = batch_->numTokens;
  const size_t n = static_cast<size_t>(rows) * v.ld;
  std::vector<float> all(n);
  if (v.isBf16) {
    std::vector<uint16_t> raw(n);
    MLA_CUDA_CHECK(cudaMemcpyAsync(raw.data(), v.data, n * 2, cudaMemcpyDeviceToHost, stream_));
    MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::transform(raw.begin(), raw.end(), all.begin(), bf16ToFloat);
  } else {
    MLA_CUDA_CHECK(cudaMemcpyAsync(all.data(), v.data, n * 4, cudaMemcpyDeviceToHost, stream_));
    MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  std::vector<float> host(static_cast<size_t>(rows) * v.cols);
  for (int r = 0; r < rows; ++r) {
    std::copy_n(&all[static_cast<size_t>(r) * v.ld + v.offset], v.cols, &host[static_cast<size_t>(r) * v.cols]);
  }
  observer.observe(layer, point, host.data(), rows, v.cols);
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

void CudaBackend::computeLogits(int first, int count) {
  const bf16* head = tiedHead_ ? embed_.get() : lmHead_.get();
  gemm_->linear(ws_->finalHidden.get() + static_cast<size_t>(first) * config_.hiddenSize, count, config_.hiddenSize, head, config_.vocabSize,
                ws_->logits.reserve(static_cast<size_t>(count) * config_.vocabSize), OutType::kF32, stream_);
}

}  // namespace mla::cuda
