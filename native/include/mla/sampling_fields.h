// The per-row sampling parameters, declared once: one row per field,
//   X(name, C type, JS typed array, default, valid (an expression over the JS value v), rule, doc).
// From these rows: SamplingParams below (what both samplers read; the CUDA sampler uploads an
// array of it as is), the N-API reading of a step's `sampling` (one typed array per field, one
// entry per sampled row, each value checked against `valid`: napi/args.cpp), and the TypeScript
// interface, packer and the same checks on the values as packed (scripts/gen_native_types.mjs
// writes src/native/sampling_fields.ts; CI fails when it is stale). Keep one row a line, no
// comma inside `valid`, and in `valid` only v, numbers, comparisons, &&, ||, !( ), std::isfinite,
// std::floor and INFINITY: no arithmetic (the generator translates them to TypeScript and refuses
// the rest).
// A JS array kind is one of Float32Array, Float64Array, Int32Array (a new one: the generator's
// list and a tag struct in napi/args.cpp).
// Adding a sampling parameter touches: a row here; its use in the samplers (native/cpu/sampler.cpp,
// native/cuda/kernels/sampling.cu; a parameter over the token history also PenaltyState in
// mla/sampling.h and the penalty lists in native/cuda/backend/cuda_sampling.cpp); the request side
// (src/engine/sampling.ts: SamplingOptions, resolveSampling, validateSampling's API range,
// nativeParams; src/server/prepare.ts for the body field; src/model/model_info.ts when
// generation_config.json may set it; src/cli/generate.ts for a flag); a bad value for it in
// test/native/declarations.test.ts (its type makes tsc ask); the README's parameter list.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#define MLA_SAMPLING_FIELDS(X) \
  X(temperature, float, Float32Array, 1.0f, std::isfinite(v) && v >= 0, "finite and >= 0", "0: greedy.") \
  X(topP, float, Float32Array, 1.0f, v > 0 && v <= 1, "in (0, 1]", "The smallest set of most likely tokens whose probability reaches topP.") \
  X(topK, int32_t, Float64Array, 0, v >= 0 && v <= 2147483647 && v == std::floor(v), "an integer in [0, 2^31)", "The topK most likely tokens; 0: the whole vocabulary.") \
  X(minP, float, Float32Array, 0.0f, v >= 0 && v <= 1, "in [0, 1]", "Drops tokens less likely than minP times the most likely one.") \
  X(repetitionPenalty, float, Float32Array, 1.0f, v > 0 && v < INFINITY, "finite and > 0", "Divides positive (multiplies negative) logits of prompt and output tokens; 1: none.") \
  X(presencePenalty, float, Float32Array, 0.0f, std::isfinite(v), "finite", "Subtracted once from each token already generated.") \
  X(frequencyPenalty, float, Float32Array, 0.0f, std::isfinite(v), "finite", "Subtracted per time a token was generated.") \
  X(seed, uint64_t, Float64Array, 0, v >= 0 && v <= 9007199254740991.0 && v == std::floor(v), "an integer in [0, 2^53)", "The row's random stream (Philox key); with the token's index in the output, it fixes the draw.")

namespace mla {

// One sampled row's parameters. Trivially copyable: the CUDA sampler uploads an array of these.
struct SamplingParams {
#define MLA_SAMPLING_MEMBER(name, type, jsArray, fallback, valid, rule, doc) type name = fallback;
  MLA_SAMPLING_FIELDS(MLA_SAMPLING_MEMBER)
#undef MLA_SAMPLING_MEMBER

  bool hasPenalties() const {
    return repetitionPenalty != 1.0f || presencePenalty != 0.0f || frequencyPenalty != 0.0f;
  }
};
static_assert(std::is_trivially_copyable_v<SamplingParams>, "the CUDA sampler uploads SamplingParams arrays as bytes");

}  // namespace mla
