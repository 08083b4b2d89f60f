// mla-serve bench: prefill and decode speed of a model through the native step API; with
// --against, a second model's too, the two run turn about (each repetition both, one after the
// other) so that a noisy machine slows both alike, and the ratio of each pair.
import os from "node:os";

import { greedySampling } from "../engine/sampling.js";
import { loadModel } from "../model/load.js";
import { native } from "../native/binding.js";
import type { NativeEngine } from "../native/types.js";
import { parseFlags, usage, type FlagSpec } from "./args.js";
import { engineFlags, loadOptionsFrom } from "./common.js";
import { chooseModel, modelFlags } from "./model_source.js";

const FLAGS: Record<string, FlagSpec> = {
  batch: { type: "string", default: "1,8", help: "comma-separated batch sizes" },
  "prompt-len": { type: "int", default: 128, help: "prompt tokens per sequence" },
  "gen-len": { type: "int", default: 128, help: "decode steps" },
  repeat: { type: "int", default: 3, help: "runs per batch size; the best is reported" },
  against: { type: "string", help: "a second model folder, run turn about with the first: prints both and the decode speed ratio (the median of the pairs')" },
  ...engineFlags(),
  ...modelFlags(),
};

interface Result {
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  decodeStepMs: number;
}

/** Prefills `batch` prompts in one step, then decodes `genLen` steps; returns throughputs. */
export async function benchOnce(engine: NativeEngine, batch: number, promptLen: number, genLen: number): Promise<Result> {
  const vocab = engine.config().vocabSize;
  const ids = Int32Array.from({ length: batch }, (_, i) => i + 1);
  const prompts = Array.from({ length: batch }, (_, b) => Int32Array.from({ length: promptLen }, (_, t) => (b * 7919 + t * 104729) % vocab));
  ids.forEach((id, b) => {
    if (engine.addSequence(id, prompts[b]!, promptLen) === null) throw new Error("the cache is too small for this batch");
  });
  let t0 = performance.now();
  let out = await engine.step({
    seqIds: ids, startPositions: new Int32Array(batch), numTokens: new Int32Array(batch).fill(promptLen),
    tokenIds: Int32Array.from(prompts.flatMap((p) => [...p])), sampleMask: new Uint8Array(batch).fill(1), sampling: greedySampling(batch), numTopLogprobs: 0,
  });
  const prefillMs = performance.now() - t0;
  t0 = performance.now();
  for (let s = 0; s < genLen; ++s) {
    for (const id of ids) engine.ensureCapacity(id, promptLen + s + 1);
    out = await engine.step({
      seqIds: ids, startPositions: new Int32Array(batch).fill(promptLen + s), numTokens: new Int32Array(batch).fill(1),
      tokenIds: out.tokenIds, sampleMask: new Uint8Array(batch).fill(1), sampling: greedySampling(batch), numTopLogprobs: 0,
    });
  }
  const decodeMs = performance.now() - t0;
  for (const id of ids) engine.freeSequence(id);
  return {
    prefillTokensPerSecond: (batch * promptLen) / (prefillMs / 1000),
    decodeTokensPerSecond: (batch * genLen) / (decodeMs / 1000),
    decodeStepMs: decodeMs / genLen,
  };
}

function row(label: string, r: Result): string {
  return `${label.padStart(5)} | ${r.prefillTokensPerSecond.toFixed(0).padStart(16)} | ${r.decodeTokensPerSecond.toFixed(1).padStart(15)} | ${r.decodeStepMs.toFixed(2).padStart(14)}`;
}

/** The best decode (and best prefill) of `runs`. */
function bestOf(runs: Result[]): Result {
  const best = runs.reduce((a, b) => (b.decodeTokensPerSecond > a.decodeTokensPerSecond ? b : a));
  return { ...best, prefillTokensPerSecond: Math.max(...runs.map((r) => r.prefillTokensPerSecond)) };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export async function benchCommand(argv: string[]): Promise<number> {
  const { values: v } = parseFlags(argv, FLAGS);
  if (v.help) {
    process.stdout.write(usage("bench", "[--model DIR] [--against DIR] [options]", FLAGS) + "\n");
    return 0;
  }
  const batches = String(v.batch).split(",").map(Number);
  const bad = String(v.batch).split(",").find((b) => !/^[1-9]\d*$/.test(b.trim()));
  if (bad !== undefined) throw new Error(`--batch: '${bad}' is not a positive integer (give sizes like 1,8)`);
  const { dir } = await chooseModel(v, undefined, (line) => process.stderr.write(`${line}\n`));
  const models = [await loadModel(dir, { ...loadOptionsFrom(v), enablePrefixCaching: false })];
  if (v.against !== undefined) models.push(await loadModel(v.against as string, { ...loadOptionsFrom(v), enablePrefixCaching: false }));
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  models.forEach((model, i) => {
    const c = model.engine.config();
    const role = models.length > 1 ? (i === 0 ? "A: " : "B: ") : "";
    process.stdout.write(`${role}model ${model.info.name} (${c.modelType}, ${c.attention}, ${c.numLayers} layers, hidden ${c.hiddenSize}) on ${model.engine.cacheInfo().device}: ${os.cpus().length} x ${cpu}, ${native().buildInfo.cpuIsa} kernels\n`);
  });
  process.stdout.write(`prompt ${v["prompt-len"]} tokens, ${v["gen-len"]} decode steps, best of ${v.repeat}${models.length > 1 ? ", A and B turn about" : ""}\n\n`);
  process.stdout.write("batch | prefill tokens/s | decode tokens/s | decode step ms\n------|------------------|-----------------|---------------\n");
  for (const batch of batches) {
    const runs: Result[][] = models.map(() => []);
    for (let r = 0; r < (v.repeat as number); ++r) {
      for (let m = 0; m < models.length; ++m) runs[m]!.push(await benchOnce(models[m]!.engine, batch, v["prompt-len"] as number, v["gen-len"] as number));
    }
    if (models.length === 1) {
      process.stdout.write(`${row(String(batch), bestOf(runs[0]!))}\n`);
      continue;
    }
    const ratios = runs[0]!.map((a, r) => a.decodeTokensPerSecond / runs[1]![r]!.decodeTokensPerSecond);
    process.stdout.write(`${row(`${batch} A`, bestOf(runs[0]!))}\n${row(`${batch} B`, bestOf(runs[1]!))}\n`);
    process.stdout.write(`      decode A / B: ${median(ratios).toFixed(2)}x (median of ${ratios.length} pairs: ${ratios.map((x) => x.toFixed(2)).join(", ")})\n`);
  }
  for (const model of models) model.engine.dispose();
  return 0;
}
