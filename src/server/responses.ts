// A generation run as OpenAI chunks (for SSE and WebSocket) or as one whole response.
import type { TokenLogprob } from "../engine/llm_engine.js";
import type { ServingContext } from "./context.js";
import { chatChunk, chatLogprobs, completionChunk, completionLogprobs, finishReason, promptEntries, usageChunk, vllmPromptLogprobs, type AnyLogprob, type CompletionLogprobs } from "./format.js";
import type { GenerationRun, GenerationSummary } from "./generation.js";

/** The run's chunks in order; the usage chunk last when asked for. Ends when the run ends. */
export async function* streamChunks(ctx: ServingContext, run: GenerationRun): AsyncGenerator<object> {
  const p = run.prepared;
  const n = p.sampling[0]!.n;
  const usage = p.includeUsage;
  const offsets = new Map<number, number>();
  if (p.kind === "chat") {
    const scores = p.vllmPromptLogprobs && run.promptScores ? await run.promptScores : null;
    for (let i = 0; i < n; ++i) {
      const chunk = chatChunk(run, i, { role: "assistant", content: "" }, null, null, usage);
      // vLLM's prompt_logprobs ride on the first chunk.
      yield i === 0 && scores ? { ...chunk, prompt_logprobs: vllmPromptLogprobs(ctx.tokenizer, promptEntries(p.prompts[0]!.ids, scores[0]!)) } : chunk;
    }
  } else if (p.echo || p.vllmPromptLogprobs) {
    const scores = run.promptScores ? await run.promptScores : null;
    for (let i = 0; i < p.prompts.length * n; ++i) {
      const prompt = Math.floor(i / n);
      const text = p.echo ? p.prompts[prompt]!.text ?? "" : "";
      offsets.set(i, text.length);
      const entries = scores ? promptEntries(p.prompts[prompt]!.ids, scores[prompt]!) : null;
      const lp = p.echo && p.logprobs !== null ? completionLogprobs(ctx.tokenizer, entries ?? [], 0) : null;
      const chunk = completionChunk(run, { index: i, text, tokenIds: [], logprobs: [] }, lp, usage);
      if (p.vllmPromptLogprobs && entries) (chunk.choices[0] as Record<string, unknown>).prompt_logprobs = vllmPromptLogprobs(ctx.tokenizer, entries);
      yield chunk;
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
  const scores = run.promptScores ? await run.promptScores : null;
  const promptLps = scores?.map((s, i) => promptEntries(p.prompts[i]!.ids, s)) ?? null;
  if (p.kind === "chat") {
    const body = {
      id: run.id, object: "chat.completion", created: run.created, model: p.model,
      ...(p.vllmPromptLogprobs && promptLps ? { prompt_logprobs: vllmPromptLogprobs(ctx.tokenizer, promptLps[0]!) } : {}),
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
      const prompt = Math.floor(index / n);
      const prefix = p.echo ? p.prompts[prompt]!.text ?? "" : "";
      // With echo, the prompt's own tokens lead the log-probs (from offset 0), then the completion's.
      const echoed: AnyLogprob[] = p.echo && promptLps ? promptLps[prompt]! : [];
      const lp: CompletionLogprobs | null = p.logprobs === null ? null
        : echoed.length ? completionLogprobs(ctx.tokenizer, [...echoed, ...c.logprobs], 0)
        : completionLogprobs(ctx.tokenizer, c.logprobs, prefix.length);
      return {
        index, text: prefix + c.text, logprobs: lp, finish_reason: finishReason(c.finish), stop_reason: c.stopReason,
        ...(p.vllmPromptLogprobs && promptLps ? { prompt_logprobs: vllmPromptLogprobs(ctx.tokenizer, promptLps[prompt]!) } : {}),
      };
    }),
    usage: summary.usage,
  };
  return { body, summary };
}
