// Shared test helpers: fixture paths, reference.json, and small drivers for the native engine.
import { readFileSync } from "node:fs";
import path from "node:path";

import { GREEDY_PARAMS, greedySampling } from "../src/engine/sampling.js";
import { packSampling } from "../src/native/sampling_fields.js";
import { native } from "../src/native/binding.js";
import type { LoadOptions, NativeEngine, NativeSamplingParams, StepOutput } from "../src/native/types.js";
import { packageRoot } from "../src/paths.js";

export const ROOT = packageRoot();
export const BUNDLED_GQA = path.join(ROOT, "models", "gutenberg-tiny");
export const FIXTURES = path.join(ROOT, "test", "fixtures");
/** Calibration text (the --as-mla default) and the first 8,000 characters of the held-out text. */
export const CALIB_TEXT = path.join(ROOT, "models", "recipes", "calibration-sample.txt.gz");
export const HELDOUT_8K = path.join(ROOT, "models", "recipes", "gutenberg-tiny-mla", "heldout-8k.txt");
/** Where tests keep converted models (--cache-dir): built once per build folder. */
export const TEST_CACHE_DIR = path.join(ROOT, "build", "test-cache");
// Every command the tests run (in process or spawned) uses it, never the user's own cache.
process.env.MLA_SERVE_CACHE_DIR ??= TEST_CACHE_DIR;

/** Every model with a reference.json: the bundled model and the random fixtures. */
export const REFERENCE_MODELS: Record<string, string> = {
  "gutenberg-tiny": BUNDLED_GQA,
  "random-qwen2": path.join(FIXTURES, "random-qwen2"),
  "random-mla": path.join(FIXTURES, "random-mla"),
  "random-mla-transmla": path.join(FIXTURES, "random-mla-transmla"),
};

export interface ReferenceCase {
  prompt_ids: number[];
  prompt_logprob_sum: number;
  last_logits_top: [number, number][];
  greedy_ids: number[];
  greedy_top2_margins: number[];
}

export function readReference(dir: string): ReferenceCase[] {
  return (JSON.parse(readFileSync(path.join(dir, "reference.json"), "utf8")) as { cases: ReferenceCase[] }).cases;
}

export const GREEDY: NativeSamplingParams = GREEDY_PARAMS;
export { greedySampling, packSampling };

/** An engine for tests: NaN-poisoned unused cache, and an f32 cache unless asked otherwise, so the
 * engine's arithmetic is checked against the float64 references at 1e-3 (the bf16 cache that
 * serving uses by default has its own tolerances: test/native/bf16_cache.test.ts). */
export function load(dir: string, options: Partial<LoadOptions> = {}): Promise<NativeEngine> {
  return native().loadEngine({ modelDir: dir, numBlocks: 64, poisonCache: true, kvCacheDtype: "f32", ...options });
}

export function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

/** Normalized error ||a - b|| / ||b||; NaN anywhere gives Infinity. */
export function normErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; ++i) {
    if (Number.isNaN(a[i]) || Number.isNaN(b[i])) return Infinity;
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/** The sum of log p(prompt[i + 1] | prompt[..i]) in one scoring pass (the sequence is freed after). */
export async function promptLogprobSum(engine: NativeEngine, seqId: number, prompt: number[]): Promise<number> {
  engine.addSequence(seqId, Int32Array.from(prompt), prompt.length);
  const lp = await engine.score({
    seqIds: Int32Array.of(seqId), startPositions: Int32Array.of(0), numTokens: Int32Array.of(prompt.length),
    tokenIds: Int32Array.from(prompt), targetIds: Int32Array.from([...prompt.slice(1), 0]),
  });
  engine.freeSequence(seqId);
  let sum = 0;
  for (let i = 0; i < prompt.length - 1; ++i) sum += lp[i]!;
  return sum;
}

/** Runs one step of a single sequence and returns its output. */
export function stepOne(
  engine: NativeEngine, seqId: number, start: number, tokens: number[],
  opts: { sample?: boolean; logits?: boolean; topLogprobs?: number; params?: NativeSamplingParams } = {},
): Promise<StepOutput> {
  const sample = opts.sample !== false;
  return engine.step({
    seqIds: Int32Array.of(seqId),
    startPositions: Int32Array.of(start),
    numTokens: Int32Array.of(tokens.length),
    tokenIds: Int32Array.from(tokens),
    sampleMask: Uint8Array.of(sample ? 1 : 0),
    sampling: packSampling(sample ? [opts.params ?? GREEDY] : []),
    numTopLogprobs: opts.topLogprobs ?? 0,
    returnLogits: opts.logits ?? false,
  });
}

/** Greedy-decodes `count` tokens after prefilling `prompt` in chunks of `chunk` tokens (the caller frees the sequence). */
export async function greedy(engine: NativeEngine, seqId: number, prompt: number[], count: number, chunk = Infinity): Promise<{ ids: number[]; firstLogits: Float32Array }> {
  const cached = engine.addSequence(seqId, Int32Array.from(prompt), prompt.length);
  if (cached === null) throw new Error("no blocks");
  let pos = cached;
  let out: StepOutput | undefined;
  while (pos < prompt.length) {
    const n = Math.min(chunk, prompt.length - pos);
    out = await stepOne(engine, seqId, pos, prompt.slice(pos, pos + n), { sample: pos + n === prompt.length, logits: pos + n === prompt.length });
    pos += n;
  }
  const ids = [out!.tokenIds[0]!];
  const firstLogits = out!.logits!;
  while (ids.length < count) {
    if (!engine.ensureCapacity(seqId, pos + 1)) throw new Error("no blocks");
    const o = await stepOne(engine, seqId, pos, [ids[ids.length - 1]!]);
    pos += 1;
    ids.push(o.tokenIds[0]!);
  }
  return { ids, firstLogits };
}

/** Reference greedy ids agree with ours up to (not including) the first step whose reference top-2 margin is below `margin`. */
export function greedyAgrees(ours: number[], ref: ReferenceCase, margin = 1e-3): { ok: boolean; at: number } {
  for (let i = 0; i < ref.greedy_ids.length; ++i) {
    if (ref.greedy_top2_margins[i]! < margin) return { ok: true, at: i }; // a near tie: token i may go either way
    if (ours[i] !== ref.greedy_ids[i]) return { ok: false, at: i };
  }
  return { ok: true, at: ref.greedy_ids.length };
}
