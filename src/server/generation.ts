// Runs a prepared request on the engine: one engine request per prompt, their choices merged
// into one stream with OpenAI's numbering (prompt index * n + choice).
import { randomUUID } from "node:crypto";

import { EngineInputError, type ChoiceDelta, type RequestHandle, type RequestEvent, type TokenLogprob } from "../engine/llm_engine.js";
import { EventStream } from "../engine/stream.js";
import type { ServingContext } from "./context.js";
import { ApiError, badRequest } from "./errors.js";
import type { Prepared } from "./prepare.js";
import type { Matcher } from "../engine/grammar.js";

/** Prompts x n of one request at most: a single request cannot fill the queue. */
export const MAX_SEQUENCES_PER_REQUEST = 256;
/** Choice events a run holds for a consumer that does not take them (a stalled client): past it, the run is cancelled. */
export const MAX_BACKLOG_EVENTS = 16384;

export interface ChoiceEvent extends ChoiceDelta {
  /** OpenAI choice index: prompt index * n + choice index. */
  index: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details: { cached_tokens: number };
}

export interface GenerationSummary {
  usage: Usage;
  ttftMs: number | undefined;
  e2eMs: number;
  finishReasons: string[];
}

/** A request for no new tokens (max_tokens 0): every choice ends at once, with "length". */
function promptOnly(n: number, promptTokens: number): RequestHandle {
  const now = performance.now();
  const events: RequestEvent[] = [];
  for (let i = 0; i < n; ++i) events.push({ type: "delta", delta: { index: i, text: "", tokenIds: [], logprobs: [], finishReason: "length" } });
  events.push({ type: "done", summary: { requestId: "", promptTokens, completionTokens: 0, cachedPromptTokens: 0, numPreemptions: 0, arrivalTime: now, firstTokenTime: undefined, finishTime: now } });
  return {
    requestId: "",
    abort: () => {},
    async *[Symbol.asyncIterator]() {
      yield* events;
    },
  };
}

/** A running generation: iterate its choice events; `summary` settles when all are done. */
export class GenerationRun implements AsyncIterable<ChoiceEvent> {
  readonly id!: string;
  readonly created = Math.floor(Date.now() / 1000);
  summary!: Promise<GenerationSummary>;
  /** Per prompt, its tokens' log-probs (the first null) when the request scores the prompt. */
  promptScores: Promise<(TokenLogprob | null)[][]> | null = null;
  private readonly events = new EventStream<ChoiceEvent>();
  private readonly handles: RequestHandle[] = [];
  private failure: ApiError | undefined;

  /** Starts a run: one grammar matcher per choice first (when the request has a grammar). */
  static async start(ctx: ServingContext, prepared: Prepared, requestId: string, responseId?: string): Promise<GenerationRun> {
    const g = prepared.grammar;
    const count = prepared.prompts.length * prepared.sampling[0]!.n;
    const matchers = g && count <= MAX_SEQUENCES_PER_REQUEST ? await Promise.all(Array.from({ length: count }, () => g.engine.matcher(g.compiled))) : null;
    return new GenerationRun(ctx, prepared, requestId, responseId, matchers);
  }

  /** `responseId`: the client's X-Request-Id, with --enable-request-id-headers. `matchers`: prompts x n, owned by the run. */
  private constructor(ctx: ServingContext, readonly prepared: Prepared, requestId: string, responseId: string | undefined, matchers: Matcher[] | null) {
    try {
      this.id = this.init(ctx, requestId, responseId, matchers);
    } catch (err) {
      // Matchers no engine request took are ours to free.
      for (const m of matchers?.slice(this.handles.length * prepared.sampling[0]!.n) ?? []) m.dispose();
      throw err;
    }
  }

