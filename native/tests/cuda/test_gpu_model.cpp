// The whole model on the GPU (needs the CUDA backend, so cuBLAS): every fixture against its
// reference.json (float64, independent) and against the CPU backend. Skips without a GPU.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/json.h"
#include "core/safetensors.h"
#include "engine/engine.h"
#include "gpu_util.h"
#include "../harness.h"

using namespace mla;

static const char* kModels[] = {"models/gutenberg-tiny", "test/fixtures/random-qwen2", "test/fixtures/random-mla", "test/fixtures/random-mla-transmla", "models/gutenberg-tiny-mla"};

static std::unique_ptr<Engine> load(const std::string& dir, const std::string& device) {
  EngineOptions o;
  o.modelDir = dir;
  o.device = device;
  o.numBlocks = 64;
  o.poisonCache = true;
  return Engine::create(o);
}

// Prefill + greedy decode; returns the tokens and the logits after the prompt.
static std::vector<int32_t> greedy(Engine& e, int64_t id, const std::vector<int32_t>& prompt, int count, std::vector<float>& firstLogits) {
  SamplingParams greedyParams;
  greedyParams.temperature = 0;
  e.addSequence(id, prompt.data(), static_cast<int>(prompt.size()), static_cast<int>(prompt.size()), greedyParams);
  StepInput in;
  in.seqIds = {id};
  in.startPositions = {0};
  in.numTokens = {static_cast<int32_t>(prompt.size())};
  in.tokenIds = prompt;
  in.sampleMask = {1};
  std::vector<int32_t> out = {e.step(in, &firstLogits)[0].token};
  int pos = static_cast<int>(prompt.size());
  while (static_cast<int>(out.size()) < count) {
    e.ensureCapacity(id, pos + 1);
    in.startPositions = {pos++};
    in.numTokens = {1};
    in.tokenIds = {out.back()};
    out.push_back(e.step(in)[0].token);
  }
  e.freeSequence(id);
  return out;
}

TEST(every_fixture_matches_its_reference_and_the_cpu) {
  for (const char* rel : kModels) {
    const std::string dir = std::string(MLA_SOURCE_DIR) + "/" + rel;
    const bool hasRef = fileExists(dir + "/reference.json");
    auto gpu = load(dir, "cuda");
    auto cpu = load(dir, "cpu");
    std::vector<std::vector<int32_t>> prompts;
    Json ref;
    if (hasRef) {
      ref = Json::parse(readTextFile(dir + "/reference.json"));
      for (const Json& c : ref.get("cases").array()) {
        std::vector<int32_t> p;
        for (const Json& t : c.get("prompt_ids").array()) p.push_back(static_cast<int32_t>(t.number()));
        prompts.push_back(p);
      }
    } else {
      prompts = {{1, 400, 500, 600, 700}, std::vector<int32_t>(130, 28)};
    }
    int64_t id = 1;
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::vector<float> lg, lc;
      const auto tg = greedy(*gpu, id++, prompts[i], 24, lg);
      const auto tc = greedy(*cpu, id++, prompts[i], 24, lc);
      const double err = gpu::normErr(lg, lc);
      EXPECT_MSG(err < 2e-2, "%s case %zu: logits vs CPU %g", rel, i, err);
      if (!hasRef) continue;
      const Json& c = ref.get("cases").array()[i];
      for (const Json& pair : c.get("last_logits_top").array()) {
        const int t = static_cast<int>(pair.array()[0].number());
        const double want = pair.array()[1].number();
        EXPECT_MSG(std::fabs(lg[t] - want) <= 5e-2 * std::max(1.0, std::fabs(want)), "%s case %zu token %d: %g vs %g", rel, i, t, lg[t], want);
      }
      const auto& ids = c.get("greedy_ids").array();
      const auto& margins = c.get("greedy_top2_margins").array();
      for (size_t k = 0; k < ids.size(); ++k) {
        if (margins[k].number() < 5e-2) break;  // bf16 may flip a near tie; from there the sequences differ
        EXPECT_MSG(tg[k] == static_cast<int32_t>(ids[k].number()), "%s case %zu: greedy differs at %zu", rel, i, k);
      }
    }
    gpu->blocks().checkIntegrity();
  }
}

int main() {
  gpu::requireGpu();
  return harness::runAll();
}
