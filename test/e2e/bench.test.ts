// `mla-serve bench` as a user runs it: one model, or two turn about with --against.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, it } from "node:test";

import { ROOT } from "../helpers.js";

const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");
const GQA = path.join(ROOT, "models", "gutenberg-tiny");

function bench(args: string[]) {
  const r = spawnSync(process.execPath, [CLI, "bench", "--prompt-len", "8", "--gen-len", "3", ...args], { encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("mla-serve bench", () => {
  it("prints a row per batch size", () => {
    const r = bench(["--model", GQA, "--batch", "1,2", "--repeat", "1"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /model gutenberg-tiny \(llama, gqa, 4 layers/);
    assert.match(r.stdout, /\n {4}1 \| +\d+ \| +[\d.]+ \| +[\d.]+\n {4}2 \| /);
  });

  it("--against runs both models turn about and prints the median of the pairs' ratios", () => {
    const r = bench(["--against", GQA, "--batch", "2", "--repeat", "3"]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /A: model gutenberg-tiny-mla \(deepseek_v3, mla/);
    assert.match(r.stdout, /B: model gutenberg-tiny \(llama, gqa/);
    const m = r.stdout.match(/decode A \/ B: ([\d.]+)x \(median of 3 pairs: ([\d.]+), ([\d.]+), ([\d.]+)\)/);
    assert.ok(m, r.stdout);
    const pairs = m.slice(2).map(Number).sort((a, b) => a - b);
    assert.equal(Number(m[1]), pairs[1]);
    assert.match(r.stdout, /\n {2}2 A \| .*\n {2}2 B \| /);
  });

  it("names a bad batch list or a missing model and exits non-zero", () => {
    const batch = bench(["--batch", "1,x"]);
    assert.equal(batch.code, 1);
    assert.match(batch.stderr, /--batch: 'x' is not a positive integer/);
    const missing = bench(["--against", "/no/such/model", "--batch", "1"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /model folder not found: \/no\/such\/model/);
  });
});
