// The engine loop: schedule() -> runner.run() -> update(), and nothing else in the loop. Requests
// come in as token ids and leave as streams of choice deltas.
import type { NativeEngine } from "../native/types.js";
import { ChoiceOutput, type StopRules } from "./output.js";
import { ModelRunner } from "./runner.js";
import type { Matcher } from "./grammar.js";
import { hasProcessors, SequenceProcessors } from "./processors.js";
import { nativeParams, validateSampling, type DecodeOptions, type SamplingOptions } from "./sampling.js";
import { Scheduler, type SchedulerOutput } from "./scheduler.js";
import { EventStream } from "./stream.js";
import { Sequence, type FinishReason } from "./sequence.js";

export interface EngineRequest {
  requestId: string;
  promptIds: number[];
  sampling: SamplingOptions;
  /** One grammar matcher per choice (constrained decoding); the engine disposes them. */
  matchers?: Matcher[];
}

export interface TokenLogprob {
  tokenId: number;
  logprob: number;
  top: { tokenId: number; logprob: number }[];
}

export interface ChoiceDelta {
  index: number;
  text: string;
  tokenIds: number[];
  logprobs: TokenLogprob[];
  finishReason?: FinishReason;
  stopReason?: string | number;
}

export interface RequestSummary {
  requestId: string;
  promptTokens: number;
  completionTokens: number;
  cachedPromptTokens: number;
  numPreemptions: number;
  arrivalTime: number; // ms, performance.now()
  firstTokenTime: number | undefined;
  finishTime: number;
}

export type RequestEvent =
  | { type: "delta"; delta: ChoiceDelta }
  | { type: "done"; summary: RequestSummary }
  | { type: "error"; message: string; shutdown?: boolean };

export interface RequestHandle extends AsyncIterable<RequestEvent> {
  readonly requestId: string;
  abort(): void;
}

/** Receives the numbers that metrics are made of. */
export interface EngineObserver {
  onTokens?(promptTokens: number, generationTokens: number): void;
  onFirstToken?(seconds: number): void;
  onInterToken?(seconds: number): void;
  onRequestDone?(summary: RequestSummary): void;
}

export interface EngineConfig {
  maxModelLen: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  eosTokenIds: number[];
  /** Turns output token ids into text; null: token ids only. */
  decode: ((ids: readonly number[], o: DecodeOptions) => string) | null;
  observer?: EngineObserver;
}

/** A request the engine rejects before running it (the caller's mistake). */
export class EngineInputError extends Error {
  constructor(message: string, readonly param: string) {
    super(message);
  }
}

interface RequestState {
  request: EngineRequest;
  seqs: Sequence[];
  outputs: ChoiceOutput[];
  followers: Sequence[]; // choices 1..n-1, queued once choice 0 has its prompt cached
  stream: EventStream<RequestEvent>;
  numFinished: number;
  arrivalTime: number;
  firstTokenTime: number | undefined;
  lastTokenTime: Map<number, number>; // seqId -> time of its last token
  /** Set when the server shuts down under the request: it ends with this error, not a summary. */
  shutdownMessage?: string;
}

export class LLMEngine {
  readonly scheduler: Scheduler;
  private readonly runner: ModelRunner;
  private readonly requests = new Map<string, RequestState>();
  private readonly bySeq = new Map<number, RequestState>();
  private readonly rules: StopRules;
  private nextSeqId = 1;
  private stepping = false;
  private looping = false;
  private idleWaiters: (() => void)[] = [];
  /** Work on the native engine that is not a scheduled step (prompt scoring), run between steps. */
  private readonly sideJobs: (() => Promise<void>)[] = [];
  private readonly blockSize: number;
  private readonly numBlocks: number;
  private readonly vocabSize: number;
  private lastCacheStats = { numBlocks: 0, numFreeBlocks: 0, prefixHitTokens: 0, prefixQueryTokens: 0 };

