// GET /health, /metrics, /v1/models.
import type { FastifyInstance } from "fastify";

import type { ServingContext } from "../context.js";

export function registerInfoRoutes(app: FastifyInstance, ctx: ServingContext): void {
  const created = Math.floor(Date.now() / 1000);

  app.get("/health", async (_req, reply) => {
    if (ctx.draining) return reply.code(503).send({ status: "draining" });
    return { status: "ok" };
  });

  app.get("/metrics", async (_req, reply) => {
    reply.header("content-type", ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });

  app.get("/v1/models", async () => ({
    object: "list",
    data: ctx.modelNames.map((id) => ({
      id, object: "model", created, owned_by: "mla-serve", root: ctx.modelRoot, parent: null, max_model_len: ctx.maxModelLen,
    })),
  }));
}
