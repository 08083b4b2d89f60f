// The TypeScript engine loop over the real native engine: continuous batching must not change
// results, preemption recomputes correctly, n > 1 shares the prompt, aborts free their blocks.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { LLMEngine, type RequestHandle } from "../../src/engine/llm_engine.js";
import { resolveSampling, type SamplingOptions } from "../../src/engine/sampling.js";
import type { NativeEngine } from "../../src/native/types.js";
import { BUNDLED_GQA, REFERENCE_MODELS, greedyAgrees, load, readReference } from "../helpers.js";

function engineOn(native: NativeEngine, budget = 2048, maxNumSeqs = 64): LLMEngine {
  return new LLMEngine(native, { maxModelLen: 2048, maxNumSeqs, maxNumBatchedTokens: budget, eosTokenIds: [], decode: null });
}

async function collect(handle: RequestHandle): Promise<{ ids: number[][]; finish: string[]; cached: number; error?: string }> {
  const ids: number[][] = [];
  const finish: string[] = [];
  let cached = 0;
  for await (const e of handle) {
    if (e.type === "error") return { ids, finish, cached, error: e.message };
    if (e.type === "done") cached = e.summary.cachedPromptTokens;
    if (e.type !== "delta") continue;
    (ids[e.delta.index] ??= []).push(...e.delta.tokenIds);
    if (e.delta.finishReason) finish[e.delta.index] = e.delta.finishReason;
  }
  return { ids, finish, cached };
}

const greedy = (maxTokens: number, extra: Partial<SamplingOptions> = {}) => resolveSampling({ maxTokens, temperature: 0, ...extra });

function prompts(count: number): number[][] {
  // Varied lengths, some past a block; token ids from the bundled model's reference prompts.
  const base = readReference(BUNDLED_GQA).flatMap((c) => c.prompt_ids.slice(1));
  return Array.from({ length: count }, (_, i) => [1, ...base.slice(i * 7, i * 7 + 3 + ((i * 37) % 120))]);
}

describe("engine loop", () => {
  it("greedy through the engine reproduces every reference", async () => {
    for (const dir of Object.values(REFERENCE_MODELS)) {
      const native = await load(dir);
      const engine = engineOn(native);
      for (const c of readReference(dir)) {
        const out = await collect(engine.generate({ requestId: "r", promptIds: c.prompt_ids, sampling: greedy(24) }));
        assert.ok(greedyAgrees(out.ids[0]!, c).ok);
      }
      native.dispose();
    }
  });

  it("17 requests at once give the same tokens as each alone, with chunked prefill", async () => {
    const ps = prompts(17);
    const native = await load(BUNDLED_GQA, { numBlocks: 128, enablePrefixCaching: false });
    const solo: number[][] = [];
    for (const p of ps) solo.push((await collect(engineOn(native).generate({ requestId: "solo", promptIds: p, sampling: greedy(20) }))).ids[0]!);
    const engine = engineOn(native, 96); // a small budget: prompts are split across steps
    const together = await Promise.all(ps.map((p, i) => collect(engine.generate({ requestId: `r${i}`, promptIds: p, sampling: greedy(20) }))));
    together.forEach((r, i) => assert.deepEqual(r.ids[0], solo[i], `request ${i}`));
    native.checkIntegrity();
    assert.equal(native.cacheInfo().numFreeBlocks, 128);
    native.dispose();
  });

  it("preemption under a small cache recomputes and still gives the same tokens", async () => {
    const ps = prompts(8);
    const big = await load(BUNDLED_GQA, { numBlocks: 64 });
    const solo: number[][] = [];
    for (const p of ps) solo.push((await collect(engineOn(big).generate({ requestId: "solo", promptIds: p, sampling: greedy(100) }))).ids[0]!);
    big.dispose();
    const native = await load(BUNDLED_GQA, { numBlocks: 9 });
    const engine = engineOn(native);
    const preemptions: number[] = [];
    const together = await Promise.all(ps.map(async (p, i) => {
      const handle = engine.generate({ requestId: `r${i}`, promptIds: p, sampling: greedy(100) });
      const ids: number[] = [];
      for await (const e of handle) {
        if (e.type === "delta") ids.push(...e.delta.tokenIds);
        if (e.type === "done") preemptions.push(e.summary.numPreemptions);
      }
      return ids;
    }));
    assert.ok(preemptions.reduce((a, b) => a + b, 0) > 0, "the test needs preemption to happen");
    together.forEach((ids, i) => assert.deepEqual(ids, solo[i], `request ${i}`));
    native.checkIntegrity();
    assert.equal(native.cacheInfo().numFreeBlocks, 9);
    native.dispose();
  });

  it("n > 1 samples independent choices that share the cached prompt", async () => {
    const native = await load(BUNDLED_GQA, { numBlocks: 64 });
    const engine = engineOn(native);
    const prompt = readReference(BUNDLED_GQA)[3]!.prompt_ids; // 130 tokens: two full blocks to share
    const sampling = resolveSampling({ n: 4, maxTokens: 12, temperature: 1, seed: 5 });
    const a = await collect(engine.generate({ requestId: "a", promptIds: prompt, sampling }));
    assert.equal(a.ids.length, 4);
    assert.ok(new Set(a.ids.map((x) => x.join())).size > 1);
    assert.ok(native.cacheInfo().prefixHitTokens >= 3 * 128, "followers reuse the leader's prompt blocks");
    const b = await collect(engine.generate({ requestId: "b", promptIds: prompt, sampling }));
    assert.deepEqual(b.ids, a.ids); // the same seed, the same choices
    native.checkIntegrity();
    assert.equal(native.cacheInfo().numFreeBlocks, 64);
    native.dispose();
  });

  it("abort ends a request and frees its blocks; others carry on", async () => {
    const native = await load(BUNDLED_GQA, { numBlocks: 32 });
    const engine = engineOn(native);
    const keep = collect(engine.generate({ requestId: "keep", promptIds: [1, 2, 3], sampling: greedy(30) }));
    const handle = engine.generate({ requestId: "drop", promptIds: [1, 5, 6, 7], sampling: greedy(1000, { ignoreEos: true }) });
    let seen = 0;
    let finish;
    for await (const e of handle) {
      if (e.type !== "delta") continue;
      if (++seen === 5) handle.abort();
      finish = e.delta.finishReason ?? finish;
    }
    assert.equal(finish, "abort");
    assert.ok(seen <= 7);
    assert.equal((await keep).ids[0]!.length, 30);
    await engine.whenIdle();
    native.checkIntegrity();
    assert.equal(native.cacheInfo().numFreeBlocks, 32);
    native.dispose();
  });

  it("rejects prompts outside the vocabulary or longer than the context", async () => {
    const native = await load(BUNDLED_GQA, { numBlocks: 8 });
    const engine = engineOn(native);
    assert.throws(() => engine.generate({ requestId: "x", promptIds: [1, 99999], sampling: greedy(3) }), /outside the vocabulary/);
    assert.throws(() => engine.generate({ requestId: "y", promptIds: Array(3000).fill(5), sampling: greedy(3) }), /maximum context length is 2048/);
    assert.throws(() => engine.generate({ requestId: "z", promptIds: Array(600).fill(5), sampling: greedy(3) }), /needs 10 cache blocks but the cache has 8/);
    native.dispose();
  });
});
