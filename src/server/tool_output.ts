// One chat choice's text turned into content and tool calls as it streams. The same object builds
// the non-streaming message (every delta merged), so streamed and whole responses agree.
//  - named / required: the grammar guarantees the JSON, so calls stream as they are written: a
//    call's name first (with its id), then its arguments in fragments.
//  - auto: text passes through as content until the parser's marker; a call is held until it is
//    complete, then sent as name and arguments (text that only looked like a call stays content).
import { callMarker, markerPrefixLength, parseToolCalls, toolCallId, type ToolPlan } from "./tools.js";

/** A streamed tool-call delta, as OpenAI's delta.tool_calls entries. */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: "function";
  function: { name?: string; arguments: string };
}

export interface ToolOutputDelta {
  content: string;
  toolCalls: ToolCallDelta[];
}

/**
 * Scans JSON text for call objects ({"name": ..., "arguments" | "parameters": ...}) at a depth:
 * 1 for a bare object, 2 for the objects of an array. Arguments are passed on as written.
 */
class CallScanner {
  private depth = 0;
  private inString = false;
  private escape = false;
  private key = "";
  private keyText: string | null = null;  // a key string being read
  private afterColon = false;
  private valueKind: "name" | "args" | null = null;
  private nameText = "";
  private argsStartDepth = -1;
  private argsPrimitive = false;
  private readonly calls: { name: string | null; args: string; sentName: boolean; sentArgs: number }[] = [];

  constructor(private readonly callDepth: number) {}

  get count(): number {
    return this.calls.length;
  }

  /** Feeds text; returns the deltas it completes. */
  push(text: string, base: number, ids: string[]): ToolCallDelta[] {
    for (const ch of text) this.step(ch);
    return this.flush(base, ids, false);
  }

  /** At the end: calls whose name never came get none; the rest of every call is sent. */
  finish(base: number, ids: string[]): ToolCallDelta[] {
    return this.flush(base, ids, true);
  }

  private current() {
    return this.calls[this.calls.length - 1];
  }

  private step(ch: string): void {
    const capturing = this.valueKind === "args" && this.argsStartDepth >= 0;
    if (this.inString) {
      if (capturing) this.current()!.args += ch;
      else if (this.valueKind === "name") this.nameText += ch;
      else if (this.keyText !== null) this.keyText += ch;
      if (this.escape) this.escape = false;
      else if (ch === "\\") this.escape = true;
      else if (ch === '"') {
        this.inString = false;
        if (this.keyText !== null) {
          this.key = safeParse(`"${this.keyText}`) as string ?? "";
          this.keyText = null;
        } else if (this.valueKind === "name") {
          const name = safeParse(this.nameText);
          this.current()!.name = typeof name === "string" ? name : "";
          this.valueKind = null;
        } else if (capturing && this.depth === this.callDepth) this.endArgs();
      }
      return;
    }
    if (capturing) {
      if (this.argsPrimitive && this.depth === this.callDepth && (ch === "," || ch === "}")) {
        this.endArgs();
      } else {
        this.current()!.args += ch;
        if (ch === "{" || ch === "[") this.depth++;
        else if (ch === "}" || ch === "]") {
          this.depth--;
          if (this.depth === this.callDepth) this.endArgs();
        } else if (ch === '"') this.inString = true;
        return;
      }
    }
    if (/\s/.test(ch)) return;
    if (this.afterColon && this.depth === this.callDepth) {
      this.afterColon = false;
      if (this.key === "name" && ch === '"') {
        this.valueKind = "name";
        this.nameText = '"';
        this.inString = true;
        return;
      }
      if (this.key === "arguments" || this.key === "parameters") {
        this.valueKind = "args";
        this.argsStartDepth = this.depth;
        this.argsPrimitive = ch !== "{" && ch !== "[" && ch !== '"';
        this.current()!.args += ch;
        if (ch === "{" || ch === "[") this.depth++;
        else if (ch === '"') this.inString = true;
        return;
      }
      if (ch === '"') {  // another key's string value (not a key)
        this.inString = true;
        return;
      }
    }
    if (ch === '"') {
      this.inString = true;
      if (this.depth === this.callDepth && !this.afterColon) this.keyText = "";
      return;
    }
    if (ch === ":") {
      this.afterColon = true;
      return;
    }
    if (ch === "{" || ch === "[") {
      this.depth++;
      if (this.depth === this.callDepth && ch === "{") this.calls.push({ name: null, args: "", sentName: false, sentArgs: 0 });
      return;
    }
    if (ch === "}" || ch === "]") this.depth--;
  }

  private endArgs(): void {
    this.valueKind = null;
    this.argsStartDepth = -1;
  }

  private flush(base: number, ids: string[], final: boolean): ToolCallDelta[] {
    const out: ToolCallDelta[] = [];
    this.calls.forEach((c, i) => {
      if (c.name === null) return;
      if (!c.sentName) {
        ids[base + i] ??= toolCallId();
        out.push({ index: base + i, id: ids[base + i], type: "function", function: { name: c.name, arguments: "" } });
        c.sentName = true;
      }
      const args = final && c.args === "" && c.sentArgs === 0 ? "{}" : c.args;
      if (args.length > c.sentArgs) {
        out.push({ index: base + i, function: { arguments: args.slice(c.sentArgs) } });
        c.sentArgs = args.length;
        c.args = args;
      }
    });
    return out;
  }
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** One choice's content and tool calls, fed its text deltas in order. */
export class ToolOutput {
  private readonly ids: string[] = [];
  private readonly scanner: CallScanner | null;
  private held = "";  // auto mode: text from a (possible) marker on
  private autoCalls = 0;
  private namedArgs = 0;  // characters of the named call's arguments sent
  private sentAny = false;

