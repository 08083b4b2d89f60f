// The TransMLA conversion: original -> RoRoPE + FreqFold (partial RoPE) -> BKV-PCA (MLA), with a
// perplexity at each stage. Every calibration and evaluation runs in the addon on a model folder;
// intermediate models are overlays that link the source's shards.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { Checkpoint } from "../model/checkpoint.js";
import { Tokenizer } from "../tokenizer/tokenizer.js";
import { attentionInputStats, modelPerplexity, rmsNormFits } from "./calibrate.js";
import { mlaConfig, v1Config, type MlaShape } from "./configs.js";
import { addMlaLayer, zeroMlaLayer, type LatentNorms } from "./layer_tensors.js";
import { congruence, eigh, Mat } from "./matrix.js";
import { balanceRatio, buildMlaLayer, latentParts, type MlaLayer } from "./mla_layer.js";
import { plan, type ConvertOptions, type Plan } from "./options.js";
import { foldRotations, mlaLatentMap } from "./rorope.js";
import { readAttention, sourceShape, type SourceShape } from "./source.js";
import { v1Tensors } from "./v1.js";
import { isAttentionInput, keptSourceTensors, writeModel, writeOverlay, type NewTensors } from "./writer.js";

export interface StageProgress {
  update(done: number): void;
  done(): void;
}

export interface Reporter {
  stage(label: string, total: number): StageProgress;
  log(line: string): void;
}

export interface ConversionReport {
  source: { dir: string; modelType: string; layers: number; heads: number; kvHeads: number; headDim: number; kvCacheValuesPerToken: number; kvCacheBytesPerToken: number };
  output: {
    dir: string; format: "deepseek_v3" | "transmla_v1"; dtype: string; kvLoraRank: number | null; qkRopeDim: number | null; qLoraRank: number | null;
    freqfold: number | null; collapse: number | null; latentNorm: boolean; kvCacheValuesPerToken: number; kvCacheBytesPerToken: number; compression: number;
  };
  perplexity: { evalFile: string | null; seq: number; windows: number; original: number | null; partialRope: number | null; final: number | null };
  freqfoldSearch: { freqfold: number; perplexity: number }[];
  layers: { balanceRatio: number; retainedEnergy: number }[];
  calibration: { file: string; samples: number; seq: number; sequential: boolean; seed: number };
  seconds: Record<string, number>;
}

const BYTES: Record<string, number> = { F32: 4, BF16: 2, F16: 2 };

class Conversion {
  readonly ckpt: Checkpoint;
  readonly s: SourceShape;
  readonly p: Plan;
  readonly work: string;
  readonly kept: string[];
  readonly seconds: Record<string, number> = {};

  constructor(readonly o: ConvertOptions, readonly r: Reporter) {
    this.ckpt = new Checkpoint(o.model);
    this.s = sourceShape(this.ckpt);
    const needsText = !o.exact || o.eval !== null;
    if (needsText && !existsSync(path.join(o.model, "tokenizer.json"))) {
      throw new Error(`${o.model} has no tokenizer.json: calibration and evaluation text need one`);
    }
    this.p = plan(o, this.ckpt, this.s, needsText ? Tokenizer.load(o.model) : null);
    this.kept = keptSourceTensors(this.ckpt, isAttentionInput);
    this.work = mkdtempSync(path.join(tmpdir(), "mla-convert-"));
  }

  cleanup(): void {
    rmSync(this.work, { recursive: true, force: true });
  }

