// Request bodies -> engine requests: prompts tokenized (chat template applied), sampling resolved,
// lengths checked against the context.
import { resolveSampling, type SamplingOptions } from "../engine/sampling.js";
import type { ChatMessage } from "../tokenizer/chat_template.js";
import type { ServingContext } from "./context.js";
import { ApiError, badRequest, modelNotFound } from "./errors.js";
import { MAX_SEQUENCES_PER_REQUEST } from "./generation.js";
import { TextWorkBusy } from "../tokenizer/pool.js";
import { asObject, optBool, optInt, optIntArray, optNumber, optStop, optString, rejectUnsupported, type Body } from "./validate.js";

export interface PreparedPrompt {
  ids: number[];
  /** The prompt as text (for echo and --log-prompts); undefined for token-id prompts without a tokenizer. */
  text: string | undefined;
}

export interface Prepared {
  kind: "completion" | "chat";
  model: string;
  prompts: PreparedPrompt[];
  /** One per prompt (max_tokens may differ by prompt length). */
  sampling: SamplingOptions[];
  stream: boolean;
  includeUsage: boolean;
  echo: boolean;
  /** Top log-probs per token to return; null: none. */
  logprobs: number | null;
  /** Score the prompt tokens, with this many alternatives each (echo + logprobs, vLLM's prompt_logprobs); null: no. */
  promptLogprobs: number | null;
  /** vLLM's prompt_logprobs was asked for (its own field in the response). */
  vllmPromptLogprobs: boolean;
}

/** The served name a body's optional `model` selects; 404 for a name this server does not serve. */
export function resolveModel(ctx: ServingContext, body: Body): string {
  const model = optString(body, "model");
  if (model !== undefined && !ctx.modelNames.includes(model)) throw modelNotFound(model);
  return ctx.modelNames[0]!;
}

function samplingFrom(body: Body): Partial<SamplingOptions> {
  return {
    n: optInt(body, "n", 1, 128),
    temperature: optNumber(body, "temperature", 0),
    topP: optNumber(body, "top_p"),
    topK: optInt(body, "top_k"),
    minP: optNumber(body, "min_p"),
    presencePenalty: optNumber(body, "presence_penalty"),
    frequencyPenalty: optNumber(body, "frequency_penalty"),
    repetitionPenalty: optNumber(body, "repetition_penalty"),
    seed: optInt(body, "seed", 0),
    stop: optStop(body),
    stopTokenIds: optIntArray(body, "stop_token_ids"),
    ignoreEos: optBool(body, "ignore_eos"),
  };
}

function finishSampling(partial: Partial<SamplingOptions>, ctx: ServingContext, promptLen: number, maxTokens: number | undefined, defaultMax: number | undefined,
                        promptParam: "prompt" | "messages" = "prompt"): SamplingOptions {
  const room = ctx.maxModelLen - promptLen;
  if (room <= 0) {
    throw badRequest(`This model's maximum context length is ${ctx.maxModelLen} tokens, but the prompt has ${promptLen} tokens. Please reduce the prompt.`,
      promptParam, "context_length_exceeded");
  }
  if (maxTokens !== undefined && maxTokens > room) {
    throw badRequest(
      `This model's maximum context length is ${ctx.maxModelLen} tokens. However, you requested ${promptLen + maxTokens} tokens ` +
        `(${promptLen} in the prompt, ${maxTokens} for the completion). Please reduce the prompt or max_tokens.`, "max_tokens", "context_length_exceeded");
  }
  // Ranges are checked by the engine (LLMEngine.generate), which every caller goes through
  // (max_tokens 0, prompt scoring only, never reaches it).
  return resolveSampling({ ...partial, maxTokens: maxTokens ?? Math.min(defaultMax ?? room, room) }, ctx.generationDefaults);
}

function streamOptions(body: Body, stream: boolean): boolean {
  const so = body.stream_options;
  if (so === undefined || so === null) return false;
  const o = asObject(so, "stream_options");
  if (!stream) throw badRequest("stream_options is only allowed when stream is true", "stream_options");
  return optBool(o, "include_usage") ?? false;
}

function isTokenIds(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === "number");
}

/**
 * Refuses, before tokenizing, a text too long for the context whatever its tokens: a token covers at
 * most tokenizer.maxTokenBytes bytes (twice that, for normalizers that shorten text).
 */
