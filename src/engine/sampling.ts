// Sampling options of one request, after defaults (engine-level: no HTTP types here).
import { randomInt } from "node:crypto";

import { packSampling, SAMPLING_DEFAULTS, samplingProblem } from "../native/sampling_fields.js";
import type { NativeSamplingParams, PackedSampling } from "../native/types.js";
import { NO_PROCESSORS, type ProcessorOptions } from "./processors.js";

export interface SamplingOptions {
  /** Choices generated for the prompt. */
  n: number;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  presencePenalty: number;
  frequencyPenalty: number;
  repetitionPenalty: number;
  /** Choice i samples with seed + i; random when absent. */
  seed: number | undefined;
  stop: string[];
  stopTokenIds: number[];
  ignoreEos: boolean;
  /** Top log-probs per generated token (0: only the sampled token's); null: none. */
  logprobs: number | null;
  /** Logits processors (bans, biases, min_tokens); the grammar's matchers come with the request. */
  processors: ProcessorOptions;
  /** A stop string that ends the output is kept in it (vLLM's include_stop_str_in_output). */
  includeStopStr: boolean;
  /** Special tokens stay out of the output text (vLLM's skip_special_tokens, default true). */
  skipSpecialTokens: boolean;
  /** Added tokens left in the text are set apart by spaces (vLLM's spaces_between_special_tokens, default true). */
  spacesBetweenSpecialTokens: boolean;
}

/** How output ids become text. */
export type DecodeOptions = Pick<SamplingOptions, "skipSpecialTokens" | "spacesBetweenSpecialTokens">;

/** Defaults a model's generation_config.json may override. */
export interface GenerationDefaults {
  temperature?: number;
  topP?: number;
  topK?: number;
  minP?: number;
  repetitionPenalty?: number;
}

export const MAX_TOP_LOGPROBS = 20;
const SEED_LIMIT = 2 ** 48;
const INT32_MAX = 2 ** 31 - 1;
/** Per request: stop strings, their total length, and stop token ids (each checked against every new token). */
export const MAX_STOP_STRINGS = 128;
export const MAX_STOP_CHARS = 64 * 1024;
export const MAX_STOP_TOKEN_IDS = 1024;

/** Fills unset options from the model's defaults, then the engine's. */
export function resolveSampling(partial: Partial<SamplingOptions>, defaults: GenerationDefaults = {}): SamplingOptions {
  return {
    n: partial.n ?? 1,
    maxTokens: partial.maxTokens ?? 16,
    temperature: partial.temperature ?? defaults.temperature ?? 1.0,
    topP: partial.topP ?? defaults.topP ?? 1.0,
    topK: partial.topK ?? defaults.topK ?? 0,
    minP: partial.minP ?? defaults.minP ?? 0,
    presencePenalty: partial.presencePenalty ?? 0,
    frequencyPenalty: partial.frequencyPenalty ?? 0,
    repetitionPenalty: partial.repetitionPenalty ?? defaults.repetitionPenalty ?? 1.0,
    seed: partial.seed,
    stop: partial.stop ?? [],
    stopTokenIds: partial.stopTokenIds ?? [],
    ignoreEos: partial.ignoreEos ?? false,
    logprobs: partial.logprobs ?? null,
    processors: partial.processors ?? NO_PROCESSORS,
    includeStopStr: partial.includeStopStr ?? false,
    skipSpecialTokens: partial.skipSpecialTokens ?? true,
    spacesBetweenSpecialTokens: partial.spacesBetweenSpecialTokens ?? true,
  };
}

