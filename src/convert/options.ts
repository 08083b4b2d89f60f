// Conversion options, and every check that must pass before any work starts.
import { existsSync } from "node:fs";

import type { Checkpoint } from "../model/checkpoint.js";
import { native } from "../native/binding.js";
import type { DType } from "../model/safetensors.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { checkRopeShape } from "./rorope.js";
import type { SourceShape } from "./source.js";
import { isStock, isTarget, TARGET_RULES, TARGETS, type Target } from "./targets.js";
import { readText, sampleWindows, windows } from "../eval/windows.js";

export interface ConvertOptions {
  model: string;
  out: string;
  force: boolean;
  kvLoraRank: number;
  qkRopeDim: number;
  qLoraRank: number | null;
  freqfold: number | "auto";
  /** BKV balance target (key norm / value norm after balancing); 0 turns balancing off. */
  balanceKvRatio: number;
  calib: string;
  calibSamples: number;
  calibSeq: number;
  /** Held-out calibration windows that score --freqfold auto candidates. */
  searchSamples: number;
  eval: string | null;
  evalSeq: number;
  evalMaxChars: number | null;
  /** Whose loader the output is for (targets.ts); mla-serve's own format keeps the latents norm-free. */
  target: Target;
  /** mla-serve target: fit latent norms too (the stock targets always have them). */
  latentNorm: boolean;
  /** A target shape larger than the source's cache is allowed (the latent is zero-padded). */
  allowCacheGrowth: boolean;
  exact: boolean;
  /** Values cached per token per layer: search qk_rope_dim, freqfold and kv_lora_rank = budget - qk_rope_dim. */
  cacheBudget: number | null;
  /** Restrict the budget search to the shapes the CUDA decode kernel is built for. */
  kernelShapes: boolean;
  sequential: boolean;
  dtype: "auto" | "float32" | "bfloat16" | "float16";
  seed: number;
  threads?: number;
  /** Library use: token windows given directly (models without a tokenizer); replace calib / eval text. */
  tokenWindows?: { calib: number[][]; search?: number[][]; eval?: number[][] };
}

export const DTYPES: Record<Exclude<ConvertOptions["dtype"], "auto">, DType> = { float32: "F32", bfloat16: "BF16", float16: "F16" };

/** The conversion's fixed inputs after checking: shapes, token windows, output dtype. */
export interface Plan {
  calibWindows: number[][];
  searchWindows: number[][];
  evalWindows: number[][] | null;
  dtype: DType;
  /** (kv_lora_rank, qk_rope_dim) pairs allowed by --kernel-shapes and the target; null: any. */
  kernelShapes: [number, number][] | null;
}

/** The values per token per layer the target's smallest accepted split caches, when it has a list. */
function targetSplitsFitting(o: ConvertOptions, budget: number | null): [number, number][] | null {
  const splits = TARGET_RULES[o.target].splits;
  if (!splits) return null;
  return budget === null ? splits : splits.filter(([r, R]) => r + R <= budget);
}

