// Perplexity in the addon: log-probabilities of each window's own next tokens.
import type { NativeEngine } from "../native/types.js";
import { forEachWindowBatch } from "./window_batches.js";

export interface PerplexityResult {
  perplexity: number;
  meanNll: number;
  windows: number;
  predictedTokens: number;
}

/**
 * exp(mean NLL) over every predicted token of every window (each window predicts its tokens
 * 1..seq-1 from the ones before). Windows run in batches; `onProgress` gets windows done.
 */
export async function perplexity(engine: NativeEngine, wins: number[][], onProgress?: (done: number) => void): Promise<PerplexityResult> {
  if (wins.length === 0) throw new Error("no complete window to evaluate");
  const seq = wins[0]!.length;
  let nll = 0;
  let count = 0;
  await forEachWindowBatch(engine, wins, async (batch, group) => {
    const lp = await engine.score({ ...batch, targetIds: Int32Array.from(group.flatMap((w) => [...w.slice(1), 0])) });
    group.forEach((w, i) => {
      for (let t = 0; t < w.length - 1; ++t) nll -= lp[i * seq + t]!;
      count += w.length - 1;
    });
  }, onProgress);
  return { perplexity: Math.exp(nll / count), meanNll: nll / count, windows: wins.length, predictedTokens: count };
}
