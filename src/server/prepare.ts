// Request bodies -> engine requests: prompts tokenized (chat template applied), sampling resolved,
// lengths checked against the context.
import { GrammarError, type GrammarEngine } from "../engine/grammar.js";
import type { ProcessorOptions } from "../engine/processors.js";
import { resolveSampling, type SamplingOptions } from "../engine/sampling.js";
import type { ChatMessage } from "../tokenizer/chat_template.js";
import type { ServingContext } from "./context.js";
import { ApiError, badRequest, modelNotFound } from "./errors.js";
import { MAX_SEQUENCES_PER_REQUEST } from "./generation.js";
import { TextWorkBusy } from "../tokenizer/pool.js";
import { grammarRequestFrom, processorsFrom, type GrammarRequest } from "./structured.js";
import { toolGrammar, toolPlanFrom, type ToolPlan } from "./tools.js";
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
  /** The grammar every choice follows (a matcher each); null: unconstrained. */
  grammar: CompiledGrammar | null;
  /** The chat request's tools; null: none. */
  tools: ToolPlan | null;
  /** stream_options.continuous_usage_stats: every chunk carries the usage so far. */
  continuousUsage: boolean;
  /** vLLM's return_tokens_as_token_ids: log-prob tokens as "token_id:N". */
  tokensAsIds: boolean;
}

export interface CompiledGrammar {
  engine: GrammarEngine;
  compiled: unknown;
}

/** Fields vLLM or OpenAI define that this server does not implement, refused unless set to their no-op value. */
const UNSUPPORTED: Record<string, (v: unknown) => boolean> = {
  use_beam_search: (v) => v === false,
  length_penalty: (v) => v === 1,
  logits_processors: (v) => Array.isArray(v) && v.length === 0,
  documents: (v) => Array.isArray(v) && v.length === 0,
  priority: (v) => v === 0,
  functions: (v) => Array.isArray(v) && v.length === 0,
  function_call: (v) => v === "none",
  audio: () => false,
  modalities: (v) => Array.isArray(v) && v.every((m) => m === "text"),
  prediction: () => false,
  return_token_ids: (v) => v === false,
  kv_transfer_params: () => false,
  vllm_xargs: () => false,
  mm_processor_kwargs: () => false,
};

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
    includeStopStr: optBool(body, "include_stop_str_in_output"),
    skipSpecialTokens: optBool(body, "skip_special_tokens"),
    spacesBetweenSpecialTokens: optBool(body, "spaces_between_special_tokens"),
  };
}

/** The request's grammar compiled (the same spec compiles once); a 400 naming its field if xgrammar refuses it. */
async function compileGrammar(ctx: ServingContext, g: GrammarRequest | null): Promise<CompiledGrammar | null> {
  if (!g) return null;
  if (!ctx.grammar) throw badRequest(`${g.param} needs a tokenizer, which this model lacks`, g.param);
  const engine = await ctx.grammar();
  try {
    return { engine, compiled: await engine.compile(g.spec) };
  } catch (err) {
    if (err instanceof GrammarError) throw badRequest(`invalid ${g.param}: ${err.message}`, g.param, "invalid_grammar");
    throw err;
  }
}

/** vLLM's truncate_prompt_tokens: keep the prompt's last k tokens (-1: as many as the context holds). */
function truncate(ids: number[], k: number | undefined, maxModelLen: number): number[] {
  if (k === undefined) return ids;
  const keep = k === -1 ? maxModelLen - 1 : k;
  return ids.length > keep ? ids.slice(ids.length - keep) : ids;
}

