// mla-serve bench: prefill and decode speed of a model through the native step API.
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

export async function benchCommand(argv: string[]): Promise<number> {
  const { values: v } = parseFlags(argv, FLAGS);
  if (v.help) {
    process.stdout.write(usage("bench", "[--model DIR] [options]", FLAGS) + "\n");
    return 0;
  }
  const { dir } = await chooseModel(v, undefined, (line) => process.stderr.write(`${line}\n`));
  const model = await loadModel(dir, { ...loadOptionsFrom(v), enablePrefixCaching: false });
  const c = model.engine.config();
  const batches = String(v.batch).split(",").map(Number);
  const cpu = os.cpus()[0]?.model ?? "unknown CPU";
  process.stdout.write(`model ${model.info.name} (${c.modelType}, ${c.attention}, ${c.numLayers} layers, hidden ${c.hiddenSize}) on ${model.engine.cacheInfo().device}: ${os.cpus().length} x ${cpu}, ${native().buildInfo.cpuIsa} kernels\n`);
  process.stdout.write(`prompt ${v["prompt-len"]} tokens, ${v["gen-len"]} decode steps, best of ${v.repeat}\n\n`);
  process.stdout.write("batch | prefill tokens/s | decode tokens/s | decode step ms\n------|------------------|-----------------|---------------\n");
  for (const batch of batches) {
    let best: Result | undefined;
    for (let r = 0; r < (v.repeat as number); ++r) {
      const res = await benchOnce(model.engine, batch, v["prompt-len"] as number, v["gen-len"] as number);
      if (!best || res.decodeTokensPerSecond > best.decodeTokensPerSecond) best = { ...res, prefillTokensPerSecond: Math.max(res.prefillTokensPerSecond, best?.prefillTokensPerSecond ?? 0) };
    }
    process.stdout.write(`${String(batch).padStart(5)} | ${best!.prefillTokensPerSecond.toFixed(0).padStart(16)} | ${best!.decodeTokensPerSecond.toFixed(1).padStart(15)} | ${best!.decodeStepMs.toFixed(2).padStart(14)}\n`);
  }
  model.engine.dispose();
  return 0;
}
