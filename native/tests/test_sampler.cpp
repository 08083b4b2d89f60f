// The sampler on hand-made logits.
#include <map>

#include "cpu/sampler.h"

#include <cmath>
#include "harness.h"

using namespace mla;

static SampleResult draw(const std::vector<float>& logits, const SamplingParams& p, uint64_t counter, const PenaltyState* pen = nullptr, int top = 0) {
  cpu::SamplerScratch scratch;
  SampleResult r;
  cpu::sampleRow(logits.data(), static_cast<int>(logits.size()), SampleRequest{&p, pen, counter, {}}, top, r, scratch);
  return r;
}

TEST(counter_rng_is_deterministic_and_uniform) {
  EXPECT(cpu::uniformFromCounter(1, 2) == cpu::uniformFromCounter(1, 2));
  EXPECT(cpu::uniformFromCounter(1, 2) != cpu::uniformFromCounter(1, 3));
  double sum = 0;
  int buckets[10] = {0};
  for (int i = 0; i < 100000; ++i) {
    const double u = cpu::uniformFromCounter(99, static_cast<uint64_t>(i));
    EXPECT(u >= 0 && u < 1);
    sum += u;
    buckets[static_cast<int>(u * 10)]++;
  }
  EXPECT(std::fabs(sum / 100000 - 0.5) < 0.01);
  for (int b : buckets) EXPECT(b > 9500 && b < 10500);
  // Philox4x32-10, Random123's known answer for counter 0 and key 0: 6627e8d5 e169c58d bc57ac4c 9b00dbd8.
  EXPECT(cpu::uniformFromCounter(0, 0) == static_cast<double>((0x6627e8d5ull << 32 | 0xe169c58dull) >> 11) / 9007199254740992.0);
}

TEST(greedy_topk_topp_minp) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  SamplingParams p;
  p.temperature = 0;
  EXPECT(draw(logits, p, 0).token == 1);  // ties: the lowest id
  p.temperature = 1;
  p.topK = 2;
  std::map<int, int> seen;
  for (uint64_t i = 0; i < 2000; ++i) seen[draw(logits, p, i).token]++;
  EXPECT(seen.size() == 2 && seen.count(1) && seen.count(3));
  EXPECT(seen[1] > 850 && seen[1] < 1150);
  p.topK = 0;
  p.topP = 0.5f;  // p(1) = p(3) ~ 0.39 each: the nucleus needs both
  seen.clear();
  for (uint64_t i = 0; i < 1000; ++i) seen[draw(logits, p, i).token]++;
  EXPECT(seen.size() == 2 && seen.count(1) && seen.count(3));
  p.topP = 1;
  p.minP = 0.5f;  // keeps tokens with p >= 0.5 p_max: 1, 3 (2 has e^-1 ~ 0.37)
  seen.clear();
  for (uint64_t i = 0; i < 1000; ++i) seen[draw(logits, p, i).token]++;
  EXPECT(seen.size() == 2 && seen.count(1) && seen.count(3));
}

TEST(penalties) {
  std::vector<float> logits = {2.0f, 1.9f, -1.0f};
  SamplingParams p;
  p.temperature = 0;
  PenaltyState st;
  st.promptTokens = {0};
  p.repetitionPenalty = 1.1f;  // 2.0 / 1.1 = 1.82 < 1.9
  EXPECT(draw(logits, p, 0, &st).token == 1);
  p.repetitionPenalty = 1;
  st.outputCounts[1] = 3;
  p.frequencyPenalty = 0.1f;  // 1.9 - 0.3 = 1.6
  EXPECT(draw(logits, p, 0, &st).token == 0);
  p.frequencyPenalty = 0;
  p.presencePenalty = -0.2f;  // 1.9 + 0.2 = 2.1
  EXPECT(draw(logits, p, 0, &st).token == 1);
}

TEST(logprobs_are_of_the_raw_distribution) {
  std::vector<float> logits = {0.0f, std::log(3.0f), std::log(6.0f)};
  SamplingParams p;
  p.temperature = 0.1f;
  SampleResult r = draw(logits, p, 0, nullptr, 3);
  EXPECT(r.token == 2);
  EXPECT(std::fabs(r.logprob - std::log(0.6f)) < 1e-6);
  EXPECT(r.topTokens == std::vector<int32_t>({2, 1, 0}));
  EXPECT(std::fabs(r.topLogprobs[2] - std::log(0.1f)) < 1e-6);
  EXPECT(std::fabs(cpu::targetLogprob(logits.data(), 3, 1) - std::log(0.3f)) < 1e-6);
}

RUN_TESTS()
