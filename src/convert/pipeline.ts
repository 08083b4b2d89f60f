// The TransMLA conversion: original -> RoRoPE + FreqFold (partial RoPE) -> BKV-PCA (MLA), with a
// perplexity at each stage. Every calibration and evaluation runs in the addon on a model folder;
// intermediate models are overlays that link the source's shards.
import path from "node:path";

import { DTYPE_BYTES } from "../model/safetensors.js";
import { mlaConfig, v1Config } from "./configs.js";
import { Conversion, type LayerStats, type Reporter } from "./conversion.js";
import type { ConvertOptions } from "./options.js";
import { searchBudget, searchFreqfold, type BudgetRow } from "./search.js";
import { buildFinal, buildPartial, fitLatentNorms, type FinalModel, type PartialModel } from "./stages.js";
import { v1Tensors } from "./v1.js";
import { writeModel, writeOverlay } from "./writer.js";

export type { Reporter, StageProgress } from "./conversion.js";

export interface ConversionReport {
  source: { dir: string; modelType: string; layers: number; heads: number; kvHeads: number; headDim: number; kvCacheValuesPerToken: number; kvCacheBytesPerToken: number };
  output: {
    dir: string; format: "deepseek_v3" | "transmla_v1"; dtype: string; kvLoraRank: number | null; qkRopeDim: number | null; qLoraRank: number | null;
    freqfold: number | null; collapse: number | null; latentNorm: boolean; kvCacheValuesPerToken: number; kvCacheBytesPerToken: number; compression: number;
  };
  perplexity: { evalFile: string | null; seq: number; windows: number; original: number | null; partialRope: number | null; final: number | null };
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
  if (!c.o.exact && typeof window === "number" && window > 0 && window < Number(cfg.max_position_embeddings ?? Infinity)) {
    out.push(`the source attends within a sliding window of ${window} tokens; the MLA model attends to the whole context`);
  }
  if (!c.o.exact && c.s.hasBias) {
    out.push("the source has q/k/v biases: the MLA model keeps a query bias (q_proj or q_b_proj), which mla-serve and TransMLA's code read but Hugging Face's DeepseekV3ForCausalLM does not");
  }
  return out;
}

async function run(c: Conversion): Promise<ConversionReport> {
  const { o, s, p } = c;
  const original = await c.timed("perplexity", () => c.perplexity("original", o.model, p.evalWindows));
  const srcValues = s.numLayers * 2 * s.latent;
  const report: ConversionReport = {
    source: { dir: o.model, modelType: s.modelType, layers: s.numLayers, heads: s.numHeads, kvHeads: s.numKvHeads, headDim: s.headDim, kvCacheValuesPerToken: srcValues, kvCacheBytesPerToken: srcValues * DTYPE_BYTES[p.dtype] },
    output: { dir: o.out, format: "deepseek_v3", dtype: p.dtype, kvLoraRank: null, qkRopeDim: null, qLoraRank: null, freqfold: null, collapse: null, latentNorm: false, kvCacheValuesPerToken: 0, kvCacheBytesPerToken: 0, compression: 1 },
    perplexity: { evalFile: o.eval, seq: o.evalSeq, windows: p.evalWindows?.length ?? 0, original, partialRope: null, final: null },
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
    const found = await searchBudget(c, o.cacheBudget, sigma, p.kernelShapes);
    ({ partial, final } = found);
    report.budgetSearch = { budget: o.cacheBudget, kernelShapesOnly: p.kernelShapes !== null, rows: found.table };
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
  const norms = o.latentNorm ? await c.timed("latent norm", () => fitLatentNorms(c, final!)) : undefined;

  const { split } = final;
  const shape = c.mlaShape(split, false);
  report.perplexity.final = await c.timed("perplexity", () => c.perplexity("MLA", c.overlay("final", shape, final!.layers, norms), p.evalWindows));
  const outValues = s.numLayers * (split.kvLoraRank + split.ropeDim);
  Object.assign(report.output, {
    kvLoraRank: split.kvLoraRank, qkRopeDim: split.ropeDim, qLoraRank: o.qLoraRank, freqfold: split.freqfold, collapse: s.headDim / split.ropeDim,
    latentNorm: o.latentNorm, kvCacheValuesPerToken: outValues, kvCacheBytesPerToken: outValues * DTYPE_BYTES[p.dtype], compression: srcValues / outValues,
  });
  const config = mlaConfig(c.ckpt.config, s, shape, p.dtype, provenance(o, split.freqfold));
  await c.timed("write", async () => writeModel(o.out, c.ckpt, config, c.mlaTensors(final!.layers, norms), c.kept, { "conversion-report.json": JSON.stringify(report, null, 2) + "\n" }));
  return report;
}

/** --exact: TransMLA's first format with up-projections that copy each kv head to its group. */
async function exact(c: Conversion, report: ConversionReport): Promise<ConversionReport> {
  const { o, s, p } = c;
  const tensors = await v1Tensors(c.ckpt, s, null, p.dtype);
  const config = v1Config(c.ckpt.config, p.dtype, provenance(o, null));
  const dir = path.join(c.work, "exact");
  writeOverlay(dir, c.ckpt, config, tensors, c.kept);
  report.perplexity.final = await c.timed("perplexity", () => c.perplexity("exact (TransMLA v1)", dir, p.evalWindows));
  Object.assign(report.output, {
    format: "transmla_v1", kvCacheValuesPerToken: report.source.kvCacheValuesPerToken, kvCacheBytesPerToken: report.source.kvCacheValuesPerToken * DTYPE_BYTES[p.dtype], compression: 1,
  });
  await c.timed("write", async () => writeModel(o.out, c.ckpt, config, tensors, c.kept, { "conversion-report.json": JSON.stringify(report, null, 2) + "\n" }));
  return report;
}
