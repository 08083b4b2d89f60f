// The TransMLA conversion: original -> RoRoPE + FreqFold (partial RoPE) -> BKV-PCA (MLA), with a
// perplexity at each stage. Every calibration and evaluation runs in the addon on a model folder;
// intermediate models are overlays that link the source's shards.
import path from "node:path";

import { DTYPE_BYTES } from "../model/safetensors.js";
import { mlaConfig, v1Config } from "./configs.js";
import { Conversion, type LayerStats, type Reporter } from "./conversion.js";
import type { ConvertOptions } from "./options.js";
import { searchBudget, searchFreqfold, type BudgetRow } from "./search.js";
import { checkCompat } from "./compat.js";
import type { LatentNorms } from "./layer_tensors.js";
import { buildFinal, buildPartial, fitLatentNorms, type FinalModel, type PartialModel } from "./stages.js";
import { stockModel, type StockReport } from "./stock.js";
import { isStock, TARGET_RULES, type Target } from "./targets.js";
import { v1Tensors } from "./v1.js";
import { writeModel, writeOverlay } from "./writer.js";

export type { Reporter, StageProgress } from "./conversion.js";

export interface ConversionReport {
  source: { dir: string; modelType: string; layers: number; heads: number; kvHeads: number; headDim: number; kvCacheValuesPerToken: number; kvCacheBytesPerToken: number };
  output: {
    dir: string; format: "deepseek_v3" | "transmla_v1"; dtype: string; kvLoraRank: number | null; qkRopeDim: number | null; qLoraRank: number | null;
    freqfold: number | null; collapse: number | null; latentNorm: boolean; kvCacheValuesPerToken: number; kvCacheBytesPerToken: number; compression: number;
  };
  /** final: the written model; normFree: the same split before the stock form (latent norms, biases as the target takes them). */
  perplexity: { evalFile: string | null; seq: number; windows: number; original: number | null; partialRope: number | null; normFree: number | null; final: number | null };
  /** The loader the output is for, what the stock form did, and check-compat's verdict on the output. */
  target: { name: Target; stock: StockReport | null; compatible: boolean };
  freqfoldSearch: { freqfold: number; perplexity: number }[];
  /** --cache-budget: every split tried, scored on held-out calibration windows. */
  budgetSearch: { budget: number; kernelShapesOnly: boolean; rows: BudgetRow[] } | null;
  layers: LayerStats[];
  /** What the output does not carry over from the source, and what loads it. */
  warnings: string[];
  calibration: { file: string; samples: number; heldOut: number; seq: number; sequential: boolean; seed: number };
  seconds: Record<string, number>;
}

/** Runs the whole conversion and writes OUT (atomically) with OUT/conversion-report.json. */
export async function convert(o: ConvertOptions, r: Reporter): Promise<ConversionReport> {
  const c = new Conversion(o, r);
  try {
    return await run(c);
  } finally {
    c.cleanup();
  }
}

function provenance(o: ConvertOptions, freqfold: number | null): object {
  return {
    source: path.basename(path.resolve(o.model)), method: o.exact ? "exact" : "transmla", freqfold, sequential: o.sequential,
    balance_kv_ratio: o.balanceKvRatio, calibration_samples: o.calibSamples, calibration_seq: o.calibSeq, cache_budget: o.cacheBudget,
  };
}

function sourceWarnings(c: Conversion): string[] {
  const out: string[] = [];
  const cfg = c.ckpt.config;
  const window = cfg.sliding_window;
  if (!c.options.exact && typeof window === "number" && window > 0 && window < Number(cfg.max_position_embeddings ?? Infinity)) {
    out.push(`the source attends within a sliding window of ${window} tokens; the MLA model attends to the whole context`);
  }
  if (!c.options.exact && c.source.hasBias && c.options.target === "mla-serve") {
    out.push("the source has q/k/v biases: the MLA model keeps a query bias (q_proj or q_b_proj), which mla-serve and TransMLA's code read but no stock loader does (convert with --target hf, vllm or sglang for them)");
  }
  if (!c.options.exact && c.source.hasBias && isStock(c.options.target)) {
    out.push(`the source has q/k/v biases: ${TARGET_RULES[c.options.target].name} builds no query bias` +
      (c.keepsKvABias() ? "" : " and no kv_a bias") + ": they are folded into the weights by least squares (see target.stock.carried, and perplexity normFree vs final)");
  }
  if (isStock(c.options.target) && TARGET_RULES[c.options.target].needsLmHead && c.source.tied) {
    out.push("the source ties lm_head to the embeddings: lm_head.weight is written as a copy (the target never ties it)");
  }
  return out;
}