  constructor(readonly native: NativeEngine, readonly config: EngineConfig) {
    const info = native.cacheInfo();
    this.blockSize = info.blockSize;
    this.numBlocks = info.numBlocks;
    this.vocabSize = native.config().vocabSize;
    this.scheduler = new Scheduler(
      {
        addSequence: (id, tokens, numPrompt) => native.addSequence(id, tokens, numPrompt),
        ensureCapacity: (id, n) => native.ensureCapacity(id, n),
        freeSequence: (id) => native.freeSequence(id),
        numFreeBlocks: () => native.numFreeBlocks(),
      },
      { maxNumSeqs: config.maxNumSeqs, maxNumBatchedTokens: config.maxNumBatchedTokens, blockSize: info.blockSize, numBlocks: info.numBlocks, watermark: 0.01 },
    );
    this.runner = new ModelRunner((batch) => native.step(batch), this.vocabSize);
    this.rules = { eosTokenIds: new Set(config.eosTokenIds), maxModelLen: config.maxModelLen };
  }

  /** Cache numbers as of the end of the last step (or now, when the engine is idle). */
  cacheStats(): { numBlocks: number; numFreeBlocks: number; prefixHitTokens: number; prefixQueryTokens: number } {
    if (!this.stepping && !this.looping) this.publishCacheStats();
    return this.lastCacheStats;
  }

  // After every step: scrapes during a busy run read these (the native numbers are not read mid-step).
  private publishCacheStats(): void {
    const info = this.native.cacheInfo();
    this.lastCacheStats = { numBlocks: info.numBlocks, numFreeBlocks: info.numFreeBlocks, prefixHitTokens: info.prefixHitTokens, prefixQueryTokens: info.prefixQueryTokens };
  }

  get numRunning(): number {
    return this.scheduler.running.length;
  }
  get numWaiting(): number {
    return this.scheduler.waiting.length + [...this.requests.values()].reduce((n, r) => n + r.followers.length, 0);
  }

  /** Starts a request; its events stream out of the returned handle. Throws EngineInputError for bad input. */
  generate(request: EngineRequest): RequestHandle {
    try {
      this.validate(request);
    } catch (err) {
      for (const m of request.matchers ?? []) m.dispose();
      throw err;
    }
    const stream = new EventStream<RequestEvent>();
    const state: RequestState = {
      request, seqs: [], outputs: [], followers: [], stream, numFinished: 0,
      arrivalTime: performance.now(), firstTokenTime: undefined, lastTokenTime: new Map(),
    };
    for (let i = 0; i < request.sampling.n; ++i) {
      const seq = new Sequence(this.allocSeqId(), request.requestId, i, request.promptIds, request.sampling, nativeParams(request.sampling, i));
      const matcher = request.matchers?.[i] ?? null;
      if (matcher || hasProcessors(request.sampling.processors)) {
        seq.processors = new SequenceProcessors(request.sampling.processors, matcher, this.vocabSize, [...this.config.eosTokenIds, ...request.sampling.stopTokenIds]);
      }
      state.seqs.push(seq);
      const decode = this.config.decode;
      const o: DecodeOptions = { skipSpecialTokens: request.sampling.skipSpecialTokens, spacesBetweenSpecialTokens: request.sampling.spacesBetweenSpecialTokens };
      state.outputs.push(new ChoiceOutput(seq, decode ? (ids) => decode(ids, o) : null, this.rules));
      this.bySeq.set(seq.seqId, state);
    }
    state.followers = state.seqs.slice(1);
    this.requests.set(request.requestId, state);
    this.scheduler.add(state.seqs[0]!);
    this.config.observer?.onTokens?.(request.promptIds.length * request.sampling.n, 0);
    void this.loop();
    const engine = this;
    return {
      requestId: request.requestId,
      abort: () => engine.abort(request.requestId),
      [Symbol.asyncIterator]: () => stream[Symbol.asyncIterator](),
    };
  }

  /** Cancels a request; its cache blocks are free by the end of the current step. */
  abort(requestId: string): void {
    const state = this.requests.get(requestId);
    if (!state) return;
    for (const seq of state.seqs) {
      if (seq.isFinished) continue;
      if (this.stepping && seq.status === "running") seq.abortRequested = true;
      else this.finishSeq(state, seq, state.outputs[seq.index]!.abort(), []);
    }
  }

