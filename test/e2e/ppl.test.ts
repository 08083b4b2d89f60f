// `mla-serve ppl` against the known value of the bundled model (float64 reference: 443.517).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, it } from "node:test";

import { BUNDLED_GQA, FIXTURES, ROOT, HELDOUT_8K } from "../helpers.js";

const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");

describe("mla-serve ppl", () => {
  it("reproduces the reference perplexity of the bundled GQA model", () => {
    const r = spawnSync(process.execPath, [CLI, "ppl", "--model", BUNDLED_GQA, "--text", HELDOUT_8K, "--seq", "128"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    const m = /^perplexity: ([\d.]+)$/m.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.ok(Math.abs(Number(m[1]) - 443.517) < 0.01, m[1]);
    assert.match(r.stderr, /2155 tokens, 16 windows of 128, 2032 predicted tokens/);
  });

  it("names the problem with bad arguments", () => {
    const r = spawnSync(process.execPath, [CLI, "ppl", "--model", BUNDLED_GQA, "--text", HELDOUT_8K, "--seq", "100000"], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /has 2155 tokens: not one window of 100000/);
    const missing = spawnSync(process.execPath, [CLI, "ppl", "--model", BUNDLED_GQA], { encoding: "utf8" });
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--text FILE is required/);
  });
});