function truncateParam(body: Body, maxModelLen: number): number | undefined {
  const k = optInt(body, "truncate_prompt_tokens", -1);
  if (k === 0 || (k !== undefined && k > maxModelLen)) throw badRequest(`truncate_prompt_tokens must be -1 or in [1, ${maxModelLen}], got ${k}`, "truncate_prompt_tokens");
  return k;
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

function streamOptions(body: Body, stream: boolean): { includeUsage: boolean; continuousUsage: boolean } {
  const so = body.stream_options;
  if (so === undefined || so === null) return { includeUsage: false, continuousUsage: false };
  const o = asObject(so, "stream_options");
  if (!stream) throw badRequest("stream_options is only allowed when stream is true", "stream_options");
  return { includeUsage: optBool(o, "include_usage") ?? false, continuousUsage: optBool(o, "continuous_usage_stats") ?? false };
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

async function completionPrompts(ctx: ServingContext, body: Body, addSpecialTokens: boolean, keep: number | undefined): Promise<PreparedPrompt[]> {
  const p = body.prompt;
  const list: (string | number[])[] =
    typeof p === "string" ? [p] : isTokenIds(p) ? [p] : Array.isArray(p) && p.length > 0 && p.every((x) => typeof x === "string" || isTokenIds(x)) ? (p as (string | number[])[]) : [];
  if (list.length === 0) throw badRequest("prompt must be a string, an array of strings, or (arrays of) token ids", "prompt");
  if (list.length > MAX_SEQUENCES_PER_REQUEST) throw badRequest(`at most ${MAX_SEQUENCES_PER_REQUEST} prompts per request, got ${list.length}`, "prompt");
  for (const item of list) {
    if (typeof item === "string") {
      if (keep === undefined) checkTextFits(ctx, Buffer.byteLength(item, "utf8"), "prompt");
    } else if (item.length >= ctx.maxModelLen && keep === undefined) {
      throw badRequest(`This model's maximum context length is ${ctx.maxModelLen} tokens, but the prompt has ${item.length} tokens. Please reduce the prompt.`, "prompt", "context_length_exceeded");
    }
  }
  return Promise.all(list.map(async (item) => {
    if (typeof item === "string") {
      if (!ctx.text) throw badRequest("this model has no tokenizer: send the prompt as token ids", "prompt");
      const ids = await ctx.text.encode(item, addSpecialTokens);
      const kept = truncate(ids, keep, ctx.maxModelLen);
      return { ids: kept, text: kept === ids ? item : await ctx.text.decode(kept, false) };
    }
    if (item.some((t) => !Number.isInteger(t) || t < 0)) throw badRequest("prompt token ids must be non-negative integers", "prompt");
    const kept = truncate(item, keep, ctx.maxModelLen);
    return { ids: kept, text: ctx.text ? await ctx.text.decode(kept, false) : undefined };
  }));
}

/** The logits processors and grammar both endpoints take. */
async function constraints(ctx: ServingContext, body: Body, extraGrammar: GrammarRequest | null = null): Promise<{ processors: ProcessorOptions; grammar: CompiledGrammar | null }> {
  const asked = grammarRequestFrom(body);
  if (asked && extraGrammar) throw badRequest(`${asked.param} cannot be combined with tool_choice "required" or a named function`, asked.param);
  const processors = await processorsFrom(ctx, body);
  return { processors, grammar: await compileGrammar(ctx, asked ?? extraGrammar) };
}

/** POST /v1/completions body -> Prepared. */
export async function prepareCompletion(ctx: ServingContext, raw: unknown): Promise<Prepared> {
  const body = asObject(raw);
  const model = resolveModel(ctx, body);
  rejectUnsupported(body, { suffix: (v) => v === "", ...UNSUPPORTED });
  const n = optInt(body, "n", 1, 128) ?? 1;
  const bestOf = optInt(body, "best_of", 1);
  if (bestOf !== undefined && bestOf !== n) throw badRequest("best_of other than n is not supported", "best_of", "unsupported_parameter");
  const stream = optBool(body, "stream") ?? false;
  const { includeUsage, continuousUsage } = streamOptions(body, stream);
  const echo = optBool(body, "echo") ?? false;
  const logprobs = optInt(body, "logprobs", 0, 20) ?? null;
  // max_tokens 0 scores the prompt only: with echo (lm-eval's loglikelihood requests).
  const maxTokens = optInt(body, "max_tokens", echo ? 0 : 1);
  const vllmPrompt = optInt(body, "prompt_logprobs", 0, 20);
  const tokensAsIds = optBool(body, "return_tokens_as_token_ids") ?? false;
  optString(body, "user");
  const partial = samplingFrom(body);
  const keep = truncateParam(body, ctx.maxModelLen);
  const prompts = await completionPrompts(ctx, body, optBool(body, "add_special_tokens") ?? true, keep);
  const { processors, grammar } = await constraints(ctx, body);
  const sampling = prompts.map((p) => finishSampling({ ...partial, logprobs, processors }, ctx, p.ids.length, maxTokens, 16));
  const promptLogprobs = vllmPrompt ?? (echo && logprobs !== null ? logprobs : null);
  return { kind: "completion", model, prompts, sampling, stream, includeUsage, echo, logprobs, promptLogprobs, vllmPromptLogprobs: vllmPrompt !== undefined,
    grammar, tools: null, continuousUsage, tokensAsIds };
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

/** An assistant message's tool call for the template: arguments as an object (templates write them with tojson), as vLLM passes them. */
function templateToolCall(c: unknown, i: number, j: number): unknown {
  const o = asObject(c, `messages[${i}].tool_calls[${j}]`);
  const f = asObject(o.function, `messages[${i}].tool_calls[${j}].function`);
  if (typeof f.name !== "string") throw badRequest(`messages[${i}].tool_calls[${j}].function.name must be a string`, "messages");
  let args: unknown = f.arguments ?? {};
  if (typeof args === "string") {
    try {
      args = JSON.parse(args);
    } catch {
      throw badRequest(`messages[${i}].tool_calls[${j}].function.arguments is not valid JSON`, "messages");
    }
  }
  return { ...o, function: { ...f, arguments: args } };
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
    if (Array.isArray(o.tool_calls)) msg.tool_calls = o.tool_calls.map((c, j) => templateToolCall(c, i, j));
    if (typeof o.tool_call_id === "string") msg.tool_call_id = o.tool_call_id;
    return msg;
  });
}

/** A chat template a request brings (vLLM's chat_template) is at most this long. */
const MAX_TEMPLATE_CHARS = 64 * 1024;

/** The chat prompt's token ids: messages (and tools) through the chat template. */
export async function chatPromptIds(ctx: ServingContext, body: Body): Promise<{ ids: number[]; text: string }> {
  if (!ctx.text || (!ctx.chatTemplate && body.chat_template == null)) throw badRequest("this model has no tokenizer, so it cannot chat: use /v1/completions with token ids", "messages");
  const tools = body.tools;
  if (tools !== undefined && tools !== null && !Array.isArray(tools)) throw badRequest("tools must be an array", "tools");
  const messages = chatMessages(body.messages);
  checkTextFits(ctx, messages.reduce((n, m) => n + Buffer.byteLength(m.content ?? "", "utf8"), 0), "messages");
  const continueFinal = optBool(body, "continue_final_message") ?? false;
  const addGenerationPrompt = optBool(body, "add_generation_prompt") ?? !continueFinal;
  if (continueFinal && addGenerationPrompt) throw badRequest("continue_final_message and add_generation_prompt cannot both be true", "continue_final_message");
  if (continueFinal && messages[messages.length - 1]!.role !== "assistant") throw badRequest("continue_final_message needs the last message to be the assistant's", "continue_final_message");
  const template = optString(body, "chat_template") ?? null;
  if (template !== null && template.length > MAX_TEMPLATE_CHARS) throw badRequest(`chat_template may have ${MAX_TEMPLATE_CHARS} characters at most`, "chat_template");
  const kwargs = body.chat_template_kwargs === undefined || body.chat_template_kwargs === null ? undefined : asObject(body.chat_template_kwargs, "chat_template_kwargs", "chat_template_kwargs");
  const tok = ctx.text.tokenizer;
  let result: { ids: number[]; text: string };
  try {
    result = await ctx.text.chat(messages, {
      bosToken: tok.bosToken, eosToken: tok.eosToken, addGenerationPrompt, continueFinalMessage: continueFinal, extra: kwargs,
      tools: Array.isArray(tools) && tools.length > 0 ? tools : undefined,
    }, template, optBool(body, "add_special_tokens") ?? false);
  } catch (err) {
    if (err instanceof TextWorkBusy) throw new ApiError(503, err.message, "service_unavailable", null, "tokenizer_busy");
    throw badRequest(`the chat template failed on these messages: ${(err as Error).message}`, template !== null ? "chat_template" : "messages");
  }
  if (result.ids.length === 0) throw badRequest("the rendered chat prompt is empty", "messages");
  return result;
}

/** POST /v1/chat/completions body -> Prepared. */
export async function prepareChat(ctx: ServingContext, raw: unknown): Promise<Prepared> {
  const body = asObject(raw);
  const model = resolveModel(ctx, body);
  rejectUnsupported(body, { echo: (v) => v === false, ...UNSUPPORTED });
  const stream = optBool(body, "stream") ?? false;
  const { includeUsage, continuousUsage } = streamOptions(body, stream);
  const wantLogprobs = optBool(body, "logprobs") ?? false;
  const top = optInt(body, "top_logprobs", 0, 20);
  if (top !== undefined && !wantLogprobs) throw badRequest("top_logprobs requires logprobs to be true", "top_logprobs");
  const maxTokens = optInt(body, "max_completion_tokens", 1) ?? optInt(body, "max_tokens", 1);
  const vllmPrompt = optInt(body, "prompt_logprobs", 0, 20);
  const tokensAsIds = optBool(body, "return_tokens_as_token_ids") ?? false;
  optString(body, "user");
  const tools = toolPlanFrom(body, ctx.toolParser, ctx.autoToolChoice);
  const partial = samplingFrom(body);
  const keep = truncateParam(body, ctx.maxModelLen);
  const rendered = await chatPromptIds(ctx, body);
  const ids = truncate(rendered.ids, keep, ctx.maxModelLen);
  const prompt = { ids, text: ids === rendered.ids ? rendered.text : await ctx.text!.decode(ids, false) };
  const forced = tools ? toolGrammar(tools) : null;
  const { processors, grammar } = await constraints(ctx, body, forced ? { spec: forced, param: "tools" } : null);
  const logprobs = wantLogprobs ? (top ?? 0) : null;
  const sampling = finishSampling({ ...partial, logprobs, processors }, ctx, prompt.ids.length, maxTokens, undefined, "messages");
  return { kind: "chat", model, prompts: [prompt], sampling: [sampling], stream, includeUsage, echo: false, logprobs,
    promptLogprobs: vllmPrompt ?? null, vllmPromptLogprobs: vllmPrompt !== undefined, grammar, tools, continuousUsage, tokensAsIds };
}
