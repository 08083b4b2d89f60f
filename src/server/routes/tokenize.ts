// POST /tokenize and /detokenize (vLLM's extension endpoints).
import type { FastifyInstance } from "fastify";

import type { ServingContext } from "../context.js";
import { badRequest } from "../errors.js";
import { chatPromptIds, checkTextFits, resolveModel } from "../prepare.js";
import { asObject, optBool, optString } from "../validate.js";

export function registerTokenizeRoutes(app: FastifyInstance, ctx: ServingContext): void {
  app.post("/tokenize", async (request) => {
    const body = asObject(request.body);
    resolveModel(ctx, body);
    if (!ctx.tokenizer) throw badRequest("this model has no tokenizer");
    let tokens: number[];
    if (body.messages !== undefined) {
      tokens = (await chatPromptIds(ctx, body)).ids;
    } else {
      const prompt = optString(body, "prompt");
      if (prompt === undefined) throw badRequest("prompt (a string) or messages is required", "prompt");
      checkTextFits(ctx, Buffer.byteLength(prompt, "utf8"), "prompt");
      tokens = await ctx.text!.encode(prompt, optBool(body, "add_special_tokens") ?? true);
    }
    return { tokens, count: tokens.length, max_model_len: ctx.maxModelLen };
  });

  app.post("/detokenize", async (request) => {
    const body = asObject(request.body);
    resolveModel(ctx, body);
    if (!ctx.tokenizer) throw badRequest("this model has no tokenizer");
    const tokens = body.tokens;
    const vocab = ctx.engine.native.config().vocabSize;
    if (!Array.isArray(tokens) || tokens.some((t) => !Number.isInteger(t) || t < 0)) throw badRequest("tokens must be an array of token ids", "tokens");
    const outside = (tokens as number[]).find((t) => t >= vocab);
    if (outside !== undefined) throw badRequest(`token id ${outside} is outside the vocabulary [0, ${vocab})`, "tokens");
    return { prompt: tokens.length === 0 ? "" : await ctx.text!.decode(tokens as number[], false) };
  });
}
