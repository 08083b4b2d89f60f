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
  std::vector<int> lengths;  // per sequence
  std::vector<int> rowSeq, rowLen;  // per query row: its sequence and causal length
};

// Runs the kernel on the case with `splits` KV ranges and returns ||out - ref|| / ||ref||.
static double mlaError(const MlaCase& c, int splits) {
  Pool pool(c.lengths, c.L + c.R);
  pool.fill(c.lengths);
  const int rows = static_cast<int>(c.rowSeq.size());
  // Queries of unit scale: scores spread over several units, so softmax weights differ (a wrong
  // score index changes the output well beyond bf16 rounding).
  auto qLat = randn(static_cast<size_t>(rows) * c.heads * c.L, 1.0f), qRope = randn(static_cast<size_t>(rows) * c.heads * c.R, 1.0f);
  const auto qlb = roundBf16(qLat), qrb = roundBf16(qRope);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.L + c.R));
  const auto ref = mlaReference(pool, qLat, qRope, c.rowSeq, c.rowLen, c.heads, c.L, c.R, scale);
  DeviceArray<bf16> dql, dqr, dcache, dout(ref.size());
  DeviceArray<int32_t> dtab, dseq, dlen;
  DeviceArray<float> dpo, dpl;
  uploadBits(dql, qlb);
  uploadBits(dqr, qrb);
  uploadBits(dcache, pool.bits);
  upload(dtab, pool.flatTables());
  upload(dseq, std::vector<int32_t>(c.rowSeq.begin(), c.rowSeq.end()));
  upload(dlen, std::vector<int32_t>(c.rowLen.begin(), c.rowLen.end()));
  cuda::MlaDecodeParams p;
  p.qLatent = dql.get(); p.qRope = dqr.get(); p.cache = dcache.get(); p.blockTables = dtab.get();
  p.rowSeq = dseq.get(); p.rowLength = dlen.get(); p.rows = rows; p.heads = c.heads; p.maxBlocksPerSeq = pool.maxBlocks;
  p.scale = scale; p.numSplits = splits; p.out = dout.get();
  p.partialOut = dpo.reserve(static_cast<size_t>(rows) * splits * c.heads * c.L);
  p.partialLse = dpl.reserve(static_cast<size_t>(rows) * splits * c.heads);
  cuda::mlaDecode(p, c.L, c.R, nullptr);
  if (cudaDeviceSynchronize() != cudaSuccess) return INFINITY;
  return normErr(downloadBf16(dout, ref.size()), ref);
}

// Each sequence decodes its last token; sequence 1 also has prefill rows at earlier positions.
static MlaCase fixedCase(int L, int R, int heads) {
  MlaCase c{L, R, heads, {1, 70, 64, 65, 1000}, {}, {}};
  for (size_t s = 0; s < c.lengths.size(); ++s) {
    c.rowSeq.push_back(static_cast<int>(s));
    c.rowLen.push_back(c.lengths[s]);
  }
  for (int len : {1, 33, 64}) {
    c.rowSeq.push_back(1);
    c.rowLen.push_back(len);
  }
  return c;
}

TEST(mla_decode_every_compiled_shape) {
  int numSms = 0;
  cudaDeviceGetAttribute(&numSms, cudaDevAttrMultiProcessorCount, 0);
  for (const MlaKernelShape& s : kMlaDecodeShapes) {
    for (int heads : {1, 16, 20}) {
      const MlaCase c = fixedCase(s.kvLoraRank, s.qkRopeDim, heads);
      for (int splits : {1, 7, cuda::mlaDecodeSplits(static_cast<int>(c.rowSeq.size()), heads, 1000, numSms)}) {
        const double err = mlaError(c, splits);
        EXPECT_MSG(err < 1e-2, "L=%d R=%d heads=%d splits=%d err=%g", s.kvLoraRank, s.qkRopeDim, heads, splits, err);
      }
    }
  }
  EXPECT(cuda::mlaDecodeSupports(512, 64) && !cuda::mlaDecodeSupports(500, 64));
}

TEST(mla_decode_512_64_with_many_heads_and_random_batches) {
  std::uniform_int_distribution<int> len(1, 1300), extra(0, 3);
  for (int heads : {32, 128}) {
    const double err = mlaError(fixedCase(512, 64, heads), 4);
    EXPECT_MSG(err < 1e-2, "heads=%d err=%g", heads, err);
  }
  for (int trial = 0; trial < 3; ++trial) {
    MlaCase c{512, 64, 16 + 8 * trial, {}, {}, {}};
    for (int s = 0; s < 4; ++s) c.lengths.push_back(len(rng()));
    for (int s = 0; s < 4; ++s) {
      for (int k = extra(rng()); k >= 0; --k) {  // the last k + 1 tokens of the sequence
        c.rowSeq.push_back(s);
        c.rowLen.push_back(std::max(1, c.lengths[static_cast<size_t>(s)] - k));
      }
    }
    for (int splits : {1, 3, 16}) {
      const double err = mlaError(c, splits);
      EXPECT_MSG(err < 1e-2, "trial %d heads %d splits %d err %g", trial, c.heads, splits, err);
    }
  }
}

#if defined(MLA_CUDA_EMULATION)
// A long prompt's prefill has more query rows than a grid's y or z dimension takes (65,535).
TEST(mla_decode_launches_more_rows_than_a_grid_dimension_holds) {
  cuda::MlaDecodeParams p;
  p.rows = 70000;
  p.heads = 128;
  p.numSplits = 1;
  p.scale = 1.0f;
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
