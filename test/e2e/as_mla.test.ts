// `serve --as-mla` and the default model as a user meets them: spawned processes, a cache folder.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";

import OpenAI from "openai";

import { BUNDLED_GQA, HELDOUT_8K, TEST_CACHE_DIR } from "../helpers.js";
import { CLI, startServer } from "./server_process.js";

// A quick conversion: a budget search over few calibration windows (about 10 s on 2 cores).
const QUICK = ["--cache-budget", "64", "--calib-samples", "16", "--calib-seq", "128", "--search-samples", "4"];

function tempSource(): { source: string; cache: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "mla-as-mla-"));
  const source = path.join(dir, "tiny-gqa");
  cpSync(BUNDLED_GQA, source, { recursive: true });
  return { source, cache: path.join(dir, "cache") };
}

function entries(cache: string): string[] {
  const root = path.join(cache, "converted");
  return existsSync(root) ? readdirSync(root) : [];
}

async function completion(baseURL: string, model: string): Promise<string> {
  const client = new OpenAI({ baseURL, apiKey: "none" });
  const r = await client.completions.create({ model, prompt: "Prince Andrew said", max_tokens: 8, temperature: 0 });
  return r.choices[0]!.text;
}

describe("serve --as-mla", () => {
  it("converts a GQA folder with the given options, serves it, and reuses the cache on the next start", async () => {
    const { source, cache } = tempSource();
    const s1 = await startServer(["--model", source, "--as-mla", ...QUICK, "--cache-dir", cache], {});
    let first: string;
    try {
      const models = await new OpenAI({ baseURL: s1.baseURL, apiKey: "none" }).models.list();
      assert.deepEqual(models.data.map((m) => m.id), ["tiny-gqa-mla"]);
      first = await completion(s1.baseURL, "tiny-gqa-mla");
      assert.ok(first.length > 0);
    } finally {
      await s1.stop();
    }
    const log1 = s1.logs.join("");
    assert.match(log1, /converting .*tiny-gqa to MLA/);
    assert.match(log1, /"attention":"mla"/);
    const [key] = entries(cache);
    const config = JSON.parse(readFileSync(path.join(cache, "converted", key!, "tiny-gqa-mla", "config.json"), "utf8"));
    assert.equal(config.kv_lora_rank + config.qk_rope_head_dim, 64); // the budget
    const report = JSON.parse(readFileSync(path.join(cache, "converted", key!, "tiny-gqa-mla", "conversion-report.json"), "utf8"));
    assert.equal(report.budgetSearch.budget, 64);

    const s2 = await startServer(["--model", source, "--as-mla", ...QUICK, "--cache-dir", cache]);
    try {
      assert.equal(await completion(s2.baseURL, "tiny-gqa-mla"), first);
    } finally {
      await s2.stop();
    }
    const log2 = s2.logs.join("");
    assert.doesNotMatch(log2, /converting/);
    assert.match(log2, /from the cache/);
    assert.deepEqual(entries(cache), [key]);

    // A damaged entry is rebuilt; the rebuilt model is the same model.
    truncateSync(path.join(cache, "converted", key!, "tiny-gqa-mla", "model.safetensors"), 4096);
    const s3 = await startServer(["--model", source, "--as-mla", ...QUICK, "--cache-dir", cache]);
    try {
      assert.equal(await completion(s3.baseURL, "tiny-gqa-mla"), first);
    } finally {
      await s3.stop();
    }
    assert.match(s3.logs.join(""), /damaged .*model\.safetensors has 4096 bytes.*rebuilding/s);
  });

  it("different options make a different entry; an MLA folder is served as it is", () => {
    const { source, cache } = tempSource();
    const run = (args: string[]) => spawnSync(process.execPath, [CLI, "generate", "--prompt", "Prince", "--max-tokens", "2", "--temperature", "0", "--cache-dir", cache, ...args], { encoding: "utf8", timeout: 120_000 });
    const a = run(["--model", source, "--as-mla", "--kv-lora-rank", "16", "--qk-rope-dim", "32", "--freqfold", "2", "--calib-samples", "8", "--calib-seq", "64"]);
    assert.equal(a.status, 0, a.stderr);
    const b = run(["--model", source, "--as-mla", "--kv-lora-rank", "24", "--qk-rope-dim", "32", "--freqfold", "2", "--calib-samples", "8", "--calib-seq", "64"]);
    assert.equal(b.status, 0, b.stderr);
    assert.equal(entries(cache).length, 2);
    const mla = path.join(cache, "converted", entries(cache)[0]!, "tiny-gqa-mla");
    const c = run(["--model", mla, "--as-mla"]);
    assert.equal(c.status, 0, c.stderr);
    assert.match(c.stderr, /is an MLA model already: serving it as it is/);
    assert.equal(entries(cache).length, 2);
  });

  it("a bad option fails before any work, naming the option", () => {
    const { source, cache } = tempSource();
    const cases: [string[], RegExp][] = [
      [["--as-mla", "--kv-lora-rank", "999"], /--kv-lora-rank 999 is not possible: the maximum .* is 192/],
      [["--as-mla", "--qk-rope-dim", "48"], /--qk-rope-dim 48 must be an even divisor of head_dim 64/],
      [["--as-mla", "--cache-budget", "2"], /--cache-budget 2 is not possible/],
      [["--as-mla", "--freqfold", "three"], /--freqfold must be a power of two or auto/],
      [["--as-mla", "--dtype", "int4"], /--dtype must be auto, float32, bfloat16 or float16/],
      [["--as-mla", "--calib", "/no/such/file.txt"], /calibration file not found: \/no\/such\/file\.txt/],
      [["--kv-lora-rank", "32"], /--kv-lora-rank is a conversion option: add --as-mla/],
    ];
    for (const [args, message] of cases) {
      const t0 = performance.now();
      const r = spawnSync(process.execPath, [CLI, "serve", "--model", source, "--cache-dir", cache, "--port", "0", ...args], { encoding: "utf8", timeout: 60_000 });
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.ok(performance.now() - t0 < 5000, "refused before any work");
    }
    assert.deepEqual(entries(cache), []);
  });
});

