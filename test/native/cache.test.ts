// The paged cache through the engine: allocate / grow / free with an integrity check,
// prefix sharing, NaN-poisoned free blocks that never leak, capacity errors.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { BUNDLED_GQA, GREEDY, REFERENCE_MODELS, greedy, load, readReference, stepOne } from "../helpers.js";

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
}

describe("paged cache", () => {
  it("any mix of allocate / grow / free leaves every block free", async () => {
    const engine = await load(REFERENCE_MODELS["random-qwen2"]!, { numBlocks: 40 });
    const random = rng(1);
    const live = new Map<number, number>(); // seqId -> tokens reserved
    let next = 1;
    for (let op = 0; op < 2000; ++op) {
      const r = random();
      const ids = [...live.keys()];
      if (r < 0.35 || ids.length === 0) {
        const n = 1 + Math.floor(random() * 300);
        const tokens = Int32Array.from({ length: n }, () => Math.floor(random() * 8)); // few distinct tokens: prefix hits
        const cached = engine.addSequence(next, tokens, n);
        if (cached !== null) {
          assert.ok(cached % 64 === 0 && cached < n);
          live.set(next, n);
        }
        next++;
      } else if (r < 0.6) {
        const id = ids[Math.floor(random() * ids.length)]!;
        const grow = live.get(id)! + Math.floor(random() * 100);
        if (engine.ensureCapacity(id, grow)) live.set(id, grow);
      } else {
        const id = ids[Math.floor(random() * ids.length)]!;
        engine.freeSequence(id);
        live.delete(id);
      }
      if (op % 50 === 0) engine.checkIntegrity();
    }
    for (const id of live.keys()) engine.freeSequence(id);
    engine.checkIntegrity();
    assert.equal(engine.cacheInfo().numFreeBlocks, 40);
    engine.dispose();
  });

  it("prefix caching reuses full blocks, never the last token, and gives identical results", async () => {
    const engine = await load(BUNDLED_GQA);
    const c = readReference(BUNDLED_GQA)[3]!; // 130 tokens
    const first = await greedy(engine, 1, c.prompt_ids, 5);
    const before = engine.cacheInfo().numFreeBlocks;
    const second = await greedy(engine, 2, c.prompt_ids, 5);
    assert.equal(engine.cacheInfo().prefixHitTokens, 128);
    assert.deepEqual(second.ids, first.ids);
    assert.deepEqual(second.firstLogits, first.firstLogits);
    // Sharing: the second sequence took only the blocks for tokens 128..134.
    assert.equal(before - engine.cacheInfo().numFreeBlocks, 1);
    // A prompt of exactly two blocks recomputes its last block (the last token must be computed).
    engine.freeSequence(2);
    assert.equal(engine.addSequence(3, Int32Array.from(c.prompt_ids.slice(0, 128)), 128), 64);
    engine.freeSequence(1);
    engine.freeSequence(3);
    engine.checkIntegrity();
    engine.dispose();
  });

  it("freed blocks are poisoned with NaN and never leak into later results", async () => {
    const dir = REFERENCE_MODELS["random-mla"]!;
    const engine = await load(dir, { enablePrefixCaching: false, numBlocks: 6 });
    const cases = readReference(dir);
    for (let round = 0; round < 3; ++round) {
      for (const [i, c] of cases.entries()) {
        const { ids, firstLogits } = await greedy(engine, 100 * round + i, c.prompt_ids, 3);
        assert.ok(firstLogits.every((v) => Number.isFinite(v)));
        assert.deepEqual(ids, c.greedy_ids.slice(0, 3));
        engine.freeSequence(100 * round + i);
      }
    }
    engine.checkIntegrity();
    engine.dispose();
  });

  it("refuses steps beyond a sequence's blocks or out of order, and recovers", async () => {
    const engine = await load(BUNDLED_GQA, { numBlocks: 4 });
    engine.addSequence(1, Int32Array.of(1, 2, 3), 3);
    await assert.rejects(stepOne(engine, 1, 0, Array(65).fill(5)), /needs cache for 65 tokens but holds 64/);
    await assert.rejects(stepOne(engine, 1, 1, [2]), /starts at 1 but has 0 computed tokens/);
    await assert.rejects(stepOne(engine, 9, 0, [2]), /unknown sequence 9/);
    assert.equal(engine.addSequence(2, new Int32Array(5 * 64), 5 * 64), null); // more than the cache
    assert.throws(() => engine.addSequence(3, Int32Array.of(1, 40000), 2), /outside the vocabulary/);
    const out = await stepOne(engine, 1, 0, [1, 2, 3]);
    assert.equal(out.tokenIds.length, 1);
    assert.throws(() => engine.addSequence(1, Int32Array.of(1), 1), /already exists/);
    engine.dispose();
  });

  it("rejects calls while a step runs, and bad arguments by name", async () => {
    const engine = await load(BUNDLED_GQA);
    engine.addSequence(1, Int32Array.of(1, 2, 3), 3);
    const pending = stepOne(engine, 1, 0, [1, 2, 3]);
    assert.throws(() => engine.freeSequence(1), /busy/);
    await pending;
    assert.throws(() => engine.step({ seqIds: [1] as unknown as Int32Array } as never), /seqIds must be a Int32Array/);
    assert.throws(() => stepOne(engine, 1, 3, [1], { params: { ...GREEDY, topP: 0 } }), /batch\.sampling\.topP\[0\] must be in \(0, 1\]/);
    assert.throws(() => engine.addSequence(2, Int32Array.of(1), 2), /numPromptTokens/);
    engine.freeSequence(1);
    engine.dispose();
    assert.throws(() => engine.cacheInfo(), /disposed/);
  });
});
