// Calibration passes through the addon: covariance of every layer's attention input, RMS fits of
// latents, and perplexity — each on a model folder, loaded for the pass and released after.
import { native } from "../native/binding.js";
import type { NativeEngine, StatisticRequest } from "../native/types.js";
import { Mat } from "./matrix.js";
import { perplexity, type PerplexityResult } from "./perplexity.js";

const STEP_TOKENS = 2048;
const GREEDY = { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, seed: 0 };

export interface PassOptions {
  threads?: number;
  onProgress?: (done: number, total: number) => void;
}

async function withEngine<T>(dir: string, seq: number, threads: number | undefined, fn: (e: NativeEngine) => Promise<T>): Promise<T> {
  const perStep = Math.max(1, Math.floor(STEP_TOKENS / seq));
  const engine = await native().loadEngine({
    modelDir: dir, numThreads: threads, numBlocks: perStep * Math.ceil(seq / 64) + 1, enablePrefixCaching: false,
  });
  try {
    return await fn(engine);
  } finally {
    engine.dispose();
  }
}

/** Runs every window through the model (in batches), feeding the statistics begun on the engine. */
async function feed(engine: NativeEngine, wins: number[][], lastLayer: number, stopAtAttentionInput: boolean, o: PassOptions): Promise<void> {
  const seq = wins[0]!.length;
  const perStep = Math.max(1, Math.floor(STEP_TOKENS / seq));
  let id = 1;
  for (let first = 0; first < wins.length; first += perStep) {
    const group = wins.slice(first, first + perStep);
    const ids = group.map(() => id++);
    group.forEach((w, i) => engine.addSequence(ids[i]!, Int32Array.from(w), w.length, GREEDY));
    try {
      await engine.calibrate(
        { seqIds: Int32Array.from(ids), startPositions: new Int32Array(group.length), numTokens: Int32Array.from(group, (w) => w.length), tokenIds: Int32Array.from(group.flat()) },
        { lastLayer, stopAtAttentionInput },
      );
    } finally {
      for (const i of ids) engine.freeSequence(i);
    }
    o.onProgress?.(Math.min(wins.length, first + perStep), wins.length);
  }
}

/**
 * Σ = x̃ᵀx̃ for each requested layer's attention input x (after input_layernorm), with a constant
 * 1 appended to every row: [hidden + 1, hidden + 1]. Every projection's output statistics follow
 * from it exactly: cov(W̃ x̃) = W̃ Σ W̃ᵀ with the bias as W̃'s last column.
 */
export async function attentionInputStats(dir: string, wins: number[][], layers: number[], o: PassOptions = {}): Promise<Mat[]> {
  return withEngine(dir, wins[0]!.length, o.threads, async (engine) => {
    engine.beginStatistics(layers.map((layer) => ({ layer, point: "attn_norm", appendOne: true })));
    await feed(engine, wins, Math.max(...layers), true, o);
    return engine.takeStatistics().map((r) => new Mat(r.columns, r.columns, r.data));
  });
}

/** Per-channel least-squares fit of an RMSNorm weight w so that w ⊙ x / rms(x) ≈ x, for each request. */
export async function rmsNormFits(dir: string, wins: number[][], requests: StatisticRequest[], o: PassOptions = {}): Promise<Float64Array[]> {
  return withEngine(dir, wins[0]!.length, o.threads, async (engine) => {
    engine.beginStatistics(requests.map((r) => ({ ...r, kind: "rmsFit" })));
    await feed(engine, wins, Math.max(...requests.map((r) => r.layer)), false, o);
    return engine.takeStatistics().map((r) => {
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
