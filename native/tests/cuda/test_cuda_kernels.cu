// The row-wise CUDA kernels (norms, embedding, SwiGLU, RoPE with the cache write, sampling, scoring)
// against their CPU twins or float64 references on random inputs over a grid of shapes: normalized
// error below 1e-2 for bf16 paths, NaN never. Attention kernels: test_cuda_attention.cu. Runs on a
// GPU (skips without one) and on the CPU emulator (test_cuda_kernels_emu).
#include <algorithm>
#include <map>
#include <numeric>

#include "cpu/attention.h"
#include "cpu/ops.h"
#include "cpu/sampler.h"
#include "cuda/kernels/elementwise.cuh"
#include "cuda/kernels/rmsnorm.cuh"
#include "cuda/kernels/rope_cache.cuh"
#include "cuda/kernels/sampling.cuh"
#include "mla/philox.h"
#include "gpu_util.h"
#include "../harness.h"

using namespace gpu;
using namespace mla;

TEST(rmsnorm_residual) {
  for (int rows : {1, 7, 64}) {
    for (int dim : {64, 256, 1000, 4096}) {
      auto x = randn(static_cast<size_t>(rows) * dim), d = randn(x.size()), w = randn(dim, 0.1f);
      for (auto& v : w) v += 1.0f;
      auto wb = roundBf16(w);
      std::vector<float> sum(x.size()), ref(x.size());
      for (size_t i = 0; i < x.size(); ++i) sum[i] = x[i] + d[i];
      cpu::rmsNorm(sum.data(), w.data(), rows, dim, 1e-6f, ref.data());
      DeviceArray<float> dx, dd;
      DeviceArray<bf16> dw, dout(static_cast<size_t>(rows) * dim);
      upload(dx, x);
      upload(dd, d);
      uploadBits(dw, wb);
      cuda::RmsNormParams p;
      p.residual = dx.get(); p.delta = dd.get(); p.weight = dw.get(); p.out = dout.get(); p.rows = rows; p.dim = dim; p.eps = 1e-6f;
      cuda::rmsNormResidual(p, nullptr);
      const double err = normErr(downloadBf16(dout, x.size()), ref);
      EXPECT_MSG(err < 1e-2, "rows %d dim %d err %g", rows, dim, err);
      EXPECT(normErr(download(dx, x.size()), sum) < 1e-6);
    }
  }
}

TEST(embedding_and_swiglu) {
  const int vocab = 300, hidden = 96, n = 5, ffn = 40;
  auto e = randn(static_cast<size_t>(vocab) * hidden);
  auto eb = roundBf16(e);
  std::vector<int32_t> tokens = {0, 299, 17, 17, 150};
  DeviceArray<bf16> de;
  DeviceArray<int32_t> dt;
  DeviceArray<float> dx(static_cast<size_t>(n) * hidden);
  uploadBits(de, eb);
  upload(dt, tokens);
  cuda::embedTokens(de.get(), dt.get(), n, hidden, dx.get(), nullptr);
  auto x = download(dx, static_cast<size_t>(n) * hidden);
  for (int i = 0; i < n; ++i) EXPECT(std::equal(x.begin() + i * hidden, x.begin() + (i + 1) * hidden, e.begin() + tokens[i] * hidden));
  auto gu = randn(static_cast<size_t>(n) * 2 * ffn);
  std::vector<float> ref(static_cast<size_t>(n) * ffn);
  for (int i = 0; i < n; ++i) cpu::siluMul(&gu[i * 2 * ffn], &gu[i * 2 * ffn + ffn], ffn, &ref[i * ffn]);
  DeviceArray<float> dgu;
  DeviceArray<bf16> dout(ref.size());
  upload(dgu, gu);
  cuda::swiglu(dgu.get(), n, ffn, dout.get(), nullptr);
  EXPECT(normErr(downloadBf16(dout, ref.size()), ref) < 1e-2);
}