export function checkTextFits(ctx: ServingContext, bytes: number, param: "prompt" | "messages"): void {
  const tok = ctx.text?.tokenizer;
  if (!tok) return;
  const atLeast = Math.floor(bytes / (2 * tok.maxTokenBytes));
  if (atLeast >= ctx.maxModelLen) {
    throw badRequest(`This model's maximum context length is ${ctx.maxModelLen} tokens, but the ${param === "prompt" ? "prompt" : "messages"} ` +
      `(${bytes} bytes) would have at least ${atLeast} tokens. Please reduce the ${param === "prompt" ? "prompt" : "messages"}.`, param, "context_length_exceeded");
  }
}

async function completionPrompts(ctx: ServingContext, body: Body): Promise<PreparedPrompt[]> {
  const p = body.prompt;
  const list: (string | number[])[] =
    typeof p === "string" ? [p] : isTokenIds(p) ? [p] : Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === "string" || isTokenIds(x)) ? (p as (string | number[])[]) : [];
  if (list.length === 0) throw badRequest("prompt must be a string, an array of strings, or (arrays of) token ids", "prompt");
  if (list.length > MAX_SEQUENCES_PER_REQUEST) throw badRequest(`at most ${MAX_SEQUENCES_PER_REQUEST} prompts per request, got ${list.length}`, "prompt");
  for (const item of list) {
    if (typeof item === "string") checkTextFits(ctx, Buffer.byteLength(item, "utf8"), "prompt");
    else if (item.length >= ctx.maxModelLen) {
      throw badRequest(`This model's maximum context length is ${ctx.maxModelLen} tokens, but the prompt has ${item.length} tokens. Please reduce the prompt.`, "prompt", "context_length_exceeded");
    }
  }
  return Promise.all(list.map(async (item) => {
    if (typeof item === "string") {
      if (!ctx.text) throw badRequest("this model has no tokenizer: send the prompt as token ids", "prompt");
      return { ids: await ctx.text.encode(item), text: item };
    }
    if (item.some((t) => !Number.isInteger(t) || t < 0)) throw badRequest("prompt token ids must be non-negative integers", "prompt");
    return { ids: item, text: ctx.text ? await ctx.text.decode(item, false) : undefined };
  }));
}

/** POST /v1/completions body -> Prepared. */
export async function prepareCompletion(ctx: ServingContext, raw: unknown): Promise<Prepared> {
  const body = asObject(raw);
  const model = resolveModel(ctx, body);
  rejectUnsupported(body, {
    suffix: (v) => v === "",
    logit_bias: (v) => typeof v === "object" && Object.keys(v as object).length === 0,
    response_format: (v) => typeof v === "object" && (v as Body).type === "text",
  });
  const n = optInt(body, "n", 1, 128) ?? 1;
  const bestOf = optInt(body, "best_of", 1);
  if (bestOf !== undefined && bestOf !== n) throw badRequest("best_of other than n is not supported", "best_of", "unsupported_parameter");
  const stream = optBool(body, "stream") ?? false;
  const includeUsage = streamOptions(body, stream);
  const echo = optBool(body, "echo") ?? false;
  const logprobs = optInt(body, "logprobs", 0, 20) ?? null;
  // max_tokens 0 scores the prompt only: with echo (lm-eval's loglikelihood requests).
  const maxTokens = optInt(body, "max_tokens", echo ? 0 : 1);
  const vllmPrompt = optInt(body, "prompt_logprobs", 0, 20);
  optString(body, "user");
  const prompts = await completionPrompts(ctx, body);
  const partial = samplingFrom(body);
  const sampling = prompts.map((p) => finishSampling({ ...partial, logprobs }, ctx, p.ids.length, maxTokens, 16));
  const promptLogprobs = vllmPrompt ?? (echo && logprobs !== null ? logprobs : null);
  return { kind: "completion", model, prompts, sampling, stream, includeUsage, echo, logprobs, promptLogprobs, vllmPromptLogprobs: vllmPrompt !== undefined };
}

