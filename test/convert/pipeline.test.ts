// The converter end to end on the bundled GQA model: ranks, stages, formats, reports, bad input.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import { convert, type ConversionReport } from "../../src/convert/pipeline.js";
import type { ConvertOptions } from "../../src/convert/options.js";
import { Checkpoint } from "../../src/model/checkpoint.js";
import { loadModel } from "../../src/model/load.js";
import { BUNDLED_GQA, FIXTURES, REFERENCE_MODELS, ROOT, CALIB_TEXT, HELDOUT_8K } from "../helpers.js";

const work = mkdtempSync(path.join(tmpdir(), "mla-pipeline-"));
after(() => rmSync(work, { recursive: true, force: true }));
const CALIB = CALIB_TEXT;
const EVAL = HELDOUT_8K;
const quiet = { stage: () => ({ update() {}, done() {} }), log() {} };

function options(out: string, extra: Partial<ConvertOptions>): ConvertOptions {
  return {
    model: BUNDLED_GQA, out: path.join(work, out), force: true, kvLoraRank: 64, qkRopeDim: 32, qLoraRank: null, freqfold: 2,
    balanceKvRatio: 1, calib: CALIB, calibSamples: 16, calibSeq: 256, searchSamples: 8, eval: EVAL, evalSeq: 128, evalMaxChars: null,
    target: "mla-serve", latentNorm: false, allowCacheGrowth: false, exact: false, sequential: false, cacheBudget: null, kernelShapes: false, dtype: "float32", seed: 7, ...extra,
  };
}

