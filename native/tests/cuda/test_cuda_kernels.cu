// Every CUDA kernel against its CPU twin (or a float64 reference) on random inputs over a grid of
// shapes: normalized error below 1e-2 for bf16 paths, NaN never. Unused cache blocks hold NaN and
// unused block-table slots an out-of-range id, so a stray read fails loudly. Skips without a GPU.
#include <algorithm>
#include <map>
#include <numeric>

#include "cpu/attention.h"
#include "cpu/ops.h"
#include "cpu/sampler.h"
#include "cuda/kernels/elementwise.cuh"
#include "cuda/kernels/gqa_attention.cuh"
#include "cuda/kernels/mla_decode.cuh"
#include "cuda/kernels/rmsnorm.cuh"
#include "cuda/kernels/rope_cache.cuh"
#include "cuda/kernels/sampling.cuh"
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

TEST(embedding_swiglu_gather) {
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

// A paged pool with NaN everywhere, sequences scattered over shuffled blocks, unused table slots out of range.
struct Pool {
  int blocks, entry;
  std::vector<uint16_t> bits;  // [blocks][64][entry]
  std::vector<std::vector<int32_t>> tables;
  int maxBlocks = 0;
  Pool(const std::vector<int>& lengths, int entrySize) : entry(entrySize) {
    blocks = 3;
    for (int len : lengths) blocks += (len + 63) / 64;
    bits.assign(static_cast<size_t>(blocks) * 64 * entry, 0xFFFF);  // bf16 NaN
    std::vector<int32_t> ids(static_cast<size_t>(blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng());
    size_t next = 0;
    for (int len : lengths) {
      std::vector<int32_t> t;
      for (int b = 0; b < (len + 63) / 64; ++b) t.push_back(ids[next++]);
      maxBlocks = std::max<int>(maxBlocks, static_cast<int>(t.size()) + 2);
      tables.push_back(t);
    }
  }
  uint16_t* slot(int seq, int pos) { return bits.data() + (static_cast<size_t>(tables[seq][pos / 64]) * 64 + pos % 64) * entry; }
  std::vector<int32_t> flatTables() const {
    std::vector<int32_t> flat(tables.size() * static_cast<size_t>(maxBlocks), 1 << 29);
    for (size_t s = 0; s < tables.size(); ++s) std::copy(tables[s].begin(), tables[s].end(), flat.begin() + static_cast<long>(s * maxBlocks));
    return flat;
  }
};

// Float64 reference of absorbed MLA attention from the pool's (bf16) values.
static std::vector<double> mlaReference(Pool& pool, const std::vector<float>& qLat, const std::vector<float>& qRope, const std::vector<int>& rowSeq,
                                        const std::vector<int>& rowLen, int heads, int L, int R, float scale) {
  std::vector<double> out(rowSeq.size() * heads * L, 0.0);
  for (size_t r = 0; r < rowSeq.size(); ++r) {
    for (int h = 0; h < heads; ++h) {
      const float* ql = &qLat[(r * heads + h) * L];
      const float* qr = &qRope[(r * heads + h) * R];
      std::vector<double> s(static_cast<size_t>(rowLen[r]));
      double m = -INFINITY;
      for (int t = 0; t < rowLen[r]; ++t) {
        const uint16_t* e = pool.slot(rowSeq[r], t);
        double d = 0;
        for (int i = 0; i < L; ++i) d += ql[i] * static_cast<double>(bf16ToFloat(e[i]));
        for (int i = 0; i < R; ++i) d += qr[i] * static_cast<double>(bf16ToFloat(e[L + i]));
        s[t] = d * scale;
        m = std::max(m, s[t]);
      }
      double z = 0;
      for (auto& v : s) z += v = std::exp(v - m);
      for (int t = 0; t < rowLen[r]; ++t) {
        const uint16_t* e = pool.slot(rowSeq[r], t);
        for (int i = 0; i < L; ++i) out[(r * heads + h) * L + i] += s[t] / z * bf16ToFloat(e[i]);
      }
    }
  }
  return out;
}

TEST(mla_decode_over_a_grid) {
  int numSms = 0;
  cudaDeviceGetAttribute(&numSms, cudaDevAttrMultiProcessorCount, 0);
  const std::vector<std::pair<int, int>> shapes = {{512, 64}, {64, 32}, {32, 64}, {256, 32}};
  for (auto [L, R] : shapes) {
    for (int heads : {1, 16, 20, 128}) {
      if (heads == 128 && L != 512) continue;
      // Sequences of varied lengths; rows: each sequence decodes its last token, and sequence 1 also
      // has prefill rows at earlier positions (causal lengths).
      const std::vector<int> lengths = {1, 70, 64, 65, 1000};
      Pool pool(lengths, L + R);
      for (size_t s = 0; s < lengths.size(); ++s) {
        for (int t = 0; t < lengths[s]; ++t) {
          auto v = randn(static_cast<size_t>(L + R));
          auto b = roundBf16(v);
          std::copy(b.begin(), b.end(), pool.slot(static_cast<int>(s), t));
        }
      }
      std::vector<int> rowSeq, rowLen;
      for (size_t s = 0; s < lengths.size(); ++s) {
        rowSeq.push_back(static_cast<int>(s));
        rowLen.push_back(lengths[s]);
      }
      for (int len : {1, 33, 64}) {
        rowSeq.push_back(1);
        rowLen.push_back(len);
      }
      const int rows = static_cast<int>(rowSeq.size());
      auto qLat = randn(static_cast<size_t>(rows) * heads * L, 0.05f), qRope = randn(static_cast<size_t>(rows) * heads * R, 0.05f);
      auto qlb = roundBf16(qLat), qrb = roundBf16(qRope);
      const float scale = 1.0f / std::sqrt(192.0f);
      const auto ref = mlaReference(pool, qLat, qRope, rowSeq, rowLen, heads, L, R, scale);
      DeviceArray<bf16> dql, dqr, dcache, dout(ref.size());
      DeviceArray<int32_t> dtab, dseq, dlen;
      DeviceArray<float> dpo, dpl;
      uploadBits(dql, qlb);
      uploadBits(dqr, qrb);
      uploadBits(dcache, pool.bits);
      upload(dtab, pool.flatTables());
      upload(dseq, std::vector<int32_t>(rowSeq.begin(), rowSeq.end()));
      upload(dlen, std::vector<int32_t>(rowLen.begin(), rowLen.end()));
      for (int splits : {1, 7, cuda::mlaDecodeSplits(rows, heads, 1000, numSms)}) {
        cuda::MlaDecodeParams p;
        p.qLatent = dql.get(); p.qRope = dqr.get(); p.cache = dcache.get(); p.blockTables = dtab.get();
        p.rowSeq = dseq.get(); p.rowLength = dlen.get(); p.rows = rows; p.heads = heads; p.maxBlocksPerSeq = pool.maxBlocks;
        p.scale = scale; p.numSplits = splits; p.out = dout.get();
        p.partialOut = dpo.reserve(static_cast<size_t>(rows) * splits * heads * L);
        p.partialLse = dpl.reserve(static_cast<size_t>(rows) * splits * heads);
        cuda::mlaDecode(p, L, R, nullptr);
        EXPECT(cudaDeviceSynchronize() == cudaSuccess);
        const double err = normErr(downloadBf16(dout, ref.size()), ref);
        EXPECT_MSG(err < 1e-2, "L=%d R=%d heads=%d splits=%d err=%g", L, R, heads, splits, err);
      }
    }
  }
  EXPECT(cuda::mlaDecodeSupports(512, 64) && !cuda::mlaDecodeSupports(500, 64));
}

TEST(gqa_attention_against_cpu) {
  for (int window : {0, 37}) {
    ModelConfig c;
    c.numHeads = 8; c.numKvHeads = 2; c.headDim = 64; c.slidingWindow = window;
    c.softmaxScale = 0.125f;
    const std::vector<int> lengths = {1, 64, 130};
    Pool pool(lengths, 2 * c.numKvHeads * c.headDim);
    std::vector<float> poolFloat(pool.bits.size(), NAN);
    for (size_t s = 0; s < lengths.size(); ++s)
      for (int t = 0; t < lengths[s]; ++t) {
        auto v = randn(static_cast<size_t>(pool.entry));
        auto b = roundBf16(v);
        std::copy(b.begin(), b.end(), pool.slot(static_cast<int>(s), t));
        const size_t off = pool.slot(static_cast<int>(s), t) - pool.bits.data();
        std::copy(v.begin(), v.end(), poolFloat.begin() + static_cast<long>(off));
      }
    // CPU twin: one new token per sequence at its last position.
    ForwardBatch batch;
    std::vector<int32_t> dummy(lengths.size(), 0);
    batch.tokenIds = dummy.data();
    for (size_t s = 0; s < lengths.size(); ++s) {
      SeqSlice sl;
      sl.start = lengths[s] - 1; sl.numTokens = 1; sl.tokenOffset = static_cast<int>(s);
      sl.blockTable = pool.tables[s].data(); sl.numBlocks = static_cast<int>(pool.tables[s].size());
      batch.seqs.push_back(sl);
    }
    batch.numTokens = static_cast<int>(lengths.size());
    auto q = randn(lengths.size() * c.numHeads * c.headDim);
    auto qb = roundBf16(q);
    std::vector<float> ref(q.size());
    ThreadPool tp(2);
    cpu::gqaAttention(tp, c, batch, q.data(), cpu::PagedLayer{poolFloat.data(), 64, pool.entry}, ref.data());
    DeviceArray<bf16> dq, dcache, dout(ref.size());
    DeviceArray<int32_t> dtab, dseq, dlen;
    uploadBits(dq, qb);
    uploadBits(dcache, pool.bits);
    upload(dtab, pool.flatTables());
    upload(dseq, std::vector<int32_t>{0, 1, 2});
    upload(dlen, std::vector<int32_t>(lengths.begin(), lengths.end()));
    cuda::GqaAttentionParams p;
    p.q = dq.get(); p.cache = dcache.get(); p.blockTables = dtab.get(); p.rowSeq = dseq.get(); p.rowLength = dlen.get();
    p.rows = 3; p.heads = c.numHeads; p.kvHeads = c.numKvHeads; p.headDim = c.headDim; p.maxBlocksPerSeq = pool.maxBlocks;
    p.slidingWindow = window; p.scale = c.softmaxScale; p.out = dout.get();
    cuda::gqaAttention(p, nullptr);
    const double err = normErr(downloadBf16(dout, ref.size()), ref);
    EXPECT_MSG(err < 1e-2, "window %d err %g", window, err);
  }
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
  }
}

TEST(sampling_against_the_cpu_sampler) {
  const int V = 5000, rows = 6;
  auto logits = randn(static_cast<size_t>(rows) * V, 2.0f);
  DeviceArray<float> dl, dtemp, dtopp, dminp, drep, dpres, dfreq, dscratch, dlp, dtlp;
  DeviceArray<int32_t> dtopk, doff, dtok, dcnt, dout, dtt;
  DeviceArray<uint64_t> dseed, dctr;
  upload(dl, logits);
  const std::vector<float> temp = {0, 0, 1, 0.7f, 1, 1}, topP = {1, 1, 1, 1, 0.3f, 1}, minP = {0, 0, 0, 0, 0, 0.5f};
  const std::vector<int32_t> topK = {0, 0, 0, 5, 0, 0};
  const std::vector<float> rep = {1, 1.5f, 1, 1, 1, 1}, pres = {0, 0.5f, 0, 0, 0, 0}, freq = {0, 0.3f, 0, 0, 0, 0};
  // Row 1 has penalties on a few tokens (its argmax among them).
  int32_t top1 = static_cast<int32_t>(std::max_element(logits.begin() + V, logits.begin() + 2 * V) - (logits.begin() + V));
  const std::vector<int32_t> offsets = {0, 0, 3, 3, 3, 3, 3}, ptoks = {top1, 7, 8}, pcnts = {2, 0, 1};
  upload(dtemp, temp); upload(dtopp, topP); upload(dminp, minP); upload(dtopk, topK);
  upload(drep, rep); upload(dpres, pres); upload(dfreq, freq);
  upload(dseed, std::vector<uint64_t>(rows, 42)); upload(dctr, std::vector<uint64_t>(rows, 3));
  upload(doff, offsets); upload(dtok, ptoks); upload(dcnt, pcnts);
  cuda::SamplingKernelParams p;
  p.logits = dl.get(); p.rows = rows; p.vocab = V; p.temperature = dtemp.get(); p.topP = dtopp.get(); p.topK = dtopk.get(); p.minP = dminp.get();
  p.repetitionPenalty = drep.get(); p.presencePenalty = dpres.get(); p.frequencyPenalty = dfreq.get(); p.seed = dseed.get(); p.counter = dctr.get();
  p.penaltyOffsets = doff.get(); p.penaltyTokens = dtok.get(); p.penaltyCounts = dcnt.get(); p.numTopLogprobs = 4;
  p.scratch = dscratch.reserve(static_cast<size_t>(rows) * V); p.tokens = dout.reserve(rows); p.logprobs = dlp.reserve(rows);
  p.topTokens = dtt.reserve(rows * 4); p.topLogprobs = dtlp.reserve(rows * 4);
  cuda::sampleTokens(p, nullptr);
  auto tokens = download(dout, rows);
  auto lps = download(dlp, rows);
  auto tops = download(dtt, rows * 4);
  for (int r = 0; r < rows; ++r) {
    SamplingParams sp;
    sp.temperature = temp[r]; sp.topP = topP[r]; sp.topK = topK[r]; sp.minP = minP[r];
    sp.repetitionPenalty = rep[r]; sp.presencePenalty = pres[r]; sp.frequencyPenalty = freq[r]; sp.seed = 42;
    PenaltyState st;
    st.promptTokens = {7};
    st.outputCounts = {{top1, 2}, {8, 1}};
    SampleResult ref;
    cpu::SamplerScratch scratch;
    cpu::sampleRow(&logits[static_cast<size_t>(r) * V], V, SampleRequest{&sp, r == 1 ? &st : nullptr, 3}, 4, ref, scratch);
    if (temp[r] == 0) EXPECT_MSG(tokens[r] == ref.token, "row %d greedy %d vs %d", r, tokens[r], ref.token);
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

TEST(temperature_sampling_follows_softmax) {
  const int V = 50, rows = 4096;
  auto one = randn(V, 1.5f);
  std::vector<float> logits;
  for (int r = 0; r < rows; ++r) logits.insert(logits.end(), one.begin(), one.end());
  std::vector<uint64_t> counters(rows);
  std::iota(counters.begin(), counters.end(), 0);
  DeviceArray<float> dl, dt, dp, dm, d1, d0, dscratch, dlp, dtl;
  DeviceArray<int32_t> dk, doff, dtok, dcnt, dout, dtt;
  DeviceArray<uint64_t> dseed, dctr;
  upload(dl, logits);
  upload(dt, std::vector<float>(rows, 1.0f)); upload(dp, std::vector<float>(rows, 1.0f)); upload(dm, std::vector<float>(rows, 0.0f));
  upload(d1, std::vector<float>(rows, 1.0f)); upload(d0, std::vector<float>(rows, 0.0f)); upload(dk, std::vector<int32_t>(rows, 0));
  upload(doff, std::vector<int32_t>(rows + 1, 0)); upload(dtok, std::vector<int32_t>{0}); upload(dcnt, std::vector<int32_t>{0});
  upload(dseed, std::vector<uint64_t>(rows, 7)); upload(dctr, counters);
  cuda::SamplingKernelParams p;
  p.logits = dl.get(); p.rows = rows; p.vocab = V; p.temperature = dt.get(); p.topP = dp.get(); p.topK = dk.get(); p.minP = dm.get();
  p.repetitionPenalty = d1.get(); p.presencePenalty = d0.get(); p.frequencyPenalty = d0.get(); p.seed = dseed.get(); p.counter = dctr.get();
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
  EXPECT(cuda::philoxUniform(1, 2) == cuda::philoxUniform(1, 2) && cuda::philoxUniform(1, 2) != cuda::philoxUniform(1, 3));
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
