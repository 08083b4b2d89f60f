// CPU kernels against plain double-precision references: matmul, RoPE, and attention over a
// paged cache whose unused blocks are NaN and whose unused table slots are out of range.
#include <algorithm>
#include <limits>
#include <numeric>
#include <random>

#include "cpu/attention.h"
#include "cpu/isa.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "harness.h"

using namespace mla;

static std::mt19937 rng(11);

static std::vector<float> randn(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Every kernel test runs under each ISA this machine has (cpu/isa.h): AVX2, and AVX-512 where present.
static std::vector<cpu::Isa> supportedIsas() {
  std::vector<cpu::Isa> all;
  for (cpu::Isa isa : cpu::kAllIsas)
    if (cpu::isaSupported(isa)) all.push_back(isa);
  return all;
}

static double normErr(const std::vector<float>& a, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (std::isnan(a[i])) return INFINITY;
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / den);
}

static const cpu::WeightStream kStreams[] = {cpu::WeightStream::kOneRow, cpu::WeightStream::kTwoRows};

TEST(matmul_matches_reference_over_shapes_and_dtypes) {
  ThreadPool pool(2);
  for (cpu::Isa isa : supportedIsas()) {
  cpu::setActiveIsa(isa);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (int m : {1, 2, 5, 33}) {
      for (int n : {1, 3, 4, 17, 64, 257}) {
        for (int k : {1, 7, 8, 31, 64, 300, 2048}) {
          auto x = randn(static_cast<size_t>(m) * k), wf = randn(static_cast<size_t>(n) * k), bias = randn(static_cast<size_t>(n));
          std::vector<uint16_t> wb(wf.size());
          for (size_t i = 0; i < wf.size(); ++i) { wb[i] = floatToBf16(wf[i]); wf[i] = bf16ToFloat(wb[i]); }
          Matrix w{dtype == DType::kF32 ? static_cast<const void*>(wf.data()) : wb.data(), dtype, n, k};
          std::vector<float> y(static_cast<size_t>(m) * n), ref(y.size());
          cpu::matmulReference(x.data(), m, w, bias.data(), ref.data());
          std::vector<double> refd(ref.begin(), ref.end());
          for (cpu::WeightStream stream : kStreams) {
            cpu::matmul(pool, x.data(), m, w, bias.data(), y.data(), stream);
            const double err = normErr(y, refd);
            EXPECT_MSG(err < 1e-5, "%s %s dtype %s m=%d n=%d k=%d err=%g", cpu::isaName(isa), cpu::weightStreamName(stream), dtypeName(dtype), m, n, k, err);
          }
        }
      }
    }
  }
  }
}

TEST(matmul_rows_do_not_depend_on_the_batch) {
  ThreadPool pool(2);
  for (int k : {203, 256}) {  // 256: a whole number of AMX tiles (amx_matmul.h), 203 not
  const int m = 37, n = 129;
  auto x = randn(static_cast<size_t>(m) * k), w = randn(static_cast<size_t>(n) * k);
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = floatToBf16(w[i]);
  for (Matrix mw : {Matrix{w.data(), DType::kF32, n, k}, Matrix{wb.data(), DType::kBF16, n, k}})
  for (cpu::Isa isa : supportedIsas()) {
    cpu::setActiveIsa(isa);
    std::vector<float> all(static_cast<size_t>(m) * n), one(static_cast<size_t>(n));
    cpu::matmul(pool, x.data(), m, mw, nullptr, all.data());
    for (cpu::WeightStream stream : kStreams) {  // either weight order gives the batch's sums
      for (int i = 0; i < m; ++i) {
        cpu::matmul(pool, x.data() + static_cast<size_t>(i) * k, 1, mw, nullptr, one.data(), stream);
        EXPECT_MSG(std::equal(one.begin(), one.end(), all.begin() + static_cast<long>(i) * n), "%s %s k %d row %d", cpu::isaName(isa), cpu::weightStreamName(stream), k, i);
      }
    }
  }
  }
}

TEST(rope_interleaved_is_half_split_under_a_permutation) {
  RopeConfig half, inter;
  half.dim = inter.dim = 16;
  inter.interleaved = true;
  auto inv = half.inverseFrequencies();
  auto x = randn(16);
  std::vector<float> a = x, b(16);
  for (int i = 0; i < 8; ++i) { b[i] = x[2 * i]; b[i + 8] = x[2 * i + 1]; }  // de-interleave
  cpu::applyRope(a.data(), 37, inter, inv.data());
  cpu::applyRope(b.data(), 37, half, inv.data());
  for (int i = 0; i < 8; ++i) {
    EXPECT(std::fabs(a[2 * i] - b[i]) < 1e-6 && std::fabs(a[2 * i + 1] - b[i + 8]) < 1e-6);
  }
}