/** Returns a message naming the first invalid option, or null. */
export function validateSampling(s: SamplingOptions): { param: string; message: string } | null {
  const bad = (param: string, message: string) => ({ param, message });
  if (!Number.isInteger(s.n) || s.n < 1 || s.n > 128) return bad("n", "n must be an integer in [1, 128]");
  if (!Number.isInteger(s.maxTokens) || s.maxTokens < 1) return bad("max_tokens", "max_tokens must be a positive integer");
  if (!(s.temperature >= 0 && s.temperature <= 100)) return bad("temperature", "temperature must be in [0, 100]");
  if (!(s.topP > 0 && s.topP <= 1)) return bad("top_p", "top_p must be in (0, 1]");
  if (!Number.isInteger(s.topK) || s.topK < -1 || s.topK > INT32_MAX) return bad("top_k", `top_k must be -1, 0 (all tokens) or an integer in [1, ${INT32_MAX}]`);
  if (!(s.minP >= 0 && s.minP <= 1)) return bad("min_p", "min_p must be in [0, 1]");
  if (!(s.presencePenalty >= -2 && s.presencePenalty <= 2)) return bad("presence_penalty", "presence_penalty must be in [-2, 2]");
  if (!(s.frequencyPenalty >= -2 && s.frequencyPenalty <= 2)) return bad("frequency_penalty", "frequency_penalty must be in [-2, 2]");
  if (!(s.repetitionPenalty > 0 && s.repetitionPenalty <= 10)) return bad("repetition_penalty", "repetition_penalty must be in (0, 10]");
  if (s.seed !== undefined && (!Number.isInteger(s.seed) || s.seed < 0 || s.seed >= SEED_LIMIT)) {
    return bad("seed", `seed must be an integer in [0, ${SEED_LIMIT})`);
  }
  if (s.logprobs !== null && (!Number.isInteger(s.logprobs) || s.logprobs < 0 || s.logprobs > MAX_TOP_LOGPROBS)) {
    return bad("logprobs", `logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}]`);
  }
  if (s.stop.some((x) => typeof x !== "string" || x.length === 0)) return bad("stop", "stop strings must be non-empty strings");
  if (s.stop.length > MAX_STOP_STRINGS) return bad("stop", `at most ${MAX_STOP_STRINGS} stop strings, got ${s.stop.length}`);
  if (s.stop.reduce((n, x) => n + x.length, 0) > MAX_STOP_CHARS) return bad("stop", `the stop strings may have ${MAX_STOP_CHARS} characters in all`);
  if (s.stopTokenIds.length > MAX_STOP_TOKEN_IDS) return bad("stop_token_ids", `at most ${MAX_STOP_TOKEN_IDS} stop token ids, got ${s.stopTokenIds.length}`);
  if (!Number.isInteger(s.maxTokens) || s.maxTokens > INT32_MAX) return bad("max_tokens", `max_tokens must be at most ${INT32_MAX}`);
  const p = s.processors;
  if (p.logitBias.length > 300) return bad("logit_bias", "at most 300 logit_bias entries");
  if (p.logitBias.some(([t, v]) => !Number.isInteger(t) || t < 0 || !(v >= -100 && v <= 100))) return bad("logit_bias", "logit_bias maps token ids to biases in [-100, 100]");
  if (p.allowedTokenIds !== null && (p.allowedTokenIds.length === 0 || p.allowedTokenIds.some((t) => !Number.isInteger(t) || t < 0))) return bad("allowed_token_ids", "allowed_token_ids must be a non-empty list of token ids");
  if (p.badWords.length > 1024) return bad("bad_words", "at most 1024 bad words");
  if (!Number.isInteger(p.minTokens) || p.minTokens < 0 || p.minTokens > s.maxTokens) return bad("min_tokens", "min_tokens must be an integer in [0, max_tokens]");
  // The native table's rules on the values as the step packs them (top_p 1e-50 is 0 as a float32):
  // a value the sampler refuses would otherwise fail every request in its step.
  const native = samplingProblem(nativeParams({ ...s, seed: s.seed ?? 0 }, 0));
  if (native) {
    const param = native.field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    return bad(param, `${param} ${native.value} is not usable by the sampler: it must be ${native.rule} as the sampler stores it`);
  }
  return null;
}

/** Native parameters for greedy decoding with nothing else on: calibration, scoring, benchmarks. */
export const GREEDY_PARAMS: NativeSamplingParams = Object.freeze({ ...SAMPLING_DEFAULTS, temperature: 0 });

/** A step's sampling arrays for `rows` greedy rows. */
export function greedySampling(rows: number): PackedSampling {
  return packSampling(Array.from({ length: rows }, () => GREEDY_PARAMS));
}

/** The native parameters of choice `index` of a request. */
export function nativeParams(s: SamplingOptions, index: number): NativeSamplingParams {
  const seed = s.seed === undefined ? randomInt(0, SEED_LIMIT - 1) : (s.seed + index) % SEED_LIMIT;
  return {
    temperature: s.temperature,
    topP: s.topP,
    topK: s.topK < 0 ? 0 : s.topK,
    minP: s.minP,
    repetitionPenalty: s.repetitionPenalty,
    presencePenalty: s.presencePenalty,
    frequencyPenalty: s.frequencyPenalty,
    seed,
  } satisfies Record<keyof NativeSamplingParams, number>;
}
