// --cache-budget: the split search over (qk_rope_dim, freqfold, kv_lora_rank = budget - rope).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import type { ConvertOptions } from "../../src/convert/options.js";
import { convert, type ConversionReport } from "../../src/convert/pipeline.js";
import { native } from "../../src/native/binding.js";
import { BUNDLED_GQA, FIXTURES, CALIB_TEXT, HELDOUT_8K } from "../helpers.js";

const work = mkdtempSync(path.join(tmpdir(), "mla-budget-"));
after(() => rmSync(work, { recursive: true, force: true }));
const quiet = { stage: () => ({ update() {}, done() {} }), log() {} };

function options(out: string, extra: Partial<ConvertOptions>): ConvertOptions {
  return {
    model: BUNDLED_GQA, out: path.join(work, out), force: true, kvLoraRank: 64, qkRopeDim: 32, qLoraRank: null, freqfold: 2,
    balanceKvRatio: 1, calib: CALIB_TEXT, calibSamples: 8, calibSeq: 128, searchSamples: 6,
    eval: HELDOUT_8K, evalSeq: 128, evalMaxChars: null, target: "mla-serve", latentNorm: false, allowCacheGrowth: false, exact: false,
    sequential: false, cacheBudget: 96, kernelShapes: false, dtype: "float32", seed: 3, ...extra,
  };
}

describe("--cache-budget", () => {
  let first: ConversionReport;

  it("at budget 96 the chosen split beats every split the search built, and TransMLA's 32 + 64 at freqfold 2", async () => {
    first = await convert(options("b96", {}), quiet);
    const rows = first.budgetSearch!.rows;
    // Every qk_rope_dim that leaves a rank: 64, 32, 16, 8, 4, 2 (head_dim 64); every valid freqfold.
    assert.deepEqual([...new Set(rows.map((r) => r.qkRopeDim))], [64, 32, 16, 8, 4, 2]);
    assert.ok(rows.every((r) => r.kvLoraRank === 96 - r.qkRopeDim && r.freqfold >= 64 / r.qkRopeDim));
    // Each rope width takes its best freqfold to the final model.
    for (const r of new Set(rows.map((x) => x.qkRopeDim))) {
      const mine = rows.filter((x) => x.qkRopeDim === r);
      const built = mine.filter((x) => x.finalPerplexity !== null);
      assert.equal(built.length, 1);
      assert.equal(built[0]!.partialPerplexity, Math.min(...mine.map((x) => x.partialPerplexity)));
    }
    const chosen = rows.find((x) => x.qkRopeDim === first.output.qkRopeDim && x.freqfold === first.output.freqfold)!;
    for (const row of rows) if (row.finalPerplexity !== null) assert.ok(chosen.finalPerplexity! <= row.finalPerplexity);
    assert.equal(first.output.kvLoraRank! + first.output.qkRopeDim!, 96);
    const transmla = await convert(options("fixed", { cacheBudget: null, kvLoraRank: 64, qkRopeDim: 32, freqfold: 2 }), quiet);
    assert.ok(first.perplexity.final! < transmla.perplexity.final!, `${first.perplexity.final} vs ${transmla.perplexity.final}`);
  });

  it("is deterministic for a seed", async () => {
    const again = await convert(options("b96-again", {}), quiet);
    assert.deepEqual(again.budgetSearch, first.budgetSearch);
    assert.equal(again.perplexity.final, first.perplexity.final);
  });

  it("--kernel-shapes keeps only the shapes the CUDA decode kernel is built for", async () => {
    const shapes = native().mlaKernelShapes;
    assert.ok(shapes.some(([l, r]) => l === 512 && r === 64));
    const rep = await convert(options("b96-kernel", { kernelShapes: true, searchSamples: 4 }), quiet);
    const rows = rep.budgetSearch!.rows;
    assert.ok(rep.budgetSearch!.kernelShapesOnly);
    assert.ok(rows.length > 0);
    for (const row of rows) assert.ok(shapes.some(([l, r]) => l === row.kvLoraRank && r === row.qkRopeDim), `${row.kvLoraRank}+${row.qkRopeDim}`);
    assert.deepEqual([...new Set(rows.map((r) => r.qkRopeDim))], [64, 32]);
  });

  it("refuses impossible budgets before any work", async () => {
    await assert.rejects(convert(options("bad", { cacheBudget: 1000 }), quiet), /--cache-budget 1000 is not possible: it must be in \[3, 256\]/);
    await assert.rejects(convert(options("bad2", { cacheBudget: null, kernelShapes: true }), quiet), /--kernel-shapes restricts --cache-budget/);
  });
});
