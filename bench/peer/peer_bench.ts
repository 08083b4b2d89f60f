// mla-serve against llama.cpp on the same checkpoint, side by side on this machine.
//   npm install --prefix bench/peer        (once: node-llama-cpp's prebuilt CPU build, ~700 MB)
//   node dist/bench/peer/peer_bench.js --model DIR [--contexts 512,4096] [--batches 1,8] [--reps 3]
//        [--gen 32] [--threads 2] [--greedy-model models/gutenberg-tiny]
// The model (a Llama/Mistral/Qwen2 safetensors folder) is written once as GGUF with the same BF16
// weights (bench/peer/gguf.ts) into build/peer/. For each context and batch the two engines run in
// turns (mla-serve, llama.cpp, mla-serve, ...): `batch` prompts of `context` tokens prefilled, then
// `gen` greedy decode steps; the best of the repetitions is printed, with the ratio and the decode
// floor that the memory bandwidth allows: weights + cache read per step, the bandwidth measured right
// after each of our decode runs (the host's bandwidth drifts: 27-35 GB/s within an hour on one VM),
// and each run set against the floor of its own moment.
// First, both engines greedy-decode the same prompts on the bundled model and must agree.
import { existsSync, mkdirSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

import { benchOnce } from "../../src/cli/bench.js";
import { greedySampling } from "../../src/engine/sampling.js";
import { Checkpoint } from "../../src/model/checkpoint.js";
import { native } from "../../src/native/binding.js";
import type { NativeEngine } from "../../src/native/types.js";
import { packageRoot } from "../../src/paths.js";
import { writeGguf } from "./gguf.js";

const USAGE =
  "usage: node dist/bench/peer/peer_bench.js --model DIR [--contexts 512,4096] [--batches 1,8] [--reps 3] [--gen 32] [--threads 2] [--greedy-model DIR] [--greedy-tokens 32]";
// Bad arguments: the problem and the usage, never a stack trace.
function fail(message: string): never {
  console.error(`peer_bench: ${message}\n${USAGE}`);
  process.exit(2);
}
let parsed;
try {
  parsed = parseArgs({
    options: {
      model: { type: "string" },
      contexts: { type: "string", default: "512,4096" },
      batches: { type: "string", default: "1,8" },
      reps: { type: "string", default: "3" },
      gen: { type: "string", default: "32" },
      threads: { type: "string", default: "2" },
      "greedy-model": { type: "string", default: path.join(packageRoot(), "models", "gutenberg-tiny") },
      "greedy-tokens": { type: "string", default: "32" },
    },
  });
} catch (e) {
  fail((e as Error).message);
}
const v = parsed.values;
if (!v.model) fail("--model DIR is required");
const threads = Number(v.threads), reps = Number(v.reps), gen = Number(v.gen);
const contexts = v.contexts!.split(",").map(Number), batches = v.batches!.split(",").map(Number);
for (const [name, values] of [["--threads", [threads]], ["--reps", [reps]], ["--gen", [gen]], ["--contexts", contexts], ["--batches", batches]] as const) {
  if (values.some((n) => !Number.isInteger(n) || n < 1)) fail(`${name} takes positive integers`);
}

// node-llama-cpp lives in bench/peer's own node_modules: never a dependency of mla-serve itself.
const peerEntry = path.join(packageRoot(), "bench", "peer", "node_modules", "node-llama-cpp", "dist", "index.js");
if (!existsSync(peerEntry)) fail("node-llama-cpp is not installed: run npm install --prefix bench/peer");
// The little of node-llama-cpp's API used here (declared locally: CI type-checks without it installed).
interface PeerSequence {
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
  evaluate(tokens: number[], options: { temperature: number }): AsyncGenerator<number>;
}
interface PeerContext { getSequence(): PeerSequence; dispose(): Promise<void> }
interface PeerModel {
  createContext(o: { contextSize: number; sequences: number; batchSize?: number; threads: number; flashAttention?: boolean }): Promise<PeerContext>;
  dispose(): Promise<void>;
}
interface PeerLlama { loadModel(o: { modelPath: string; gpuLayers: number }): Promise<PeerModel> }
const { getLlama } = (await import(peerEntry)) as { getLlama(o: object): Promise<PeerLlama> };
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error", maxThreads: threads });

function ggufOf(dir: string): string {
  const out = path.join(packageRoot(), "build", "peer", `${path.basename(path.resolve(dir))}.gguf`);
  const source = path.join(dir, "model.safetensors");
  if (!existsSync(out) || (existsSync(source) && statSync(source).mtimeMs > statSync(out).mtimeMs)) {
    mkdirSync(path.dirname(out), { recursive: true });
    const t0 = performance.now();
    const r = writeGguf(dir, out);
    process.stderr.write(`wrote ${out} (${r.tensors} tensors, ${(r.bytes / 2 ** 20).toFixed(0)} MiB) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  }
  return out;
}

function promptsFor(batch: number, length: number, vocab: number): number[][] {
  return Array.from({ length: batch }, (_, b) => Array.from({ length }, (_, t) => 259 + ((b * 7919 + t * 104729) % (vocab - 259))));
}

interface Speeds { prefill: number; decode: number }

async function llamaCppOnce(model: PeerModel, batch: number, context: number, vocab: number): Promise<Speeds> {
  const ctx = await model.createContext({ contextSize: batch * (context + gen + 16), sequences: batch, batchSize: 512, threads, flashAttention: false });
  try {
    const seqs = Array.from({ length: batch }, () => ctx.getSequence());
    const prompts = promptsFor(batch, context, vocab);
    let t0 = performance.now();
    await Promise.all(seqs.map((s, b) => s.evaluateWithoutGeneratingNewTokens(prompts[b]!.slice(0, context - 1))));
    const prefillMs = performance.now() - t0;
    t0 = performance.now();
    await Promise.all(seqs.map(async (s, b) => {
      let n = 0;
      for await (const _ of s.evaluate([prompts[b]![context - 1]!], { temperature: 0 })) if (++n >= gen) break;
    }));
    const decodeMs = performance.now() - t0;
    return { prefill: (batch * (context - 1)) / (prefillMs / 1000), decode: (batch * gen) / (decodeMs / 1000) };
  } finally {
    await ctx.dispose();
  }
}

async function ourOnce(engine: NativeEngine, batch: number, context: number): Promise<Speeds> {
  const r = await benchOnce(engine, batch, context, gen);
  return { prefill: r.prefillTokensPerSecond, decode: r.decodeTokensPerSecond };
}

/** Greedy tokens of both engines on the same prompts: they must agree up to a near tie of ours. */
async function crossCheck(dir: string): Promise<void> {
  const engine = await native().loadEngine({ modelDir: dir, numThreads: threads, numBlocks: 64, enablePrefixCaching: false });
  const model = await llama.loadModel({ modelPath: ggufOf(dir), gpuLayers: 0 });
  const count = Number(v["greedy-tokens"]);
  const vocab = engine.config().vocabSize;
  let agreed = 0, total = 0;
  for (const [i, prompt] of [[1, 450, 4996, 310, 278], promptsFor(1, 40, vocab)[0]!, [1, ...promptsFor(1, 200, vocab)[0]!]].entries()) {
    const ours: number[] = [], margins: number[] = [];
    engine.addSequence(i + 1, Int32Array.from(prompt), prompt.length);
    let tokens = prompt, start = 0;
    for (let s = 0; s < count; ++s) {
      if (!engine.ensureCapacity(i + 1, start + tokens.length)) throw new Error("cache too small for the cross-check");
      const out = await engine.step({
        seqIds: Int32Array.of(i + 1), startPositions: Int32Array.of(start), numTokens: Int32Array.of(tokens.length),
        tokenIds: Int32Array.from(tokens), sampleMask: Uint8Array.of(1), sampling: greedySampling(1), numTopLogprobs: 0, returnLogits: true,
      });
      const logits = [...out.logits!].sort((a, b) => b - a);
      margins.push(logits[0]! - logits[1]!);
      ours.push(out.tokenIds[0]!);
      start += tokens.length;
      tokens = [out.tokenIds[0]!];
    }
    engine.freeSequence(i + 1);
    const ctx = await model.createContext({ contextSize: 512, sequences: 1, threads });
    const theirs: number[] = [];
    for await (const t of ctx.getSequence().evaluate(prompt, { temperature: 0 })) if (theirs.push(t) >= count) break;
    await ctx.dispose();
    let same = 0;
    while (same < count && ours[same] === theirs[same]) ++same;
    const tie = same < count ? ` (ours has a top-2 margin of ${margins[same]!.toFixed(4)} there)` : "";
    process.stdout.write(`greedy, prompt ${i + 1} (${prompt.length} tokens): the same first ${same} of ${count} tokens${tie}\n`);
    if (same < count && margins[same]! > 0.05) process.exitCode = 1;
    agreed += same;
    total += count;
  }
  process.stdout.write(`greedy cross-check on ${path.basename(dir)}: ${agreed}/${total} tokens agree\n\n`);
  engine.dispose();
  await model.dispose();
}

await crossCheck(v["greedy-model"]!);

const dir = v.model;
const config = new Checkpoint(dir).config;
const gguf = ggufOf(dir);
const maxContext = Math.max(...contexts) + gen + 64, maxBatch = Math.max(...batches);
const engine = await native().loadEngine({
  modelDir: dir, numThreads: threads, enablePrefixCaching: false,
  numBlocks: maxBatch * Math.ceil(maxContext / 64) + 1, maxNumBatchedTokens: maxBatch * maxContext, maxModelLen: maxContext,
});
const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
const bandwidths = [native().memoryReadBandwidth(2048, threads)];
const c = engine.config();
const weightBytes = statSync(gguf).size;
const cachePerToken = engine.cacheInfo().bytesPerBlock / engine.cacheInfo().blockSize;
process.stdout.write(`${path.basename(path.resolve(dir))}: ${c.modelType} ${c.attention}, ${c.numLayers} layers, hidden ${c.hiddenSize}, ${(weightBytes / 2 ** 30).toFixed(2)} GiB of weights; `
  + `${os.cpus()[0]?.model ?? "CPU"} x ${threads} threads, ${native().buildInfo.cpuIsa} kernels; read bandwidth ${(bandwidths[0]! / 1e9).toFixed(1)} GB/s at the start\n`);
process.stdout.write(`rope_theta ${String(config.rope_theta)}; best of ${reps} interleaved runs; ${gen} decode steps\n\n`);
process.stdout.write("context | batch | prefill tok/s: mla-serve | llama.cpp | ratio | decode tok/s: mla-serve | llama.cpp | ratio | floor | mla-serve / floor\n");
process.stdout.write("---|---|---|---|---|---|---|---|---|---\n");
for (const context of contexts) {
  for (const batch of batches) {
    // A decode step reads every weight once and each sequence's cache (our cache's bytes, mid-generation).
    const stepBytes = weightBytes + batch * (context + gen / 2) * cachePerToken;
    const ours: Speeds = { prefill: 0, decode: 0 }, theirs: Speeds = { prefill: 0, decode: 0 };
    let best = { share: 0, floor: 0 };  // our decode against the floor of its moment, the run nearest it
    for (let r = 0; r < reps; ++r) {
      const a = await ourOnce(engine, batch, context);
      const bandwidth = native().memoryReadBandwidth(2048, threads);
      bandwidths.push(bandwidth);
      const floor = (batch * bandwidth) / stepBytes;
      if (a.decode / floor > best.share) best = { share: a.decode / floor, floor };
      const b = await llamaCppOnce(model, batch, context, c.vocabSize);
      ours.prefill = Math.max(ours.prefill, a.prefill); ours.decode = Math.max(ours.decode, a.decode);
      theirs.prefill = Math.max(theirs.prefill, b.prefill); theirs.decode = Math.max(theirs.decode, b.decode);
    }
    process.stdout.write(`${context} | ${batch} | ${ours.prefill.toFixed(1)} | ${theirs.prefill.toFixed(1)} | ${(ours.prefill / theirs.prefill).toFixed(2)}x | `
      + `${ours.decode.toFixed(1)} | ${theirs.decode.toFixed(1)} | ${(ours.decode / theirs.decode).toFixed(2)}x | ${best.floor.toFixed(1)} | ${(100 * best.share).toFixed(0)}%\n`);
  }
}
process.stdout.write(`\nread bandwidth over the run: ${(Math.min(...bandwidths) / 1e9).toFixed(1)}-${(Math.max(...bandwidths) / 1e9).toFixed(1)} GB/s `
  + `(the floor column: the measurement right after our run that came nearest its floor)\n`);
engine.dispose();
await model.dispose();