  /** Cancels every request; with `shutdownMessage` (the drain timeout) they end with that error. */
  abortAll(shutdownMessage?: string): void {
    for (const [id, state] of [...this.requests]) {
      if (shutdownMessage) state.shutdownMessage = shutdownMessage;
      this.abort(id);
    }
  }

  /**
   * The log-prob of every prompt token given the ones before (the first has none: null), with the
   * `top` most likely tokens at each position; runs between steps, in chunks of the step budget.
   */
  promptLogprobs(promptIds: number[], top: number): Promise<(TokenLogprob | null)[]> {
    if (promptIds.length === 0) return Promise.resolve([]);
    for (const t of promptIds) {
      if (!Number.isInteger(t) || t < 0 || t >= this.vocabSize) return Promise.reject(new EngineInputError(`token id ${t} is outside the vocabulary [0, ${this.vocabSize})`, "prompt"));
    }
    return new Promise((resolve, reject) => {
      this.sideJobs.push(() => this.scorePrompt(promptIds, top).then(resolve, reject));
      void this.loop();
    });
  }

  private async scorePrompt(ids: number[], top: number): Promise<(TokenLogprob | null)[]> {
    const seqId = this.allocSeqId();
    const k = Math.max(1, top);
    if (this.native.addSequence(seqId, Int32Array.from(ids), ids.length, false) === null) {
      throw new EngineInputError(`the cache has no room to score a prompt of ${ids.length} tokens right now`, "prompt");
    }
    const out: (TokenLogprob | null)[] = [null];
    try {
      // Position t predicts token t + 1; the last position predicts nothing we need.
      for (let start = 0; start < ids.length - 1; start += this.config.maxNumBatchedTokens) {
        const n = Math.min(this.config.maxNumBatchedTokens, ids.length - 1 - start);
        const s = await this.native.scoreTop({
          seqIds: Int32Array.of(seqId), startPositions: Int32Array.of(start), numTokens: Int32Array.of(n),
          tokenIds: Int32Array.from(ids.slice(start, start + n)), targetIds: Int32Array.from(ids.slice(start + 1, start + 1 + n)),
        }, k);
        for (let i = 0; i < n; ++i) {
          const alternatives = [];
          for (let j = 0; j < top; ++j) alternatives.push({ tokenId: s.topTokenIds[i * k + j]!, logprob: s.topLogprobs[i * k + j]! });
          out.push({ tokenId: ids[start + i + 1]!, logprob: s.logprobs[i]!, top: alternatives });
        }
      }
    } finally {
      this.native.freeSequence(seqId);
    }
    return out;
  }