function messageText(content: unknown, index: number): string | null {
  if (content === null || content === undefined) return null;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content
      .map((part, j) => {
        const o = asObject(part, `messages[${index}].content[${j}]`);
        if (o.type !== "text" || typeof o.text !== "string") {
          throw badRequest(`messages[${index}].content[${j}]: only text parts are supported, got type ${JSON.stringify(o.type)}`, "messages");
        }
        return o.text;
      })
      .join("");
  }
  throw badRequest(`messages[${index}].content must be a string or an array of text parts`, "messages");
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);

function chatMessages(raw: unknown): ChatMessage[] {
  if (!Array.isArray(raw) || raw.length === 0) throw badRequest("messages must be a non-empty array", "messages");
  return raw.map((m, i) => {
    const o = asObject(m, `messages[${i}]`);
    if (typeof o.role !== "string" || !ROLES.has(o.role)) {
      throw badRequest(`messages[${i}].role must be one of system, developer, user, assistant, tool; got ${JSON.stringify(o.role)}`, "messages");
    }
    const msg: ChatMessage = { role: o.role === "developer" ? "system" : o.role, content: messageText(o.content, i) };
    if (typeof o.name === "string") msg.name = o.name;
    if (Array.isArray(o.tool_calls)) msg.tool_calls = o.tool_calls;
    if (typeof o.tool_call_id === "string") msg.tool_call_id = o.tool_call_id;
    return msg;
  });
}

/** The chat prompt's token ids: messages (and tools) through the chat template. */
export async function chatPromptIds(ctx: ServingContext, body: Body): Promise<{ ids: number[]; text: string }> {
  if (!ctx.text || !ctx.chatTemplate) throw badRequest("this model has no tokenizer, so it cannot chat: use /v1/completions with token ids", "messages");
  const tools = body.tools;
  if (tools !== undefined && tools !== null && !Array.isArray(tools)) throw badRequest("tools must be an array", "tools");
  const messages = chatMessages(body.messages);
  checkTextFits(ctx, messages.reduce((n, m) => n + Buffer.byteLength(m.content ?? "", "utf8"), 0), "messages");
  const addGenerationPrompt = optBool(body, "add_generation_prompt") ?? true;
  const tok = ctx.text.tokenizer;
  let result: { ids: number[]; text: string };
  try {
    result = await ctx.text.chat(messages, {
      bosToken: tok.bosToken, eosToken: tok.eosToken, addGenerationPrompt,
      tools: Array.isArray(tools) && tools.length > 0 ? tools : undefined,
    });
  } catch (err) {
    if (err instanceof TextWorkBusy) throw new ApiError(503, err.message, "service_unavailable", null, "tokenizer_busy");
    throw badRequest(`the chat template failed on these messages: ${(err as Error).message}`, "messages");
  }
  if (result.ids.length === 0) throw badRequest("the rendered chat prompt is empty", "messages");
  return result;
}

/** POST /v1/chat/completions body -> Prepared. */
export async function prepareChat(ctx: ServingContext, raw: unknown): Promise<Prepared> {
  const body = asObject(raw);
  const model = resolveModel(ctx, body);
  rejectUnsupported(body, {
    logit_bias: (v) => typeof v === "object" && Object.keys(v as object).length === 0,
    response_format: (v) => typeof v === "object" && (v as Body).type === "text",
    tool_choice: (v) => v === "none" || v === "auto",
    parallel_tool_calls: () => true,
  });
  const stream = optBool(body, "stream") ?? false;
  const includeUsage = streamOptions(body, stream);
  const wantLogprobs = optBool(body, "logprobs") ?? false;
  const top = optInt(body, "top_logprobs", 0, 20);
  if (top !== undefined && !wantLogprobs) throw badRequest("top_logprobs requires logprobs to be true", "top_logprobs");
  const maxTokens = optInt(body, "max_completion_tokens", 1) ?? optInt(body, "max_tokens", 1);
  const vllmPrompt = optInt(body, "prompt_logprobs", 0, 20);
  optString(body, "user");
  const prompt = await chatPromptIds(ctx, body);
  const logprobs = wantLogprobs ? (top ?? 0) : null;
  const sampling = finishSampling({ ...samplingFrom(body), logprobs }, ctx, prompt.ids.length, maxTokens, undefined, "messages");
  return { kind: "chat", model, prompts: [prompt], sampling: [sampling], stream, includeUsage, echo: false, logprobs,
    promptLogprobs: vllmPrompt ?? null, vllmPromptLogprobs: vllmPrompt !== undefined };
}