  async timed<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.seconds[key] = (this.seconds[key] ?? 0) + Math.round((performance.now() - t0) / 10) / 100;
    }
  }

  async perplexity(label: string, dir: string, wins: number[][] | null): Promise<number | null> {
    if (!wins) return null;
    const bar = this.r.stage(`perplexity: ${label}`, wins.length);
    const result = await modelPerplexity(dir, wins, { threads: this.o.threads, onProgress: (d) => bar.update(d) });
    bar.done();
    this.r.log(`perplexity (${label}): ${result.perplexity.toFixed(4)}`);
    return result.perplexity;
  }

  async attentionInputs(label: string, dir: string, layers: number[]): Promise<Mat[]> {
    const bar = this.r.stage(`calibration: ${label}`, this.p.calibWindows.length);
    const out = await attentionInputStats(dir, this.p.calibWindows, layers, { threads: this.o.threads, onProgress: (d) => bar.update(d) });
    bar.done();
    return out;
  }

  /** The RoRoPE latent map of layer l from its attention-input statistics. */
  async latentMap(l: number, sigma: Mat, freqfold: number): Promise<Mat> {
    const a = readAttention(this.ckpt, this.s, l);
    const ck = await congruence(a.wk.withColumn(a.bk), sigma);
    const rotations = await foldRotations(ck, { numKvHeads: this.s.numKvHeads, headDim: this.s.headDim, freqfold, collapse: this.p.collapse });
    return mlaLatentMap(rotations, { numKvHeads: this.s.numKvHeads, headDim: this.s.headDim, freqfold, collapse: this.p.collapse }).map;
  }

  /** The partial-RoPE layer: the MLA layout at full rank, identity basis (exactly the rotated model minus RoPE on the dropped dims). */
  async partialLayer(l: number, map: Mat): Promise<MlaLayer> {
    const a = readAttention(this.ckpt, this.s, l);
    const parts = await latentParts(a, this.s, map, this.o.qkRopeDim, 1);
    return buildMlaLayer(a, this.s, map, this.o.qkRopeDim, parts, Mat.identity(parts.z.rows));
  }

  /** BKV-PCA of layer l: balance, joint PCA of [k_nope; v] over the layer's inputs, keep kv_lora_rank components. */
  async finalLayer(l: number, sigma: Mat, map: Mat): Promise<{ layer: MlaLayer; balanceRatio: number; retainedEnergy: number }> {
    const { s, o } = this;
    const R = o.qkRopeDim;
    const a = readAttention(this.ckpt, s, l);
    const unbalanced = await latentParts(a, s, map, R, 1);
    const ratio = balanceRatio(await congruence(unbalanced.z, sigma), s.latent - R, o.balanceKvRatio);
    const parts = await latentParts(a, s, map, R, ratio);
    const { values, vectors } = await eigh(await congruence(parts.z, sigma));
    let kept = 0, total = 0;
    values.forEach((v, i) => {
      total += Math.max(0, v);
      if (i < o.kvLoraRank) kept += Math.max(0, v);
    });
    let query;
    if (o.qLoraRank !== null) {
      const sxx = sigma.rowsRange(0, s.hidden).colsRange(0, s.hidden); // the weight part; the bias is added exactly
      query = { basis: (await eigh(await congruence(a.wq, sxx))).vectors.colsRange(0, o.qLoraRank) };
    }
    const layer = await buildMlaLayer(a, s, map, R, parts, vectors.colsRange(0, o.kvLoraRank), query);
    return { layer, balanceRatio: ratio, retainedEnergy: total > 0 ? kept / total : 1 };
  }

  mlaShape(full: boolean): MlaShape {
    return full
      ? { kvLoraRank: this.p.maxKvLoraRank, ropeDim: this.o.qkRopeDim, qLoraRank: null, latentNorm: false }
      : { kvLoraRank: this.o.kvLoraRank, ropeDim: this.o.qkRopeDim, qLoraRank: this.o.qLoraRank, latentNorm: this.o.latentNorm };
  }

  mlaTensors(layers: MlaLayer[], norms?: LatentNorms[]): NewTensors {
    const t: NewTensors = new Map();
    layers.forEach((m, l) => addMlaLayer(t, l, m, this.s, this.p.dtype, norms?.[l]));
    return t;
  }

  overlay(name: string, shape: MlaShape, layers: MlaLayer[], norms?: LatentNorms[]): string {
    const dir = path.join(this.work, name);
    writeOverlay(dir, this.ckpt, mlaConfig(this.ckpt.config, this.s, shape, this.p.dtype, {}), this.mlaTensors(layers, norms), this.kept);
    return dir;
  }
}

