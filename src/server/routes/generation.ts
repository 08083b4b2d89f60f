// POST /v1/completions and /v1/chat/completions: whole responses or Server-Sent Events.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import type { ServingContext } from "../context.js";
import { ApiError } from "../errors.js";
import { GenerationRun, type GenerationSummary } from "../generation.js";
import { prepareChat, prepareCompletion, type Prepared } from "../prepare.js";
import { collectResponse, streamChunks } from "../responses.js";

/** One log line per finished request: token counts and timings; the prompt only with --log-prompts. */
export function logFinished(ctx: ServingContext, request: FastifyRequest, run: GenerationRun, summary: GenerationSummary | undefined, status: string): void {
  request.log.info({
    route: request.url.split("?")[0],
    status,
    stream: run.prepared.stream,
    n: run.prepared.sampling[0]!.n,
    promptTokens: summary?.usage.prompt_tokens,
    completionTokens: summary?.usage.completion_tokens,
    cachedTokens: summary?.usage.prompt_tokens_details.cached_tokens,
    ttftMs: summary?.ttftMs !== undefined ? Math.round(summary.ttftMs * 10) / 10 : undefined,
    e2eMs: summary ? Math.round(summary.e2eMs * 10) / 10 : undefined,
    finishReasons: summary?.finishReasons,
    ...(ctx.logPrompts ? { prompt: run.prepared.prompts.map((p) => p.text ?? p.ids) } : {}),
  }, "request finished");
  if (summary) ctx.metrics.requestFinished(summary.finishReasons);
}

/** Resolves true once `res` drains, false if it does not within `ms` (or closes). */
function drained(res: NodeJS.WritableStream & { destroyed?: boolean }, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      res.off("drain", onDrain);
      res.off("close", onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    const timer = setTimeout(() => done(false), ms);
    res.once("drain", onDrain);
    res.once("close", onClose);
  });
}

async function sendSse(ctx: ServingContext, request: FastifyRequest, reply: FastifyReply, run: GenerationRun): Promise<void> {
  const res = reply.raw;
  reply.hijack();
  // The headers hooks set on the reply (CORS, x-request-id) go out with the stream's own.
  res.writeHead(200, {
    ...(reply.getHeaders() as Record<string, string>),
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache",
    connection: "keep-alive",
    "x-request-id": request.id,
  });
  let gone = false;
  res.on("close", () => {
    if (!res.writableEnded) {
      gone = true;
      run.abort();
    }
  });
  // Backpressure: a full socket buffer waits for 'drain'; a client that reads nothing for
  // --stream-stall-timeout loses its request and its connection, so it stops costing compute.
  const write = async (text: string): Promise<void> => {
    if (res.write(text) || gone) return;
    if (!(await drained(res, ctx.streamStallMs))) {
      gone = true;
      run.abort();
      request.log.warn({ stallMs: ctx.streamStallMs, bufferedBytes: res.writableLength }, "client stopped reading: request cancelled");
      res.destroy();
    }
  };
  try {
    for await (const chunk of streamChunks(ctx, run)) {
      if (gone) break;
      await write(`data: ${JSON.stringify(chunk)}\n\n`);
    }
    if (!gone) await write("data: [DONE]\n\n");
    logFinished(ctx, request, run, await run.summary.catch(() => undefined), gone ? "client closed" : "ok");
  } catch (err) {
    if (!gone) res.write(`data: ${JSON.stringify(ApiError.from(err).body())}\n\ndata: [DONE]\n\n`);
    request.log.error({ err }, "stream failed");
  } finally {
    res.end();
  }
}

async function handle(ctx: ServingContext, request: FastifyRequest, reply: FastifyReply, prepared: Prepared, requestIdHeaders: boolean) {
  const given = request.headers["x-request-id"];
  const run = await GenerationRun.start(ctx, prepared, request.id, requestIdHeaders && typeof given === "string" && given.length > 0 ? given : undefined);
  if (prepared.stream) return sendSse(ctx, request, reply, run);
  const onClose = () => {
    if (!reply.raw.writableEnded) run.abort();
  };
  reply.raw.on("close", onClose);
  try {
    const { body, summary } = await collectResponse(ctx, run);
    logFinished(ctx, request, run, summary, "ok");
    return body;
  } finally {
    reply.raw.off("close", onClose);
  }
}

export function registerGenerationRoutes(app: FastifyInstance, ctx: ServingContext, requestIdHeaders: boolean): void {
  app.post("/v1/completions", async (request, reply) => handle(ctx, request, reply, await prepareCompletion(ctx, request.body), requestIdHeaders));
  app.post("/v1/chat/completions", async (request, reply) => handle(ctx, request, reply, await prepareChat(ctx, request.body), requestIdHeaders));
}
