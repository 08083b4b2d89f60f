// The attention kernels over the paged cache against float64 references and the CPU twin: the
// fused absorbed MLA kernel over every compiled shape and over random batch mixes (ragged last
// pages, rows of one sequence at several causal lengths, more splits than pages), and GQA
// attention. Unused cache slots hold NaN and unused table entries point far outside the pool.
// Runs on a GPU (skips without one) and on the CPU emulator (test_cuda_attention_emu).
#include <algorithm>
#include <numeric>

#include "cpu/attention.h"
#include "cuda/kernels/gqa_attention.cuh"
#include "cuda/kernels/mla_decode.cuh"
#include "mla/kernel_shapes.h"
#include "paged_pool.h"
#include "../harness.h"

using namespace gpu;
using namespace mla;

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

struct MlaCase {
  int L, R, heads;
  std::vector<int> lengths;                // per sequence: cached tokens
  std::vector<std::vector<int>> rowLens;   // per sequence: the causal lengths of its query rows, increasing
};

// Runs the kernel on the case with `ctas` persistent CTAs and returns ||out - ref|| / ||ref||.
static double mlaError(const MlaCase& c, int ctas) {
  Pool pool(c.lengths, c.L + c.R);
  pool.fill(c.lengths);
  std::vector<int> rowSeq, rowLen;
  std::vector<cuda::MlaSeqRows> seqRows;
  for (size_t s = 0; s < c.rowLens.size(); ++s) {
    seqRows.push_back({static_cast<int>(s), static_cast<int>(rowSeq.size()), static_cast<int>(c.rowLens[s].size())});
    for (int len : c.rowLens[s]) {
      rowSeq.push_back(static_cast<int>(s));
      rowLen.push_back(len);
    }
  }
  const int rows = static_cast<int>(rowSeq.size());
  const std::vector<int32_t> lens32(rowLen.begin(), rowLen.end());
  const auto tiles = cuda::mlaTiles(seqRows, lens32.data(), c.heads);
  // Queries of unit scale: scores spread over several units, so softmax weights differ (a wrong
  // score index changes the output well beyond bf16 rounding).
  auto qLat = randn(static_cast<size_t>(rows) * c.heads * c.L, 1.0f), qRope = randn(static_cast<size_t>(rows) * c.heads * c.R, 1.0f);
  const auto qlb = roundBf16(qLat), qrb = roundBf16(qRope);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.L + c.R));
  const auto ref = mlaReference(pool, qLat, qRope, rowSeq, rowLen, c.heads, c.L, c.R, scale);
  DeviceArray<bf16> dql, dqr, dcache, dout(ref.size());
  DeviceArray<int32_t> dtab, dlen, dstart(tiles.size() + 1), dsplits(tiles.size()), dslot(tiles.size());
  DeviceArray<cuda::MlaTile> dtiles;
  DeviceArray<cuda::MlaWorkSpan> dspans(static_cast<size_t>(ctas));
  DeviceArray<float> dpo(cuda::mlaPartialSlots(ctas) * cuda::kMlaTileRows * c.L), dpl(cuda::mlaPartialSlots(ctas) * cuda::kMlaTileRows);
  uploadBits(dql, qlb);
  uploadBits(dqr, qrb);
  uploadBits(dcache, pool.bits);
  upload(dtab, pool.flatTables());
  upload(dlen, lens32);
  upload(dtiles, tiles);
  cuda::MlaDecodeParams p;
  p.qLatent = dql.get(); p.qRope = dqr.get(); p.cache = dcache.get(); p.blockTables = dtab.get(); p.rowLength = dlen.get();
  p.tiles = dtiles.get(); p.numTiles = static_cast<int>(tiles.size()); p.heads = c.heads; p.maxBlocksPerSeq = pool.maxBlocks; p.scale = scale;
  p.schedule = {dspans.get(), dstart.get(), dsplits.get(), dslot.get(), ctas};
  p.partialOut = dpo.get(); p.partialLse = dpl.get(); p.out = dout.get();
  cuda::mlaDecode(p, c.L, c.R, nullptr);
  if (cudaDeviceSynchronize() != cudaSuccess) return INFINITY;
  return normErr(downloadBf16(dout, ref.size()), ref);
}