describe("the default model", () => {
  it("is the bundled GQA model converted by its recipe: the same split and perplexity as the MLA model it replaces", () => {
    const ppl = (dtype: string) => {
      const r = spawnSync(process.execPath, [CLI, "ppl", "--text", HELDOUT_8K, "--seq", "128", "--kv-cache-dtype", dtype], { encoding: "utf8", timeout: 120_000, env: { ...process.env, MLA_SERVE_CACHE_DIR: TEST_CACHE_DIR } });
      assert.equal(r.status, 0, r.stderr);
      return Number(/perplexity: ([\d.]+)/.exec(r.stdout)![1]);
    };
    // models/gutenberg-tiny-mla (commit 7c56a02) measured 465.8499 with this command (its cache was f32).
    assert.ok(Math.abs(ppl("f32") - 465.8499) < 0.01, `perplexity ${ppl("f32")}`);
    const bf16 = ppl("bf16"); // the served cache: within bf16's rounding of the same model
    assert.ok(Math.abs(bf16 / 465.8499 - 1) < 2e-3, `perplexity with a bf16 cache ${bf16}`);
    const prepared = spawnSync(process.execPath, [CLI, "prepare"], { encoding: "utf8", env: { ...process.env, MLA_SERVE_CACHE_DIR: TEST_CACHE_DIR } });
    assert.equal(prepared.status, 0, prepared.stderr);
    const dir = prepared.stdout.trim();
    assert.equal(path.basename(dir), "gutenberg-tiny-mla");
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
    assert.deepEqual([config.kv_lora_rank, config.qk_rope_head_dim, config.mla_serve_conversion.freqfold], [32, 64, 4]);
    const report = JSON.parse(readFileSync(path.join(dir, "conversion-report.json"), "utf8"));
    assert.ok(Math.abs(report.perplexity.final - 465.8499) < 0.01);
    assert.ok(Math.abs(report.perplexity.original - 443.5172) < 0.01);
  });
});