  constructor(private plan: ToolPlan) {
    this.scanner = plan.mode === "named" ? null : plan.mode === "required" ? new CallScanner(2) : null;
  }

  /** Whether any call was sent (finish_reason "tool_calls" for auto and required). */
  get calledTools(): boolean {
    return this.sentAny;
  }

  push(text: string): ToolOutputDelta {
    return this.track(this.pushText(text));
  }

  finish(): ToolOutputDelta {
    return this.track(this.finishText());
  }

  private track(d: ToolOutputDelta): ToolOutputDelta {
    if (d.toolCalls.length) this.sentAny = true;
    return d;
  }

  private pushText(text: string): ToolOutputDelta {
    const p = this.plan;
    if (p.mode === "none") return { content: text, toolCalls: [] };
    if (p.mode === "named") {
      const calls: ToolCallDelta[] = [];
      if (this.ids.length === 0) {
        this.ids.push(toolCallId());
        calls.push({ index: 0, id: this.ids[0], type: "function", function: { name: p.named!, arguments: "" } });
      }
      if (text) calls.push({ index: 0, function: { arguments: text } });
      this.namedArgs += text.length;
      return { content: "", toolCalls: calls };
    }
    if (p.mode === "required") return { content: "", toolCalls: this.scanner!.push(text, 0, this.ids) };
    return this.pushAuto(text);
  }

  private finishText(): ToolOutputDelta {
    const p = this.plan;
    if (p.mode === "required") return { content: "", toolCalls: this.scanner!.finish(0, this.ids) };
    if (p.mode === "named") return this.namedArgs > 0 ? { content: "", toolCalls: [] } : this.pushText("{}");
    if (p.mode === "none") return { content: "", toolCalls: [] };
    const rest = this.held;
    this.held = "";
    if (rest === "" || (rest.trim() === "" && this.autoCalls > 0)) return { content: "", toolCalls: [] };
    return this.parseHeld(rest);
  }

  // auto: content until a marker; from it on, held until a call is complete (hermes) or the end.
  private pushAuto(text: string): ToolOutputDelta {
    const parser = this.plan.parser;
    this.held += text;
    if (parser === "hermes") {
      let content = "";
      const calls: ToolCallDelta[] = [];
      for (;;) {
        const open = this.held.indexOf("<tool_call>");
        if (open < 0) {
          // Trailing whitespace waits (it is not content if a call follows), as does a marker's start.
          const keep = markerPrefixLength(this.held, parser);
          const ready = this.held.slice(0, this.held.length - keep).trimEnd();
          content += ready;
          this.held = this.held.slice(ready.length);
          break;
        }
        content += this.held.slice(0, open).trimEnd();
        const close = this.held.indexOf("</tool_call>", open);
        if (close < 0) {
          this.held = this.held.slice(open);
          break;
        }
        const whole = this.held.slice(open, close + "</tool_call>".length);
        this.held = this.held.slice(close + "</tool_call>".length);
        const d = this.parseHeld(whole);
        content += d.content;
        calls.push(...d.toolCalls);
      }
      return { content, toolCalls: calls };
    }
    if (parser === "mistral") {
      const at = this.held.indexOf("[TOOL_CALLS]");
      if (at >= 0) {
        const content = this.held.slice(0, at);
        this.held = this.held.slice(at);
        return { content, toolCalls: [] };
      }
      const keep = markerPrefixLength(this.held, parser);
      const content = this.held.slice(0, this.held.length - keep);
      this.held = this.held.slice(this.held.length - keep);
      return { content, toolCalls: [] };
    }
    // llama3_json: the whole output is calls when it starts like one; otherwise content.
    if (this.held.trim() === "") return { content: "", toolCalls: [] };
    if (callMarker(parser).test(this.held)) return { content: "", toolCalls: [] };
    const content = this.held;
    this.held = "";
    this.plan = { ...this.plan, mode: "none" };
    return { content, toolCalls: [] };
  }

  /** Held text through the parser: its calls (new ids), or the text as content when it holds none. */
  private parseHeld(text: string): ToolOutputDelta {
    const parsed = parseToolCalls(text, this.plan);
    if (parsed.calls.length === 0) return { content: text, toolCalls: [] };
    const calls: ToolCallDelta[] = [];
    for (const c of parsed.calls) {
      const index = this.autoCalls++;
      this.ids[index] = toolCallId();
      calls.push({ index, id: this.ids[index], type: "function", function: { name: c.name, arguments: "" } });
      calls.push({ index, function: { arguments: c.arguments } });
    }
    return { content: parsed.content ?? "", toolCalls: calls };
  }
}

/** Deltas merged into the whole message's content and tool_calls. */
export function mergeToolDeltas(deltas: ToolOutputDelta[]): { content: string; toolCalls: { id: string; type: "function"; function: { name: string; arguments: string } }[] } {
  let content = "";
  const calls: { id: string; type: "function"; function: { name: string; arguments: string } }[] = [];
  for (const d of deltas) {
    content += d.content;
    for (const t of d.toolCalls) {
      const c = (calls[t.index] ??= { id: t.id ?? "", type: "function", function: { name: "", arguments: "" } });
      if (t.id) c.id = t.id;
      if (t.function.name) c.function.name = t.function.name;
      c.function.arguments += t.function.arguments;
    }
  }
  return { content, toolCalls: calls.filter(Boolean) };
}
