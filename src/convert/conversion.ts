// The state one conversion shares across its stages: source, plan, scratch folder, reporting, and
// the per-layer transforms, each for an explicit split (RoPE dims, freqfold, latent rank).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { Checkpoint } from "../model/checkpoint.js";
import { pidAfter, removeOnSignal, sweepDead } from "../util/cleanup.js";
import { Tokenizer } from "../tokenizer/tokenizer.js";
import { attentionInputStats, modelPerplexity } from "./calibrate.js";
import { mlaConfig, type MlaShape } from "./configs.js";
import { addMlaLayer, type LatentNorms } from "./layer_tensors.js";
import { congruence, eigh, Mat } from "./matrix.js";
import { balanceRatio, buildMlaLayer, latentParts, type MlaLayer } from "./mla_layer.js";
import { checkOptions, plan, type ConvertOptions, type Plan } from "./options.js";
import { foldRotations, mlaLatentMap, type RopeShape } from "./rorope.js";
import { readAttention, sourceShape, type SourceShape } from "./source.js";
import { isStock, TARGET_RULES } from "./targets.js";
import { isAttentionInput, keptSourceTensors, writeOverlay, type NewTensors } from "./writer.js";

/** How each token's cache is split: RoPE dims, frequencies pooled per PCA, latent rank. */
export interface Split {
  ropeDim: number;
  freqfold: number;
  kvLoraRank: number;
}

export interface StageProgress {
  update(done: number): void;
  done(): void;
}

export interface Reporter {
  stage(label: string, total: number): StageProgress;
  log(line: string): void;
}

export interface LayerStats {
  balanceRatio: number;
  retainedEnergy: number;
}

/** `m` with zero columns appended up to `cols` (a latent wider than the source's: --allow-cache-growth). */
function padColumns(m: Mat, cols: number): Mat {
  if (m.cols >= cols) return m;
  const out = new Mat(m.rows, cols);
  for (let i = 0; i < m.rows; ++i) out.row(i).set(m.row(i));
  return out;
}

export class Conversion {
  readonly ckpt: Checkpoint;
  readonly source: SourceShape;
  readonly plan: Plan;
  readonly work: string;
  readonly kept: string[];
  readonly seconds: Record<string, number> = {};
  readonly layers: number[];
  private readonly forgetWork: () => void;

  constructor(readonly options: ConvertOptions, readonly reporter: Reporter) {
    this.ckpt = new Checkpoint(options.model);
    this.source = sourceShape(this.ckpt);
    checkOptions(options, this.source); // the target and the split first: they say most about what to pass instead
    const needsText = !options.tokenWindows && (!options.exact || options.eval !== null);
    if (needsText && !existsSync(path.join(options.model, "tokenizer.json"))) {
      throw new Error(`${options.model} has no tokenizer.json: calibration and evaluation text need one`);
    }
    this.plan = plan(options, this.ckpt, this.source, needsText ? Tokenizer.load(options.model) : null);
    this.kept = keptSourceTensors(this.ckpt, isAttentionInput);
    this.layers = [...Array(this.source.numLayers).keys()];
    sweepDead(tmpdir(), (name) => pidAfter(name, "mla-convert-"));
    this.work = mkdtempSync(path.join(tmpdir(), `mla-convert-${process.pid}-`));
    this.forgetWork = removeOnSignal(this.work);
  }

  cleanup(): void {
    rmSync(this.work, { recursive: true, force: true });
    this.forgetWork();
  }

