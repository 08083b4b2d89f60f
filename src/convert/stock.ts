// The stock form of a conversion (--target hf | vllm | sglang): what Hugging Face, vLLM and
// SGLang load computes the model mla-serve computes. Their loaders always RMS-normalize the
// compressed latents (kv_a_layernorm, q_a_layernorm) and build no bias where the source has one
// on the query (and vLLM/SGLang none at all). From the norm-free conversion:
//   1. biases the loader drops are folded into their weights by least squares over the layer's
//      inputs (exact when a direction of the inputs is constant; reported otherwise);
//   2. one calibration pass on that model fits each latent norm (per channel) and collects the
//      normalized latents' second moments and their cross moments with the layer's input;
//   3. kv_b_proj (and q_b_proj) are refit in closed form to give the source's keys, values (and
//      queries) from the normalized latents: the norm costs what least squares cannot recover.
import type { StatisticRequest } from "../native/types.js";
import { native } from "../native/binding.js";
import type { Conversion } from "./conversion.js";
import type { LatentNorms } from "./layer_tensors.js";
import { matmul, Mat } from "./matrix.js";
import { kvBFull, latentParts, queryRows, type MlaLayer } from "./mla_layer.js";
import { foldBias, refitAfterNorm } from "./refit.js";
import { readAttention } from "./source.js";
import type { FinalModel } from "./stages.js";
import { forEachWindowBatch, windowsPerCall } from "../eval/window_batches.js";

/** What the stock form did with the source's biases, per layer. */
export interface StockReport {
  /** The query bias (no loader builds one): folded into q_proj, or refit into q_b_proj. */
  queryBias: "none" | "folded into q_proj" | "refit into q_b_proj";
  /** kv_a_proj_with_mqa's bias: kept (Hugging Face with attention_bias: exact), folded (vLLM, SGLang), or none. */
  kvABias: "none" | "kept" | "folded";
  /** Per layer, for each folded bias: the share of it the layer's inputs carry (1: exact). */
  carried: { query: number | null; kvA: number | null }[];
}

export interface StockModel {
  layers: MlaLayer[];
  norms: LatentNorms[];
  report: StockReport;
}

const LATENT_EPS = 1e-6; // Hugging Face's DeepseekV3RMSNorm default, as its attention builds them

/** Runs the calibration windows through a model folder for the given statistics. */
async function pass(dir: string, wins: number[][], requests: StatisticRequest[], threads: number | undefined, onProgress: (d: number) => void) {
  const engine = await native().loadEngine({ modelDir: dir, numThreads: threads, numBlocks: windowsPerCall(wins[0]!.length) * Math.ceil(wins[0]!.length / 64) + 1, enablePrefixCaching: false, kvCacheDtype: "f32" });
  try {
    const stats = engine.statistics(requests);
    const last = Math.max(...requests.map((r) => r.layer));
    await forEachWindowBatch(engine, wins, (batch) => stats.calibrate(batch, { lastLayer: last, stopAtAttentionInput: false }), onProgress);
    return stats.take();
  } finally {
    engine.dispose();
  }
}

function rmsWeight(data: Float64Array, n: number): Float64Array {
  const w = new Float64Array(n);
  for (let j = 0; j < n; ++j) w[j] = data[n + j]! > 0 ? data[j]! / data[n + j]! : 1;
  return w;
}

