// One generated choice: its tokens and where it stands in the engine.
import type { NativeSamplingParams } from "../native/types.js";
import type { SequenceProcessors } from "./processors.js";
import type { SamplingOptions } from "./sampling.js";

export type SequenceStatus = "waiting" | "running" | "finished";
export type FinishReason = "stop" | "length" | "abort";

export class Sequence {
  status: SequenceStatus = "waiting";
  /** Tokens whose cache entries the native engine holds (its count, mirrored). */
  numComputedTokens = 0;
  finishReason: FinishReason | undefined;
  /** The stop string or stop token id that ended it, if any. */
  stopReason: string | number | undefined;
  /** Times this sequence was preempted (its cache freed, to be recomputed). */
  numPreemptions = 0;
  /** Prompt tokens found in the prefix cache at first admission. */
  numCachedPromptTokens = 0;
  /** Set when an abort arrives while a step is in flight; honoured after the step. */
  abortRequested = false;
  /** Logits processors (grammar matcher, bans, biases); null: none. */
  processors: SequenceProcessors | null = null;
  readonly tokenIds: number[];

  constructor(
    /** Native sequence id (unique among live sequences). */
    readonly seqId: number,
    readonly requestId: string,
    /** Choice index within the request. */
    readonly index: number,
    promptIds: readonly number[],
    readonly sampling: SamplingOptions,
    readonly nativeParams: NativeSamplingParams,
  ) {
    this.tokenIds = promptIds.slice();
    this.numPromptTokens = promptIds.length;
  }

  readonly numPromptTokens: number;

  get numTokens(): number {
    return this.tokenIds.length;
  }
  get numOutputTokens(): number {
    return this.tokenIds.length - this.numPromptTokens;
  }
  get outputIds(): number[] {
    return this.tokenIds.slice(this.numPromptTokens);
  }
  /** Tokens known but not yet in the cache (prompt chunks still to prefill, or the last sampled token). */
  get numUncomputedTokens(): number {
    return this.tokenIds.length - this.numComputedTokens;
  }
  get isFinished(): boolean {
    return this.status === "finished";
  }
}
