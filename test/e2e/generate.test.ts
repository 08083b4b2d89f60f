// `mla-serve generate` as a user runs it: a spawned process, stdout for text, stderr for speed.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";

import { REFERENCE_MODELS, ROOT, greedyAgrees, readReference } from "../helpers.js";

const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");

function cli(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [CLI, ...args], { input, encoding: "utf8", timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("mla-serve generate", () => {
  it("greedy token ids equal the reference (model without a tokenizer)", () => {
    for (const name of ["random-qwen2", "random-mla"]) {
      const dir = REFERENCE_MODELS[name]!;
      const c = readReference(dir)[2]!;
      const r = cli(["generate", "--model", dir, "--prompt-ids", c.prompt_ids.join(","), "--max-tokens", "24", "--temperature", "0", "--ignore-eos"]);
      assert.equal(r.code, 0, r.stderr);
      const ids = r.stdout.trim().split("\n").map(Number);
      assert.equal(ids.length, 24);
      assert.ok(greedyAgrees(ids, c).ok, `${name}: ${ids}`);
    }
  });

  it("--prompt, --prompt-file and stdin give the same text; only the generated text goes to stdout", () => {
    const prompt = "The old prince";
    const file = path.join(mkdtempSync(path.join(tmpdir(), "mla-gen-")), "prompt.txt");
    writeFileSync(file, prompt);
    const args = ["generate", "--max-tokens", "20", "--temperature", "0"];
    const a = cli([...args, "--prompt", prompt]);
    const b = cli([...args, "--prompt-file", file]);
    const c = cli(args, prompt);
    assert.equal(a.code, 0, a.stderr);
    assert.ok(a.stdout.length > 10 && !a.stdout.includes(prompt));
    assert.equal(b.stdout, a.stdout);
    assert.equal(c.stdout, a.stdout);
    assert.match(a.stderr, /prefill: \d+ tokens in [\d.]+ ms \([\d.]+ tokens\/s\); decode: 19 tokens in [\d.]+ ms \([\d.]+ tokens\/s\)/);
  });

  it("the same seed gives the same sample; --chat uses the chat template", () => {
    const args = ["generate", "--prompt", "Natasha", "--max-tokens", "30", "--temperature", "1", "--seed", "11"];
    const a = cli(args);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(cli(args).stdout, a.stdout);
    assert.notEqual(cli([...args.slice(0, -1), "12"]).stdout, a.stdout);
    const chat = cli(["generate", "--chat", "--prompt", "Who is Natasha?", "--max-tokens", "5", "--temperature", "0"]);
    assert.equal(chat.code, 0, chat.stderr);
  });

  it("names the problem and exits non-zero on bad input", () => {
    const missing = cli(["generate", "--model", "/no/such/model", "--prompt", "x"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /model folder not found: \/no\/such\/model/);
    const flag = cli(["generate", "--max-tokens", "ten", "--prompt", "x"]);
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--max-tokens must be an integer, got "ten"/);
    const unknown = cli(["generate", "--bogus"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /bogus/);
    const noTok = cli(["generate", "--model", REFERENCE_MODELS["random-mla"]!, "--prompt", "hi"]);
    assert.equal(noTok.code, 2);
    assert.match(noTok.stderr, /has no tokenizer\.json: give --prompt-ids/);
    const range = cli(["generate", "--top-p", "2", "--prompt", "x"]); // checked by the engine, not the native addon
    assert.equal(range.code, 1);
    assert.equal(range.stderr.trim(), "mla-serve: top_p must be in (0, 1]");
  });
});