/** What the target's loader needs of the source and the split; throws saying what to pass instead. */
function checkTarget(o: ConvertOptions, s: SourceShape): void {
  if (!isTarget(o.target)) throw new Error(`--target must be one of ${TARGETS.join(", ")}, got "${String(o.target)}"`);
  const rules = TARGET_RULES[o.target];
  if (o.exact && isStock(o.target)) {
    throw new Error("--exact writes TransMLA's first format (k_up_proj / v_up_proj), which no stock loader builds: add --target mla-serve");
  }
  if (s.ropeScaling !== null && !rules.ropeScaling.includes(s.ropeScaling)) {
    throw new Error(`the source's rope_scaling "${s.ropeScaling}" cannot be carried to ${rules.name}` +
      (rules.ropeScaling.length === 0 ? ", which reads every rope_scaling as DeepSeek's yarn" : `, which is computed as the source means it only for ${rules.ropeScaling.join(" and ")}`) +
      ": pass --target hf or --target mla-serve");
  }
  if (!rules.splits || o.exact) return;
  const ropeDims = [...new Set(rules.splits.map(([, R]) => R))];
  if (!ropeDims.some((R) => s.headDim % R === 0 && (s.headDim / 2) % (s.headDim / R) === 0)) {
    throw new Error(`${rules.name} needs qk_rope_head_dim ${ropeDims.join(" or ")}, which head_dim ${s.headDim} cannot give: pass --target hf or --target mla-serve`);
  }
  const shapes = rules.splits.map(([r, R]) => `${r} + ${R}`).join(" or ");
  if (o.cacheBudget !== null) {
    if (targetSplitsFitting(o, o.cacheBudget)!.length === 0) throw new Error(`--cache-budget ${o.cacheBudget}: ${rules.name} takes kv_lora_rank + qk_rope_dim = ${shapes}, none within the budget`);
  } else if (!rules.splits.some(([r, R]) => r === o.kvLoraRank && R === o.qkRopeDim)) {
    throw new Error(`${rules.name} takes kv_lora_rank + qk_rope_dim = ${shapes}; got ${o.kvLoraRank} + ${o.qkRopeDim}: pass one of those, or --target hf`);
  }
  const [r, R] = o.cacheBudget !== null ? targetSplitsFitting(o, o.cacheBudget)![0]! : [o.kvLoraRank, o.qkRopeDim];
  if (r + R > 2 * s.latent && !o.allowCacheGrowth) {
    throw new Error(`the source caches ${2 * s.latent} values per token per layer (2 x ${s.numKvHeads} kv heads x ${s.headDim}); ` +
      `the shape ${rules.name} takes, ${r} + ${R} = ${r + R}, would grow the cache ${((r + R) / (2 * s.latent)).toFixed(2)}x: ` +
      "pass --allow-cache-growth to convert anyway (the latent is zero-padded), or --target hf or mla-serve with a smaller split");
  }
}

/** Checks every option against the source's shape, reading no file: throws naming the first bad one. */
export function checkOptions(o: ConvertOptions, s: SourceShape): void {
  checkTarget(o, s);
  if (o.cacheBudget !== null) {
    if (o.exact) throw new Error("--cache-budget and --exact do not go together");
    if (!Number.isInteger(o.cacheBudget) || o.cacheBudget < 3 || (o.cacheBudget > 2 * s.latent && !o.allowCacheGrowth)) {
      throw new Error(`--cache-budget ${o.cacheBudget} is not possible: it must be in [3, ${2 * s.latent}] values per token per layer (the source caches ${2 * s.latent})`);
    }
  } else if (!o.exact) {
    const R = o.qkRopeDim;
    if (!Number.isInteger(R) || R < 2 || R % 2 !== 0 || R > s.headDim || s.headDim % R !== 0) {
      throw new Error(`--qk-rope-dim ${R} must be an even divisor of head_dim ${s.headDim}`);
    }
    const collapse = s.headDim / R;
    checkRopeShape({ numKvHeads: s.numKvHeads, headDim: s.headDim, freqfold: o.freqfold === "auto" ? collapse : o.freqfold, collapse });
    const maxKvLoraRank = o.allowCacheGrowth ? Infinity : 2 * s.latent - R;
    if (!Number.isInteger(o.kvLoraRank) || o.kvLoraRank < 1 || o.kvLoraRank > maxKvLoraRank) {
      throw new Error(`--kv-lora-rank ${o.kvLoraRank} is not possible: the maximum for this model with --qk-rope-dim ${R} is ` +
        `${maxKvLoraRank} (2 x ${s.numKvHeads} kv heads x ${s.headDim} - ${R})`);
    }
  }
  if (!o.exact) {
    const maxQ = s.numHeads * s.headDim;
    if (o.qLoraRank !== null && (!Number.isInteger(o.qLoraRank) || o.qLoraRank < 1 || o.qLoraRank > maxQ)) {
      throw new Error(`--q-lora-rank ${o.qLoraRank} is not possible: the maximum is ${maxQ} (${s.numHeads} heads x ${s.headDim})`);
    }
    if (!(o.balanceKvRatio >= 0)) throw new Error("--balance-kv-ratio must be >= 0");
  }
  if (o.kernelShapes && o.cacheBudget === null) throw new Error("--kernel-shapes restricts --cache-budget: give a budget too");
  if (o.calibSamples < 1 || o.calibSeq < 2) throw new Error("--calib-samples must be >= 1 and --calib-seq >= 2");
  if (!o.exact && (o.freqfold === "auto" || o.cacheBudget !== null) && !o.tokenWindows && o.searchSamples < 1) throw new Error("--search-samples must be >= 1 for a search");
  if (o.evalSeq < 2) throw new Error("--eval-seq must be >= 2");
  if (!o.tokenWindows && !o.exact && !existsSync(o.calib)) throw new Error(`calibration file not found: ${o.calib}`);
  if (!o.tokenWindows && o.eval !== null && !existsSync(o.eval)) throw new Error(`evaluation file not found: ${o.eval}`);
}