TEST(rope_scores_depend_only_on_relative_position) {
  RopeConfig rope;
  rope.dim = 64;
  auto inv = rope.inverseFrequencies();
  auto q = randn(64), k = randn(64);
  auto score = [&](int m, int n) {
    auto qa = q, ka = k;
    cpu::applyRope(qa.data(), m, rope, inv.data());
    cpu::applyRope(ka.data(), n, rope, inv.data());
    return std::inner_product(qa.begin(), qa.end(), ka.begin(), 0.0);
  };
  EXPECT(std::fabs(score(10, 3) - score(1010, 1003)) < 1e-3);
  EXPECT(std::fabs(score(10, 3) - score(3, 10)) > 1e-3);
}

TEST(rope_llama3_scaling_matches_the_published_formula) {
  RopeConfig r;
  r.theta = 500000;
  r.dim = 128;
  r.scaling = RopeScaling::kLlama3;
  r.factor = 8;
  r.lowFreqFactor = 1;
  r.highFreqFactor = 4;
  r.originalMaxPositions = 8192;
  auto inv = r.inverseFrequencies();
  const double pi = 3.14159265358979323846;
  for (int i = 0; i < 64; ++i) {
    const double f = std::pow(500000.0, -2.0 * i / 128), wavelen = 2 * pi / f;
    double expected = f;
    if (wavelen > 8192) expected = f / 8;
    else if (wavelen >= 2048) {
      const double s = (8192 / wavelen - 1) / 3;
      expected = (1 - s) * f / 8 + s * f;
    }
    EXPECT_MSG(std::fabs(inv[i] - expected) <= 1e-12 * expected, "i=%d", i);
  }
  EXPECT(inv[0] == 1.0 && std::fabs(inv[63] - std::pow(500000.0, -126.0 / 128) / 8) < 1e-15);
}

// ---- attention over a paged cache ----

struct PagedFixture {
  ModelConfig c;
  int blockSize;
  DType dtype;
  std::vector<float> pool;                 // [blocks][blockSize][entry], NaN where unused
  std::vector<uint16_t> poolBf16;          // the same in bf16 (dtype kBF16)
  std::vector<std::vector<int32_t>> tables;  // per sequence, padded with out-of-range ids
  std::vector<std::vector<float>> entries;  // per sequence: [context][entry] contiguous truth
  ForwardBatch batch;
  std::vector<int32_t> dummyTokens;

