// Token windows through the addon in batches: the loop perplexity and calibration share.
import type { NativeEngine, ScoreBatch } from "../native/types.js";

/** Tokens per engine call: windows are grouped so each call computes about this many. */
const TOKENS_PER_CALL = 2048;

/** Windows of `seq` tokens per engine call (at least one). */
export function windowsPerCall(seq: number): number {
  return Math.max(1, Math.floor(TOKENS_PER_CALL / seq));
}

/** One batch of whole windows as the engine's input arrays (every window starts at position 0). */
export type WindowBatch = Omit<ScoreBatch, "targetIds">;

/**
 * Runs `run` on every group of windows (all of one length): the group's sequences are added to the
 * engine first and freed after, whatever happens. `onProgress` gets the number of windows done.
 */
export async function forEachWindowBatch(engine: NativeEngine, wins: number[][], run: (batch: WindowBatch, group: number[][]) => Promise<void>,
                                         onProgress?: (done: number) => void): Promise<void> {
  const seq = wins[0]!.length;
  const perCall = windowsPerCall(seq);
  let nextId = 1 << 30;
  for (let first = 0; first < wins.length; first += perCall) {
    const group = wins.slice(first, first + perCall);
    const ids = group.map(() => nextId++);
    const added: number[] = [];
    try {
      group.forEach((w, i) => {
        if (engine.addSequence(ids[i]!, Int32Array.from(w), w.length) === null) {
          throw new Error(`the cache cannot hold ${group.length} windows of ${seq} tokens`);
        }
        added.push(ids[i]!);
      });
      await run({
        seqIds: Int32Array.from(ids),
        startPositions: new Int32Array(group.length),
        numTokens: Int32Array.from(group, (w) => w.length),
        tokenIds: Int32Array.from(group.flat()),
      }, group);
    } finally {
      for (const id of added) engine.freeSequence(id);
    }
    onProgress?.(Math.min(wins.length, first + perCall));
  }
}
