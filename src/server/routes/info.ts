// GET /health, /ping, /version, /metrics, /v1/models, /v1/models/:model.
import type { FastifyInstance, FastifyReply } from "fastify";

import { packageVersion } from "../../paths.js";
import type { ServingContext } from "../context.js";
import { modelNotFound } from "../errors.js";

export function registerInfoRoutes(app: FastifyInstance, ctx: ServingContext): void {
  const created = Math.floor(Date.now() / 1000);

  const version = packageVersion();
  const health = async (_req: unknown, reply: FastifyReply) => {
    if (ctx.draining) return reply.code(503).send({ status: "draining" });
    return { status: "ok" };
  };
  app.get("/health", health);
  app.get("/ping", health);
  app.get("/version", async () => ({ version }));

  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });

  const card = (id: string) => ({ id, object: "model", created, owned_by: "mla-serve", root: ctx.modelRoot, parent: null, max_model_len: ctx.maxModelLen });
  app.get("/v1/models", async () => ({ object: "list", data: ctx.modelNames.map(card) }));
  app.get<{ Params: { model: string } }>("/v1/models/:model", async (request) => {
    const id = request.params.model;
    if (!ctx.modelNames.includes(id)) throw modelNotFound(id);
    return card(id);
  });
}
