// Shapes that cross N-API are declared once (native/include/mla/config_fields.h) and the other
// sides derived from that: the generated TypeScript is current, and the addon returns exactly its
// fields; the CPU kernels' ISA is chosen by the CPU, or by MLA_CPU_ISA, and a bad name fails the load.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import { MODEL_CONFIG_FIELDS } from "../../src/native/model_config.js";
import type { NativeEngine } from "../../src/native/types.js";
import { BUNDLED_GQA, load, ROOT } from "../helpers.js";

describe("one declaration for what crosses N-API", () => {
  let engine: NativeEngine;
  before(async () => { engine = await load(BUNDLED_GQA); });
  after(() => engine.dispose());

  it("src/native/model_config.ts is what the native table generates", () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, "scripts", "gen_native_types.mjs"), "--check"], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  });

  it("engine.config() has exactly the generated fields, with the bundled model's values", () => {
    const c = engine.config();
    assert.deepEqual(Object.keys(c), [...MODEL_CONFIG_FIELDS]);
    assert.equal(c.attention, "gqa");
    assert.equal(c.hiddenSize, 256);
    assert.equal(c.numKvHeads, 2);
    assert.equal(c.cacheEntrySize, 2 * 2 * 64);
    assert.equal(c.ropeScaling, "none");
  });
});

describe("CPU kernels' instruction set", () => {
  const addon = path.join(ROOT, "build", "Release", "mla_native.node");
  const isaWith = (value: string | undefined): { status: number | null; out: string; err: string } => {
    const env = { ...process.env };
    if (value === undefined) delete env.MLA_CPU_ISA;
    else env.MLA_CPU_ISA = value;
    const r = spawnSync(process.execPath, ["-e", `process.stdout.write(require(${JSON.stringify(addon)}).buildInfo.cpuIsa)`], { env, encoding: "utf8" });
    return { status: r.status, out: r.stdout, err: r.stderr };
  };

  it("is chosen by the CPU's features: avx512 exactly where /proc/cpuinfo lists AVX-512 F, BW, VL and DQ", () => {
    let flags = "";
    try { flags = execFileSync("grep", ["-m1", "^flags", "/proc/cpuinfo"], { encoding: "utf8" }); } catch { return; }
    const has = ["avx512f", "avx512bw", "avx512vl", "avx512dq"].every((f) => flags.split(/\s+/).includes(f));
    assert.equal(isaWith(undefined).out, has ? "avx512" : "avx2");
  });

  it("MLA_CPU_ISA=avx2 forces the AVX2 kernels; an unknown name fails the load, naming the choices", () => {
    assert.equal(isaWith("avx2").out, "avx2");
    const bad = isaWith("sse9");
    assert.notEqual(bad.status, 0);
    assert.match(bad.err, /unknown CPU ISA 'sse9': choose avx2 or avx512/);
  });
});