  async timed<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.seconds[key] = Math.round(((this.seconds[key] ?? 0) + (performance.now() - t0) / 1000) * 100) / 100;
    }
  }

  maxRank(ropeDim: number): number {
    return 2 * this.source.latent - ropeDim;
  }

  ropeShape(split: Split): RopeShape {
    return { numKvHeads: this.source.numKvHeads, headDim: this.source.headDim, freqfold: split.freqfold, collapse: this.source.headDim / split.ropeDim };
  }

  async perplexity(label: string, dir: string, wins: number[][] | null): Promise<number | null> {
    if (!wins || wins.length === 0) return null;
    const bar = this.reporter.stage(`perplexity: ${label}`, wins.length);
    const result = await modelPerplexity(dir, wins, { threads: this.options.threads, onProgress: (d) => bar.update(d) });
    bar.done();
    this.reporter.log(`perplexity (${label}): ${result.perplexity.toFixed(4)}`);
    return result.perplexity;
  }

  async attentionInputs(label: string, dir: string, layers: number[]): Promise<Mat[]> {
    const bar = this.reporter.stage(`calibration: ${label}`, this.plan.calibWindows.length);
    const out = await attentionInputStats(dir, this.plan.calibWindows, layers, { threads: this.options.threads, onProgress: (d) => bar.update(d) });
    bar.done();
    return out;
  }

  /** The RoRoPE latent map of layer l from its attention-input statistics. */
  async latentMap(l: number, sigma: Mat, split: Split): Promise<Mat> {
    const a = readAttention(this.ckpt, this.source, l);
    const ck = await congruence(a.wk.withColumn(a.bk), sigma);
    const shape = this.ropeShape(split);
    return mlaLatentMap(await foldRotations(ck, shape), shape).map;
  }

  /** The partial-RoPE layer: the MLA layout at full rank with the identity basis. */
  async partialLayer(l: number, map: Mat, split: Split): Promise<MlaLayer> {
    const a = readAttention(this.ckpt, this.source, l);
    const parts = await latentParts(a, this.source, map, split.ropeDim, 1);
    return buildMlaLayer(a, this.source, map, split.ropeDim, parts, Mat.identity(parts.z.rows));
  }

  /** BKV-PCA of layer l: balance, joint PCA of [k_nope; v] over the layer's inputs, keep the rank. */
  async finalLayer(l: number, sigma: Mat, map: Mat, split: Split): Promise<{ layer: MlaLayer; stats: LayerStats }> {
    const { source: s, options: o } = this;
    const R = split.ropeDim;
    const a = readAttention(this.ckpt, s, l);
    const unbalanced = await latentParts(a, s, map, R, 1);
    const ratio = balanceRatio(await congruence(unbalanced.z, sigma), s.latent - R, o.balanceKvRatio);
    const parts = await latentParts(a, s, map, R, ratio);
    const { values, vectors } = await eigh(await congruence(parts.z, sigma));
    let kept = 0, total = 0;
    values.forEach((v, i) => {
      total += Math.max(0, v);
      if (i < split.kvLoraRank) kept += Math.max(0, v);
    });
    let query;
    if (o.qLoraRank !== null) {
      const sxx = sigma.rowsRange(0, s.hidden).colsRange(0, s.hidden); // the weight part; the bias is added exactly
      query = { basis: (await eigh(await congruence(a.wq, sxx))).vectors.colsRange(0, o.qLoraRank) };
    }
    const layer = await buildMlaLayer(a, s, map, R, parts, padColumns(vectors.colsRange(0, Math.min(split.kvLoraRank, vectors.cols)), split.kvLoraRank), query);
    return { layer, stats: { balanceRatio: ratio, retainedEnergy: total > 0 ? kept / total : 1 } };
  }

  /**
   * The config shape of a split's final model (for the target), of its norm-free form (mla-serve's
   * format: what the stock form is fit from), or of its partial-RoPE model (full rank, no query
   * compression).
   */
  mlaShape(split: Split, form: "partial" | "norm-free" | "final"): MlaShape {
    if (form === "partial") return { kvLoraRank: this.maxRank(split.ropeDim), ropeDim: split.ropeDim, qLoraRank: null, latentNorm: false, target: "mla-serve", attentionBias: this.source.hasBias };
    const base = { kvLoraRank: split.kvLoraRank, ropeDim: split.ropeDim, qLoraRank: this.options.qLoraRank };
    if (form === "norm-free" || this.options.target === "mla-serve") {
      return { ...base, latentNorm: form === "final" && this.options.latentNorm, target: "mla-serve", attentionBias: this.source.hasBias };
    }
    return { ...base, latentNorm: true, target: this.options.target, attentionBias: this.keepsKvABias() };
  }

  /** The stock target keeps kv_a_proj_with_mqa's bias (Hugging Face, with attention_bias); others drop it. */
  keepsKvABias(): boolean {
    const biases = TARGET_RULES[this.options.target].biases;
    return this.source.hasBias && (biases === null || biases.includes("kv_a"));
  }

  mlaTensors(shape: MlaShape, layers: MlaLayer[], norms?: LatentNorms[]): NewTensors {
    const t: NewTensors = new Map();
    const stock = isStock(shape.target);
    const bias = { query: !stock && this.source.hasBias, kvA: stock ? shape.attentionBias : this.source.hasBias };
    layers.forEach((m, l) => addMlaLayer(t, l, m, bias, this.plan.dtype, norms?.[l]));
    // vLLM and SGLang never tie lm_head: a tied source's embeddings are written as lm_head too.
    if (TARGET_RULES[shape.target].needsLmHead && !this.ckpt.has("lm_head.weight")) {
      const e = this.ckpt.entry("model.embed_tokens.weight");
      t.set("lm_head.weight", { dtype: e.dtype, shape: e.shape, data: () => this.ckpt.raw("model.embed_tokens.weight") });
    }
    return t;
  }

  overlay(name: string, shape: MlaShape, layers: MlaLayer[], norms?: LatentNorms[]): string {
    const dir = path.join(this.work, name);
    writeOverlay(dir, this.ckpt, mlaConfig(this.ckpt.config, this.source, shape, this.plan.dtype, {}), this.mlaTensors(shape, layers, norms), this.kept);
    return dir;
  }
}
