// buildApp(): the Fastify app with every route. It never listens; main does.
import { randomUUID } from "node:crypto";

import websocket from "@fastify/websocket";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from "fastify";

import type { ServingContext } from "./context.js";
import { ApiError } from "./errors.js";
import { registerGenerationRoutes } from "./routes/generation.js";
import { registerInfoRoutes } from "./routes/info.js";
import { registerStreamRoute } from "./routes/stream.js";
import { registerTokenizeRoutes } from "./routes/tokenize.js";

export interface AppOptions {
  ctx: ServingContext;
  logger: FastifyBaseLogger;
  /** When set, /v1/*, /tokenize and /detokenize need "Authorization: Bearer <apiKey>". */
  apiKey?: string;
}

const OPEN_PATHS = new Set(["/health", "/metrics", "/ping", "/version"]);

function authorized(header: string | undefined, query: unknown, key: string, allowQuery: boolean): boolean {
  if (header === `Bearer ${key}`) return true;
  return allowQuery && typeof query === "object" && query !== null && (query as Record<string, unknown>).api_key === key;
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger,
    // One line per finished generation request instead (routes/generation.ts).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024 * 1024,
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && given.length > 0 && given.length <= 256 ? given : randomUUID();
    },
  });
  await app.register(websocket, { options: { maxPayload: 64 * 1024 * 1024 } });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    const path = request.url.split("?")[0]!;
    if (!opts.apiKey || OPEN_PATHS.has(path)) return;
    if (!authorized(request.headers.authorization, request.query, opts.apiKey, path === "/v1/stream")) {
      const err = new ApiError(401, "Incorrect API key provided.", "authentication_error", null, "invalid_api_key");
      return reply.code(401).send(err.body());
    }
  });

  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      if (error.status === 429) reply.header("retry-after", "1");
      return reply.code(error.status).send(error.body());
    }
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error }, "internal error");
    const message = error.code === "FST_ERR_CTP_INVALID_JSON" || error instanceof SyntaxError ? `invalid JSON in the request body: ${error.message}` : error.message;
    const type = status === 500 ? "server_error" : "invalid_request_error";
    return reply.code(status).send(new ApiError(status, status === 500 ? "internal server error" : message, type, null, error.code ?? null).body());
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(new ApiError(404, `no route for ${request.method} ${request.url.split("?")[0]}`, "not_found_error").body());
  });

  registerInfoRoutes(app, opts.ctx);
  registerGenerationRoutes(app, opts.ctx);
  registerTokenizeRoutes(app, opts.ctx);
  registerStreamRoute(app, opts.ctx);
  return app;
}
