// The whole model on the CUDA backend against the CPU backend (the reference) and the fixtures'
// float64 references: prefill, decode across block boundaries, split-KV over long contexts, and
// sampling (the CUDA sampler picks what the CPU sampler picks from the same logits and seed).
// Fixtures whose MLA shape the decode kernel is not built for are skipped by name; a random
// 512 + 64 model is generated for the kernel's primary shape. Runs on a GPU (skips without one)
// and on the CPU emulator (test_gpu_model_emu, with the reference GEMM in place of cuBLAS).
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "cpu/sampler.h"
#include "cuda/kernels/mla_decode.cuh"
#include "engine/engine.h"
#include "gpu_util.h"
#include "random_model.h"
#include "../harness.h"

using namespace mla;

static std::unique_ptr<Engine> load(const std::string& dir, const std::string& device, MlaPath path = MlaPath::kAuto) {
  EngineOptions o;
  o.modelDir = dir;
  o.device = device;
  o.mlaPath = path;
  o.numBlocks = 64;
  o.poisonCache = true;
  return Engine::create(o);
}

struct Run {
  std::vector<int32_t> tokens;
  std::vector<float> firstLogits;
  std::vector<std::vector<float>> logits;  // after every step
};

// Prefills `prompt` in chunks of `chunk` tokens, then decodes `count` tokens with `params`.
static Run generate(Engine& e, int64_t id, const std::vector<int32_t>& prompt, int count, const SamplingParams& params, int chunk = 1 << 30) {
  Run r;
  // Prefix caching may already hold the prompt's leading blocks: compute from there.
  int pos = e.addSequence(id, prompt.data(), static_cast<int>(prompt.size()), static_cast<int>(prompt.size())).value();
  StepInput in;
  in.seqIds = {id};
  while (pos < static_cast<int>(prompt.size())) {
    const int n = std::min<int>(chunk, static_cast<int>(prompt.size()) - pos);
    in.startPositions = {pos};
    in.numTokens = {n};
    in.tokenIds.assign(prompt.begin() + pos, prompt.begin() + pos + n);
    const bool last = pos + n == static_cast<int>(prompt.size());
    in.sampleMask = {static_cast<uint8_t>(last)};
    in.sampling = last ? std::vector<SamplingParams>{params} : std::vector<SamplingParams>{};
    std::vector<float> lg;
    auto out = e.step(in, &lg);
    pos += n;
    if (pos == static_cast<int>(prompt.size())) {
      r.tokens.push_back(out[0].token);
      r.firstLogits = lg;
      r.logits.push_back(lg);
    }
  }
  while (static_cast<int>(r.tokens.size()) < count) {
    e.ensureCapacity(id, pos + 1);
    in.startPositions = {pos++};
    in.numTokens = {1};
    in.tokenIds = {r.tokens.back()};
    in.sampleMask = {1};
    in.sampling = {params};
    std::vector<float> lg;
    r.tokens.push_back(e.step(in, &lg)[0].token);
    r.logits.push_back(lg);
  }
  e.freeSequence(id);
  return r;
}

static SamplingParams greedyParams() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

static bool kernelBuiltFor(const std::string& dir, std::string& why) {
  const Json c = Json::parse(readTextFile(dir + "/config.json"));
  const Json* rank = c.find("kv_lora_rank");
  if (!rank || rank->isNull()) return true;
  const int L = static_cast<int>(rank->number()), R = static_cast<int>(c.get("qk_rope_head_dim").number());
  if (cuda::mlaDecodeSupports(L, R)) return true;
  why = "the MLA decode kernel is not built for " + std::to_string(L) + " + " + std::to_string(R) + " (mla/kernel_shapes.h)";
  return false;
}

// Greedy on both backends: logits after the prompt within 2e-2 (bf16 weights on the GPU), the same
// tokens up to the first step whose CPU top-2 margin is below 5e-2 (a near tie may flip).
static void compareGreedy(Engine& gpu, Engine& cpu, const std::string& what, const std::vector<int32_t>& prompt, int count, int chunk) {
  static int64_t id = 1;
  const Run g = generate(gpu, id++, prompt, count, greedyParams(), chunk);
  const Run c = generate(cpu, id++, prompt, count, greedyParams(), chunk);
  const double err = gpu::normErr(g.firstLogits, c.firstLogits);
  EXPECT_MSG(err < 2e-2, "%s: logits vs CPU %g", what.c_str(), err);
  for (size_t k = 0; k < c.tokens.size(); ++k) {
    std::vector<float> l = c.logits[k];
    std::partial_sort(l.begin(), l.begin() + 2, l.end(), std::greater<float>());
    if (l[0] - l[1] < 5e-2) break;
    EXPECT_MSG(g.tokens[k] == c.tokens[k], "%s: greedy token %zu differs (%d vs %d)", what.c_str(), k, g.tokens[k], c.tokens[k]);
  }
}

