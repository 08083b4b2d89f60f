// CPU attention over the paged cache at decode (batch 1 and 8, one new token each) and prefill
// (512 new tokens) shapes: ms per layer and the cache bytes read per second, for a 1 B Llama's GQA
// layout (32 query heads, 8 KV heads of 64) and an absorbed MLA layout (32 heads against a
// 512 + 64 latent; decode only: MLA prefills in the expanded form, ordinary multi-head attention,
// the loop the GQA prefill rows time). The cache spans 16 layers (well past L3), read one layer
// after the other as a forward pass does. The cache sits in ordinary pages, as the CPU backend holds
// it (BENCH_PAGES=huge: in huge pages, which made GQA's 4,096 x 1 ~15% slower on Zen 3).
// Also the bundled model's two layouts (4 heads), where the per-key work, not the bytes, decides.
//   bench_attention [threads] [decode|all] [name]   (decode: the one-new-token rows only; name: the
//   cases whose name starts with it: gqa, mla, "mla 4", ...). BENCH_REPS=n: best of n (default 5).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/huge_buffer.h"
#include "cpu/isa.h"
#include "cpu/paged_attention.h"

namespace {

constexpr int kLayers = 16, kBlock = 64;

struct Case {
  const char* name;
  mla::cpu::HeadLayout layout;
  int entry;  // values per cached token
};

double run(mla::ThreadPool& pool, const Case& c, int context, int batch, int newTokens) {
  const int blocksPerSeq = (context + kBlock - 1) / kBlock;
  const size_t layerValues = static_cast<size_t>(batch) * blocksPerSeq * kBlock * c.entry;
  const char* pages = std::getenv("BENCH_PAGES");
  const bool hugePages = pages && std::string(pages) == "huge";
  std::vector<uint16_t> small(hugePages ? 0 : layerValues * kLayers);
  mla::HugeBuffer huge(hugePages ? layerValues * kLayers * sizeof(uint16_t) : 0);
  uint16_t* cache = hugePages ? reinterpret_cast<uint16_t*>(huge.data()) : small.data();  // [layers][blocks][kBlock][entry]
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<uint16_t> pattern(4096 * 3 + 1);  // a few thousand random values, repeated: filling 100s of MB stays fast
  for (auto& v : pattern) v = mla::floatToBf16(uniform(rng));
  for (size_t i = 0; i < layerValues * kLayers; ++i) cache[i] = pattern[i % pattern.size()];
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(batch));
  std::vector<mla::cpu::PagedQuery> queries;
  for (int s = 0; s < batch; ++s) {
    for (int b = 0; b < blocksPerSeq; ++b) tables[static_cast<size_t>(s)].push_back(s * blocksPerSeq + b);
    queries.push_back({tables[static_cast<size_t>(s)].data(), context - newTokens, newTokens, s * newTokens});
  }
  const int rows = batch * newTokens, H = c.layout.numHeads;
  std::vector<float> q(static_cast<size_t>(rows) * H * c.layout.dk), out(static_cast<size_t>(rows) * H * c.layout.dv);
  for (auto& v : q) v = uniform(rng) * 0.2f;
  double best = 1e9;
  for (int rep = 0; rep < (std::getenv("BENCH_REPS") ? std::atoi(std::getenv("BENCH_REPS")) : 5); ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int l = 0; l < kLayers; ++l) {
      const mla::cpu::PagedLayer layer{cache + layerValues * l, kBlock, c.entry, mla::DType::kBF16};
      mla::cpu::pagedAttention(pool, layer, c.layout, queries, q.data(), out.data());
    }
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / kLayers);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const bool decodeOnly = argc > 2 && std::string(argv[2]) == "decode";
  const std::string only = argc > 3 ? argv[3] : "";
  mla::ThreadPool pool(threads);
  mla::cpu::HeadLayout gqa;
  gqa.numHeads = 32, gqa.headsPerKv = 4, gqa.kBase = 0, gqa.vBase = 8 * 64, gqa.kvStride = 64, gqa.dk = gqa.dv = 64, gqa.scale = 0.125f;
  mla::cpu::HeadLayout mla;
  mla.numHeads = 32, mla.headsPerKv = 32, mla.dk = 576, mla.dv = 512, mla.scale = 0.07f;
  // The bundled model's layouts (models/gutenberg-tiny: 4 query and 2 KV heads of 64; its MLA
  // conversion: 4 heads against a 32 + 64 latent), where per-item costs outweigh the bytes.
  mla::cpu::HeadLayout tinyGqa = gqa;
  tinyGqa.numHeads = 4, tinyGqa.headsPerKv = 2, tinyGqa.vBase = 2 * 64;
  mla::cpu::HeadLayout tinyMla = mla;
  tinyMla.numHeads = 4, tinyMla.headsPerKv = 4, tinyMla.dk = 96, tinyMla.dv = 32;
  const Case cases[] = {{"gqa 32/8x64", gqa, 2 * 8 * 64}, {"mla 32 x 512+64", mla, 576}, {"gqa 4/2x64", tinyGqa, 2 * 2 * 64}, {"mla 4 x 32+64", tinyMla, 96}};
  std::printf("threads %d, %s kernels, bf16 cache\ncase            | context | batch | new | ms/layer | cache GB/s\n", pool.numThreads(),
              mla::cpu::isaName(mla::cpu::activeIsa()));
  for (const Case& c : cases) {
    if (!only.empty() && std::string(c.name).rfind(only, 0) != 0) continue;
    for (int context : {512, 4096}) {
      for (auto [batch, fresh] : {std::pair{1, 1}, std::pair{8, 1}, std::pair{1, 512}}) {
        const bool absorbedMla = c.layout.headsPerKv == c.layout.numHeads;
        if (fresh > 1 && (decodeOnly || absorbedMla)) continue;
        const double s = run(pool, c, context, batch, fresh);
        const double bytes = 2.0 * batch * context * c.entry;
        std::printf("%-15s | %7d | %5d | %3d | %8.3f | %6.1f\n", c.name, context, batch, fresh, s * 1e3, bytes / s / 1e9);
      }
    }
  }
}