  /** Resolves when no request is left. */
  whenIdle(): Promise<void> {
    if (!this.scheduler.hasWork() && this.requests.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private validate(r: EngineRequest): void {
    if (this.requests.has(r.requestId)) throw new EngineInputError(`request id ${r.requestId} is already running`, "request_id");
    const bad = validateSampling(r.sampling);
    if (bad) throw new EngineInputError(bad.message, bad.param);
    if (r.promptIds.length === 0) throw new EngineInputError("the prompt is empty", "prompt");
    const vocab = this.vocabSize;
    for (const t of r.promptIds) {
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new EngineInputError(`token id ${t} is outside the vocabulary [0, ${vocab})`, "prompt");
    }
    for (const t of r.sampling.stopTokenIds) {
      if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new EngineInputError(`stop token id ${t} is outside the vocabulary [0, ${vocab})`, "stop_token_ids");
    }
    const p = r.sampling.processors;
    const outside = (param: string, ids: Iterable<number>) => {
      for (const t of ids) if (t >= vocab) throw new EngineInputError(`token id ${t} in ${param} is outside the vocabulary [0, ${vocab})`, param);
    };
    outside("logit_bias", p.logitBias.map(([t]) => t));
    outside("allowed_token_ids", p.allowedTokenIds ?? []);
    outside("bad_words", p.badWords.flat());
    if (r.matchers && r.matchers.length !== r.sampling.n) throw new EngineInputError("one grammar matcher per choice is needed", "response_format");
    if (r.promptIds.length >= this.config.maxModelLen) {
      throw new EngineInputError(
        `This model's maximum context length is ${this.config.maxModelLen} tokens, but the prompt has ${r.promptIds.length} tokens`, "prompt");
    }
    const blocks = Math.ceil((r.promptIds.length + 1) / this.blockSize);
    if (blocks > this.numBlocks) {
      throw new EngineInputError(`the prompt needs ${blocks} cache blocks but the cache has ${this.numBlocks}`, "prompt");
    }
  }

  private allocSeqId(): number {
    do {
      this.nextSeqId = this.nextSeqId >= 0x7fffffff ? 1 : this.nextSeqId + 1;
    } while (this.bySeq.has(this.nextSeqId));
    return this.nextSeqId;
  }

  private async loop(): Promise<void> {
    if (this.looping) return;
    this.looping = true;
    try {
      while (this.scheduler.hasWork() || this.sideJobs.length > 0) {
        while (this.sideJobs.length > 0) await this.sideJobs.shift()!();
        if (!this.scheduler.hasWork()) continue;
        let out: SchedulerOutput;
        try {
          out = this.scheduler.schedule();
        } catch (err) {
          // A bug, not an input: fail what is queued and running rather than the process.
          this.failEverything(`the scheduler failed: ${err instanceof Error ? err.message : String(err)}`);
          continue;
        }
        for (const { seq, message } of out.refused) {
          const state = this.bySeq.get(seq.seqId);
          if (state) this.failRequest(state, message);
        }
        if (out.scheduled.length === 0) {
          if (out.refused.length === 0) this.failUnschedulable();
          continue;
        }
        await this.runStep(out);
        this.publishCacheStats();
      }
    } finally {
      this.looping = false;
      if (this.requests.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
  }

  private async runStep(out: SchedulerOutput): Promise<void> {
    this.stepping = true;
    let sampledTokens;
    try {
      sampledTokens = await this.runner.run(out);
    } catch (err) {
      this.stepping = false;
      this.failBatch(out, err instanceof Error ? err.message : String(err));
      return;
    }
    this.stepping = false;
    const sampled = this.scheduler.update(out, sampledTokens.tokenIds);
    const now = performance.now();
    const K = sampled.length ? sampledTokens.topTokenIds.length / sampled.length : 0; // top log-probs per row
    sampled.forEach((seq, r) => {
      const state = this.bySeq.get(seq.seqId)!;
      const token = seq.tokenIds[seq.tokenIds.length - 1]!;
      const logprobs: TokenLogprob[] = [];
      if (seq.sampling.logprobs !== null) {
        const top = [];
        for (let k = 0; k < seq.sampling.logprobs; ++k) {
          top.push({ tokenId: sampledTokens.topTokenIds[r * K + k]!, logprob: sampledTokens.topLogprobs[r * K + k]! });
        }
        logprobs.push({ tokenId: token, logprob: sampledTokens.logprobs[r]!, top });
      }
      this.recordTiming(state, seq, now);
      const matcher = seq.processors?.matcher;
      if (matcher && !matcher.accept(token)) {
        this.failRequest(state, `token ${token} does not continue the output's grammar`);
        return;
      }
      const result = state.outputs[seq.index]!.onToken(token);
      // A grammar that has ended ends the choice (also with ignore_eos).
      if (!result.finishReason && matcher?.isTerminated()) result.finishReason = "stop";
      if (result.finishReason) this.finishSeq(state, seq, result, [token], logprobs);
      else state.stream.push({ type: "delta", delta: { index: seq.index, text: result.text, tokenIds: [token], logprobs } });
      if (seq.index === 0 && seq.numOutputTokens === 1) this.releaseFollowers(state);
    });
    this.config.observer?.onTokens?.(0, sampled.length);
    for (const { seq } of out.scheduled) {
      if (seq.abortRequested && !seq.isFinished) {
        const state = this.bySeq.get(seq.seqId)!;
        this.finishSeq(state, seq, state.outputs[seq.index]!.abort(), []);
      }
    }
  }

  // Choices 1..n-1 wait until choice 0 has its prompt in the cache, then go next (prefix hits).
  private releaseFollowers(state: RequestState): void {
    for (const f of state.followers.splice(0).reverse()) this.scheduler.add(f, true);
  }

  private recordTiming(state: RequestState, seq: Sequence, now: number): void {
    const last = state.lastTokenTime.get(seq.seqId);
    if (last === undefined) {
      if (state.firstTokenTime === undefined) {
        state.firstTokenTime = now;
        this.config.observer?.onFirstToken?.((now - state.arrivalTime) / 1000);
      }
    } else {
      this.config.observer?.onInterToken?.((now - last) / 1000);
    }
    state.lastTokenTime.set(seq.seqId, now);
  }

  private finishSeq(state: RequestState, seq: Sequence, result: { text: string; finishReason?: FinishReason; stopReason?: string | number },
                    tokenIds: number[], logprobs: TokenLogprob[] = []): void {
    if (seq.isFinished) return;
    seq.processors?.dispose();
    const wasQueuedFollower = state.followers.indexOf(seq);
    if (wasQueuedFollower >= 0) state.followers.splice(wasQueuedFollower, 1);
    this.scheduler.finish(seq);
    seq.finishReason = result.finishReason ?? "stop";
    seq.stopReason = result.stopReason;
    this.bySeq.delete(seq.seqId);
    state.stream.push({ type: "delta", delta: { index: seq.index, text: result.text, tokenIds, logprobs, finishReason: seq.finishReason, stopReason: seq.stopReason } });
    if (++state.numFinished < state.seqs.length) {
      // A request whose first choice ended before its prompt was cached releases the rest now.
      if (seq.index === 0) this.releaseFollowers(state);
      return;
    }
    const summary: RequestSummary = {
      requestId: state.request.requestId,
      promptTokens: state.request.promptIds.length,
      completionTokens: state.seqs.reduce((n, s) => n + s.numOutputTokens, 0),
      cachedPromptTokens: state.seqs[0]!.numCachedPromptTokens,
      numPreemptions: state.seqs.reduce((n, s) => n + s.numPreemptions, 0),
      arrivalTime: state.arrivalTime,
      firstTokenTime: state.firstTokenTime,
      finishTime: performance.now(),
    };
    this.requests.delete(state.request.requestId);
    if (state.shutdownMessage) state.stream.push({ type: "error", message: state.shutdownMessage, shutdown: true });
    else state.stream.push({ type: "done", summary });
    state.stream.close();
    this.config.observer?.onRequestDone?.(summary);
  }

  // A step failed: its requests end with an error; the engine carries on with the rest.
  private failBatch(out: SchedulerOutput, message: string): void {
    const failed = new Set<RequestState>();
    for (const { seq } of out.scheduled) {
      const state = this.bySeq.get(seq.seqId);
      if (state) failed.add(state);
    }
    for (const state of failed) this.failRequest(state, message);
  }

  private failRequest(state: RequestState, message: string): void {
    for (const seq of state.seqs) {
      seq.processors?.dispose();
      if (!seq.isFinished) {
        this.scheduler.finish(seq);
        seq.finishReason = "abort";
        this.bySeq.delete(seq.seqId);
      }
    }
    this.requests.delete(state.request.requestId);
    state.stream.push({ type: "error", message });
    state.stream.close();
  }

  private failEverything(message: string): void {
    for (const state of [...this.requests.values()]) this.failRequest(state, message);
    for (const seq of [...this.scheduler.waiting, ...this.scheduler.running]) this.scheduler.finish(seq);
  }

  // Nothing could be scheduled: the head of the queue needs more blocks than exist while nothing runs.
  private failUnschedulable(): void {
    const seq = this.scheduler.waiting[0];
    if (!seq) return;
    const state = this.bySeq.get(seq.seqId);
    if (state) this.failRequest(state, `the sequence needs more cache blocks than the cache has (${this.numBlocks})`);
    else this.scheduler.finish(seq);
  }
}