describe("convert", () => {
  it("the MLA perplexity falls as kv_lora_rank grows and equals the partial-RoPE one at full rank", async () => {
    const ranks = [16, 64, 128, 224]; // 224 = 2 x 2 kv heads x 64 - 32: full rank
    const reports: ConversionReport[] = [];
    for (const r of ranks) reports.push(await convert(options(`rank-${r}`, { kvLoraRank: r }), quiet));
    const finals = reports.map((r) => r.perplexity.final!);
    // PCA keeps more of the calibration energy at every larger rank (exactly); perplexity on other
    // text falls with it, up to noise of 0.1% once the rank saturates.
    for (let i = 1; i < reports.length; ++i) {
      reports[i]!.layers.forEach((l, layer) => assert.ok(l.retainedEnergy >= reports[i - 1]!.layers[layer]!.retainedEnergy, `layer ${layer}: retained energy must grow with rank`));
      assert.ok(finals[i]! <= finals[i - 1]! * 1.001, `perplexity ${finals.join(" > ")} must fall`);
    }
    assert.ok(finals[0]! > finals[finals.length - 1]! * 1.002, `a small rank costs perplexity: ${finals.join(", ")}`);
    const full = reports[reports.length - 1]!;
    assert.ok(Math.abs(full.perplexity.final! - full.perplexity.partialRope!) / full.perplexity.partialRope! < 1e-4,
      `full rank ${full.perplexity.final} vs partial RoPE ${full.perplexity.partialRope}`);
    assert.ok(Math.abs(full.perplexity.original! - 443.517) < 0.01);
    assert.ok(full.perplexity.partialRope! > full.perplexity.original!); // dropping RoPE costs something
    // The report: cache sizes before and after, in the output folder too.
    const onDisk = JSON.parse(readFileSync(path.join(work, "rank-64", "conversion-report.json"), "utf8")) as ConversionReport;
    assert.equal(onDisk.source.kvCacheValuesPerToken, 4 * 2 * 128);
    assert.equal(onDisk.output.kvCacheValuesPerToken, 4 * (64 + 32));
    assert.equal(onDisk.output.kvCacheBytesPerToken, 4 * 96 * 4);
  });

  it("writes a DeepSeek-V3 folder that mla-serve loads and generates from", async () => {
    const rep = await convert(options("mla", { dtype: "auto" }), quiet);
    const dir = rep.output.dir;
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
    assert.equal(config.model_type, "deepseek_v3");
    assert.deepEqual(config.architectures, ["DeepseekV3ForCausalLM"]);
    assert.equal(config.first_k_dense_replace, 4);
    assert.equal(config.qk_latent_layernorm, false);
    assert.equal(config.torch_dtype, "bfloat16");
    for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"]) assert.ok(existsSync(path.join(dir, f)), f);
    const model = await loadModel(dir, { numBlocks: 8 });
    assert.equal(model.engine.config().attention, "mla");
    assert.equal(model.engine.config().cacheEntrySize, 96);
    const r = spawnSync(process.execPath, [path.join(ROOT, "dist", "src", "cli", "main.js"), "generate", "--model", dir, "--prompt", "Prince Andrew", "--max-tokens", "12", "--temperature", "0"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.trim().length > 0);
    model.engine.dispose();
  });

  it("--target hf with --q-lora-rank writes what Hugging Face's DeepseekV3ForCausalLM loads", async () => {
    const rep = await convert(options("hf", { target: "hf", qLoraRank: 96 }), quiet);
    const dir = rep.output.dir;
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
    assert.equal(config.q_lora_rank, 96);
    assert.equal("qk_latent_layernorm" in config, false);
    const names = [...new Checkpoint(dir).tensors.keys()].filter((n) => n.startsWith("model.layers.0.self_attn.")).map((n) => n.slice(25)).sort();
    assert.deepEqual(names, ["kv_a_layernorm.weight", "kv_a_proj_with_mqa.weight", "kv_b_proj.weight", "o_proj.weight", "q_a_layernorm.weight", "q_a_proj.weight", "q_b_proj.weight"]);
    assert.ok(Number.isFinite(rep.perplexity.final) && rep.perplexity.final! < 2 * rep.perplexity.original!);
  });

  it("--exact keeps the original perplexity (TransMLA's first format)", async () => {
    const rep = await convert(options("exact", { exact: true }), quiet);
    assert.equal(rep.output.format, "transmla_v1");
    assert.ok(Math.abs(rep.perplexity.final! - rep.perplexity.original!) / rep.perplexity.original! < 1e-4);
    assert.ok(new Checkpoint(rep.output.dir).has("model.layers.3.self_attn.k_up_proj.weight"));
  });

  it("--sequential and --freqfold auto run, and report what they chose", async () => {
    const seq = await convert(options("sequential", { sequential: true }), quiet);
    assert.equal(seq.calibration.sequential, true);
    assert.equal(seq.layers.length, 4);
    assert.ok(seq.layers.every((l) => l.retainedEnergy > 0.5 && l.retainedEnergy <= 1 && l.balanceRatio > 0));
    const auto = await convert(options("auto", { freqfold: "auto" }), quiet);
    assert.ok(auto.freqfoldSearch.length >= 2);
    assert.equal(auto.freqfoldSearch[0]!.freqfold, 2); // starts at collapse = 64 / 32
    const best = auto.freqfoldSearch.reduce((a, b) => (b.perplexity < a.perplexity ? b : a));
    assert.equal(auto.output.freqfold, best.freqfold);
  });
});

describe("convert: bad input is refused before any work", () => {
  const cli = (args: string[]) => spawnSync(process.execPath, [path.join(ROOT, "dist", "src", "cli", "main.js"), "convert", ...args], { encoding: "utf8", timeout: 60_000 });
  const base = ["--calib", CALIB, "--calib-samples", "4", "--calib-seq", "64"];
  const cases: [string, string[], RegExp][] = [
    ["an unsupported model_type", ["--model", REFERENCE_MODELS["random-mla"]!, "--out", path.join(work, "x1"), ...base], /cannot convert model_type "deepseek_v3"/],
    ["a rank larger than possible", ["--model", BUNDLED_GQA, "--out", path.join(work, "x2"), "--kv-lora-rank", "500", "--qk-rope-dim", "32", ...base], /--kv-lora-rank 500 is not possible: the maximum for this model with --qk-rope-dim 32 is 224/],
    ["a q rank larger than possible", ["--model", BUNDLED_GQA, "--out", path.join(work, "x3"), "--kv-lora-rank", "64", "--q-lora-rank", "9999", ...base], /--q-lora-rank 9999 is not possible: the maximum is 256/],
    ["a bad rope dim", ["--model", BUNDLED_GQA, "--out", path.join(work, "x4"), "--qk-rope-dim", "24", ...base], /--qk-rope-dim 24 must be an even divisor of head_dim 64/],
    ["a bad freqfold", ["--model", BUNDLED_GQA, "--out", path.join(work, "x5"), "--kv-lora-rank", "64", "--qk-rope-dim", "32", "--freqfold", "3", ...base], /freqfold 3 must be a multiple of collapse 2/],
    ["a calibration file too short", ["--model", BUNDLED_GQA, "--out", path.join(work, "x6"), "--kv-lora-rank", "64", "--calib", path.join(work, "short.txt"), "--calib-samples", "8"], /calibration file .*short\.txt is too short: it gives \d windows of 256 tokens, but 24 are needed/],
    ["a missing calibration file", ["--model", BUNDLED_GQA, "--out", path.join(work, "x7"), "--kv-lora-rank", "64", "--calib", "/no/such.txt"], /calibration file not found: \/no\/such\.txt/],
  ];
  writeFileSync(path.join(work, "short.txt"), "A short text.\n\nWith two paragraphs only.\n");
  for (const [name, args, message] of cases) {
    it(name, () => {
      const t0 = performance.now();
      const r = cli(args);
      assert.equal(r.status, 1, r.stdout);
      assert.match(r.stderr, message);
      assert.ok(!existsSync(args[args.indexOf("--out") + 1]!));
      assert.ok(performance.now() - t0 < 20_000);
    });
  }

  it("an existing OUT without --force", () => {
    const out = path.join(work, "exists");
    writeFileSync(path.join(work, "marker"), "");
    rmSync(out, { recursive: true, force: true });
    mkdirSync(out);
    writeFileSync(path.join(out, "keep.txt"), "mine");
    const r = cli(["--model", BUNDLED_GQA, "--out", out, "--kv-lora-rank", "64", ...base]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /already exists \(use --force to replace it\)/);
    assert.deepEqual(readdirSync(out), ["keep.txt"]);
  });
});
