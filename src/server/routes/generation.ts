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

async function sendSse(ctx: ServingContext, request: FastifyRequest, reply: FastifyReply, run: GenerationRun): Promise<void> {
  const res = reply.raw;
  reply.hijack();
  res.writeHead(200, {
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
  try {
    for await (const chunk of streamChunks(ctx, run)) {
      if (gone) break;
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
    }
    if (!gone) res.write("data: [DONE]\n\n");
    logFinished(ctx, request, run, await run.summary.catch(() => undefined), gone ? "client closed" : "ok");
  } catch (err) {
    if (!gone) res.write(`data: ${JSON.stringify(ApiError.from(err).body())}\n\ndata: [DONE]\n\n`);
    request.log.error({ err }, "stream failed");
  } finally {
    res.end();
  }
}

async function handle(ctx: ServingContext, request: FastifyRequest, reply: FastifyReply, prepared: Prepared) {
  const run = new GenerationRun(ctx, prepared, request.id);
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

export function registerGenerationRoutes(app: FastifyInstance, ctx: ServingContext): void {
  app.post("/v1/completions", (request, reply) => handle(ctx, request, reply, prepareCompletion(ctx, request.body)));
  app.post("/v1/chat/completions", (request, reply) => handle(ctx, request, reply, prepareChat(ctx, request.body)));
}