  private init(ctx: ServingContext, requestId: string, responseId: string | undefined, matchers: Matcher[] | null): string {
    const prepared = this.prepared;
    const id = `${prepared.kind === "chat" ? "chatcmpl" : "cmpl"}-${responseId ?? randomUUID().replace(/-/g, "")}`;
    if (ctx.draining) throw new ApiError(503, "the server is shutting down", "service_unavailable");
    // Admission counts what this request adds: every prompt's n choices wait as sequences.
    const adds = prepared.prompts.length * prepared.sampling[0]!.n;
    if (adds > MAX_SEQUENCES_PER_REQUEST) {
      throw badRequest(`this request asks for ${adds} sequences (${prepared.prompts.length} prompts x n = ${prepared.sampling[0]!.n}); at most ${MAX_SEQUENCES_PER_REQUEST}`, "n", "too_many_sequences");
    }
    const waiting = ctx.engine.numWaiting;
    if (waiting + adds > ctx.maxQueueLen) {
      throw new ApiError(429, `the server is busy: ${waiting} sequences are waiting and this request adds ${adds} (queue limit ${ctx.maxQueueLen}); retry shortly`,
        "rate_limit_error", null, "queue_full");
    }
    const start = performance.now();
    const engineKey = randomUUID();
    const n = prepared.sampling[0]!.n;
    prepared.prompts.forEach((p, i) => {
      try {
        const sampling = prepared.sampling[i]!;
        const own = matchers?.slice(i * n, (i + 1) * n);
        // Engine ids are ours alone: clients may repeat an X-Request-Id. max_tokens 0 scores only.
        if (sampling.maxTokens === 0) {
          for (const m of own ?? []) m.dispose();
          this.handles.push(promptOnly(sampling.n, p.ids.length));
        } else {
          this.handles.push(ctx.engine.generate({ requestId: `${requestId}-${engineKey}-${i}`, promptIds: p.ids, sampling, ...(own ? { matchers: own } : {}) }));
        }
      } catch (err) {
        this.abort();
        if (err instanceof EngineInputError) throw badRequest(err.message, err.param);
        throw err;
      }
    });
    const k = prepared.promptLogprobs;
    this.promptScores = k === null ? null : Promise.all(prepared.prompts.map((p) => ctx.engine.promptLogprobs(p.ids, k))).catch((err: unknown) => {
      this.abort();
      throw err instanceof EngineInputError ? badRequest(err.message, err.param) : err;
    });
    this.promptScores?.catch(() => {});
    this.summary = Promise.all(this.handles.map((h, i) => this.pump(h, i * n))).then((summaries) => {
      this.events.close();
      const promptTokens = prepared.prompts.reduce((a, p) => a + p.ids.length, 0);
      const completion = summaries.reduce((a, s) => a + s.completionTokens, 0);
      const firsts = summaries.map((s) => s.firstTokenTime).filter((t): t is number => t !== undefined);
      return {
        usage: {
          prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion,
          prompt_tokens_details: { cached_tokens: summaries.reduce((a, s) => a + s.cachedPromptTokens, 0) },
        },
        ttftMs: firsts.length ? Math.min(...firsts) - start : undefined,
        e2eMs: performance.now() - start,
        finishReasons: summaries.flatMap((s) => s.finishReasons),
      };
    });
    this.summary.catch(() => this.events.close());
    return id;
  }

  private async pump(handle: RequestHandle, base: number) {
    const finishReasons: string[] = [];
    for await (const e of handle) {
      if (e.type === "error") {
        this.failure = e.shutdown
          ? new ApiError(503, e.message, "service_unavailable", null, "server_shutdown")
          : new ApiError(500, `generation failed: ${e.message}`, "server_error");
        this.abort();
        throw this.failure;
      }
      if (e.type === "done") return { ...e.summary, finishReasons };
      if (e.delta.finishReason) finishReasons.push(e.delta.finishReason);
      this.events.push({ ...e.delta, index: base + e.delta.index });
      if (this.events.size > MAX_BACKLOG_EVENTS && !this.failure) {
        this.failure = new ApiError(408, "the client stopped reading the stream", "invalid_request_error", null, "client_stalled");
        this.abort();
      }
    }
    throw this.failure ?? new ApiError(500, "generation ended without a summary", "server_error");
  }

  /** Cancels every prompt's engine request (client gone). */
  abort(): void {
    for (const h of this.handles) h.abort();
  }

  [Symbol.asyncIterator](): AsyncIterator<ChoiceEvent> {
    return this.events[Symbol.asyncIterator]();
  }
}