  // contexts[s] tokens in cache for sequence s; the last newTokens[s] of them are this step's.
  // A bf16 pool holds the truth rounded to bf16.
  PagedFixture(const ModelConfig& config, const std::vector<int>& contexts, const std::vector<int>& newTokens,
               DType poolDtype = DType::kF32, int tokensPerBlock = 4)
      : c(config), blockSize(tokensPerBlock), dtype(poolDtype) {
    const int entry = c.cacheEntrySize();
    int numBlocks = 0;
    for (int ctx : contexts) numBlocks += (ctx + blockSize - 1) / blockSize + 1;
    pool.assign(static_cast<size_t>(numBlocks) * blockSize * entry, std::numeric_limits<float>::quiet_NaN());
    std::vector<int32_t> ids(static_cast<size_t>(numBlocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    size_t nextId = 0;
    int offset = 0;
    for (size_t s = 0; s < contexts.size(); ++s) {
      const int ctx = contexts[s], used = (ctx + blockSize - 1) / blockSize;
      std::vector<int32_t> table;
      for (int b = 0; b < used; ++b) table.push_back(ids[nextId++]);
      for (int b = 0; b < 3; ++b) table.push_back(1 << 28);  // unused slots: out of range
      tables.push_back(table);
      entries.push_back(randn(static_cast<size_t>(ctx) * entry));
      if (dtype == DType::kBF16)
        for (float& v : entries.back()) v = bf16ToFloat(floatToBf16(v));
      for (int t = 0; t < ctx; ++t) {
        float* dst = pool.data() + (static_cast<size_t>(table[t / blockSize]) * blockSize + t % blockSize) * entry;
        std::copy_n(entries.back().data() + static_cast<size_t>(t) * entry, entry, dst);
      }
      SeqSlice slice;
      slice.start = ctx - newTokens[s];
      slice.numTokens = newTokens[s];
      slice.tokenOffset = offset;
      slice.blockTable = tables.back().data();
      slice.numBlocks = used;
      batch.seqs.push_back(slice);
      offset += newTokens[s];
    }
    batch.numTokens = offset;
    if (dtype == DType::kBF16)
      for (float v : pool) poolBf16.push_back(floatToBf16(v));
    dummyTokens.assign(static_cast<size_t>(offset), 0);
    batch.tokenIds = dummyTokens.data();
  }
  cpu::PagedLayer layer() {
    if (dtype == DType::kBF16) return cpu::PagedLayer{poolBf16.data(), blockSize, c.cacheEntrySize(), DType::kBF16};
    return cpu::PagedLayer{pool.data(), blockSize, c.cacheEntrySize()};
  }
};

static void softmaxInPlace(std::vector<double>& s) {
  const double m = *std::max_element(s.begin(), s.end());
  double z = 0;
  for (double& v : s) z += v = std::exp(v - m);
  for (double& v : s) v /= z;
}

TEST(gqa_attention_matches_reference) {
  // Head dims 16 (one AVX-512 register) and 80 (AVX-512: a 4-register pass, then single registers;
  // AVX2: five 2-register passes, its single-register tail is the MLA test's); blocks
  // of 4 tokens (contexts split into chunks and merged), of 32 (the softmax's vector exp) and of 5
  // (not a whole number of the score tile's keys: a block's last step writes fewer keys).
  // And multi-query attention (one KV head for 4 heads of 64, blocks of 32), which on AMX runs on
  // the tiles (amx_attention.h: every head reads one shared entry), windows included.
  struct Shape { int D, kvHeads, block; };
  for (cpu::Isa isa : supportedIsas()) {
  cpu::setActiveIsa(isa);
  for (Shape shape : {Shape{16, 2, 4}, Shape{16, 2, 5}, Shape{80, 2, 32}, Shape{80, 2, 5}, Shape{64, 1, 32}}) {
  const int D = shape.D, KV = shape.kvHeads, blockSize = shape.block, perKv = 4 / KV;
  {
  ModelConfig c;
  c.numHeads = 4; c.numKvHeads = KV; c.headDim = D; c.softmaxScale = 0.25f;
  const int entry = 2 * KV * D;  // [k heads | v heads]
  // Contexts past one chunk (8 blocks of 4) and prompts past one tile (16 tokens) take the split
  // and merged paths; a bf16 pool is read exactly as its values.
  for (auto [window, dtype] : {std::pair{0, DType::kF32}, {5, DType::kF32}, {0, DType::kBF16}, {37, DType::kBF16}}) {
    c.slidingWindow = window;
    // Query rows per KV head (2 per token here): 2, 4, 6, 16, 18 and 32 cover every tail of the
    // score and P·V tiles (kScoreRows 5 or 4 below 8 rows, kRowTile 5 or 3 from 8, kAxpyTile 4; the
    // MLA test below has AVX2's odd tails).
    PagedFixture f(c, {1, 9, 20, 6, 100, 70}, {1, 9, 3, 2, 1, 40}, dtype, blockSize);
    auto q = randn(static_cast<size_t>(f.batch.numTokens) * 4 * D);
    std::vector<float> out(q.size());
    ThreadPool pool(2);
    cpu::gqaAttention(pool, c, f.batch, q.data(), f.layer(), out.data());
    std::vector<double> ref(q.size());
    for (size_t s = 0; s < f.batch.seqs.size(); ++s) {
      const SeqSlice& sl = f.batch.seqs[s];
      for (int i = 0; i < sl.numTokens; ++i) {
        const int pos = sl.start + i, row = sl.tokenOffset + i, first = window ? std::max(0, pos - window + 1) : 0;
        for (int h = 0; h < 4; ++h) {
          const int g = h / perKv;
          std::vector<double> sc;
          for (int t = first; t <= pos; ++t) {
            double d = 0;
            for (int j = 0; j < D; ++j) d += q[(row * 4 + h) * D + j] * f.entries[s][t * entry + g * D + j];
            sc.push_back(d * 0.25);
          }
          softmaxInPlace(sc);
          for (int j = 0; j < D; ++j) {
            double o = 0;
            for (int t = first; t <= pos; ++t) o += sc[t - first] * f.entries[s][t * entry + KV * D + g * D + j];
            ref[(row * 4 + h) * D + j] = o;
          }
        }
      }
    }
    const double err = normErr(out, ref);
    EXPECT_MSG(err < 1e-5, "%s head dim %d kv heads %d block %d window %d %s err %g", cpu::isaName(isa), D, KV, blockSize, window, dtypeName(dtype), err);
  }
  }
  }
  }
}

TEST(mla_absorbed_and_expanded_match_reference) {
  // A tiny shape (all scalar tails), and one with 5 heads (AVX-512's 5-row tiles) and a latent of
  // 72 + 8 (AVX-512: a 4-register pass, then single registers and a tail; AVX2: 2-register
  // passes, then one register and a tail).
  // Two more run on AMX's tiles (amx_attention.h: 4 heads or more, L + R a multiple of 32, L of
  // 16, the block of 32): 17 heads (two full panels of 8 rows and a partial one: the paired and
  // the odd panel's loops) at block size 32, and the bundled model's 4 heads of a 32 + 64 entry
  // at its block size of 64.
  struct Shape { int H, N, R, V, L, block; };
  for (cpu::Isa isa : supportedIsas()) {
  cpu::setActiveIsa(isa);
  for (Shape shape : {Shape{3, 8, 4, 6, 12, 4}, Shape{5, 16, 8, 24, 72, 32}, Shape{17, 16, 32, 24, 64, 32}, Shape{4, 64, 64, 64, 32, 64}}) {
  ModelConfig c;
  c.attention = AttentionKind::kMla;
  const int H = shape.H, N = shape.N, R = shape.R, V = shape.V, L = shape.L, E = L + R;
  c.numHeads = H; c.qkNopeHeadDim = N; c.qkRopeHeadDim = R; c.vHeadDim = V; c.kvLoraRank = L;
  c.softmaxScale = static_cast<float>(1 / std::sqrt(static_cast<double>(N + R)));
  auto kvbW = randn(static_cast<size_t>(H) * (N + V) * L, 0.3f);
  std::vector<uint16_t> kvbBf(kvbW.size());
  for (size_t i = 0; i < kvbW.size(); ++i) { kvbBf[i] = floatToBf16(kvbW[i]); kvbW[i] = bf16ToFloat(kvbBf[i]); }
  for (DType poolDtype : {DType::kF32, DType::kBF16}) {
  PagedFixture f(c, {1, 7, 13, 21, 90, 61, 300}, {1, 7, 2, 1, 1, 35, 3}, poolDtype, shape.block);  // 300: past a step of 4 blocks (amx_attention.h)
  auto q = randn(static_cast<size_t>(f.batch.numTokens) * H * (N + R));
  // Reference: expand every cached latent through kv_b_proj, then multi-head attention, in double.
  std::vector<double> ref(static_cast<size_t>(f.batch.numTokens) * H * V);
  for (size_t s = 0; s < f.batch.seqs.size(); ++s) {
    const SeqSlice& sl = f.batch.seqs[s];
    for (int i = 0; i < sl.numTokens; ++i) {
      const int pos = sl.start + i, row = sl.tokenOffset + i;
      for (int h = 0; h < H; ++h) {
        auto kv = [&](int t, int r) {  // row r of head h's [k_nope | v] for token t
          double d = 0;
          for (int l = 0; l < L; ++l) d += kvbW[(h * (N + V) + r) * L + l] * f.entries[s][t * E + l];
          return d;
        };
        std::vector<double> sc;
        for (int t = 0; t <= pos; ++t) {
          double d = 0;
          for (int n = 0; n < N; ++n) d += q[(row * H + h) * (N + R) + n] * kv(t, n);
          for (int r = 0; r < R; ++r) d += q[(row * H + h) * (N + R) + N + r] * f.entries[s][t * E + L + r];
          sc.push_back(d * c.softmaxScale);
        }
        softmaxInPlace(sc);
        for (int j = 0; j < V; ++j) {
          double o = 0;
          for (int t = 0; t <= pos; ++t) o += sc[t] * kv(t, N + j);
          ref[(row * H + h) * V + j] = o;
        }
      }
    }
  }
  ThreadPool pool(2);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    Matrix kvB{dtype == DType::kF32 ? static_cast<const void*>(kvbW.data()) : kvbBf.data(), dtype, H * (N + V), L};
    std::vector<float> absorbed(ref.size()), expanded(ref.size());
    cpu::mlaAbsorbedAttention(pool, c, f.batch, q.data(), kvB, f.layer(), absorbed.data());
    cpu::mlaExpandedAttention(pool, c, f.batch, q.data(), kvB, f.layer(), expanded.data());
    EXPECT_MSG(normErr(absorbed, ref) < 1e-5, "%s L=%d absorbed %g", cpu::isaName(isa), L, normErr(absorbed, ref));
    EXPECT_MSG(normErr(expanded, ref) < 1e-5, "%s L=%d expanded %g", cpu::isaName(isa), L, normErr(expanded, ref));
  }
  }
  }
  }
}

TEST(mla_cost_model_picks_absorbed_for_decode) {
  ModelConfig c;
  c.attention = AttentionKind::kMla;
  c.numHeads = 32; c.qkNopeHeadDim = 128; c.qkRopeHeadDim = 64; c.vHeadDim = 128; c.kvLoraRank = 512;
  EXPECT(absorbedIsCheaper(c, 1, 1));
  EXPECT(absorbedIsCheaper(c, 1, 32768));
  EXPECT(!absorbedIsCheaper(c, 4096, 4096));
}

RUN_TESTS()