TEST(bias_conversion_and_row_gathers) {
  const int n = 7, cols = 300;
  auto x = randn(static_cast<size_t>(n) * cols), bias = randn(cols);
  DeviceArray<float> dx, db, dg(3 * cols);
  DeviceArray<bf16> dh(x.size()), dgh(3 * cols);
  DeviceArray<int32_t> drows;
  upload(dx, x);
  upload(db, bias);
  cuda::addBias(dx.get(), db.get(), n, cols, nullptr);
  std::vector<float> ref = x;
  for (int i = 0; i < n; ++i) for (int j = 0; j < cols; ++j) ref[i * cols + j] += bias[j];
  EXPECT(download(dx, x.size()) == ref);
  cuda::toBf16(dx.get(), x.size(), dh.get(), nullptr);
  std::vector<float> rounded = ref;
  roundBf16(rounded);
  EXPECT(downloadBf16(dh, x.size()) == rounded);  // round to nearest even, bit for bit
  const std::vector<int32_t> rows = {6, 0, 6};
  upload(drows, rows);
  cuda::gatherRows(dx.get(), drows.get(), 3, cols, dg.get(), nullptr);
  cuda::gatherRowsBf16(dh.get(), drows.get(), 3, cols, dgh.get(), nullptr);
  const auto g = download(dg, 3 * cols), gh = downloadBf16(dgh, 3 * cols);
  for (int r = 0; r < 3; ++r)
    for (int j = 0; j < cols; ++j) {
      EXPECT(g[r * cols + j] == ref[rows[r] * cols + j]);
      EXPECT(gh[r * cols + j] == rounded[rows[r] * cols + j]);
    }
}

TEST(gqa_rope_cache_against_cpu) {
  const int T = 4, H = 6, Hkv = 2, D = 64;
  RopeConfig rope;
  rope.dim = D;
  rope.interleaved = false;  // Llama's half rotation
  const auto inv = rope.inverseFrequencies();
  const int width = (H + 2 * Hkv) * D;
  auto qkv = randn(static_cast<size_t>(T) * width);
  std::vector<int32_t> positions = {0, 7, 64, 4000};
  std::vector<int64_t> slots = {5, 0, 2, 8};
  DeviceArray<float> dqkv;
  DeviceArray<double> dinv;
  DeviceArray<int32_t> dpos;
  DeviceArray<int64_t> dslots;
  DeviceArray<bf16> dq(static_cast<size_t>(T) * H * D), dcache(9 * 2 * Hkv * D);
  upload(dqkv, qkv);
  upload(dinv, inv);
  upload(dpos, positions);
  upload(dslots, slots);
  cuda::GqaRopeCacheParams p;
  p.qkv = dqkv.get(); p.tokens = {dpos.get(), dslots.get()}; p.rope = {dinv.get(), D, false};
  p.numTokens = T; p.numHeads = H; p.numKvHeads = Hkv; p.headDim = D; p.q = dq.get(); p.cache = dcache.get();
  cuda::gqaRopeCache(p, nullptr);
  const auto q = downloadBf16(dq, static_cast<size_t>(T) * H * D), cache = downloadBf16(dcache, 9 * 2 * Hkv * D);
  std::vector<float> refQ(q.size()), refE(static_cast<size_t>(T) * 2 * Hkv * D), gotE(refE.size());
  for (int t = 0; t < T; ++t) {
    const float* src = &qkv[static_cast<size_t>(t) * width];
    for (int h = 0; h < H + Hkv; ++h) {
      std::vector<float> v(src + h * D, src + (h + 1) * D);
      cpu::applyRope(v.data(), positions[t], rope, inv.data());
      if (h < H) std::copy(v.begin(), v.end(), &refQ[(static_cast<size_t>(t) * H + h) * D]);
      else std::copy(v.begin(), v.end(), &refE[(static_cast<size_t>(t) * 2 * Hkv + h - H) * D]);
    }
    std::copy_n(src + (H + Hkv) * D, Hkv * D, &refE[(static_cast<size_t>(t) * 2 * Hkv + Hkv) * D]);  // V: no rotation
    std::copy_n(&cache[slots[t] * 2 * Hkv * D], 2 * Hkv * D, &gotE[static_cast<size_t>(t) * 2 * Hkv * D]);
  }
  EXPECT_MSG(normErr(q, refQ) < 1e-2, "q %g", normErr(q, refQ));
  EXPECT_MSG(normErr(gotE, refE) < 1e-2, "cache %g", normErr(gotE, refE));
}