/** Checks the options, files and the output folder; tokenizes the texts. Throws before any work. */
export function plan(o: ConvertOptions, ckpt: Checkpoint, s: SourceShape, tokenizer: Tokenizer | null): Plan {
  if (existsSync(o.out) && !o.force) throw new Error(`${o.out} already exists (use --force to replace it)`);
  checkOptions(o, s);
  const needSearch = !o.exact && (o.freqfold === "auto" || o.cacheBudget !== null) ? o.searchSamples : 0;
  const dtype = o.dtype === "auto" ? ckpt.entry("model.layers.0.self_attn.q_proj.weight").dtype : DTYPES[o.dtype];
  // The budget search's allowed (kv_lora_rank, qk_rope_dim) pairs: the CUDA kernel's and the target's.
  const fromTarget = targetSplitsFitting(o, o.cacheBudget);
  let kernelShapes = o.kernelShapes ? native().mlaKernelShapes : null;
  if (fromTarget) kernelShapes = kernelShapes ? kernelShapes.filter(([a, b]) => fromTarget.some(([c, d]) => a === c && b === d)) : fromTarget;
  if (o.tokenWindows) {
    return { calibWindows: o.tokenWindows.calib, searchWindows: o.tokenWindows.search ?? [], evalWindows: o.tokenWindows.eval ?? null, dtype, kernelShapes };
  }
  const wanted = o.exact ? 0 : o.calibSamples + needSearch;
  const all = wanted ? sampleWindows(readText(o.calib, "calibration"), (t) => tokenizer!.encode(t), wanted, o.calibSeq, o.seed) : [];
  if (all.length < wanted) {
    throw new Error(`the calibration file ${o.calib} is too short: it gives ${all.length} windows of ${o.calibSeq} tokens, but ` +
      `${wanted} are needed (--calib-samples ${o.calibSamples}${needSearch ? ` + ${needSearch} held out for --freqfold auto` : ""})`);
  }
  let evalWindows: number[][] | null = null;
  if (o.eval !== null) {
    const evalIds = tokenizer!.encode(readText(o.eval, "evaluation", o.evalMaxChars));
    evalWindows = windows(evalIds, o.evalSeq);
    if (evalWindows.length === 0) throw new Error(`the evaluation file ${o.eval} has ${evalIds.length} tokens: not one window of ${o.evalSeq}`);
  }
  return {
    calibWindows: all.slice(0, o.calibSamples),
    searchWindows: all.slice(o.calibSamples, o.calibSamples + needSearch),
    evalWindows,
    dtype,
    kernelShapes,
  };
}
