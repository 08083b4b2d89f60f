// Sampling in the addon against expectations computed here from the raw logits.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import type { NativeEngine, NativeSamplingParams } from "../../src/native/types.js";
import { BUNDLED_GQA, GREEDY, load, packSampling, stepOne } from "../helpers.js";

const PROMPT = [1, 11567, 10390, 773, 28725]; // "Prince Andrew said,"

function softmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const p = new Float64Array(logits.length);
  let max = -Infinity;
  for (let i = 0; i < logits.length; ++i) max = Math.max(max, logits[i]! / temperature);
  let z = 0;
  for (let i = 0; i < logits.length; ++i) z += p[i] = Math.exp(logits[i]! / temperature - max);
  for (let i = 0; i < p.length; ++i) p[i]! /= z;
  return p;
}

function order(p: Float64Array): number[] {
  return [...p.keys()].sort((a, b) => p[b]! - p[a]! || a - b);
}

async function promptLogits(engine: NativeEngine): Promise<Float32Array> {
  engine.addSequence(0, Int32Array.from(PROMPT), PROMPT.length);
  const out = await stepOne(engine, 0, 0, PROMPT, { logits: true });
  engine.freeSequence(0);
  return out.logits!;
}

/** The first sampled token of `count` sequences with seeds 1..count. */
async function firstTokens(engine: NativeEngine, params: Omit<NativeSamplingParams, "seed">, count: number): Promise<number[]> {
  const tokens: number[] = [];
  for (let first = 0; first < count; first += 128) {
    const ids = Array.from({ length: Math.min(128, count - first) }, (_, i) => 1000 + first + i);
    for (const id of ids) engine.addSequence(id, Int32Array.from(PROMPT), PROMPT.length);
    const out = await engine.step({
      seqIds: Int32Array.from(ids), startPositions: new Int32Array(ids.length), numTokens: Int32Array.from(ids, () => PROMPT.length),
      tokenIds: Int32Array.from(ids.flatMap(() => PROMPT)), sampleMask: new Uint8Array(ids.length).fill(1),
      sampling: packSampling(ids.map((id) => ({ ...params, seed: id }))), numTopLogprobs: 0,
    });
    tokens.push(...out.tokenIds);
    for (const id of ids) engine.freeSequence(id);
  }
  return tokens;
}

/** Asserts empirical frequencies match `expected` (z-scores under 5 for every token with p > 1%). */
function assertMatches(samples: number[], expected: Float64Array): void {
  const counts = new Map<number, number>();
  for (const t of samples) counts.set(t, (counts.get(t) ?? 0) + 1);
  for (const t of counts.keys()) assert.ok(expected[t]! > 0, `sampled token ${t} has probability 0`);
  const n = samples.length;
  for (let t = 0; t < expected.length; ++t) {
    const p = expected[t]!;
    if (p < 0.01) continue;
    if (p > 1 - 1e-9) {
      assert.equal(counts.get(t), n, `token ${t} has probability 1`);
      continue;
    }
    const z = ((counts.get(t) ?? 0) - n * p) / Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(z) < 5, `token ${t}: ${counts.get(t) ?? 0} of ${n}, expected ${(n * p).toFixed(1)} (z = ${z.toFixed(2)})`);
  }
}

const BASE = { temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0 };