// Sequences of lengths 1, 70, 64, 65 and 1000 decode their last token; the 70-token one also has
// query rows at 33, 34 and 69 keys (a multi-token tile, like speculative decoding), and the
// 1000-token one four prefill rows.
static MlaCase fixedCase(int L, int R, int heads) {
  return MlaCase{L, R, heads, {1, 70, 64, 65, 1000}, {{1}, {33, 34, 69, 70}, {64}, {65}, {997, 998, 999, 1000}}};
}

TEST(mla_decode_every_compiled_shape) {
  int numSms = 0;
  cudaDeviceGetAttribute(&numSms, cudaDevAttrMultiProcessorCount, 0);
  for (const MlaKernelShape& s : kMlaDecodeShapes) {
    for (int heads : {1, 16, 20}) {
      const MlaCase c = fixedCase(s.kvLoraRank, s.qkRopeDim, heads);
      for (int ctas : {1, 7, cuda::mlaDecodeCtas(s.kvLoraRank, s.qkRopeDim, numSms)}) {
        const double err = mlaError(c, ctas);
        EXPECT_MSG(err < 1e-2, "L=%d R=%d heads=%d ctas=%d err=%g", s.kvLoraRank, s.qkRopeDim, heads, ctas, err);
      }
    }
  }
  EXPECT(cuda::mlaDecodeSupports(512, 64) && !cuda::mlaDecodeSupports(500, 64));
}

TEST(mla_decode_512_64_with_many_heads_and_random_batches) {
  std::uniform_int_distribution<int> len(1, 1300), extra(0, 5);
  for (int heads : {32, 128}) {
    const double err = mlaError(fixedCase(512, 64, heads), 12);
    EXPECT_MSG(err < 1e-2, "heads=%d err=%g", heads, err);
  }
  for (int trial = 0; trial < 3; ++trial) {
    MlaCase c{512, 64, 8 + 12 * trial, {}, {}};
    for (int s = 0; s < 4; ++s) {
      c.lengths.push_back(len(rng()));
      std::vector<int> rows;
      for (int k = extra(rng()); k >= 0; --k) rows.push_back(std::max(1, c.lengths.back() - k));  // the last k + 1 tokens
      c.rowLens.push_back(rows);
    }
    for (int ctas : {1, 3, 16, 64}) {
      const double err = mlaError(c, ctas);
      EXPECT_MSG(err < 1e-2, "trial %d heads %d ctas %d err %g", trial, c.heads, ctas, err);
    }
  }
}

