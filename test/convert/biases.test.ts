// Conversion of a source with q/k/v biases (Qwen2), calibrated from token windows (the fixture has
// no tokenizer): biases go through RoRoPE and BKV-PCA exactly, so at full rank the MLA model equals
// its partial-RoPE model.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import type { ConvertOptions } from "../../src/convert/options.js";
import { convert } from "../../src/convert/pipeline.js";
import { Checkpoint } from "../../src/model/checkpoint.js";
import { REFERENCE_MODELS } from "../helpers.js";

const work = mkdtempSync(path.join(tmpdir(), "mla-bias-"));
after(() => rmSync(work, { recursive: true, force: true }));
const quiet = { stage: () => ({ update() {}, done() {} }), log() {} };

function windows(count: number, seq: number, seed: number): number[][] {
  let s = seed;
  return Array.from({ length: count }, () => [1, ...Array.from({ length: seq - 1 }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % 1024)]);
}

function options(out: string, kvLoraRank: number): ConvertOptions {
  return {
    model: REFERENCE_MODELS["random-qwen2"]!, out: path.join(work, out), force: true, kvLoraRank, qkRopeDim: 16, qLoraRank: null,
    freqfold: 2, balanceKvRatio: 1, calib: "", calibSamples: 8, calibSeq: 64, searchSamples: 0, eval: null, evalSeq: 64, evalMaxChars: null,
    target: "mla-serve", latentNorm: false, allowCacheGrowth: false, exact: false, sequential: false, cacheBudget: null, kernelShapes: false, dtype: "float32", seed: 1,
    tokenWindows: { calib: windows(8, 64, 3), eval: windows(6, 64, 99) },
  };
}

describe("convert a model with q/k/v biases", () => {
  it("carries the biases: full rank equals partial RoPE, and lower ranks load and run", async () => {
    const full = await convert(options("full", 2 * 2 * 32 - 16), quiet);
    assert.ok(Math.abs(full.perplexity.final! - full.perplexity.partialRope!) / full.perplexity.partialRope! < 1e-4,
      `${full.perplexity.final} vs ${full.perplexity.partialRope}`);
    assert.ok(full.warnings.some((w) => /biases/.test(w)));
    const ckpt = new Checkpoint(full.output.dir);
    assert.ok(ckpt.has("model.layers.0.self_attn.q_proj.bias") && ckpt.has("model.layers.1.self_attn.kv_a_proj_with_mqa.bias"));
    const low = await convert(options("low", 32), quiet);
    assert.ok(Number.isFinite(low.perplexity.final) && low.perplexity.final! > 1);
    assert.equal(low.output.kvCacheValuesPerToken, 2 * (32 + 16));
  });
});