TEST(mla_rope_cache_against_cpu) {
  const int T = 5, H = 4, N = 32, R = 16, L = 48;
  RopeConfig rope;
  rope.dim = R;
  rope.interleaved = true;
  const auto inv = rope.inverseFrequencies();
  auto q = randn(static_cast<size_t>(T) * H * (N + R)), kva = randn(static_cast<size_t>(T) * (L + R)), norm = randn(L, 0.1f);
  for (auto& v : norm) v += 1.0f;
  auto normBits = roundBf16(norm);
  std::vector<int32_t> positions = {0, 1, 63, 64, 5000};
  std::vector<int64_t> slots = {3, 9, 0, 1, 7};
  for (bool withNorm : {false, true}) {
    DeviceArray<float> dq, dkva;
    DeviceArray<double> dinv;
    DeviceArray<int32_t> dpos;
    DeviceArray<int64_t> dslots;
    DeviceArray<bf16> dnorm, dqn(static_cast<size_t>(T) * H * N), dqr(static_cast<size_t>(T) * H * R), dcache(10 * (L + R));
    upload(dq, q);
    upload(dkva, kva);
    upload(dinv, inv);
    upload(dpos, positions);
    upload(dslots, slots);
    uploadBits(dnorm, normBits);
    cuda::MlaRopeCacheParams p;
    p.q = dq.get(); p.kva = dkva.get(); p.kvNorm = withNorm ? dnorm.get() : nullptr; p.tokens = {dpos.get(), dslots.get()};
    p.rope = {dinv.get(), R, true}; p.numTokens = T; p.numHeads = H; p.nope = N; p.ropeDim = R; p.kvLoraRank = L;
    p.qNope = dqn.get(); p.qRope = dqr.get(); p.cache = dcache.get();
    cuda::mlaRopeCache(p, nullptr);
    auto cache = downloadBf16(dcache, 10 * (L + R)), qr = downloadBf16(dqr, static_cast<size_t>(T) * H * R);
    std::vector<float> refEntry(static_cast<size_t>(T) * (L + R)), gotEntry(refEntry.size()), refQr(qr.size());
    for (int t = 0; t < T; ++t) {
      const float* src = &kva[t * (L + R)];
      float* e = &refEntry[t * (L + R)];
      if (withNorm) cpu::rmsNorm(src, norm.data(), 1, L, 1e-6f, e);
      else std::copy_n(src, L, e);
      std::copy_n(src + L, R, e + L);
      cpu::applyRope(e + L, positions[t], rope, inv.data());
      std::copy_n(&cache[slots[t] * (L + R)], L + R, &gotEntry[t * (L + R)]);
      for (int h = 0; h < H; ++h) {
        std::copy_n(&q[(t * H + h) * (N + R) + N], R, &refQr[(t * H + h) * R]);
        cpu::applyRope(&refQr[(t * H + h) * R], positions[t], rope, inv.data());
      }
    }
    EXPECT_MSG(normErr(gotEntry, refEntry) < 1e-2, "cache entries (norm %d): %g", withNorm, normErr(gotEntry, refEntry));
    EXPECT(normErr(qr, refQr) < 1e-2);
    std::vector<float> refQn(static_cast<size_t>(T) * H * N);
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h) std::copy_n(&q[(t * H + h) * (N + R)], N, &refQn[(t * H + h) * N]);
    EXPECT(normErr(downloadBf16(dqn, refQn.size()), refQn) < 1e-2);
  }
}

