// Shapes that cross N-API are declared once (native/include/mla/config_fields.h,
// sampling_fields.h) and the other sides derived from that: the generated TypeScript is current,
// the addon returns exactly the config's fields and reads exactly the sampling fields, each
// checked against its rule; the CPU kernels' ISA is chosen by the CPU, or by MLA_CPU_ISA, and a bad
// name fails the load.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import { MODEL_CONFIG_FIELDS } from "../../src/native/model_config.js";
import { packSampling, SAMPLING_DEFAULTS, SAMPLING_FIELDS, samplingProblem } from "../../src/native/sampling_fields.js";
import type { NativeEngine } from "../../src/native/types.js";
import { BUNDLED_GQA, GREEDY, load, ROOT } from "../helpers.js";

describe("one declaration for what crosses N-API", () => {
  let engine: NativeEngine;
  before(async () => { engine = await load(BUNDLED_GQA); });
  after(() => engine.dispose());

  it("src/native/model_config.ts and sampling_fields.ts are what the native tables generate", () => {
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

  it("a step reads every generated sampling field by name, one entry per sampled row, each against its rule", async () => {
    const packed = packSampling([GREEDY, SAMPLING_DEFAULTS]);
    assert.deepEqual(Object.keys(packed), [...SAMPLING_FIELDS]);
    engine.addSequence(1, Int32Array.of(1, 2), 2);
    engine.addSequence(2, Int32Array.of(1, 3), 2);
    const batch = (sampling: unknown) => ({
      seqIds: Int32Array.of(1, 2), startPositions: Int32Array.of(0, 0), numTokens: Int32Array.of(2, 2),
      tokenIds: Int32Array.of(1, 2, 1, 3), sampleMask: Uint8Array.of(1, 1), numTopLogprobs: 0, sampling,
    }) as never;
    assert.throws(() => engine.step(batch(undefined)), /batch\.sampling must be an object of typed arrays/);
    for (const field of SAMPLING_FIELDS) {
      const { [field]: _dropped, ...rest } = packed;
      assert.throws(() => engine.step(batch(rest)), new RegExp(`batch\\.sampling\\.${field} must be a \\w+Array`), field);
      const short = { ...packed, [field]: packed[field].subarray(0, 1) };
      assert.throws(() => engine.step(batch(short)), new RegExp(`batch\\.sampling\\.${field} must have one entry per sampled row \\(2\\)`), field);
      const wrongType = { ...packed, [field]: new Uint8Array(2) };
      assert.throws(() => engine.step(batch(wrongType)), new RegExp(`batch\\.sampling\\.${field} must be a`), field);
    }
    // Each field's rule, on the second row, natively and in the generated samplingProblem (which
    // checks the values as packed: 1e-50 is 0 in a Float32Array).
    const bad: Record<(typeof SAMPLING_FIELDS)[number], number[]> = {
      temperature: [-1, Infinity, NaN], topP: [0, 1e-50, 1.5], topK: [-1, 1.5, 2 ** 32 + 5, NaN], minP: [1.5, -1e-3],
      repetitionPenalty: [0, 1e-50, Infinity], presencePenalty: [NaN, 1e39], frequencyPenalty: [Infinity], seed: [0.5, -1, 2 ** 53],
    };
    for (const field of SAMPLING_FIELDS) {
      for (const value of bad[field]) {
        const row = { ...GREEDY, [field]: value };
        assert.throws(() => engine.step(batch(packSampling([GREEDY, row]))), new RegExp(`batch\\.sampling\\.${field}\\[1\\] must be `), `${field} ${value}`);
        assert.equal(samplingProblem(row)?.field, field, `${field} ${value}`);
      }
    }
    assert.equal(samplingProblem(GREEDY), null);
    // What samplingProblem accepts at the edges, the native side accepts too (else a step fails).
    const edge = { ...SAMPLING_DEFAULTS, temperature: 0, topP: 1e-40, topK: 2 ** 31 - 1, minP: 1, repetitionPenalty: 1e-30, presencePenalty: -3e38, seed: 2 ** 53 - 1 };
    assert.equal(samplingProblem(edge), null);
    const out = await engine.step(batch(packSampling([GREEDY, edge])));
    assert.equal(out.tokenIds.length, 2);
    engine.freeSequence(1);
    engine.freeSequence(2);
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

  it("is chosen by the CPU's features: amx where /proc/cpuinfo also lists AVX512-BF16 and AMX-BF16, avx512 where it lists AVX-512 F, BW, VL and DQ", () => {
    let flags = "";
    try { flags = execFileSync("grep", ["-m1", "^flags", "/proc/cpuinfo"], { encoding: "utf8" }); } catch { return; }
    const listed = (names: string[]) => names.every((f) => flags.split(/\s+/).includes(f));
    const avx512 = listed(["avx512f", "avx512bw", "avx512vl", "avx512dq"]);
    const amx = avx512 && listed(["avx512_bf16", "amx_tile", "amx_bf16"]);  // and Linux grants the tiles (5.16 and later)
    assert.equal(isaWith(undefined).out, amx ? "amx" : avx512 ? "avx512" : "avx2");
    if (amx) assert.equal(isaWith("avx512").out, "avx512");
  });

  it("MLA_CPU_ISA=avx2 forces the AVX2 kernels; an unknown name fails the load, naming the choices", () => {
    assert.equal(isaWith("avx2").out, "avx2");
    const bad = isaWith("sse9");
    assert.notEqual(bad.status, 0);
    assert.match(bad.err, /unknown CPU ISA 'sse9': choose avx2, avx512 or amx/);
  });

  it("MLA_CPU_STREAM fixes decode's weight order (else measured at load); an unknown one fails the load, naming the choices", () => {
    const loadWith = (value: string) => spawnSync(process.execPath, ["-e",
      `require(${JSON.stringify(addon)}).loadEngine({ modelDir: ${JSON.stringify(BUNDLED_GQA)}, numBlocks: 4 })` +
      `.then((e) => { process.stdout.write("loaded"); e.dispose(); }, (err) => process.stdout.write(err.message))`],
      { env: { ...process.env, MLA_CPU_STREAM: value }, encoding: "utf8" }).stdout;
    assert.equal(loadWith("rows2"), "loaded");
    assert.match(loadWith("rows3"), /MLA_CPU_STREAM=rows3: choose rows1 or rows2/);
  });
});