async function run(c: Conversion): Promise<ConversionReport> {
  const { options: o, source: s, plan: p } = c;
  const original = await c.timed("perplexity", () => c.perplexity("original", o.model, p.evalWindows));
  const srcValues = s.numLayers * 2 * s.latent;
  const report: ConversionReport = {
    source: { dir: o.model, modelType: s.modelType, layers: s.numLayers, heads: s.numHeads, kvHeads: s.numKvHeads, headDim: s.headDim, kvCacheValuesPerToken: srcValues, kvCacheBytesPerToken: srcValues * DTYPE_BYTES[p.dtype] },
    output: { dir: o.out, format: "deepseek_v3", dtype: p.dtype, kvLoraRank: null, qkRopeDim: null, qLoraRank: null, freqfold: null, collapse: null, latentNorm: false, kvCacheValuesPerToken: 0, kvCacheBytesPerToken: 0, compression: 1 },
    perplexity: { evalFile: o.eval, seq: o.evalSeq, windows: p.evalWindows?.length ?? 0, original, partialRope: null, normFree: null, final: null },
    target: { name: o.target, stock: null, compatible: false },
    freqfoldSearch: [],
    budgetSearch: null,
    layers: [],
    warnings: sourceWarnings(c),
    calibration: { file: o.calib, samples: p.calibWindows.length, heldOut: p.searchWindows.length, seq: o.calibSeq, sequential: o.sequential, seed: o.seed },
    seconds: c.seconds,
  };
  if (o.exact) return exact(c, report);

  const sigma = await c.timed("calibration", () => c.attentionInputs("original model", o.model, c.layers));
  let partial: PartialModel;
  let final: FinalModel | undefined;
  if (o.cacheBudget !== null) {
    // A target with a list of shapes spends the largest of them the budget holds.
    const splits = TARGET_RULES[o.target].splits;
    const budget = splits ? Math.max(...splits.map(([r, R]) => r + R).filter((v) => v <= o.cacheBudget!)) : o.cacheBudget;
    const found = await searchBudget(c, budget, sigma, p.kernelShapes);
    ({ partial, final } = found);
    report.budgetSearch = { budget, kernelShapesOnly: o.kernelShapes, rows: found.table };
  } else if (o.freqfold === "auto") {
    const found = await searchFreqfold(c, o.qkRopeDim, o.kvLoraRank, sigma);
    partial = found.partial;
    report.freqfoldSearch = found.table;
  } else {
    partial = await buildPartial(c, { ropeDim: o.qkRopeDim, freqfold: o.freqfold, kvLoraRank: o.kvLoraRank }, sigma);
  }
  report.perplexity.partialRope = await c.timed("perplexity", () => c.perplexity("partial RoPE", partial.dir, p.evalWindows));
  final ??= await buildFinal(c, partial);
  report.layers = final.stats;
  const { split } = final;
  const shape = c.mlaShape(split, "final");
  let layers = final.layers;
  let norms: LatentNorms[] | undefined;
  if (isStock(o.target)) {
    report.perplexity.normFree = await c.timed("perplexity", () => c.perplexity("MLA, norm-free", c.overlay("norm-free", c.mlaShape(split, "norm-free"), final!.layers), p.evalWindows));
    const stock = await c.timed("stock form", () => stockModel(c, final!));
    ({ layers, norms } = stock);
    report.target.stock = stock.report;
  } else if (o.latentNorm) {
    norms = await c.timed("latent norm", () => fitLatentNorms(c, final!));
  }
  const finalDir = c.overlay("final", shape, layers, norms);
  report.perplexity.final = await c.timed("perplexity", () => c.perplexity(isStock(o.target) ? `MLA for ${o.target}` : "MLA", finalDir, p.evalWindows));
  // The output must pass check-compat for its target, or nothing is written.
  const problems = checkCompat(finalDir, o.target);
  if (problems.length) throw new Error(`the converted model would not load in ${TARGET_RULES[o.target].name} as converted (a bug): ${problems.join("; ")}`);
  report.target.compatible = true;
  const outValues = s.numLayers * (split.kvLoraRank + split.ropeDim);
  if (outValues > srcValues) {
    report.warnings.push(`the target's shape caches ${split.kvLoraRank + split.ropeDim} values per token per layer, more than the source's ${2 * s.latent} (--allow-cache-growth: the latent is zero-padded)`);
  }
  Object.assign(report.output, {
    kvLoraRank: split.kvLoraRank, qkRopeDim: split.ropeDim, qLoraRank: o.qLoraRank, freqfold: split.freqfold, collapse: s.headDim / split.ropeDim,
    latentNorm: shape.latentNorm, kvCacheValuesPerToken: outValues, kvCacheBytesPerToken: outValues * DTYPE_BYTES[p.dtype], compression: srcValues / outValues,
  });
  const config = mlaConfig(c.ckpt.config, s, shape, p.dtype, provenance(o, split.freqfold));
  await c.timed("write", async () => writeModel(o.out, c.ckpt, config, c.mlaTensors(shape, layers, norms), c.kept, { "conversion-report.json": JSON.stringify(report, null, 2) + "\n" }));
  return report;
}

/** --exact: TransMLA's first format with up-projections that copy each kv head to its group. */
async function exact(c: Conversion, report: ConversionReport): Promise<ConversionReport> {
  const { options: o, source: s, plan: p } = c;
  const tensors = await v1Tensors(c.ckpt, s, null, p.dtype);
  const config = v1Config(c.ckpt.config, p.dtype, provenance(o, null));
  const dir = path.join(c.work, "exact");
  writeOverlay(dir, c.ckpt, config, tensors, c.kept);
  report.perplexity.final = await c.timed("perplexity", () => c.perplexity("exact (TransMLA v1)", dir, p.evalWindows));
  report.target.compatible = checkCompat(dir, "mla-serve").length === 0;
  Object.assign(report.output, {
    format: "transmla_v1", kvCacheValuesPerToken: report.source.kvCacheValuesPerToken, kvCacheBytesPerToken: report.source.kvCacheValuesPerToken * DTYPE_BYTES[p.dtype], compression: 1,
  });
  await c.timed("write", async () => writeModel(o.out, c.ckpt, config, tensors, c.kept, { "conversion-report.json": JSON.stringify(report, null, 2) + "\n" }));
  return report;
}
