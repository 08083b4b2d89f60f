// A generation run as OpenAI chunks (for SSE and WebSocket) or as one whole response.
import type { TokenLogprob } from "../engine/llm_engine.js";
import type { ServingContext } from "./context.js";
import { chatChunk, chatLogprobs, completionChunk, completionLogprobs, finishReason, usageChunk, type CompletionLogprobs } from "./format.js";
import type { GenerationRun, GenerationSummary } from "./generation.js";

/** The run's chunks in order; the usage chunk last when asked for. Ends when the run ends. */
export async function* streamChunks(ctx: ServingContext, run: GenerationRun): AsyncGenerator<object> {
  const p = run.prepared;
  const n = p.sampling[0]!.n;
  const usage = p.includeUsage;
  const offsets = new Map<number, number>();
  if (p.kind === "chat") {
    for (let i = 0; i < n; ++i) yield chatChunk(run, i, { role: "assistant", content: "" }, null, null, usage);
  } else if (p.echo) {
    for (let i = 0; i < p.prompts.length * n; ++i) {
      const text = p.prompts[Math.floor(i / n)]!.text ?? "";
      offsets.set(i, text.length);
      yield completionChunk(run, { index: i, text, tokenIds: [], logprobs: [] }, null, usage);
    }
  }
  for await (const e of run) {
    const hasLogprobs = p.logprobs !== null && e.logprobs.length > 0;
    if (e.text === "" && !e.finishReason && !hasLogprobs) continue;
    if (p.kind === "chat") {
      const delta = e.text !== "" || !e.finishReason ? { content: e.text } : {};
      yield chatChunk(run, e.index, delta, finishReason(e.finishReason), hasLogprobs ? chatLogprobs(ctx.tokenizer, e.logprobs) : null, usage, e.stopReason ?? null);
    } else {
      const offset = offsets.get(e.index) ?? 0;
      const lp = hasLogprobs ? completionLogprobs(ctx.tokenizer, e.logprobs, offset) : p.logprobs !== null ? completionLogprobs(ctx.tokenizer, [], offset) : null;
      offsets.set(e.index, offset + e.text.length);
      yield completionChunk(run, e, lp, usage);
    }
  }
  const summary = await run.summary;
  if (usage) yield usageChunk(run, summary.usage);
}

interface ChoiceState {
  text: string;
  logprobs: TokenLogprob[];
  finish: string | undefined;
  stopReason: string | number | null;
}

/** Waits for the whole run and builds the non-streaming response. */
export async function collectResponse(ctx: ServingContext, run: GenerationRun): Promise<{ body: object; summary: GenerationSummary }> {
  const p = run.prepared;
  const n = p.sampling[0]!.n;
  const choices: ChoiceState[] = Array.from({ length: p.prompts.length * n }, () => ({ text: "", logprobs: [], finish: undefined, stopReason: null }));
  for await (const e of run) {
    const c = choices[e.index]!;
    c.text += e.text;
    c.logprobs.push(...e.logprobs);
    if (e.finishReason) {
      c.finish = e.finishReason;
      c.stopReason = e.stopReason ?? null;
    }
  }
  const summary = await run.summary;
  if (p.kind === "chat") {
    const body = {
      id: run.id, object: "chat.completion", created: run.created, model: p.model,
      choices: choices.map((c, index) => ({
        index,
        message: { role: "assistant", content: c.text, tool_calls: [] as unknown[] },
        logprobs: p.logprobs !== null ? { content: chatLogprobs(ctx.tokenizer, c.logprobs) } : null,
        finish_reason: finishReason(c.finish),
        stop_reason: c.stopReason,
      })),
      usage: summary.usage,
    };
    return { body, summary };
  }
  const body = {
    id: run.id, object: "text_completion", created: run.created, model: p.model,
    choices: choices.map((c, index) => {
      const prefix = p.echo ? p.prompts[Math.floor(index / n)]!.text ?? "" : "";
      const lp: CompletionLogprobs | null = p.logprobs !== null ? completionLogprobs(ctx.tokenizer, c.logprobs, prefix.length) : null;
      return { index, text: prefix + c.text, logprobs: lp, finish_reason: finishReason(c.finish), stop_reason: c.stopReason };
    }),
    usage: summary.usage,
  };
  return { body, summary };
}
