// Runs a prepared request on the engine: one engine request per prompt, their choices merged
// into one stream with OpenAI's numbering (prompt index * n + choice).
import { randomUUID } from "node:crypto";

import { EngineInputError, type ChoiceDelta, type RequestHandle } from "../engine/llm_engine.js";
import { EventStream } from "../engine/stream.js";
import type { ServingContext } from "./context.js";
import { ApiError, badRequest } from "./errors.js";
import type { Prepared } from "./prepare.js";

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

/** A running generation: iterate its choice events; `summary` settles when all are done. */
export class GenerationRun implements AsyncIterable<ChoiceEvent> {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  readonly summary: Promise<GenerationSummary>;
  private readonly events = new EventStream<ChoiceEvent>();
  private readonly handles: RequestHandle[] = [];
  private failure: ApiError | undefined;

  constructor(ctx: ServingContext, readonly prepared: Prepared, requestId: string) {
    this.id = `${prepared.kind === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID().replace(/-/g, "")}`;
    if (ctx.draining) throw new ApiError(503, "the server is shutting down", "service_unavailable");
    const waiting = ctx.engine.numWaiting;
    if (waiting >= ctx.maxQueueLen) {
      throw new ApiError(429, `the server is busy: ${waiting} requests are waiting; retry shortly`, "rate_limit_error", null, "queue_full");
    }
    const start = performance.now();
    prepared.prompts.forEach((p, i) => {
      try {
        this.handles.push(ctx.engine.generate({ requestId: `${requestId}-${i}`, promptIds: p.ids, sampling: prepared.sampling[i]! }));
      } catch (err) {
        this.abort();
        if (err instanceof EngineInputError) throw badRequest(err.message, err.param);
        throw err;
      }
    });
    const n = prepared.sampling[0]!.n;
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
  }

  private async pump(handle: RequestHandle, base: number) {
    const finishReasons: string[] = [];
    for await (const e of handle) {
      if (e.type === "error") {
        this.failure = new ApiError(500, `generation failed: ${e.message}`, "server_error");
        this.abort();
        throw this.failure;
      }
      if (e.type === "done") return { ...e.summary, finishReasons };
      if (e.delta.finishReason) finishReasons.push(e.delta.finishReason);
      this.events.push({ ...e.delta, index: base + e.delta.index });
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