export async function stockModel(c: Conversion, final: FinalModel): Promise<StockModel> {
  const { source: s, options: o } = c;
  const { split } = final;
  const r = split.kvLoraRank, R = split.ropeDim;
  const keepKv = c.keepsKvABias();
  const lowRankQuery = o.qLoraRank !== null;

  // 1. Biases the loader drops, folded over the norm-free model's attention inputs.
  const carried: StockReport["carried"] = c.layers.map(() => ({ query: null, kvA: null }));
  let layers = final.layers;
  if (s.hasBias) {
    const sigma = await c.timed("calibration", () => c.attentionInputs("norm-free model", c.overlay("norm-free", c.mlaShape(split, "norm-free"), final.layers), c.layers));
    layers = final.layers.map((m, l) => {
      const next: MlaLayer = { ...m, qBias: new Float64Array(m.qBias.length) };
      if (m.q) {
        const f = foldBias(m.q, m.qBias, sigma[l]!);
        next.q = f.weight;
        carried[l]!.query = f.carried;
      }
      if (!keepKv) {
        const f = foldBias(m.kvA, m.kvABias, sigma[l]!);
        next.kvA = f.weight;
        next.kvABias = new Float64Array(m.kvABias.length);
        carried[l]!.kvA = f.carried;
      }
      return next;
    });
  }

  // 2. Norm weights and normalized moments, in one pass.
  const requests: StatisticRequest[] = [];
  for (const layer of c.layers) {
    requests.push({ layer, point: "kv_a", columns: [0, r], kind: "rmsFit", eps: LATENT_EPS });
    requests.push({ layer, point: "kv_a", columns: [0, r], kind: "normalizedMoments", eps: LATENT_EPS });
    if (lowRankQuery) {
      requests.push({ layer, point: "q_a", kind: "rmsFit", eps: LATENT_EPS });
      requests.push({ layer, point: "q_a", kind: "normalizedMoments", eps: LATENT_EPS });
    }
  }
  const dir = c.overlay("folded", c.mlaShape(split, "norm-free"), layers);
  const bar = c.reporter.stage("calibration: latent norms and moments", c.plan.calibWindows.length);
  const stats = await c.timed("calibration", () => pass(dir, c.plan.calibWindows, requests, o.threads, (d) => bar.update(d)));
  bar.done();

  // 3. kv_b_proj (and q_b_proj) refit onto the source's own keys, values and queries.
  const per = lowRankQuery ? 4 : 2;
  const norms: LatentNorms[] = [];
  const out: MlaLayer[] = [];
  const refitBar = c.reporter.stage("refit after the latent norms", c.layers.length);
  for (const l of c.layers) {
    const st = (i: number) => stats[l * per + i]!;
    const kvW = rmsWeight(st(0).data, r);
    const m = layers[l]!;
    const a = readAttention(c.ckpt, s, l);
    const ratio = final.stats[l]!.balanceRatio;
    const parts = await latentParts(a, s, final.maps[l]!, R, ratio);
    const up = kvBFull(s, final.maps[l]!, R, ratio); // [H*2D, Lk-R+Lk]: the source's keys and values from z
    const kvB = await c.timed("refit", () => refitAfterNorm(async (M) => matmul(up, await matmul(parts.z, M)), new Mat(s.hidden + 1 + r, r, st(1).data), s.hidden, kvW));
    const layer: MlaLayer = { ...m, kvB };
    const norm: LatentNorms = { kvA: kvW };
    if (lowRankQuery) {
      const qr = o.qLoraRank!;
      const qW = rmsWeight(st(2).data, qr);
      const q = await queryRows(a.wq, a.bq, s, final.maps[l]!, R); // the source's queries, bias included
      const target = q.w.withColumn(q.b);
      layer.qB = await c.timed("refit", () => refitAfterNorm((M) => matmul(target, M), new Mat(s.hidden + 1 + qr, qr, st(3).data), s.hidden, qW));
      layer.qBias = new Float64Array(m.qBias.length);
      norm.qA = qW;
    }
    out.push(layer);
    norms.push(norm);
    refitBar.update(l + 1);
  }
  refitBar.done();
  return {
    layers: out,
    norms,
    report: {
      queryBias: !s.hasBias ? "none" : lowRankQuery ? "refit into q_b_proj" : "folded into q_proj",
      kvABias: !s.hasBias ? "none" : keepKv ? "kept" : "folded",
      carried,
    },
  };
}
