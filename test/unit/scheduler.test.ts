// The scheduler against a fake block allocator: budgets, chunked prefill, admission, preemption.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { resolveSampling } from "../../src/engine/sampling.js";
import { Scheduler, type BlockAllocator } from "../../src/engine/scheduler.js";
import { Sequence } from "../../src/engine/sequence.js";
import { GREEDY } from "../helpers.js";

/** Counts blocks like the native block manager (no prefix caching). */
export class FakeAllocator implements BlockAllocator {
  readonly tables = new Map<number, number>(); // seqId -> blocks
  constructor(private numBlocks: number, private readonly blockSize = 64) {}
  private used(): number {
    let n = 0;
    for (const b of this.tables.values()) n += b;
    return n;
  }
  numFreeBlocks(): number {
    return this.numBlocks - this.used();
  }
  addSequence(seqId: number, tokens: Int32Array): number | null {
    const need = Math.ceil(tokens.length / this.blockSize);
    if (need > this.numFreeBlocks()) return null;
    this.tables.set(seqId, need);
    return 0;
  }
  ensureCapacity(seqId: number, numTokens: number): boolean {
    const need = Math.ceil(numTokens / this.blockSize) - this.tables.get(seqId)!;
    if (need <= 0) return true;
    if (need > this.numFreeBlocks()) return false;
    this.tables.set(seqId, this.tables.get(seqId)! + need);
    return true;
  }
  freeSequence(seqId: number): void {
    assert.ok(this.tables.delete(seqId), `free of unknown sequence ${seqId}`);
  }
}

function seq(id: number, promptLen: number): Sequence {
  return new Sequence(id, `r${id}`, 0, Array.from({ length: promptLen }, (_, i) => i % 100), resolveSampling({ maxTokens: 1000 }), GREEDY);
}

function config(numBlocks: number, budget: number, maxNumSeqs = 64) {
  return { maxNumSeqs, maxNumBatchedTokens: budget, blockSize: 64, numBlocks, watermark: 0 };
}

/** Runs one step: sampled sequences get token 7. */
function step(s: Scheduler) {
  const out = s.schedule();
  const sampled = out.scheduled.filter((x) => x.sample).length;
  s.update(out, new Int32Array(sampled).fill(7));
  return out;
}

describe("scheduler", () => {
  it("splits a long prompt into chunks within the token budget while decodes keep flowing", () => {
    const alloc = new FakeAllocator(100);
    const s = new Scheduler(alloc, config(100, 256));
    const short = seq(1, 10);
    s.add(short);
    step(s); // short prefilled, sampled its first token
    const long = seq(2, 1000);
    s.add(long);
    const out = step(s);
    assert.deepEqual(out.scheduled.map((x) => [x.seq.seqId, x.numTokens, x.sample]), [[1, 1, true], [2, 255, false]]);
    let steps = 1;
    while (long.numOutputTokens === 0) {
      const o = step(s);
      assert.ok(o.numBatchedTokens <= 256);
      assert.equal(o.scheduled[0]!.seq, short); // the decode is always in the batch
      steps++;
    }
    assert.equal(steps, Math.ceil(1000 / 255));
    assert.equal(long.numComputedTokens, 1000);
  });

  it("admits only what the cache holds and respects max-num-seqs", () => {
    const alloc = new FakeAllocator(5);
    const s = new Scheduler(alloc, config(5, 10000, 3));
    for (let i = 1; i <= 6; ++i) s.add(seq(i, 100)); // 2 blocks each
    step(s);
    assert.equal(s.running.length, 2);
    assert.equal(s.waiting.length, 4);
    const s2 = new Scheduler(new FakeAllocator(100), config(100, 10000, 3));
    for (let i = 1; i <= 6; ++i) s2.add(seq(i, 10));
    step(s2);
    assert.equal(s2.running.length, 3);
  });

  it("preempts the newest sequence when decode runs out of blocks, and recomputes it later", () => {
    const alloc = new FakeAllocator(4);
    const s = new Scheduler(alloc, config(4, 10000));
    const a = seq(1, 64), b = seq(2, 64), c = seq(3, 64);
    for (const x of [a, b, c]) s.add(x);
    step(s); // a, b, c prefilled (3 blocks); each sampled one token
    assert.equal(s.running.length, 3);
    const out = step(s); // each needs a second block: one is free, then c's two are taken back
    assert.deepEqual(out.preempted.map((x) => x.seqId), [3]);
    assert.deepEqual(out.scheduled.map((x) => x.seq.seqId), [1, 2]);
    assert.equal(c.numComputedTokens, 0);
    assert.equal(c.numPreemptions, 1);
    assert.deepEqual(s.waiting.map((x) => x.seqId), [3]);
    // Nothing is admitted in a step that preempted; once a finishes, c recomputes prompt + output.
    s.finish(a);
    const back = step(s);
    assert.deepEqual(back.scheduled.map((x) => [x.seq.seqId, x.numTokens]), [[2, 1], [3, 65]]);
    assert.equal(alloc.numFreeBlocks(), 0);
  });

  it("finishing frees blocks; every block is free at the end", () => {
    const alloc = new FakeAllocator(50);
    const s = new Scheduler(alloc, config(50, 300));
    const seqs = Array.from({ length: 20 }, (_, i) => seq(i + 1, 30 + 17 * i));
    for (const x of seqs) s.add(x);
    for (let k = 0; k < 40; ++k) {
      step(s);
      for (const x of [...s.running]) if (x.numOutputTokens >= 5 + (x.seqId % 7)) s.finish(x);
    }
    while (s.hasWork()) {
      step(s);
      for (const x of [...s.running]) if (x.numOutputTokens >= 5) s.finish(x);
    }
    assert.equal(alloc.numFreeBlocks(), 50);
    assert.ok(seqs.every((x) => x.isFinished));
  });
});
