// Searches over splits, scored by perplexity on held-out calibration windows (never --eval):
// --freqfold auto for a fixed split, and --cache-budget B over every (qk_rope_dim, freqfold)
// with kv_lora_rank = B - qk_rope_dim.
import type { Conversion, Split } from "./conversion.js";
import type { Mat } from "./matrix.js";
import { buildFinal, buildPartial, type FinalModel, type PartialModel } from "./stages.js";

/** The freqfolds valid for a RoPE width: multiples of collapse by powers of two that divide head_dim / 2. */
export function freqfolds(headDim: number, ropeDim: number): number[] {
  const out: number[] = [];
  for (let f = headDim / ropeDim; f <= headDim / 2 && (headDim / 2) % f === 0; f *= 2) out.push(f);
  return out;
}

async function score(c: Conversion, label: string, dir: string): Promise<number> {
  return (await c.timed("search", () => c.perplexity(label, dir, c.plan.searchWindows)))!;
}

/** --freqfold auto: powers of two from collapse up, stopping at the first that does not improve (as the reference). */
export async function searchFreqfold(c: Conversion, ropeDim: number, kvLoraRank: number, sigma: Mat[]): Promise<{ partial: PartialModel; table: { freqfold: number; perplexity: number }[] }> {
  const table: { freqfold: number; perplexity: number }[] = [];
  let best: { partial: PartialModel; score: number } | undefined;
  for (const freqfold of freqfolds(c.source.headDim, ropeDim)) {
    const partial = await buildPartial(c, { ropeDim, freqfold, kvLoraRank }, sigma);
    const ppl = await score(c, `freqfold ${freqfold} (held-out)`, partial.dir);
    table.push({ freqfold, perplexity: ppl });
    if (best && ppl >= best.score) break;
    best = { partial, score: ppl };
  }
  return { partial: best!.partial, table };
}

export interface BudgetRow {
  qkRopeDim: number;
  freqfold: number;
  kvLoraRank: number;
  /** Held-out perplexity of the partial-RoPE model (depends on qk_rope_dim and freqfold only). */
  partialPerplexity: number;
  /** Held-out perplexity at kv_lora_rank, for the best freqfold of each qk_rope_dim; null where not built. */
  finalPerplexity: number | null;
}

/** The RoPE widths a budget allows: head_dim over powers of two, leaving a possible rank. */
export function budgetRopeDims(c: Conversion, budget: number, kernelShapes: [number, number][] | null): number[] {
  const out: number[] = [];
  for (let r = c.source.headDim; r >= 2 && r % 2 === 0; r /= 2) {
    const rank = budget - r;
    if (rank < 1 || (rank > c.maxRank(r) && !c.options.allowCacheGrowth)) continue;
    if (kernelShapes && !kernelShapes.some(([l, rr]) => l === rank && rr === r)) continue;
    out.push(r);
  }
  return out;
}

/**
 * --cache-budget B: every (qk_rope_dim, freqfold) is scored by its partial-RoPE model first (cheap:
 * the rotations reuse one calibration pass); then, for each qk_rope_dim, its best freqfold is taken
 * to the final model at rank B - qk_rope_dim, and the best final model wins.
 */
export async function searchBudget(c: Conversion, budget: number, sigma: Mat[], kernelShapes: [number, number][] | null): Promise<{ final: FinalModel; partial: PartialModel; table: BudgetRow[] }> {
  const ropeDims = budgetRopeDims(c, budget, kernelShapes);
  if (ropeDims.length === 0) {
    throw new Error(`no split fits --cache-budget ${budget}${kernelShapes ? ` among the shapes ${c.options.kernelShapes ? "the CUDA kernel" : "the target"} takes` : ""} for head_dim ${c.source.headDim}`);
  }
  const table: BudgetRow[] = [];
  const bestByRope = new Map<number, { partial: PartialModel; row: BudgetRow }>();
  for (const ropeDim of ropeDims) {
    for (const freqfold of freqfolds(c.source.headDim, ropeDim)) {
      const split: Split = { ropeDim, freqfold, kvLoraRank: budget - ropeDim };
      const partial = await buildPartial(c, split, sigma);
      const row: BudgetRow = { qkRopeDim: ropeDim, freqfold, kvLoraRank: split.kvLoraRank, partialPerplexity: await score(c, `rope ${ropeDim} freqfold ${freqfold} (held-out)`, partial.dir), finalPerplexity: null };
      table.push(row);
      const prev = bestByRope.get(ropeDim);
      if (!prev || row.partialPerplexity < prev.row.partialPerplexity) bestByRope.set(ropeDim, { partial, row });
    }
  }
  let best: { final: FinalModel; partial: PartialModel; score: number } | undefined;
  for (const { partial, row } of bestByRope.values()) {
    const final = await buildFinal(c, partial);
    const dir = c.overlay(`budget-final-r${row.qkRopeDim}`, c.mlaShape(final.split, "norm-free"), final.layers);
    row.finalPerplexity = await score(c, `rope ${row.qkRopeDim} rank ${row.kvLoraRank} (held-out)`, dir);
    if (!best || row.finalPerplexity < best.score) best = { final, partial, score: row.finalPerplexity };
  }
  return { final: best!.final, partial: best!.partial, table };
}
