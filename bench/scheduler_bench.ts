// The engine loop's own time per step (schedule + batch arrays + update + output processing) at
// batch 256, with a fake native step that returns at once. Goal: well under 0.5 ms.
import { LLMEngine } from "../src/engine/llm_engine.js";
import { resolveSampling } from "../src/engine/sampling.js";
import type { CacheInfo, ModelConfig, NativeEngine, StepBatch, StepOutput } from "../src/native/types.js";

const BLOCK = 64;

/** Block accounting like the native engine, and a step that samples token 7 for every row. */
class FakeNative {
  private free: number;
  private readonly tables = new Map<number, number>();
  constructor(readonly numBlocks: number) {
    this.free = numBlocks;
  }
  config(): ModelConfig {
    return { vocabSize: 32000 } as ModelConfig;
  }
  cacheInfo(): CacheInfo {
    return { numBlocks: this.numBlocks, numFreeBlocks: this.free, blockSize: BLOCK, bytesPerBlock: 0, prefixHitTokens: 0, prefixQueryTokens: 0, device: "fake" };
  }
  numFreeBlocks(): number {
    return this.free;
  }
  addSequence(id: number, tokens: Int32Array): number | null {
    const need = Math.ceil(tokens.length / BLOCK);
    if (need > this.free) return null;
    this.free -= need;
    this.tables.set(id, need);
    return 0;
  }
  ensureCapacity(id: number, n: number): boolean {
    const need = Math.ceil(n / BLOCK) - this.tables.get(id)!;
    if (need <= 0) return true;
    if (need > this.free) return false;
    this.free -= need;
    this.tables.set(id, this.tables.get(id)! + need);
    return true;
  }
  freeSequence(id: number): void {
    this.free += this.tables.get(id)!;
    this.tables.delete(id);
  }
  step(batch: StepBatch): Promise<StepOutput> {
    let r = 0;
    for (const m of batch.sampleMask) r += m;
    return Promise.resolve({ tokenIds: new Int32Array(r).fill(7), logprobs: new Float32Array(r), topTokenIds: new Int32Array(0), topLogprobs: new Float32Array(0) });
  }
}

async function main(): Promise<void> {
  const batch = Number(process.argv[2] ?? 256);
  const steps = Number(process.argv[3] ?? 2000);
  const native = new FakeNative(100000);
  const stepTimes: number[] = [];
  let last = 0;
  const timed = native.step.bind(native);
  native.step = (b: StepBatch) => {
    const now = performance.now();
    if (last && b.seqIds.length === batch) stepTimes.push(now - last);
    last = now;
    return timed(b);
  };
  const engine = new LLMEngine(native as unknown as NativeEngine, {
    maxModelLen: 1 << 20, maxNumSeqs: batch, maxNumBatchedTokens: 8192, eosTokenIds: [2],
    decode: (ids) => ids.map((i) => String.fromCharCode(97 + (i % 26))).join(""),
  });
  const sampling = resolveSampling({ maxTokens: steps, temperature: 0, stop: ["zzz"] });
  const handles = Array.from({ length: batch }, (_, i) => engine.generate({ requestId: `r${i}`, promptIds: Array.from({ length: 32 }, (_, k) => (i + k) % 1000), sampling }));
  await Promise.all(handles.map(async (h) => {
    for await (const _ of h) void _;
  }));
  stepTimes.sort((a, b) => a - b);
  const mean = stepTimes.reduce((a, b) => a + b, 0) / stepTimes.length;
  const p = (q: number) => stepTimes[Math.min(stepTimes.length - 1, Math.floor(q * stepTimes.length))]!;
  process.stdout.write(`engine loop at batch ${batch} (fake native step), ${stepTimes.length} decode steps:\n`);
  process.stdout.write(`  per step: mean ${mean.toFixed(3)} ms, p50 ${p(0.5).toFixed(3)} ms, p99 ${p(0.99).toFixed(3)} ms\n`);
  process.stdout.write(`  per sequence-token: ${((mean / batch) * 1000).toFixed(2)} µs\n`);
}

void main();