describe("sampling", () => {
  it("the same seed gives the same output; different seeds differ", async () => {
    const engine = await load(BUNDLED_GQA, { numBlocks: 8, enablePrefixCaching: false });
    const run = async (id: number, seed: number) => {
      engine.addSequence(id, Int32Array.from(PROMPT), PROMPT.length);
      const params = { ...BASE, seed };
      const out = [(await stepOne(engine, id, 0, PROMPT, { params })).tokenIds[0]!];
      for (let pos = PROMPT.length; out.length < 20; ++pos) {
        engine.ensureCapacity(id, pos + 1);
        out.push((await stepOne(engine, id, pos, [out[out.length - 1]!], { params })).tokenIds[0]!);
      }
      engine.freeSequence(id);
      return out.join(",");
    };
    const a = await run(1, 42);
    assert.equal(await run(2, 42), a);
    const others = new Set([await run(3, 43), await run(4, 44), await run(5, 45)]);
    assert.ok(!others.has(a) || others.size > 1);
    assert.ok(others.size > 1);
    engine.dispose();
  });

  it("top-k 1, a tiny top-p and min-p 1 are all greedy", async () => {
    const engine = await load(BUNDLED_GQA, { numBlocks: 140 });
    const argmax = order(softmax(await promptLogits(engine)))[0]!;
    for (const params of [{ ...BASE, topK: 1 }, { ...BASE, topP: 1e-6 }, { ...BASE, minP: 1 }, { ...BASE, temperature: 0 }]) {
      const tokens = await firstTokens(engine, params, 64);
      assert.ok(tokens.every((t) => t === argmax), JSON.stringify(params));
    }
    engine.dispose();
  });

  it("temperature sampling follows softmax(logits / T)", async () => {
    const engine = await load(BUNDLED_GQA, { numBlocks: 140 });
    const logits = await promptLogits(engine);
    for (const temperature of [1, 0.6]) {
      assertMatches(await firstTokens(engine, { ...BASE, temperature }, 2048), softmax(logits, temperature));
    }
    engine.dispose();
  });

  it("top-k, top-p and min-p keep exactly the right tokens, renormalized", async () => {
    const engine = await load(BUNDLED_GQA, { numBlocks: 140 });
    const p = softmax(await promptLogits(engine), 0.8);
    const ranked = order(p);
    const keep = (set: number[]) => {
      const q = new Float64Array(p.length);
      let z = 0;
      for (const t of set) z += p[t]!;
      for (const t of set) q[t] = p[t]! / z;
      return q;
    };
    assertMatches(await firstTokens(engine, { ...BASE, temperature: 0.8, topK: 5 }, 1024), keep(ranked.slice(0, 5)));
    let cum = 0;
    const nucleus = [];
    for (const t of ranked) {
      nucleus.push(t);
      if ((cum += p[t]!) >= 0.6) break;
    }
    assertMatches(await firstTokens(engine, { ...BASE, temperature: 0.8, topP: 0.6 }, 1024), keep(nucleus));
    const floor = 0.05 * p[ranked[0]!]!;
    assert.ok(ranked.filter((t) => p[t]! >= floor).length > 2);
    assertMatches(await firstTokens(engine, { ...BASE, temperature: 0.8, minP: 0.05 }, 1024), keep(ranked.filter((t) => p[t]! >= floor)));
    engine.dispose();
  });

  it("repetition, presence and frequency penalties pick the argmax of the penalized logits", async () => {
    const engine = await load(BUNDLED_GQA, { numBlocks: 8 });
    const params = { ...GREEDY, repetitionPenalty: 1.3, presencePenalty: 0.4, frequencyPenalty: 0.3 };
    engine.addSequence(1, Int32Array.from(PROMPT), PROMPT.length);
    const output: number[] = [];
    let out = await stepOne(engine, 1, 0, PROMPT, { logits: true, params });
    for (let pos = PROMPT.length; output.length < 30; ++pos) {
      const z = Float64Array.from(out.logits!);
      const counts = new Map<number, number>();
      for (const t of output) counts.set(t, (counts.get(t) ?? 0) + 1);
      for (const t of new Set([...PROMPT, ...output])) z[t] = z[t]! > 0 ? z[t]! / 1.3 : z[t]! * 1.3;
      for (const [t, c] of counts) z[t] = z[t]! - 0.3 * c - 0.4;
      const expected = order(z as unknown as Float64Array)[0]!;
      assert.equal(out.tokenIds[0], expected, `step ${output.length}`);
      output.push(out.tokenIds[0]!);
      engine.ensureCapacity(1, pos + 1);
      out = await stepOne(engine, 1, pos, [output[output.length - 1]!], { logits: true, params });
    }
    assert.ok(new Set(output).size > 10); // the penalties broke the unpenalized greedy loop
    engine.dispose();
  });

  it("returns the sampled token's log-prob and the top log-probs of the raw distribution", async () => {
    const engine = await load(BUNDLED_GQA, { numBlocks: 8 });
    engine.addSequence(1, Int32Array.from(PROMPT), PROMPT.length);
    const out = await stepOne(engine, 1, 0, PROMPT, { logits: true, topLogprobs: 5, params: { ...BASE, seed: 7 } });
    const p = softmax(out.logits!);
    assert.ok(Math.abs(out.logprobs[0]! - Math.log(p[out.tokenIds[0]!]!)) < 1e-4);
    const ranked = order(p).slice(0, 5);
    assert.deepEqual([...out.topTokenIds], ranked);
    ranked.forEach((t, k) => assert.ok(Math.abs(out.topLogprobs[k]! - Math.log(p[t]!)) < 1e-4));
    engine.dispose();
  });
});
