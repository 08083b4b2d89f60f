// `mla-serve convert` stopped by a signal leaves no temporary folder; what a SIGKILL leaves behind
// the next run sweeps.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";

import { BUNDLED_GQA, CALIB_TEXT } from "../helpers.js";
import { CLI } from "./server_process.js";

function start(out: string, tmp: string) {
  const args = [CLI, "convert", "--model", BUNDLED_GQA, "--out", out, "--calib", CALIB_TEXT, "--kv-lora-rank", "32", "--qk-rope-dim", "32", "--freqfold", "2", "--calib-samples", "64"];
  return spawn(process.execPath, args, { env: { ...process.env, TMPDIR: tmp }, stdio: ["ignore", "ignore", "pipe"] });
}

/** Waits until the converter has made its scratch folder (it is at work). */
async function untilWorking(tmp: string): Promise<void> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    if (readdirSync(tmp).some((n) => n.startsWith("mla-convert-"))) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the converter never started");
}

const leftovers = (dir: string) => readdirSync(dir).filter((n) => n.startsWith("mla-convert-") || n.includes(".tmp-"));

describe("convert and signals", () => {
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    it(`${signal} mid-conversion removes the scratch folder and writes no output`, async () => {
      const tmp = mkdtempSync(path.join(tmpdir(), "mla-sig-"));
      const out = path.join(tmp, "out");
      const p = start(out, tmp);
      await untilWorking(tmp);
      p.kill(signal);
      const code = await new Promise<number | null>((r) => p.on("exit", (c, s) => r(c ?? (s ? 128 : null))));
      assert.notEqual(code, 0);
      assert.deepEqual(leftovers(tmp), []);
      assert.ok(!readdirSync(tmp).includes("out"));
    });
  }

  it("the next run sweeps what a SIGKILL left", async () => {
    const tmp = mkdtempSync(path.join(tmpdir(), "mla-sig-"));
    const p = start(path.join(tmp, "out"), tmp);
    await untilWorking(tmp);
    p.kill("SIGKILL");
    await new Promise((r) => p.on("exit", r));
    assert.ok(leftovers(tmp).length > 0, "a killed run cannot clean up");
    const r = spawnSync(process.execPath, [CLI, "convert", "--model", BUNDLED_GQA, "--out", path.join(tmp, "exact"), "--exact", "--target", "mla-serve"], { env: { ...process.env, TMPDIR: tmp }, encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(leftovers(tmp), []);
  });
});
