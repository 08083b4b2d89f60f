// The CUDA backend's DecoderOps (model/decoder.h runs them): the step's layout, embedding, norms,
// projections, activation and observation points. Attention and RoPE: cuda_attention_ops.cpp.
#include <algorithm>

#include "cuda/backend/cuda_backend.h"
#include "cuda/backend/workspace.h"
#include "cuda/kernels/elementwise.cuh"
#include "cuda/kernels/mla_decode.cuh"
#include "cuda/kernels/rmsnorm.cuh"

namespace mla::cuda {

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
    case LayerMatrix::kQA: case LayerMatrix::kQB: return d.matrix(m, 1).weight != nullptr;
    case LayerMatrix::kQ: return config_.isMla() ? d.matrix(m, 1).weight != nullptr : true;  // GQA: in q|k|v
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
  // The weights (groups as uploaded together: q|k|v, gate|up) and their bias, then the output.
  std::vector<LayerMatrix> names;
  for (const Projection& p : outs) names.push_back(p.weight);
  const DeviceLayer::Matrix m = d.group(names, k);
  if (!m.weight) throw Error("the CUDA backend stores no such projection or group of projections");
  const int n = m.rows;
  float* out = nullptr;
  if (outs.size() > 1) {
    out = (names[0] == LayerMatrix::kQ ? w.proj : w.gateUp).reserve(static_cast<size_t>(T) * n);
  } else {
    switch (outs.begin()->out) {
      case Act::kQ: out = w.proj.reserve(static_cast<size_t>(T) * n); break;
      case Act::kQA: out = w.qa.reserve(static_cast<size_t>(T) * n); break;
      case Act::kKvA: out = w.kva.reserve(static_cast<size_t>(T) * n); break;
      case Act::kDelta: out = w.delta.get(); break;
      default: throw Error("the CUDA backend keeps no f32 buffer for this projection's output");
    }
  }
  gemm_->linear(a, T, k, m.weight, n, out, OutType::kF32, stream_);
  if (m.bias) addBias(out, m.bias, T, n, stream_);
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

}  // namespace mla::cuda
