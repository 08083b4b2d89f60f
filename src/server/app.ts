// buildApp(): the Fastify app with every route. It never listens; main does.
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";

import cors from "@fastify/cors";
import websocket from "@fastify/websocket";
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance } from "fastify";

import type { ServingContext } from "./context.js";
import { ApiError } from "./errors.js";
import { registerGenerationRoutes } from "./routes/generation.js";
import { registerInfoRoutes } from "./routes/info.js";
import { registerResponsesRoute } from "./routes/responses.js";
import { registerStreamRoute } from "./routes/stream.js";
import { registerTokenizeRoutes } from "./routes/tokenize.js";

/** CORS as vLLM's flags set it: origins, methods and headers ("*": any), credentials. */
export interface CorsOptions {
  origins: string[];
  methods: string[];
  headers: string[];
  credentials: boolean;
}

export interface AppOptions {
  ctx: ServingContext;
  logger: FastifyBaseLogger;
  /** When set, /v1/*, /tokenize and /detokenize need "Authorization: Bearer <apiKey>" (or "x-api-key"). */
  apiKey?: string;
  cors?: CorsOptions;
  /** Request bodies larger than this are refused with 413 while they stream in. */
  bodyLimit?: number;
  /** A request (headers and body) must arrive within this many milliseconds (slow bodies get 408). */
  requestTimeoutMs?: number;
  /** vLLM's --enable-request-id-headers: a client's X-Request-Id becomes the response's id. */
  requestIdHeaders?: boolean;
}

export const DEFAULT_CORS: CorsOptions = { origins: ["*"], methods: ["*"], headers: ["*"], credentials: false };
const OPEN_PATHS = new Set(["/health", "/metrics", "/ping", "/version"]);

function authorized(headers: Record<string, string | string[] | undefined>, query: unknown, key: string, allowQuery: boolean): boolean {
  const auth = headers.authorization;
  if (typeof auth === "string") {
    const m = /^bearer\s+(.+)$/i.exec(auth.trim());
    if (m && m[1] === key) return true;
  }
  if (headers["x-api-key"] === key) return true;
  return allowQuery && typeof query === "object" && query !== null && (query as Record<string, unknown>).api_key === key;
}

/** Whether a browser page from `origin` may call the API (also checked on WebSocket upgrades). */
export function originAllowed(c: CorsOptions, origin: string | undefined): boolean {
  return origin === undefined || c.origins.includes("*") || c.origins.includes(origin);
}

// Fastify's own error codes stay in our logs; clients get OpenAI-style codes.
function publicCode(error: FastifyError): string | null {
  if (error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error instanceof SyntaxError) return "invalid_json";
  if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") return "request_too_large";
  if (error.code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") return "unsupported_media_type";
  if (error.code === "FST_ERR_CTP_EMPTY_JSON_BODY") return "empty_body";
  return error.code?.startsWith("FST_") ? null : (error.code ?? null);
}

function publicMessage(error: FastifyError, limit: number): string {
  if (error.code === "FST_ERR_CTP_INVALID_JSON_BODY" || error instanceof SyntaxError) return `invalid JSON in the request body: ${error.message}`;
  if (error.code === "FST_ERR_CTP_BODY_TOO_LARGE") return `the request body is larger than ${limit} bytes (--max-request-bytes)`;
  return error.message;
}

// A raw HTTP error in OpenAI's shape, for requests the HTTP parser refuses before Fastify sees them.
function rawError(status: number, message: string): string {
  const body = JSON.stringify(new ApiError(status, message, "invalid_request_error", null, "bad_http_request").body());
  return `HTTP/1.1 ${status} ${status === 431 ? "Request Header Fields Too Large" : status === 408 ? "Request Timeout" : "Bad Request"}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`;
}

export async function buildApp(opts: AppOptions): Promise<FastifyInstance> {
  const corsOptions = opts.cors ?? DEFAULT_CORS;
  const bodyLimit = opts.bodyLimit ?? 16 * 1024 * 1024;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 60_000;
  const app = Fastify({
    loggerInstance: opts.logger,
    // One line per finished generation request instead (routes/generation.ts).
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    // Node checks request deadlines only every connectionsCheckingInterval (30 s by default).
    serverFactory: (handler) => createServer({ requestTimeout: requestTimeoutMs, headersTimeout: requestTimeoutMs, connectionsCheckingInterval: Math.min(1000, requestTimeoutMs) }, handler),
    requestIdHeader: false,
    genReqId: (req) => {
      const given = req.headers["x-request-id"];
      return typeof given === "string" && given.length > 0 && given.length <= 256 ? given : randomUUID();
    },
    clientErrorHandler: (err: NodeJS.ErrnoException & { code?: string }, socket) => {
      if (!socket.writable) return socket.destroy();
      const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
      socket.end(rawError(status, status === 431 ? "the request headers are too large" : status === 408 ? "the request took too long to arrive" : `malformed HTTP request: ${err.message}`));
    },
  });
  await app.register(cors, {
    // Any origin: "*", or the request's own origin echoed back when credentials are allowed (browsers refuse "*" then).
    origin: corsOptions.origins.includes("*") ? (corsOptions.credentials ? true : "*") : corsOptions.origins,
    methods: corsOptions.methods.includes("*") ? ["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS"] : corsOptions.methods,
    // "*": echo what the preflight asks for (a literal * is not honoured with credentials).
    ...(corsOptions.headers.includes("*") ? {} : { allowedHeaders: corsOptions.headers }),
    credentials: corsOptions.credentials,
    exposedHeaders: ["x-request-id"],
    maxAge: 600,
  });
  await app.register(websocket, {
    options: {
      maxPayload: bodyLimit,
      verifyClient: (info: { origin?: string }) => originAllowed(corsOptions, info.origin || undefined),
    },
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    const path = request.url.split("?")[0]!;
    if (request.method === "OPTIONS") return;  // preflights carry no credentials
    if (opts.ctx.draining && !OPEN_PATHS.has(path)) {
      reply.header("retry-after", "5");
      return reply.code(503).send(new ApiError(503, "the server is shutting down", "service_unavailable", null, "server_shutdown").body());
    }
    if (!opts.apiKey || OPEN_PATHS.has(path)) return;
    if (!authorized(request.headers, request.query, opts.apiKey, path === "/v1/stream")) {
      const err = new ApiError(401, "Incorrect API key provided.", "authentication_error", null, "invalid_api_key");
      return reply.code(401).send(err.body());
    }
  });

  app.setErrorHandler((error: FastifyError | ApiError, request, reply) => {
    if (error instanceof ApiError) {
      if (error.status === 429 || error.status === 503) reply.header("retry-after", "1");
      return reply.code(error.status).send(error.body());
    }
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error({ err: error }, "internal error");
    // A body over the limit is refused by its Content-Length before it is read; closing the
    // connection stops the rest of the upload from arriving at all.
    if (status === 413) reply.header("connection", "close");
    const type = status === 500 ? "server_error" : "invalid_request_error";
    return reply.code(status).send(new ApiError(status, status === 500 ? "internal server error" : publicMessage(error, bodyLimit), type, null, publicCode(error)).body());
  });

  app.setNotFoundHandler((request, reply) => {
    reply.code(404).send(new ApiError(404, `no route for ${request.method} ${request.url.split("?")[0]}`, "not_found_error").body());
  });

  registerInfoRoutes(app, opts.ctx);
  registerGenerationRoutes(app, opts.ctx, opts.requestIdHeaders ?? false);
  registerResponsesRoute(app, opts.ctx);
  registerTokenizeRoutes(app, opts.ctx);
  registerStreamRoute(app, opts.ctx);
  return app;
}