TEST(sampling_against_the_cpu_sampler) {
  const int V = 5000, rows = 6;
  auto logits = randn(static_cast<size_t>(rows) * V, 2.0f);
  DeviceArray<float> dl, dscratch, dlp, dtlp;
  DeviceArray<int32_t> doff, dtok, dcnt, dout, dtt;
  DeviceArray<SamplingParams> dparams;
  DeviceArray<uint64_t> dctr;
  upload(dl, logits);
  const std::vector<float> temp = {0, 0, 1, 0.7f, 1, 1}, topP = {1, 1, 1, 1, 0.3f, 1}, minP = {0, 0, 0, 0, 0, 0.5f};
  const std::vector<int32_t> topK = {0, 0, 0, 5, 0, 0};
  const std::vector<float> rep = {1, 1.5f, 1, 1, 1, 1}, pres = {0, 0.5f, 0, 0, 0, 0}, freq = {0, 0.3f, 0, 0, 0, 0};
  // Row 1 has penalties on a few tokens (its argmax among them).
  int32_t top1 = static_cast<int32_t>(std::max_element(logits.begin() + V, logits.begin() + 2 * V) - (logits.begin() + V));
  const std::vector<int32_t> offsets = {0, 0, 3, 3, 3, 3, 3}, ptoks = {top1, 7, 8}, pcnts = {2, 0, 1};
  std::vector<SamplingParams> params(rows);
  for (int r = 0; r < rows; ++r) {
    SamplingParams& sp = params[static_cast<size_t>(r)];
    sp.temperature = temp[r]; sp.topP = topP[r]; sp.topK = topK[r]; sp.minP = minP[r];
    sp.repetitionPenalty = rep[r]; sp.presencePenalty = pres[r]; sp.frequencyPenalty = freq[r]; sp.seed = 42;
  }
  upload(dparams, params); upload(dctr, std::vector<uint64_t>(rows, 3));
  upload(doff, offsets); upload(dtok, ptoks); upload(dcnt, pcnts);
  cuda::SamplingKernelParams p;
  p.logits = dl.get(); p.rows = rows; p.vocab = V; p.params = dparams.get(); p.counter = dctr.get();
  p.penaltyOffsets = doff.get(); p.penaltyTokens = dtok.get(); p.penaltyCounts = dcnt.get(); p.numTopLogprobs = 4;
  p.scratch = dscratch.reserve(static_cast<size_t>(rows) * V); p.tokens = dout.reserve(rows); p.logprobs = dlp.reserve(rows);
  p.topTokens = dtt.reserve(rows * 4); p.topLogprobs = dtlp.reserve(rows * 4);
  cuda::sampleTokens(p, nullptr);
  auto tokens = download(dout, rows);
  auto lps = download(dlp, rows);
  auto tops = download(dtt, rows * 4);
  for (int r = 0; r < rows; ++r) {
    const SamplingParams& sp = params[static_cast<size_t>(r)];
    PenaltyState st;
    st.promptTokens = {7};
    st.outputCounts = {{top1, 2}, {8, 1}};
    SampleResult ref;
    cpu::SamplerScratch scratch;
    cpu::sampleRow(&logits[static_cast<size_t>(r) * V], V, SampleRequest{&sp, r == 1 ? &st : nullptr, 3, {}}, 4, ref, scratch);
    // The same seed gives the same token as the CPU sampler (one Philox draw, one order), greedy or not.
    EXPECT_MSG(tokens[r] == ref.token, "row %d: %d on the GPU, %d on the CPU", r, tokens[r], ref.token);
    EXPECT(std::fabs(lps[r] - cpu::targetLogprob(&logits[static_cast<size_t>(r) * V], V, tokens[r])) < 1e-3);
    EXPECT(std::vector<int32_t>(tops.begin() + r * 4, tops.begin() + r * 4 + 4) == ref.topTokens);
  }
  // Top-k 5: the token is among the 5 most likely; min-p 0.5: its probability is at least half the top one.
  std::vector<int> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + 5, order.end(), [&](int a, int b) { return logits[3 * V + a] > logits[3 * V + b]; });
  EXPECT(std::find(order.begin(), order.begin() + 5, tokens[3]) != order.begin() + 5);
  const float m5 = *std::max_element(logits.begin() + 5 * V, logits.begin() + 6 * V);
  EXPECT(logits[5 * V + tokens[5]] >= m5 + std::log(0.5f) - 1e-4f);
}

