// GET /v1/stream: WebSocket streaming. Many requests per socket, keyed by the client's id.
//   client -> server: {"type": "completion" | "chat", "id": "...", ...body}  |  {"type": "cancel", "id": "..."}
//   server -> client: {"type": "chunk", "id", "chunk"} ... then {"type": "done", "id", "finish_reason", "usage"}
//                     or {"type": "error", "id", "error": {...}}
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { WebSocket } from "ws";

import type { ServingContext } from "../context.js";
import { ApiError, badRequest } from "../errors.js";
import { GenerationRun } from "../generation.js";
import { prepareChat, prepareCompletion } from "../prepare.js";
import { streamChunks } from "../responses.js";
import { logFinished } from "./generation.js";

function errorBody(err: unknown): object {
  return ApiError.from(err).body().error;
}

/** Bytes a socket may hold unsent before its streams wait; a socket that stays above it for --stream-stall-timeout is closed. */
const WS_MAX_BUFFERED = 4 * 1024 * 1024;

async function run(ctx: ServingContext, request: FastifyRequest, socket: WebSocket, id: string, gen: GenerationRun, live: Map<string, GenerationRun>): Promise<void> {
  const send = async (msg: object) => {
    if (socket.readyState !== socket.OPEN) return;
    socket.send(JSON.stringify(msg));
    const until = Date.now() + ctx.streamStallMs;
    while (socket.readyState === socket.OPEN && socket.bufferedAmount > WS_MAX_BUFFERED) {
      if (Date.now() > until) {
        request.log.warn({ bufferedBytes: socket.bufferedAmount }, "WebSocket client stopped reading: closing it");
        socket.terminate();  // its close handler cancels every request of the socket
        return;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  let lastFinish: string | null = null;
  try {
    for await (const chunk of streamChunks(ctx, gen)) {
      const choices = (chunk as { choices: { finish_reason: string | null }[] }).choices;
      for (const c of choices) lastFinish = c.finish_reason ?? lastFinish;
      await send({ type: "chunk", id, chunk });
    }
    const summary = await gen.summary;
    const cancelled = summary.finishReasons.includes("abort");
    await send({ type: "done", id, finish_reason: cancelled ? "cancelled" : lastFinish, usage: summary.usage });
    logFinished(ctx, request, gen, summary, cancelled ? "cancelled" : "ok");
  } catch (err) {
    await send({ type: "error", id, error: errorBody(err) });
  } finally {
    live.delete(id);
  }
}

export function registerStreamRoute(app: FastifyInstance, ctx: ServingContext): void {
  app.get("/v1/stream", { websocket: true }, (socket: WebSocket, request: FastifyRequest) => {
    const live = new Map<string, GenerationRun>();
    // Requests still being prepared (tokenized, grammar compiled), and whether a cancel came for them.
    const starting = new Map<string, boolean>();
    socket.on("message", async (data, isBinary) => {
      let id: string | null = null;
      let cancelled = false;
      try {
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(isBinary ? Buffer.from(data as Buffer).toString("utf8") : data.toString()) as Record<string, unknown>;
        } catch (err) {
          throw badRequest(`invalid JSON message: ${(err as Error).message}`);
        }
        if (typeof msg !== "object" || msg === null || Array.isArray(msg)) throw badRequest("a message must be a JSON object");
        if (typeof msg.id !== "string" || msg.id.length === 0) throw badRequest("id must be a non-empty string", "id");
        id = msg.id;
        const { type, id: _id, ...body } = msg;
        if (type === "cancel") {
          live.get(id)?.abort();
          if (starting.has(id)) starting.set(id, true);
          return;
        }
        if (type !== "completion" && type !== "chat") throw badRequest(`type must be "completion", "chat" or "cancel", got ${JSON.stringify(type)}`, "type");
        if (live.has(id) || starting.has(id)) throw badRequest(`request ${id} is already running on this socket`, "id");
        // The body as the HTTP route takes it; the socket streams whatever `stream` says.
        const { stream: _stream, stream_options: streamOptions, ...rest } = body as Record<string, unknown>;
        const so = typeof streamOptions === "object" && streamOptions !== null ? streamOptions as Record<string, unknown> : {};
        starting.set(id, false);
        let gen: GenerationRun;
        try {
          const prepared = type === "chat" ? await prepareChat(ctx, rest) : await prepareCompletion(ctx, rest);
          gen = await GenerationRun.start(ctx, { ...prepared, stream: true, includeUsage: so.include_usage === true, continuousUsage: so.continuous_usage_stats === true }, `${request.id}-${id}`);
        } finally {
          cancelled = starting.get(id) === true;
          starting.delete(id);
        }
        live.set(id, gen);
        if (cancelled || socket.readyState !== socket.OPEN) gen.abort();
        void run(ctx, request, socket, id, gen, live);
      } catch (err) {
        if (socket.readyState === socket.OPEN) socket.send(JSON.stringify({ type: "error", id, error: errorBody(err) }));
      }
    });
    socket.on("close", () => {
      for (const gen of live.values()) gen.abort();
    });
  });
}
