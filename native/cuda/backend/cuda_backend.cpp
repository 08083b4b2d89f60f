#include "cuda/backend/cuda_backend.h"
#include "cuda/backend/workspace.h"
#include "cuda/backend/gpu_probe.h"

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "mla/mla_path.h"
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

void CudaBackend::observe(ActivationObserver* observer, int layer, ObservePoint point, const void* device, bool isBf16, int rows, int cols) {
  if (!observer) return;
  const size_t n = static_cast<size_t>(rows) * cols;
  std::vector<float> host(n);
  if (isBf16) {
    std::vector<uint16_t> raw(n);
    MLA_CUDA_CHECK(cudaMemcpyAsync(raw.data(), device, n * 2, cudaMemcpyDeviceToHost, stream_));
    MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::transform(raw.begin(), raw.end(), host.begin(), bf16ToFloat);
  } else {
    MLA_CUDA_CHECK(cudaMemcpyAsync(host.data(), device, n * 4, cudaMemcpyDeviceToHost, stream_));
    MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  observer->observe(layer, point, host.data(), rows, cols);
}

void CudaBackend::attentionGqa(int l, int T) {
  const ModelConfig& c = config_;
  const DeviceLayer& d = layers_[static_cast<size_t>(l)];
  Workspace& w = *ws_;
  const int D = c.headDim, width = (c.numHeads + 2 * c.numKvHeads) * D;
  gemm_->linear(w.h.get(), T, c.hiddenSize, d.qkv.get(), width, w.proj.reserve(static_cast<size_t>(T) * width), OutType::kF32, stream_);
  if (d.hasQkvBias) addBias(w.proj.get(), d.qkvBias.get(), T, width, stream_);
  GqaRopeCacheParams rc;
  rc.qkv = w.proj.get();
  rc.tokens = {w.positions.get(), w.slots.get()};
  rc.rope = {inverseFrequencies_.get(), c.rope.dim, c.rope.interleaved};
  rc.numTokens = T;
  rc.numHeads = c.numHeads;
  rc.numKvHeads = c.numKvHeads;
  rc.headDim = D;
  rc.q = w.q.reserve(static_cast<size_t>(T) * c.numHeads * D);
  rc.cache = cacheLayer(l);
  gqaRopeCache(rc, stream_);
  GqaAttentionParams ap;
  ap.q = w.q.get();
  ap.cache = cacheLayer(l);
  ap.blockTables = w.blockTables.get();
  ap.rowSeq = w.rowSeq.get();
  ap.rowLength = w.rowLength.get();
  ap.rows = T;
  ap.heads = c.numHeads;
  ap.kvHeads = c.numKvHeads;
  ap.headDim = D;
  ap.blockSize = blockSize_;
  ap.maxBlocksPerSeq = w.maxBlocksPerSeq;
  ap.slidingWindow = c.slidingWindow;
  ap.scale = c.softmaxScale;
  ap.out = w.attn.reserve(static_cast<size_t>(T) * c.numHeads * D);
  gqaAttention(ap, stream_);
}

void CudaBackend::attentionMla(int l, int T) {
  const ModelConfig& c = config_;
  const DeviceLayer& d = layers_[static_cast<size_t>(l)];
  Workspace& w = *ws_;
  const int H = c.numHeads, N = c.qkNopeHeadDim, R = c.qkRopeHeadDim, V = c.vHeadDim, L = c.kvLoraRank, qw = H * (N + R);
  float* q = w.proj.reserve(static_cast<size_t>(T) * qw);
  if (!d.qA.capacity()) {
    gemm_->linear(w.h.get(), T, c.hiddenSize, d.q.get(), qw, q, OutType::kF32, stream_);
  } else {
    float* qa = w.qa.reserve(static_cast<size_t>(T) * c.qLoraRank);
    gemm_->linear(w.h.get(), T, c.hiddenSize, d.qA.get(), c.qLoraRank, qa, OutType::kF32, stream_);
    if (d.hasQABias) addBias(qa, d.qABias.get(), T, c.qLoraRank, stream_);
    bf16* normed = w.qaNormed.reserve(static_cast<size_t>(T) * c.qLoraRank);
    if (d.qANorm.capacity()) {
      RmsNormParams np;
      np.residual = qa;
      np.weight = d.qANorm.get();
      np.out = normed;
      np.rows = T;
      np.dim = c.qLoraRank;
      np.eps = 1e-6f;
      rmsNormResidual(np, stream_);
    } else {
      toBf16(qa, static_cast<size_t>(T) * c.qLoraRank, normed, stream_);
    }
    gemm_->linear(normed, T, c.qLoraRank, d.qB.get(), qw, q, OutType::kF32, stream_);
  }
  if (d.hasQBias) addBias(q, d.qBias.get(), T, qw, stream_);
  float* kva = w.kva.reserve(static_cast<size_t>(T) * (L + R));
  gemm_->linear(w.h.get(), T, c.hiddenSize, d.kvA.get(), L + R, kva, OutType::kF32, stream_);
  if (d.hasKvABias) addBias(kva, d.kvABias.get(), T, L + R, stream_);

  MlaRopeCacheParams rc;
  rc.q = q;
  rc.kva = kva;
  rc.kvNorm = d.kvANorm.capacity() ? d.kvANorm.get() : nullptr;
  rc.tokens = {w.positions.get(), w.slots.get()};
  rc.rope = {inverseFrequencies_.get(), c.rope.dim, c.rope.interleaved};
  rc.numTokens = T;
  rc.numHeads = H;
  rc.nope = N;
  rc.ropeDim = R;
  rc.kvLoraRank = L;
  rc.qNope = w.qNope.reserve(static_cast<size_t>(T) * H * N);
  rc.qRope = w.qRope.reserve(static_cast<size_t>(T) * H * R);
  rc.cache = cacheLayer(l);
  mlaRopeCache(rc, stream_);

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
  if (w.numTiles > 0) mlaDecodeScheduled(mlaParams(l), L, R, stream_);

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

void CudaBackend::forward(const ForwardBatch& batch, const ForwardOptions& options) {
  const ModelConfig& c = config_;
  check(cache_.get() != nullptr, "cache not allocated");
  MLA_CUDA_CHECK(cudaSetDevice(device_));
  Workspace& w = *ws_;
  const int T = batch.numTokens, hidden = c.hiddenSize;
  const int lastLayer = options.lastLayer < 0 ? c.numLayers - 1 : std::min(options.lastLayer, c.numLayers - 1);
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
    // Each sequence goes absorbed or expanded by the rule both backends follow (mla/mla_path.h);
    // the absorbed ones' tiles and their schedule serve every layer of the step.
    std::vector<MlaSeqRows> seqRows;
    w.expanded.clear();
    for (size_t si = 0; si < batch.seqs.size(); ++si) {
      const SeqSlice& s = batch.seqs[si];
      const int context = s.start + s.numTokens;
      if (!useAbsorbed(options.mlaPath, c, s.numTokens, context) && expandedFits(context)) w.expanded.push_back(s);
      else seqRows.push_back({static_cast<int>(si), s.tokenOffset, s.numTokens});
    }
    const std::vector<MlaTile> tiles = mlaTiles(seqRows, rowLength.data(), c.numHeads);
    w.numTiles = static_cast<int>(tiles.size());
    w.tiles.upload(tiles, stream_);
    w.tileStart.reserve(tiles.size() + 1);
    w.tileSplits.reserve(tiles.size());
    w.tileSlot.reserve(tiles.size());
    mlaSchedule(mlaParams(0), stream_);
  }

  float* x = w.x.reserve(static_cast<size_t>(T) * hidden);
  float* delta = w.delta.reserve(static_cast<size_t>(T) * hidden);
  bf16* h = w.h.reserve(static_cast<size_t>(T) * hidden);
  embedTokens(embed_.get(), w.tokens.get(), T, hidden, x, stream_);
  auto norm = [&](const bf16* weight, bool addDelta) {
    RmsNormParams np;
    np.residual = x;
    np.delta = addDelta ? delta : nullptr;
    np.weight = weight;
    np.out = h;
    np.rows = T;
    np.dim = hidden;
    np.eps = c.rmsNormEps;
    rmsNormResidual(np, stream_);
  };
  const size_t attnWidth = static_cast<size_t>(c.numHeads) * c.valueHeadDim();
  bool pending = false;
  bool completed = false;
  for (int l = 0; l <= lastLayer; ++l) {
    const DeviceLayer& d = layers_[static_cast<size_t>(l)];
    norm(d.inputNorm.get(), pending);
    observe(options.observer, l, ObservePoint::kAttnNorm, h, true, T, hidden);
    if (l == lastLayer && options.stopAtAttentionInput) break;
    if (c.isMla()) attentionMla(l, T);
    else attentionGqa(l, T);
    observe(options.observer, l, ObservePoint::kAttnOut, w.attn.get(), true, T, static_cast<int>(attnWidth));
    gemm_->linear(w.attn.get(), T, static_cast<int>(attnWidth), d.o.get(), hidden, delta, OutType::kF32, stream_);
    if (d.hasOBias) addBias(delta, d.oBias.get(), T, hidden, stream_);
    norm(d.postNorm.get(), true);
    observe(options.observer, l, ObservePoint::kMlpNorm, h, true, T, hidden);
    const int F = c.intermediateSize;
    gemm_->linear(h, T, hidden, d.gateUp.get(), 2 * F, w.gateUp.reserve(static_cast<size_t>(T) * 2 * F), OutType::kF32, stream_);
    swiglu(w.gateUp.get(), T, F, w.ffn.reserve(static_cast<size_t>(T) * F), stream_);
    gemm_->linear(w.ffn.get(), T, F, d.down.get(), hidden, delta, OutType::kF32, stream_);
    pending = true;
    completed = l == c.numLayers - 1;
  }
  numLogitRows_ = 0;
  if (completed) {
    norm(finalNorm_.get(), true);
    numLogitRows_ = static_cast<int>(batch.logitRows.size());
    w.logitRows.upload(batch.logitRows, stream_);
    gatherRowsBf16(h, w.logitRows.get(), numLogitRows_, hidden, w.finalHidden.reserve(static_cast<size_t>(std::max(1, numLogitRows_)) * hidden), stream_);
  }
  MLA_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaBackend::computeLogits(int first, int count) {
  const bf16* head = tiedHead_ ? embed_.get() : lmHead_.get();
  gemm_->linear(ws_->finalHidden.get() + static_cast<size_t>(first) * config_.hiddenSize, count, config_.hiddenSize, head, config_.vocabSize,
                ws_->logits.reserve(static_cast<size_t>(count) * config_.vocabSize), OutType::kF32, stream_);
}

}  // namespace mla::cuda
