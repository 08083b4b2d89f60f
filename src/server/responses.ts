// A generation run as OpenAI chunks (for SSE and WebSocket) or as one whole response.
import type { TokenLogprob } from "../engine/llm_engine.js";
import type { ServingContext } from "./context.js";
import { chatChunk, chatLogprobs, completionChunk, completionLogprobs, finishReason, promptEntries, usageChunk, vllmPromptLogprobs, type AnyLogprob, type CompletionLogprobs, type FinishReason } from "./format.js";
import type { GenerationRun, GenerationSummary } from "./generation.js";
import { mergeToolDeltas, ToolOutput, type ToolOutputDelta } from "./tool_output.js";

/** A choice's finish reason, "tool_calls" when it ended (not cut) having called tools in auto or required mode. */
function chatFinish(reason: string | undefined, tools: ToolOutput | null, named: boolean): FinishReason {
  const f = finishReason(reason);
  return f === "stop" && tools?.calledTools && !named ? "tool_calls" : f;
}

function toolOutputs(run: GenerationRun): ToolOutput[] | null {
  const plan = run.prepared.tools;
  if (!plan || plan.mode === "none") return null;
  return Array.from({ length: run.prepared.sampling[0]!.n }, () => new ToolOutput(plan));
}

/** The run's chunks in order; the usage chunk last when asked for. Ends when the run ends. */
export async function* streamChunks(ctx: ServingContext, run: GenerationRun): AsyncGenerator<object> {
  const p = run.prepared;
  const n = p.sampling[0]!.n;
  const usage = p.includeUsage;
  const offsets = new Map<number, number>();
  const tok = p.tokensAsIds ? null : ctx.tokenizer;
  const tools = toolOutputs(run);
  const named = p.tools?.mode === "named";
  // continuous_usage_stats: each chunk carries its choice's usage so far.
  const generated = new Map<number, number>();
  const withUsage = <T extends object>(chunk: T, index: number): T => {
    if (!p.continuousUsage) return chunk;
    const prompt = p.prompts[Math.floor(index / n)]!.ids.length;
    const completion = generated.get(index) ?? 0;
    return { ...chunk, usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } };
  };
  if (p.kind === "chat") {
    const scores = p.vllmPromptLogprobs && run.promptScores ? await run.promptScores : null;
    for (let i = 0; i < n; ++i) {
      const chunk = withUsage(chatChunk(run, i, { role: "assistant", content: "" }, null, null, usage), i);
      // vLLM's prompt_logprobs ride on the first chunk.
      yield i === 0 && scores ? { ...chunk, prompt_logprobs: vllmPromptLogprobs(tok, promptEntries(p.prompts[0]!.ids, scores[0]!)) } : chunk;
    }
  } else if (p.echo || p.vllmPromptLogprobs) {
    const scores = run.promptScores ? await run.promptScores : null;
    for (let i = 0; i < p.prompts.length * n; ++i) {
      const prompt = Math.floor(i / n);
      const text = p.echo ? p.prompts[prompt]!.text ?? "" : "";
      offsets.set(i, text.length);
      const entries = scores ? promptEntries(p.prompts[prompt]!.ids, scores[prompt]!) : null;
      const lp = p.echo && p.logprobs !== null ? completionLogprobs(tok, entries ?? [], 0) : null;
      const chunk = completionChunk(run, { index: i, text, tokenIds: [], logprobs: [] }, lp, usage);
      if (p.vllmPromptLogprobs && entries) (chunk.choices[0] as Record<string, unknown>).prompt_logprobs = vllmPromptLogprobs(tok, entries);
      yield withUsage(chunk, i);
    }
  }
  for await (const e of run) {
    generated.set(e.index, (generated.get(e.index) ?? 0) + e.tokenIds.length);
    const hasLogprobs = p.logprobs !== null && e.logprobs.length > 0;
    if (p.kind === "chat") {
      const out = tools?.[e.index] ?? null;
      const d = out ? both(out.push(e.text), e.finishReason ? out.finish() : null) : { content: e.text, toolCalls: [] };
      if (d.content === "" && d.toolCalls.length === 0 && !e.finishReason && !hasLogprobs) continue;
      const delta: Record<string, unknown> = d.content !== "" || (!e.finishReason && d.toolCalls.length === 0) ? { content: d.content } : {};
      if (d.toolCalls.length) delta.tool_calls = d.toolCalls;
      yield withUsage(chatChunk(run, e.index, delta, e.finishReason ? chatFinish(e.finishReason, out, named) : null, hasLogprobs ? chatLogprobs(tok, e.logprobs) : null,
        usage, e.stopReason ?? null), e.index);
    } else {
      if (e.text === "" && !e.finishReason && !hasLogprobs) continue;
      const offset = offsets.get(e.index) ?? 0;
      const lp = hasLogprobs ? completionLogprobs(tok, e.logprobs, offset) : p.logprobs !== null ? completionLogprobs(tok, [], offset) : null;
      offsets.set(e.index, offset + e.text.length);
      yield withUsage(completionChunk(run, e, lp, usage), e.index);
    }
  }
  const summary = await run.summary;
  if (usage) yield usageChunk(run, summary.usage);
}

function both(a: ToolOutputDelta, b: ToolOutputDelta | null): ToolOutputDelta {
  return b ? { content: a.content + b.content, toolCalls: [...a.toolCalls, ...b.toolCalls] } : a;
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
  const tok = p.tokensAsIds ? null : ctx.tokenizer;
  if (p.kind === "chat") {
    const tools = toolOutputs(run);
    const named = p.tools?.mode === "named";
    const body = {
      id: run.id, object: "chat.completion", created: run.created, model: p.model,
      ...(p.vllmPromptLogprobs && promptLps ? { prompt_logprobs: vllmPromptLogprobs(tok, promptLps[0]!) } : {}),
      choices: choices.map((c, index) => {
        const out = tools?.[index] ?? null;
        // The same tool output the stream uses, fed the whole text: both give the same message.
        const m = out ? mergeToolDeltas([out.push(c.text), out.finish()]) : { content: c.text, toolCalls: [] };
        return {
          index,
          message: { role: "assistant", content: m.toolCalls.length && m.content === "" ? null : m.content, tool_calls: m.toolCalls },
          logprobs: p.logprobs !== null ? { content: chatLogprobs(tok, c.logprobs) } : null,
          finish_reason: chatFinish(c.finish, out, named),
          stop_reason: c.stopReason,
        };
      }),
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
        : echoed.length ? completionLogprobs(tok, [...echoed, ...c.logprobs], 0)
        : completionLogprobs(tok, c.logprobs, prefix.length);
      return {
        index, text: prefix + c.text, logprobs: lp, finish_reason: finishReason(c.finish), stop_reason: c.stopReason,
        ...(p.vllmPromptLogprobs && promptLps ? { prompt_logprobs: vllmPromptLogprobs(tok, promptLps[prompt]!) } : {}),
      };
    }),
    usage: summary.usage,
  };
  return { body, summary };
}