// The schedule covers every chunk of every tile exactly once, in order, with balanced spans, and
// gives each shared tile consecutive partial slots within the workspace.
TEST(mla_schedule_balances_and_covers_every_chunk) {
  std::uniform_int_distribution<int> len(1, 5000);
  for (int trial = 0; trial < 20; ++trial) {
    const int numTiles = 1 + trial * 37 % 300, ctas = 1 + trial * 13 % 140;
    std::vector<cuda::MlaTile> tiles;
    for (int t = 0; t < numTiles; ++t) tiles.push_back(cuda::MlaTile{0, 0, 1, 0, 1, trial % 4 == 0 ? 1 + t % 3 : len(rng())});
    DeviceArray<cuda::MlaTile> dtiles;
    DeviceArray<cuda::MlaWorkSpan> dspans(static_cast<size_t>(ctas));
    DeviceArray<int32_t> dstart(tiles.size() + 1), dsplits(tiles.size()), dslot(tiles.size());
    upload(dtiles, tiles);
    cuda::MlaDecodeParams p;
    p.tiles = dtiles.get();
    p.numTiles = numTiles;
    p.schedule = {dspans.get(), dstart.get(), dsplits.get(), dslot.get(), ctas};
    cuda::mlaSchedule(p, nullptr);
    EXPECT(cudaDeviceSynchronize() == cudaSuccess);
    const auto spans = download(dspans, static_cast<size_t>(ctas));
    const auto splits = download(dsplits, tiles.size()), slot = download(dslot, tiles.size());
    std::vector<int> covered(static_cast<size_t>(numTiles), 0), parts(static_cast<size_t>(numTiles), 0);
    long long total = 0, most = 0;
    int lastTile = 0, lastChunk = 0;
    for (int i = 0; i < ctas; ++i) {
      const auto& s = spans[static_cast<size_t>(i)];
      EXPECT_MSG(s.beginTile == lastTile && s.beginChunk == lastChunk, "span %d starts at (%d, %d), the last ended at (%d, %d)", i, s.beginTile, s.beginChunk, lastTile, lastChunk);
      long long cost = 0;
      for (int t = s.beginTile; t <= s.endTile && t < numTiles; ++t) {
        const int chunks = (tiles[static_cast<size_t>(t)].length + 31) / 32;
        const int c0 = t == s.beginTile ? s.beginChunk : 0, c1 = t == s.endTile ? s.endChunk : chunks;
        if (c1 <= c0) continue;
        EXPECT_MSG((t == s.beginTile ? s.firstSplit : 0) == parts[static_cast<size_t>(t)], "span %d: tile %d part %d, expected %d", i, t, s.firstSplit, parts[static_cast<size_t>(t)]);
        covered[static_cast<size_t>(t)] += c1 - c0;
        parts[static_cast<size_t>(t)]++;
        cost += c1 - c0 + (c0 == 0 ? 1 : 0);
      }
      total += cost;
      most = std::max(most, cost);
      lastTile = s.endTile;
      lastChunk = s.endChunk;
    }
    EXPECT(lastTile == numTiles && lastChunk == 0);
    long long allCost = 0;
    size_t usedSlots = 0;
    for (int t = 0; t < numTiles; ++t) {
      const int chunks = (tiles[static_cast<size_t>(t)].length + 31) / 32;
      allCost += chunks + 1;
      EXPECT_MSG(covered[static_cast<size_t>(t)] == chunks, "tile %d: %d of %d chunks covered", t, covered[static_cast<size_t>(t)], chunks);
      EXPECT_MSG(splits[static_cast<size_t>(t)] == parts[static_cast<size_t>(t)], "tile %d: %d parts, schedule says %d", t, parts[static_cast<size_t>(t)], splits[static_cast<size_t>(t)]);
      if (splits[static_cast<size_t>(t)] > 1) {
        EXPECT(static_cast<size_t>(slot[static_cast<size_t>(t)]) == usedSlots);
        usedSlots += static_cast<size_t>(splits[static_cast<size_t>(t)]);
      }
    }
    EXPECT_MSG(usedSlots <= cuda::mlaPartialSlots(ctas), "%zu partial slots for %d CTAs", usedSlots, ctas);
    const long long budget = std::max<long long>(4, (allCost + ctas - 1) / ctas);
    EXPECT_MSG(most <= budget + 1, "trial %d: the busiest CTA costs %lld, the budget is %lld", trial, most, budget);
  }
}

#if defined(MLA_CUDA_EMULATION)
// A long prompt's prefill has more query rows than a grid's y or z dimension takes (65,535).
TEST(mla_decode_launches_more_tiles_than_a_grid_dimension_holds) {
  cuda::MlaDecodeParams p;
  p.numTiles = 140000;  // a 70,000-token prefill of a 128-head model: the combine kernel's grid
  p.heads = 128;
  p.schedule.numCtas = 132;
  cuemu::setValidateOnly(true);
  cuda::mlaDecode(p, 512, 64, nullptr);
  cuemu::setValidateOnly(false);
  EXPECT(cudaGetLastError() == cudaSuccess);
}
#endif

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


int main() {
  requireGpu();
  return harness::runAll();
}