// Logits processors on both samplers: a grammar-style mask and a bias list give the same token.
TEST(masks_and_biases_match_the_cpu_sampler) {
  const int V = 3000, rows = 4, words = (V + 31) / 32;
  auto logits = randn(static_cast<size_t>(rows) * V, 2.0f);
  std::vector<uint32_t> mask(static_cast<size_t>(2) * words, 0);
  for (int t = 0; t < V; t += 7) mask[static_cast<size_t>(t / 32)] |= 1u << (t % 32);            // mask 0: every 7th token
  for (int t = 100; t < 140; ++t) mask[static_cast<size_t>(words + t / 32)] |= 1u << (t % 32);   // mask 1: a window
  const std::vector<int32_t> maskRow = {0, -1, 1, 0};
  const std::vector<int32_t> biasOffsets = {0, 0, 2, 2, 3}, biasTokens = {5, 6, 120};
  const std::vector<float> biasValues = {30.0f, -INFINITY, 8.0f};
  const std::vector<float> temp = {0, 0, 0.8f, 1.0f};
  DeviceArray<float> dl, dscratch, dlp, dtl, dbv;
  DeviceArray<int32_t> doff, dtok, dcnt, dout, dtt, dbo, dbt, dmr;
  DeviceArray<SamplingParams> dparams;
  DeviceArray<uint32_t> dmw;
  DeviceArray<uint64_t> dctr;
  std::vector<SamplingParams> params(rows);
  for (int r = 0; r < rows; ++r) {
    params[static_cast<size_t>(r)].temperature = temp[static_cast<size_t>(r)];
    params[static_cast<size_t>(r)].seed = 11;
  }
  upload(dl, logits); upload(dparams, params);
  upload(doff, std::vector<int32_t>(rows + 1, 0)); upload(dtok, std::vector<int32_t>{0}); upload(dcnt, std::vector<int32_t>{0});
  upload(dctr, std::vector<uint64_t>(rows, 5));
  upload(dbo, biasOffsets); upload(dbt, biasTokens); upload(dbv, biasValues); upload(dmr, maskRow); upload(dmw, mask);
  cuda::SamplingKernelParams p;
  p.logits = dl.get(); p.rows = rows; p.vocab = V; p.params = dparams.get(); p.counter = dctr.get();
  p.penaltyOffsets = doff.get(); p.penaltyTokens = dtok.get(); p.penaltyCounts = dcnt.get(); p.numTopLogprobs = 0;
  p.biasOffsets = dbo.get(); p.biasTokens = dbt.get(); p.biasValues = dbv.get(); p.maskRow = dmr.get(); p.maskWords = dmw.get();
  p.scratch = dscratch.reserve(static_cast<size_t>(rows) * V); p.tokens = dout.reserve(rows); p.logprobs = dlp.reserve(rows);
  p.topTokens = dtt.reserve(1); p.topLogprobs = dtl.reserve(1);
  cuda::sampleTokens(p, nullptr);
  const auto tokens = download(dout, rows);
  for (int r = 0; r < rows; ++r) {
    const SamplingParams& sp = params[static_cast<size_t>(r)];
    SampleRequest req{&sp, nullptr, 5, {}};
    if (maskRow[static_cast<size_t>(r)] >= 0) req.adjust.allowed = mask.data() + static_cast<size_t>(maskRow[static_cast<size_t>(r)]) * words;
    req.adjust.biasTokens = biasTokens.data() + biasOffsets[static_cast<size_t>(r)];
    req.adjust.biasValues = biasValues.data() + biasOffsets[static_cast<size_t>(r)];
    req.adjust.numBias = biasOffsets[static_cast<size_t>(r) + 1] - biasOffsets[static_cast<size_t>(r)];
    SampleResult ref;
    cpu::SamplerScratch scratch;
    cpu::sampleRow(&logits[static_cast<size_t>(r) * V], V, req, 0, ref, scratch);
    EXPECT_MSG(tokens[static_cast<size_t>(r)] == ref.token, "row %d: %d on the GPU, %d on the CPU", r, tokens[static_cast<size_t>(r)], ref.token);
    if (maskRow[static_cast<size_t>(r)] >= 0) {
      const uint32_t* allowed = mask.data() + static_cast<size_t>(maskRow[static_cast<size_t>(r)]) * words;
      EXPECT((allowed[tokens[static_cast<size_t>(r)] / 32] >> (tokens[static_cast<size_t>(r)] % 32)) & 1u);
    }
  }
  EXPECT(tokens[1] == 5);  // +30 on token 5 makes it the greedy pick
}

