// Perplexity in the addon: log-probabilities of each window's own next tokens.
import type { NativeEngine } from "../native/types.js";

export interface PerplexityResult {
  perplexity: number;
  meanNll: number;
  windows: number;
  predictedTokens: number;
}

const BATCH_TOKENS = 2048;

/**
 * exp(mean NLL) over every predicted token of every window (each window predicts its tokens
 * 1..seq-1 from the ones before). Windows run in batches; `onProgress` gets windows done.
 */
export async function perplexity(engine: NativeEngine, wins: number[][], onProgress?: (done: number) => void): Promise<PerplexityResult> {
  if (wins.length === 0) throw new Error("no complete window to evaluate");
  const seq = wins[0]!.length;
  const perStep = Math.max(1, Math.floor(BATCH_TOKENS / seq));
  let nll = 0;
  let count = 0;
  let nextId = 1 << 30;
  for (let first = 0; first < wins.length; first += perStep) {
    const group = wins.slice(first, first + perStep);
    const ids = group.map(() => nextId++);
    group.forEach((w, i) => {
      if (engine.addSequence(ids[i]!, Int32Array.from(w), w.length, { temperature: 0, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, seed: 0 }) === null) {
        throw new Error(`the cache cannot hold ${group.length} windows of ${seq} tokens`);
      }
    });
    try {
      const lp = await engine.score({
        seqIds: Int32Array.from(ids),
        startPositions: new Int32Array(group.length),
        numTokens: Int32Array.from(group, (w) => w.length),
        tokenIds: Int32Array.from(group.flat()),
        targetIds: Int32Array.from(group.flatMap((w) => [...w.slice(1), 0])),
      });
      group.forEach((w, i) => {
        for (let t = 0; t < w.length - 1; ++t) nll -= lp[i * seq + t]!;
        count += w.length - 1;
      });
    } finally {
      for (const id of ids) engine.freeSequence(id);
    }
    onProgress?.(Math.min(wins.length, first + perStep));
  }
  return { perplexity: Math.exp(nll / count), meanNll: nll / count, windows: wins.length, predictedTokens: count };
}