// Seeded sampling on the GPU picks, at every step, what the CPU sampler picks from the GPU's logits.
static void compareSampling(Engine& gpu, const std::vector<int32_t>& prompt, const std::string& what) {
  SamplingParams p;
  p.temperature = 0.9f;
  p.topP = 0.95f;
  p.topK = 50;
  p.seed = 1234;
  const Run g = generate(gpu, 900, prompt, 12, p);
  for (size_t k = 0; k < g.tokens.size(); ++k) {
    SampleResult ref;
    cpu::SamplerScratch scratch;
    cpu::sampleRow(g.logits[k].data(), static_cast<int>(g.logits[k].size()), SampleRequest{&p, nullptr, k, {}}, 0, ref, scratch);
    EXPECT_MSG(g.tokens[k] == ref.token, "%s: sampled token %zu is %d, the CPU sampler picks %d", what.c_str(), k, g.tokens[k], ref.token);
  }
}

static std::vector<int32_t> ramp(int n, int vocab) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[static_cast<size_t>(i)] = static_cast<int32_t>((i * 7919 + 13) % vocab);
  return p;
}

// The fixtures' reference.json: last-prompt logits and greedy ids, float64 and independent.
static void compareReference(Engine& gpu, const std::string& dir, const std::string& rel) {
  const Json ref = Json::parse(readTextFile(dir + "/reference.json"));
  int64_t id = 500;
  size_t i = 0;
  for (const Json& c : ref.get("cases").array()) {
    std::vector<int32_t> prompt;
    for (const Json& t : c.get("prompt_ids").array()) prompt.push_back(static_cast<int32_t>(t.number()));
    const Run g = generate(gpu, id++, prompt, 24, greedyParams());
    for (const Json& pair : c.get("last_logits_top").array()) {
      const int t = static_cast<int>(pair.array()[0].number());
      const double want = pair.array()[1].number();
      EXPECT_MSG(std::fabs(g.firstLogits[static_cast<size_t>(t)] - want) <= 5e-2 * std::max(1.0, std::fabs(want)), "%s case %zu token %d: %g vs %g",
                 rel.c_str(), i, t, g.firstLogits[static_cast<size_t>(t)], want);
    }
    const auto& ids = c.get("greedy_ids").array();
    const auto& margins = c.get("greedy_top2_margins").array();
    for (size_t k = 0; k < ids.size(); ++k) {
      if (margins[k].number() < 5e-2) break;
      EXPECT_MSG(g.tokens[k] == static_cast<int32_t>(ids[k].number()), "%s case %zu: greedy differs at %zu", rel.c_str(), i, k);
    }
    ++i;
  }
}

static void checkModel(const std::string& dir, const std::string& name) {
  std::string why;
  if (!kernelBuiltFor(dir, why)) {
    std::printf("  skip %s: %s\n", name.c_str(), why.c_str());
    return;
  }
  auto gpu = load(dir, "cuda");
  auto cpu = load(dir, "cpu");
  const int vocab = gpu->config().vocabSize;
#if defined(MLA_CUDA_EMULATION)
  const size_t mallocsAtLoad = cuemu::mallocCount();
#endif
  if (fileExists(dir + "/reference.json")) compareReference(*gpu, dir, name);
  compareGreedy(*gpu, *cpu, name + " short prompt", ramp(5, vocab), 24, 1 << 30);
  compareGreedy(*gpu, *cpu, name + " 60-token prompt, decode across the block boundary", ramp(60, vocab), 12, 1 << 30);
  compareGreedy(*gpu, *cpu, name + " 300-token prompt in chunks of 128 (split-KV)", ramp(300, vocab), 6, 128);
  compareSampling(*gpu, ramp(20, vocab), name);
  gpu->blocks().checkIntegrity();
#if defined(MLA_CUDA_EMULATION)
  // Steps within the load's limits (2,048 tokens, 256 sequences) run in the workspace reserved at load.
  EXPECT_MSG(cuemu::mallocCount() == mallocsAtLoad, "%s: %zu device allocations during the steps", name.c_str(), cuemu::mallocCount() - mallocsAtLoad);
#endif
  if (gpu->config().isMla()) {
    // Both forms of MLA prefill, forced: the tiled absorbed kernel and the expanded products.
    for (MlaPath path : {MlaPath::kAbsorbed, MlaPath::kExpanded}) {
      auto forced = load(dir, "cuda", path);
      compareGreedy(*forced, *cpu, name + (path == MlaPath::kAbsorbed ? " absorbed" : " expanded") + " prefill of 130 tokens", ramp(130, vocab), 4, 1 << 30);
    }
  }

}

TEST(fixtures_match_the_cpu_backend_and_their_references) {
  for (const char* rel : {"models/gutenberg-tiny", "test/fixtures/random-qwen2", "test/fixtures/random-mla", "test/fixtures/random-mla-transmla"}) {
    checkModel(std::string(MLA_SOURCE_DIR) + "/" + rel, rel);
  }
}

TEST(a_random_512_plus_64_mla_model_matches_the_cpu_backend) {
  const std::string dir = gpu::writeRandomMla(gpu::RandomMlaShape{}, 7);
  checkModel(dir, "random deepseek_v3 512+64, 20 heads");
}

int main() {
  gpu::requireGpu();
  return harness::runAll();
}
