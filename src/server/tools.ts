// Tool calls: what the request asks (tools, tool_choice), the grammar a forced choice needs, and
// parsers that turn a model's output into OpenAI tool calls (vLLM's --tool-call-parser names).
import { randomUUID } from "node:crypto";

import type { GrammarSpec } from "../engine/grammar.js";
import { badRequest } from "./errors.js";
import { asObject, optBool, type Body } from "./validate.js";

export const TOOL_PARSERS = ["hermes", "llama3_json", "mistral"] as const;
export type ToolParserName = (typeof TOOL_PARSERS)[number];

export interface ToolFunction {
  name: string;
  description?: string;
  parameters: Record<string, unknown>;
}

/** How a chat request uses its tools. */
export interface ToolPlan {
  mode: "none" | "auto" | "required" | "named";
  functions: ToolFunction[];
  /** tool_choice naming one function. */
  named?: string;
  parser: ToolParserName;
  /** parallel_tool_calls (default true); false: one call at most. */
  parallel: boolean;
}

export interface ToolCall {
  name: string;
  arguments: string;  // JSON text
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;

/** tools and tool_choice of a chat body; null when the request has no tools. */
export function toolPlanFrom(body: Body, parser: ToolParserName, autoEnabled: boolean): ToolPlan | null {
  const tools = body.tools;
  const choice = body.tool_choice;
  if (tools === undefined || tools === null || (Array.isArray(tools) && tools.length === 0)) {
    if (choice !== undefined && choice !== null && choice !== "none" && choice !== "auto") throw badRequest("tool_choice needs tools", "tool_choice");
    return null;
  }
  if (!Array.isArray(tools)) throw badRequest("tools must be an array", "tools");
  const functions = tools.map((t, i): ToolFunction => {
    const o = asObject(t, `tools[${i}]`, "tools");
    if (o.type !== "function") throw badRequest(`tools[${i}].type must be "function"`, "tools");
    const f = asObject(o.function, `tools[${i}].function`, "tools");
    if (typeof f.name !== "string" || !NAME.test(f.name)) throw badRequest(`tools[${i}].function.name must be 1-64 letters, digits, _ . or -`, "tools");
    const parameters = f.parameters === undefined ? { type: "object", properties: {} } : asObject(f.parameters, `tools[${i}].function.parameters`, "tools");
    return { name: f.name, description: typeof f.description === "string" ? f.description : undefined, parameters };
  });
  if (new Set(functions.map((f) => f.name)).size !== functions.length) throw badRequest("tool names must be unique", "tools");
  const parallel = optBool(body, "parallel_tool_calls") ?? true;
  if (choice === undefined || choice === null || choice === "auto") {
    if (!autoEnabled) throw badRequest('tool_choice "auto" needs the server started with --enable-auto-tool-choice', "tool_choice");
    return { mode: "auto", functions, parser, parallel };
  }
  if (choice === "none") return { mode: "none", functions, parser, parallel };
  if (choice === "required") return { mode: "required", functions, parser, parallel };
  const c = asObject(choice, "tool_choice", "tool_choice");
  const name = (c.function as Body | undefined)?.name;
  if (c.type !== "function" || typeof name !== "string") throw badRequest('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}', "tool_choice");
  if (!functions.some((f) => f.name === name)) throw badRequest(`tool_choice names ${JSON.stringify(name)}, which is not among the tools`, "tool_choice");
  return { mode: "named", functions, named: name, parser, parallel };
}

/** The grammar a forced tool choice puts on the output (as vLLM does): the arguments, or a list of calls. */
export function toolGrammar(plan: ToolPlan): GrammarSpec | null {
  if (plan.mode === "named") return { type: "json_schema", schema: plan.functions.find((f) => f.name === plan.named)!.parameters, strict: true };
  if (plan.mode !== "required") return null;
  const calls = plan.functions.map((f) => ({
    type: "object",
    properties: { name: { type: "string", enum: [f.name] }, parameters: f.parameters },
    required: ["name", "parameters"],
  }));
  const list = { type: "array", minItems: 1, ...(plan.parallel ? {} : { maxItems: 1 }), items: calls.length === 1 ? calls[0] : { anyOf: calls } };
  return { type: "json_schema", schema: list, strict: true };
}

export function toolCallId(): string {
  return `call_${randomUUID().replace(/-/g, "").slice(0, 24)}`;
}

function call(o: unknown, names: Set<string>): ToolCall | null {
  if (!o || typeof o !== "object" || Array.isArray(o)) return null;
  const b = o as Body;
  const args = b.arguments ?? b.parameters ?? {};
  if (typeof b.name !== "string" || !names.has(b.name)) return null;
  return { name: b.name, arguments: typeof args === "string" ? args : JSON.stringify(args) };
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The calls in a model's whole output, and the text beside them (null when there is none). */
export function parseToolCalls(text: string, plan: ToolPlan): { content: string | null; calls: ToolCall[] } {
  const names = new Set(plan.functions.map((f) => f.name));
  if (plan.mode === "named") return { content: null, calls: [{ name: plan.named!, arguments: text.trim() }] };
  if (plan.mode === "required") {
    const list = tryJson(text);
    const calls = Array.isArray(list) ? list.map((o) => call(o, names)).filter((c): c is ToolCall => c !== null) : [];
    return { content: calls.length ? null : text, calls };
  }
  if (plan.mode === "none") return { content: text, calls: [] };
  const rest = (s: string) => (s.trim() === "" ? null : s.trim());
  switch (plan.parser) {
    case "hermes": {
      const calls: ToolCall[] = [];
      const content = text.replace(/<tool_call>\s*([\s\S]*?)\s*<\/tool_call>/g, (whole, json: string) => {
        const c = call(tryJson(json), names);
        if (!c) return whole;
        calls.push(c);
        return "";
      });
      return { content: calls.length ? rest(content) : text, calls };
    }
    case "llama3_json": {
      const body = text.trim().replace(/^<\|python_tag\|>/, "");
      const parts = body.split(/\s*;\s*(?=\{)/).map((p) => call(tryJson(p), names));
      return parts.length && parts.every((c) => c !== null) ? { content: null, calls: parts as ToolCall[] } : { content: text, calls: [] };
    }
    case "mistral": {
      const at = text.indexOf("[TOOL_CALLS]");
      if (at < 0) return { content: text, calls: [] };
      const list = tryJson(text.slice(at + "[TOOL_CALLS]".length).trim());
      const calls = Array.isArray(list) ? list.map((o) => call(o, names)).filter((c): c is ToolCall => c !== null) : [];
      return calls.length ? { content: rest(text.slice(0, at)), calls } : { content: text, calls: [] };
    }
  }
}

/** Where a tool call may begin in auto mode, per parser (text from there on is held back while streaming). */
export function callMarker(parser: ToolParserName): RegExp {
  return parser === "hermes" ? /<tool_call>/ : parser === "mistral" ? /\[TOOL_CALLS\]/ : /^\s*(<\|python_tag\|>|\{)/;
}

/** How many characters at the end of `text` could be the start of the parser's marker. */
export function markerPrefixLength(text: string, parser: ToolParserName): number {
  const marker = parser === "hermes" ? "<tool_call>" : parser === "mistral" ? "[TOOL_CALLS]" : null;
  if (!marker) return 0;
  for (let n = Math.min(marker.length - 1, text.length); n > 0; --n) if (marker.startsWith(text.slice(-n))) return n;
  return 0;
}
