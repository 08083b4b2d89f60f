// Calibration passes through the addon: covariance of every layer's attention input, RMS fits of
// latents, and perplexity — each on a model folder, loaded for the pass and released after.
import { native } from "../native/binding.js";
import type { NativeEngine, NativeStatistics, StatisticRequest } from "../native/types.js";
import { Mat } from "./matrix.js";
import { perplexity, type PerplexityResult } from "../eval/perplexity.js";
import { forEachWindowBatch, windowsPerCall } from "../eval/window_batches.js";

export interface PassOptions {
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

async function withEngine<T>(dir: string, seq: number, threads: number | undefined, fn: (e: NativeEngine) => Promise<T>): Promise<T> {
  const engine = await native().loadEngine({
    modelDir: dir, numThreads: threads, numBlocks: windowsPerCall(seq) * Math.ceil(seq / 64) + 1, enablePrefixCaching: false, kvCacheDtype: "f32",
  });
  try {
    return await fn(engine);
  } finally {
    engine.dispose();
  }
}

/** Runs every window through the model (in batches), feeding `stats`. */
function feed(engine: NativeEngine, stats: NativeStatistics, wins: number[][], lastLayer: number, stopAtAttentionInput: boolean, o: PassOptions): Promise<void> {
  return forEachWindowBatch(engine, wins, (batch) => stats.calibrate(batch, { lastLayer, stopAtAttentionInput }), (d) => o.onProgress?.(d, wins.length));
}

/**
 * Σ = x̃ᵀx̃ for each requested layer's attention input x (after input_layernorm), with a constant
 * 1 appended to every row: [hidden + 1, hidden + 1]. Every projection's output statistics follow
 * from it exactly: cov(W̃ x̃) = W̃ Σ W̃ᵀ with the bias as W̃'s last column.
 */
export async function attentionInputStats(dir: string, wins: number[][], layers: number[], o: PassOptions = {}): Promise<Mat[]> {
  return withEngine(dir, wins[0]!.length, o.threads, async (engine) => {
    const stats = engine.statistics(layers.map((layer) => ({ layer, point: "attn_norm", appendOne: true })));
    await feed(engine, stats, wins, Math.max(...layers), true, o);
    return stats.take().map((r) => new Mat(r.columns, r.columns, r.data));
  });
}

/** Per-channel least-squares fit of an RMSNorm weight w so that w ⊙ x / rms(x) ≈ x, for each request. */
export async function rmsNormFits(dir: string, wins: number[][], requests: StatisticRequest[], o: PassOptions = {}): Promise<Float64Array[]> {
  return withEngine(dir, wins[0]!.length, o.threads, async (engine) => {
    const stats = engine.statistics(requests.map((r) => ({ ...r, kind: "rmsFit" })));
    await feed(engine, stats, wins, Math.max(...requests.map((r) => r.layer)), false, o);
    return stats.take().map((r) => {
      const n = r.columns;
      const w = new Float64Array(n);
      for (let j = 0; j < n; ++j) {
        const a = r.data[j]!, b = r.data[n + j]!;
        w[j] = b > 0 ? a / b : 1;
      }
      return w;
    });
  });
}

export async function modelPerplexity(dir: string, wins: number[][], o: PassOptions = {}): Promise<PerplexityResult> {
  return withEngine(dir, wins[0]!.length, o.threads, (engine) => perplexity(engine, wins, (d) => o.onProgress?.(d, wins.length)));
}