function cacheValues(layers: number, perLayer: number): number {
  return layers * perLayer;
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

async function run(c: Conversion): Promise<ConversionReport> {
  const { o, s, p } = c;
  const L = s.numLayers;
  const layers = [...Array(L).keys()];
  const original = await c.timed("perplexity", () => c.perplexity("original", o.model, p.evalWindows));
  const srcValues = cacheValues(L, 2 * s.latent);
  const report: ConversionReport = {
    source: { dir: o.model, modelType: s.modelType, layers: L, heads: s.numHeads, kvHeads: s.numKvHeads, headDim: s.headDim, kvCacheValuesPerToken: srcValues, kvCacheBytesPerToken: srcValues * BYTES[p.dtype]! },
    output: { dir: o.out, format: "deepseek_v3", dtype: p.dtype, kvLoraRank: null, qkRopeDim: null, qLoraRank: null, freqfold: null, collapse: null, latentNorm: false, kvCacheValuesPerToken: 0, kvCacheBytesPerToken: 0, compression: 1 },
    perplexity: { evalFile: o.eval, seq: o.evalSeq, windows: p.evalWindows?.length ?? 0, original, partialRope: null, final: null },
    freqfoldSearch: [],
    layers: [],
    calibration: { file: o.calib, samples: p.calibWindows.length, seq: o.calibSeq, sequential: o.sequential, seed: o.seed },
    seconds: c.seconds,
  };

  if (o.exact) return exact(c, report);

  // RoRoPE statistics on the original model.
  const sigma = await c.timed("calibration", () => c.attentionInputs("original model", o.model, layers));
  const candidates: number[] = [];
  if (o.freqfold === "auto") for (let f = p.collapse; f <= s.headDim / 2 && (s.headDim / 2) % f === 0; f *= 2) candidates.push(f);
  else candidates.push(o.freqfold);
  let best: { freqfold: number; maps: Mat[]; partial: MlaLayer[]; score: number } | undefined;
  for (const freqfold of candidates) {
    const maps = await c.timed("rorope", () => Promise.all(layers.map((l) => c.latentMap(l, sigma[l]!, freqfold))));
    const partial = await c.timed("rorope", () => Promise.all(layers.map((l) => c.partialLayer(l, maps[l]!))));
    if (candidates.length === 1) {
      best = { freqfold, maps, partial, score: NaN };
      break;
    }
    const dir = c.overlay(`search-${freqfold}`, c.mlaShape(true), partial);
    const score = (await c.timed("freqfold search", () => c.perplexity(`freqfold ${freqfold} (held-out calibration)`, dir, p.searchWindows)))!;
    report.freqfoldSearch.push({ freqfold, perplexity: score });
    if (best && score >= best.score) break; // as the reference: stop at the first that does not improve
    best = { freqfold, maps, partial, score };
  }
  const { freqfold, maps, partial } = best!;
  const partialDir = c.overlay("partial-rope", c.mlaShape(true), partial);
  report.perplexity.partialRope = await c.timed("perplexity", () => c.perplexity("partial RoPE", partialDir, p.evalWindows));

  // BKV-PCA.
  const final: MlaLayer[] = [];
  if (!o.sequential) {
    const sigmaP = await c.timed("calibration", () => c.attentionInputs("partial-RoPE model", partialDir, layers));
    const bar = c.r.stage("bkv-pca", L);
    for (const l of layers) {
      const f = await c.timed("bkv-pca", () => c.finalLayer(l, sigmaP[l]!, maps[l]!));
      final.push(f.layer);
      report.layers.push({ balanceRatio: f.balanceRatio, retainedEnergy: f.retainedEnergy });
      bar.update(l + 1);
    }
  } else {
    // Layer by layer: each layer's statistics come from the model whose earlier layers are already converted.
    for (const l of layers) {
      const stand = layers.map((j) => final[j] ?? zeroMlaLayer(s, o.kvLoraRank, o.qkRopeDim, o.qLoraRank));
      const dir = c.overlay(`sequential-${l}`, { ...c.mlaShape(false), latentNorm: false }, stand);
      const [sig] = await c.timed("calibration", () => c.attentionInputs(`layer ${l + 1}/${L}`, dir, [l]));
      const map = await c.timed("rorope", () => c.latentMap(l, sig!, freqfold));
      const f = await c.timed("bkv-pca", () => c.finalLayer(l, sig!, map));
      final.push(f.layer);
      report.layers.push({ balanceRatio: f.balanceRatio, retainedEnergy: f.retainedEnergy });
    }
  }

  let norms: LatentNorms[] | undefined;
  if (o.latentNorm) norms = await c.timed("latent norm", () => fitLatentNorms(c, final));

  const shape = c.mlaShape(false);
  const finalDir = c.overlay("final", shape, final, norms);
  report.perplexity.final = await c.timed("perplexity", () => c.perplexity("MLA", finalDir, p.evalWindows));
  const outValues = cacheValues(L, o.kvLoraRank + o.qkRopeDim);
  Object.assign(report.output, {
    kvLoraRank: o.kvLoraRank, qkRopeDim: o.qkRopeDim, qLoraRank: o.qLoraRank, freqfold, collapse: p.collapse, latentNorm: o.latentNorm,
    kvCacheValuesPerToken: outValues, kvCacheBytesPerToken: outValues * BYTES[p.dtype]!, compression: srcValues / outValues,
  });
  const config = mlaConfig(c.ckpt.config, s, shape, p.dtype, provenance(o, freqfold));
  await c.timed("write", async () => writeModel(o.out, c.ckpt, config, c.mlaTensors(final, norms), c.kept, { "conversion-report.json": JSON.stringify(report, null, 2) + "\n" }));
  return report;
}

function provenance(o: ConvertOptions, freqfold: number | null): object {
  return {
    source: path.basename(path.resolve(o.model)), method: o.exact ? "exact" : "transmla", freqfold, sequential: o.sequential,
    balance_kv_ratio: o.balanceKvRatio, calibration_samples: o.calibSamples, calibration_seq: o.calibSeq,
  };
}

/** RMSNorm weights for the latents, fit on the converted model's own activations. */
async function fitLatentNorms(c: Conversion, final: MlaLayer[]): Promise<LatentNorms[]> {
  const { o, s } = c;
  const dir = c.overlay("before-norm", { ...c.mlaShape(false), latentNorm: false }, final);
  const requests = [];
  for (let l = 0; l < s.numLayers; ++l) {
    requests.push({ layer: l, point: "kv_a", columns: [0, o.kvLoraRank] as [number, number], eps: 1e-6 });
    if (o.qLoraRank !== null) requests.push({ layer: l, point: "q_a", eps: 1e-6 });
  }
  const bar = c.r.stage("calibration: latent norms", c.p.calibWindows.length);
  const fits = await rmsNormFits(dir, c.p.calibWindows, requests, { threads: o.threads, onProgress: (d) => bar.update(d) });
  bar.done();
  const per = o.qLoraRank !== null ? 2 : 1;
  return final.map((_, l) => ({ kvA: fits[l * per]!, ...(per === 2 ? { qA: fits[l * per + 1]! } : {}) }));
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
    format: "transmla_v1", kvCacheValuesPerToken: report.source.kvCacheValuesPerToken, kvCacheBytesPerToken: report.source.kvCacheValuesPerToken * BYTES[p.dtype]!, compression: 1,
  });
  await c.timed("write", async () => writeModel(o.out, c.ckpt, config, tensors, c.kept, { "conversion-report.json": JSON.stringify(report, null, 2) + "\n" }));
  return report;
}
