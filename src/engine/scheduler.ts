// Iteration-level scheduling (nano-vllm shape): each step decides which sequences compute how
// many tokens, within a token budget, so long prompts are prefilled in chunks while decodes flow.
import type { Sequence } from "./sequence.js";

/** The part of the native engine the scheduler needs: cache blocks per sequence. */
export interface BlockAllocator {
  addSequence(seqId: number, tokens: Int32Array, numPromptTokens: number): number | null;
  ensureCapacity(seqId: number, numTokens: number): boolean;
  freeSequence(seqId: number): void;
  numFreeBlocks(): number;
}

export interface SchedulerConfig {
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  blockSize: number;
  numBlocks: number;
  /** Free blocks kept back when admitting, so running sequences can grow (fraction of all blocks). */
  watermark: number;
}

export interface ScheduledSeq {
  seq: Sequence;
  numTokens: number;
  /** This step computes the sequence's last known token: sample the next one. */
  sample: boolean;
}

export interface SchedulerOutput {
  scheduled: ScheduledSeq[];
  numBatchedTokens: number;
  preempted: Sequence[];
  /** Sequences the native engine refused at admission, with its message: they leave the queue. */
  refused: { seq: Sequence; message: string }[];
}

export class Scheduler {
  readonly waiting: Sequence[] = [];
  readonly running: Sequence[] = [];
  /** Tokens each running sequence's blocks can hold (mirrors the native block table). */
  private readonly capacity = new Map<number, number>();
  private readonly watermarkBlocks: number;

  constructor(private readonly alloc: BlockAllocator, private readonly config: SchedulerConfig) {
    this.watermarkBlocks = Math.floor(config.numBlocks * config.watermark);
  }

  hasWork(): boolean {
    return this.waiting.length > 0 || this.running.length > 0;
  }

  /** Queues a sequence (at the back, or the front for sequences that must go next). */
  add(seq: Sequence, front = false): void {
    seq.status = "waiting";
    if (front) this.waiting.unshift(seq);
    else this.waiting.push(seq);
  }

  schedule(): SchedulerOutput {
    let budget = this.config.maxNumBatchedTokens;
    const scheduled: ScheduledSeq[] = [];
    const preempted: Sequence[] = [];
    const refused: { seq: Sequence; message: string }[] = [];
    for (let i = 0; i < this.running.length && budget > 0; ) {
      const seq = this.running[i]!;
      const n = Math.min(seq.numUncomputedTokens, budget);
      if (!this.reserve(seq, seq.numComputedTokens + n, preempted)) break;  // seq itself was preempted
      scheduled.push({ seq, numTokens: n, sample: seq.numComputedTokens + n === seq.numTokens });
      budget -= n;
      i++;
    }
    // Admit waiting sequences only when nothing had to be preempted this step.
    while (preempted.length === 0 && budget > 0 && this.waiting.length > 0 && this.running.length < this.config.maxNumSeqs) {
      const seq = this.waiting[0]!;
      const needed = Math.ceil(seq.numTokens / this.config.blockSize);
      if (this.running.length > 0 && needed > this.alloc.numFreeBlocks() - this.watermarkBlocks) break;
      let cached: number | null;
      try {
        cached = this.alloc.addSequence(seq.seqId, Int32Array.from(seq.tokenIds), seq.numPromptTokens);
      } catch (err) {
        // Input the checks upstream should have caught: the request fails, the engine goes on.
        this.waiting.shift();
        seq.status = "finished";
        refused.push({ seq, message: err instanceof Error ? err.message : String(err) });
        continue;
      }
      if (cached === null) break;
      this.waiting.shift();
      seq.status = "running";
      seq.numComputedTokens = cached;
      if (seq.numPreemptions === 0) seq.numCachedPromptTokens = cached;
      this.capacity.set(seq.seqId, needed * this.config.blockSize);
      this.running.push(seq);
      const n = Math.min(seq.numUncomputedTokens, budget);
      scheduled.push({ seq, numTokens: n, sample: cached + n === seq.numTokens });
      budget -= n;
    }
    return { scheduled, numBatchedTokens: this.config.maxNumBatchedTokens - budget, preempted, refused };
  }

  /** Records a step's work: computed counts advance and sampled tokens are appended. */
  update(out: SchedulerOutput, sampledTokens: Int32Array): Sequence[] {
    const sampled: Sequence[] = [];
    let r = 0;
    for (const { seq, numTokens, sample } of out.scheduled) {
      seq.numComputedTokens += numTokens;
      if (sample) {
        seq.tokenIds.push(sampledTokens[r++]!);
        sampled.push(seq);
      }
    }
    return sampled;
  }

  /** Ends a sequence, freeing its cache blocks. */
  finish(seq: Sequence): void {
    if (seq.status === "running") {
      this.alloc.freeSequence(seq.seqId);
      this.capacity.delete(seq.seqId);
      this.running.splice(this.running.indexOf(seq), 1);
    } else if (seq.status === "waiting") {
      const i = this.waiting.indexOf(seq);
      if (i >= 0) this.waiting.splice(i, 1);
    }
    seq.status = "finished";
  }

  // Makes room for `tokens` tokens of seq, preempting the newest running sequences while blocks
  // run out. Returns false when seq itself had to be preempted.
  private reserve(seq: Sequence, tokens: number, preempted: Sequence[]): boolean {
    if (tokens <= (this.capacity.get(seq.seqId) ?? 0)) return true;
    while (!this.alloc.ensureCapacity(seq.seqId, tokens)) {
      const victim = this.running[this.running.length - 1]!;
      this.preempt(victim);
      preempted.push(victim);
      if (victim === seq) return false;
    }
    this.capacity.set(seq.seqId, Math.ceil(tokens / this.config.blockSize) * this.config.blockSize);
    return true;
  }

  // Frees a running sequence's blocks; it goes back to the front of the queue and is recomputed
  // (prefix caching usually finds most of its blocks again).
  private preempt(seq: Sequence): void {
    this.alloc.freeSequence(seq.seqId);
    this.capacity.delete(seq.seqId);
    this.running.pop();
    seq.numComputedTokens = 0;
    seq.numPreemptions++;
    this.add(seq, true);
  }
}
