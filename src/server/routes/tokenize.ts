// POST /tokenize and /detokenize (vLLM's extension endpoints).
import type { FastifyInstance } from "fastify";

import type { ServingContext } from "../context.js";
import { badRequest } from "../errors.js";
import { chatPromptIds, resolveModel } from "../prepare.js";
import { asObject, optBool, optString } from "../validate.js";

export function registerTokenizeRoutes(app: FastifyInstance, ctx: ServingContext): void {
  app.post("/tokenize", async (request) => {
    const body = asObject(request.body);
    resolveModel(ctx, body);
    if (!ctx.tokenizer) throw badRequest("this model has no tokenizer");
    let tokens: number[];
    if (body.messages !== undefined) {
      tokens = chatPromptIds(ctx, body).ids;
    } else {
      const prompt = optString(body, "prompt");
      if (prompt === undefined) throw badRequest("prompt (a string) or messages is required", "prompt");
      tokens = ctx.tokenizer.encode(prompt, optBool(body, "add_special_tokens") ?? true);
    }
    return { tokens, count: tokens.length, max_model_len: ctx.maxModelLen };
  });

  app.post("/detokenize", async (request) => {
    const body = asObject(request.body);
    resolveModel(ctx, body);
    if (!ctx.tokenizer) throw badRequest("this model has no tokenizer");
    const tokens = body.tokens;
    if (!Array.isArray(tokens) || tokens.some((t) => !Number.isInteger(t) || t < 0)) throw badRequest("tokens must be an array of token ids", "tokens");
    return { prompt: ctx.tokenizer.decode(tokens as number[], false) };
  });
}