TEST(temperature_sampling_follows_softmax) {
  const int V = 50, rows = 4096;
  auto one = randn(V, 1.5f);
  std::vector<float> logits;
  for (int r = 0; r < rows; ++r) logits.insert(logits.end(), one.begin(), one.end());
  std::vector<uint64_t> counters(rows);
  std::iota(counters.begin(), counters.end(), 0);
  DeviceArray<float> dl, dscratch, dlp, dtl;
  DeviceArray<int32_t> doff, dtok, dcnt, dout, dtt;
  DeviceArray<SamplingParams> dparams;
  DeviceArray<uint64_t> dctr;
  SamplingParams seeded;  // temperature 1, nothing else on
  seeded.seed = 7;
  upload(dl, logits); upload(dparams, std::vector<SamplingParams>(rows, seeded));
  upload(doff, std::vector<int32_t>(rows + 1, 0)); upload(dtok, std::vector<int32_t>{0}); upload(dcnt, std::vector<int32_t>{0});
  upload(dctr, counters);
  cuda::SamplingKernelParams p;
  p.logits = dl.get(); p.rows = rows; p.vocab = V; p.params = dparams.get(); p.counter = dctr.get();
  p.penaltyOffsets = doff.get(); p.penaltyTokens = dtok.get(); p.penaltyCounts = dcnt.get(); p.numTopLogprobs = 0;
  p.scratch = dscratch.reserve(static_cast<size_t>(rows) * V); p.tokens = dout.reserve(rows); p.logprobs = dlp.reserve(rows);
  p.topTokens = dtt.reserve(1); p.topLogprobs = dtl.reserve(1);
  cuda::sampleTokens(p, nullptr);
  auto tokens = download(dout, rows);
  std::map<int, int> counts;
  for (int t : tokens) counts[t]++;
  const float m = *std::max_element(one.begin(), one.end());
  double z = 0;
  for (float v : one) z += std::exp(v - m);
  for (int t = 0; t < V; ++t) {
    const double prob = std::exp(one[t] - m) / z;
    if (prob < 0.01) continue;
    const double zscore = (counts[t] - rows * prob) / std::sqrt(rows * prob * (1 - prob));
    EXPECT_MSG(std::fabs(zscore) < 5, "token %d: %d of %d, expected %.1f", t, counts[t], rows, rows * prob);
  }
  EXPECT(philoxUniform(1, 2) == philoxUniform(1, 2) && philoxUniform(1, 2) != philoxUniform(1, 3));
}

TEST(target_logprobs) {
  const int V = 777, rows = 9;
  auto logits = randn(static_cast<size_t>(rows) * V, 3.0f);
  std::vector<int32_t> targets = {0, 1, 2, 776, 5, 500, 3, 3, 100};
  DeviceArray<float> dl, dout(rows);
  DeviceArray<int32_t> dt;
  upload(dl, logits);
  upload(dt, targets);
  cuda::targetLogprobs(dl.get(), dt.get(), rows, V, dout.get(), nullptr);
  auto got = download(dout, rows);
  for (int r = 0; r < rows; ++r) EXPECT(std::fabs(got[r] - cpu::targetLogprob(&logits[static_cast<size_t>(r) * V], V, targets[r])) < 1e-4);
}

int main() {
  requireGpu();
  return harness::runAll();
}
