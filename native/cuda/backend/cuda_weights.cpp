// Weights to the GPU: every matrix in bf16 (F32 checkpoints are rounded), fused where one product
// can serve several projections (q/k/v, gate/up), biases in fp32.
#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "cuda/backend/cuda_backend.h"

namespace mla::cuda {

namespace {

DeviceLayer::Matrix stored(const DeviceArray<bf16>& w, const DeviceArray<float>* bias, bool hasBias, int cols) {
  if (w.capacity() == 0) return {};
  return {w.get(), hasBias ? bias->get() : nullptr, static_cast<int>(w.capacity() / static_cast<size_t>(cols))};
}

std::vector<uint16_t> bf16Rows(const std::vector<const Matrix*>& parts) {
  size_t total = 0;
  for (const Matrix* m : parts) total += static_cast<size_t>(m->rows) * m->cols;
  std::vector<uint16_t> out(total);
  size_t at = 0;
  std::vector<float> row;
  for (const Matrix* m : parts) {
    if (m->dtype == DType::kBF16) {
      std::memcpy(out.data() + at, m->data, static_cast<size_t>(m->rows) * m->cols * 2);
      at += static_cast<size_t>(m->rows) * m->cols;
      continue;
    }
    row.resize(static_cast<size_t>(m->cols));
    for (int r = 0; r < m->rows; ++r) {
      toFloat(m->dtype, m->row(r), row.data(), row.size());
      for (float v : row) out[at++] = floatToBf16(v);
    }
  }
  return out;
}

void uploadMatrix(DeviceArray<bf16>& dst, const std::vector<const Matrix*>& parts, cudaStream_t s) {
  const std::vector<uint16_t> host = bf16Rows(parts);
  dst.upload(reinterpret_cast<const bf16*>(host.data()), host.size(), s);
  MLA_CUDA_CHECK(cudaStreamSynchronize(s));  // host buffer goes out of scope
}

void uploadVector(DeviceArray<bf16>& dst, const std::vector<float>& v, cudaStream_t s) {
  std::vector<uint16_t> host(v.size());
  std::transform(v.begin(), v.end(), host.begin(), floatToBf16);
  dst.upload(reinterpret_cast<const bf16*>(host.data()), host.size(), s);
  MLA_CUDA_CHECK(cudaStreamSynchronize(s));
}

// Concatenated biases (zeros where a part has none); false when no part has one.
bool uploadBiases(DeviceArray<float>& dst, const std::vector<std::pair<const std::vector<float>*, int>>& parts, cudaStream_t s) {
  bool any = false;
  std::vector<float> all;
  for (const auto& [bias, size] : parts) {
    any |= !bias->empty();
    if (bias->empty()) all.insert(all.end(), static_cast<size_t>(size), 0.0f);
    else all.insert(all.end(), bias->begin(), bias->end());
  }
  if (!any) return false;
  dst.upload(all, s);
  MLA_CUDA_CHECK(cudaStreamSynchronize(s));
  return true;
}

}  // namespace

void CudaBackend::uploadWeights(const Weights& w) {
  const ModelConfig& c = config_;
  uploadMatrix(embed_, {&w.embed}, stream_);
  tiedHead_ = w.lmHead.data == w.embed.data;
  if (!tiedHead_) uploadMatrix(lmHead_, {&w.lmHead}, stream_);
  uploadVector(finalNorm_, w.finalNorm, stream_);
  layers_.resize(w.layers.size());
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LayerWeights& lw = w.layers[i];
    DeviceLayer& d = layers_[i];
    uploadVector(d.inputNorm, lw.inputNorm, stream_);
    uploadVector(d.postNorm, lw.postAttentionNorm, stream_);
    if (c.isMla()) {
      if (!lw.qA.empty()) {
        uploadMatrix(d.qA, {&lw.qA}, stream_);
        uploadMatrix(d.qB, {&lw.qB}, stream_);
        if (!lw.qANorm.empty()) uploadVector(d.qANorm, lw.qANorm, stream_);
        d.hasQABias = uploadBiases(d.qABias, {{&lw.qABias, c.qLoraRank}}, stream_);
      } else {
        uploadMatrix(d.q, {&lw.q}, stream_);
      }
      d.hasQBias = uploadBiases(d.qBias, {{&lw.qBias, c.numHeads * (c.qkNopeHeadDim + c.qkRopeHeadDim)}}, stream_);
      uploadMatrix(d.kvA, {&lw.kvA}, stream_);
      d.hasKvABias = uploadBiases(d.kvABias, {{&lw.kvABias, c.kvLoraRank + c.qkRopeHeadDim}}, stream_);
      if (!lw.kvANorm.empty()) uploadVector(d.kvANorm, lw.kvANorm, stream_);
      uploadMatrix(d.kvB, {&lw.kvB}, stream_);
    } else {
      uploadMatrix(d.qkv, {&lw.q, &lw.k, &lw.v}, stream_);
      const int qDim = c.numHeads * c.headDim, kvDim = c.numKvHeads * c.headDim;
      d.hasQkvBias = uploadBiases(d.qkvBias, {{&lw.qBias, qDim}, {&lw.kBias, kvDim}, {&lw.vBias, kvDim}}, stream_);
    }
    uploadMatrix(d.o, {&lw.o}, stream_);
    d.hasOBias = uploadBiases(d.oBias, {{&lw.oBias, c.hiddenSize}}, stream_);
    uploadMatrix(d.gateUp, {&lw.gate, &lw.up}, stream_);
    uploadMatrix(d.down, {&lw.down}, stream_);
  }
}

DeviceLayer::Matrix DeviceLayer::matrix(LayerMatrix m, int cols) const {
  switch (m) {
    case LayerMatrix::kQ: return stored(q, &qBias, hasQBias, cols);
    case LayerMatrix::kQA: return stored(qA, &qABias, hasQABias, cols);
    case LayerMatrix::kQB: return stored(qB, &qBias, hasQBias, cols);
    case LayerMatrix::kKvA: return stored(kvA, &kvABias, hasKvABias, cols);
    case LayerMatrix::kO: return stored(o, &oBias, hasOBias, cols);
    case LayerMatrix::kDown: return stored(down, nullptr, false, cols);
    default: return {};  // k, v, gate, up: only in their groups
  }
}

DeviceLayer::Matrix DeviceLayer::group(const std::vector<LayerMatrix>& names, int cols) const {
  auto is = [&](std::initializer_list<LayerMatrix> want) { return std::equal(names.begin(), names.end(), want.begin(), want.end()); };
  if (is({LayerMatrix::kQ, LayerMatrix::kK, LayerMatrix::kV})) return stored(qkv, &qkvBias, hasQkvBias, cols);
  if (is({LayerMatrix::kGate, LayerMatrix::kUp})) return stored(gateUp, nullptr, false, cols);
  return names.size() == 1 ? matrix(*names.begin(), cols) : Matrix{};
}

}  // namespace mla::cuda
