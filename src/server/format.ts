// OpenAI response objects: completion and chat, streamed chunks and whole responses.
import type { TokenLogprob } from "../engine/llm_engine.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import type { ChoiceEvent, GenerationRun, Usage } from "./generation.js";

export type FinishReason = "stop" | "length" | "tool_calls" | null;

function tokenText(tokenizer: Tokenizer | null, id: number): string {
  return tokenizer ? tokenizer.tokenText(id) : `token_id:${id}`;
}

function tokenBytes(tokenizer: Tokenizer | null, id: number): number[] {
  return [...(tokenizer ? tokenizer.tokenBytes(id) : Buffer.from(tokenText(null, id), "utf8"))];
}

/** OpenAI reports only stop and length; an aborted choice has no response to carry it. */
export function finishReason(r: string | undefined): FinishReason {
  return r === "length" ? "length" : r ? "stop" : null;
}

/** Legacy completions logprobs: tokens, token_logprobs, top_logprobs, text_offset (a prompt's first token: null). */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** A token's log-prob; prompt tokens have none for the first (null). */
export type AnyLogprob = TokenLogprob | { tokenId: number; logprob: null; top: null };

/** The prompt's tokens as log-prob entries: scores[i] for token i, the first null. */
export function promptEntries(ids: readonly number[], scores: readonly (TokenLogprob | null)[]): AnyLogprob[] {
  return ids.map((id, i) => scores[i] ?? { tokenId: id, logprob: null, top: null });
}

export function completionLogprobs(tokenizer: Tokenizer | null, lps: readonly AnyLogprob[], offset: number): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const lp of lps) {
    const text = tokenText(tokenizer, lp.tokenId);
    out.tokens.push(text);
    out.token_logprobs.push(lp.logprob);
    out.top_logprobs.push(lp.top === null ? null : Object.fromEntries(lp.top.map((t) => [tokenText(tokenizer, t.tokenId), t.logprob])));
    out.text_offset.push(offset);
    offset += text.length;
  }
  return out;
}

/** vLLM's prompt_logprobs: per prompt token, null for the first, else {token id: {logprob, rank, decoded_token}}
 * for the token itself and the top alternatives (the token's rank is known when it is among them, else null). */
export function vllmPromptLogprobs(tokenizer: Tokenizer | null, lps: readonly AnyLogprob[]): (Record<string, { logprob: number; rank: number | null; decoded_token: string }> | null)[] {
  return lps.map((lp) => {
    if (lp.logprob === null) return null;
    const entry: Record<string, { logprob: number; rank: number | null; decoded_token: string }> = {};
    const rank = lp.top.findIndex((t) => t.tokenId === lp.tokenId);
    entry[String(lp.tokenId)] = { logprob: lp.logprob, rank: rank >= 0 ? rank + 1 : null, decoded_token: tokenText(tokenizer, lp.tokenId) };
    lp.top.forEach((t, i) => {
      entry[String(t.tokenId)] = { logprob: t.logprob, rank: i + 1, decoded_token: tokenText(tokenizer, t.tokenId) };
    });
    return entry;
  });
}

export interface ChatLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export function chatLogprobs(tokenizer: Tokenizer | null, lps: TokenLogprob[]): ChatLogprob[] {
  const entry = (id: number, logprob: number) => {
    return { token: tokenText(tokenizer, id), logprob, bytes: tokenBytes(tokenizer, id) };
  };
  return lps.map((lp) => ({ ...entry(lp.tokenId, lp.logprob), top_logprobs: lp.top.map((t) => entry(t.tokenId, t.logprob)) }));
}

export function completionChunk(run: GenerationRun, e: ChoiceEvent, logprobs: CompletionLogprobs | null, includeUsage: boolean) {
  return {
    id: run.id, object: "text_completion", created: run.created, model: run.prepared.model,
    choices: [{ index: e.index, text: e.text, logprobs, finish_reason: finishReason(e.finishReason), stop_reason: e.stopReason ?? null }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

export function chatChunk(run: GenerationRun, index: number, delta: Record<string, unknown>, finish: FinishReason, logprobs: ChatLogprob[] | null, includeUsage: boolean, stopReason: string | number | null = null) {
  return {
    id: run.id, object: "chat.completion.chunk", created: run.created, model: run.prepared.model,
    choices: [{ index, delta, logprobs: logprobs ? { content: logprobs } : null, finish_reason: finish, stop_reason: stopReason }],
    ...(includeUsage ? { usage: null } : {}),
  };
}

export function usageChunk(run: GenerationRun, usage: Usage) {
  const object = run.prepared.kind === "chat" ? "chat.completion.chunk" : "text_completion";
  return { id: run.id, object, created: run.created, model: run.prepared.model, choices: [], usage };
}
