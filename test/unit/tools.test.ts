// Tool-call parsing: the parsers on outputs as models write them, and the streaming tool output
// giving the same message however the text is cut into deltas.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { mergeToolDeltas, ToolOutput } from "../../src/server/tool_output.js";
import { parseToolCalls, toolGrammar, type ToolParserName, type ToolPlan } from "../../src/server/tools.js";

const functions = [
  { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
  { name: "add", parameters: { type: "object", properties: { a: { type: "number" }, b: { type: "number" } } } },
];
const plan = (mode: ToolPlan["mode"], parser: ToolParserName = "hermes", named?: string): ToolPlan => ({ mode, functions, parser, parallel: true, ...(named ? { named } : {}) });

describe("parsers", () => {
  it("hermes: calls in <tool_call> blocks, text beside them kept", () => {
    const text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>';
    const r = parseToolCalls(text, plan("auto"));
    assert.equal(r.content, "Let me check.");
    assert.deepEqual(r.calls, [{ name: "get_weather", arguments: '{"city":"Paris"}' }, { name: "add", arguments: '{"a":1,"b":2}' }]);
    // Unknown tools and broken JSON are not calls.
    assert.deepEqual(parseToolCalls('<tool_call>{"name": "rm", "arguments": {}}</tool_call>', plan("auto")).calls, []);
    assert.deepEqual(parseToolCalls('<tool_call>{"name": "add", "arguments": {</tool_call>', plan("auto")).calls, []);
  });

  it("llama3_json: a JSON object (or several, ;-separated), with or without <|python_tag|>", () => {
    const one = parseToolCalls('{"name": "add", "parameters": {"a": 1, "b": 2}}', plan("auto", "llama3_json"));
    assert.deepEqual(one, { content: null, calls: [{ name: "add", arguments: '{"a":1,"b":2}' }] });
    const two = parseToolCalls('<|python_tag|>{"name": "add", "parameters": {"a": 1}}; {"name": "get_weather", "parameters": {"city": "Rome"}}', plan("auto", "llama3_json"));
    assert.deepEqual(two.calls.map((c) => c.name), ["add", "get_weather"]);
    assert.deepEqual(parseToolCalls("Just text {not json}", plan("auto", "llama3_json")).calls, []);
  });

  it("mistral: a list after [TOOL_CALLS]", () => {
    const r = parseToolCalls('[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "add", "arguments": {"a": 3, "b": 4}}]', plan("auto", "mistral"));
    assert.equal(r.content, null);
    assert.deepEqual(r.calls.map((c) => [c.name, JSON.parse(c.arguments)]), [["get_weather", { city: "Oslo" }], ["add", { a: 3, b: 4 }]]);
  });

  it("forced choices build a schema of the tools' parameters", () => {
    const named = toolGrammar(plan("named", "hermes", "add"));
    assert.deepEqual(named, { type: "json_schema", schema: functions[1]!.parameters, strict: true });
    const required = toolGrammar({ ...plan("required"), parallel: false }) as { schema: { maxItems?: number; items: { anyOf: unknown[] } } };
    assert.equal(required.schema.maxItems, 1);
    assert.equal(required.schema.items.anyOf.length, 2);
    assert.equal(toolGrammar(plan("auto")), null);
  });
});

/** Cuts text into pieces at pseudo-random points (a fixed seed per case). */
function pieces(text: string, seed: number): string[] {
  let s = seed;
  const out: string[] = [];
  for (let i = 0; i < text.length;) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    const n = 1 + (s % 7);
    out.push(text.slice(i, i + n));
    i += n;
  }
  return out;
}

describe("streamed tool output", () => {
  const cases: [string, ToolPlan, string][] = [
    ["hermes", plan("auto"), 'Sure.\n<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2}}\n</tool_call>\n'],
    ["hermes, text only", plan("auto"), "No tools needed: <tool but not a call"],
    ["mistral", plan("auto", "mistral"), 'ok [TOOL_CALLS] [{"name": "add", "arguments": {"a": 5, "b": 6}}]'],
    ["llama3_json", plan("auto", "llama3_json"), ' {"name": "get_weather", "parameters": {"city": "Lima"}}'],
    ["required", plan("required"), '[{"name": "get_weather", "parameters": {"city": "a \\"quoted\\" {city}"}}, {"name": "add", "parameters": {"a": 1, "b": [2, {"c": "}"}]}}]'],
    ["required, cut", plan("required"), '[{"name": "add", "parameters": {"a": 1, "b'],
    ["named", plan("named", "hermes", "add"), '{"a": 7, "b": 8}'],
  ];
  for (const [name, p, text] of cases) {
    it(`${name}: the same message whatever the deltas`, () => {
      const whole = new ToolOutput(p);
      const expected = mergeToolDeltas([whole.push(text), whole.finish()]);
      for (const seed of [1, 2, 3, 4, 5]) {
        const out = new ToolOutput(p);
        const deltas = pieces(text, seed).map((t) => out.push(t));
        deltas.push(out.finish());
        const got = mergeToolDeltas(deltas);
        assert.equal(got.content, expected.content);
        assert.deepEqual(got.toolCalls.map((c) => c.function), expected.toolCalls.map((c) => c.function));
        // Each call's first delta has its id, type and name; the later ones only arguments.
        const seen = new Set<number>();
        for (const d of deltas) for (const t of d.toolCalls) {
          if (!seen.has(t.index)) {
            assert.ok(t.id && t.type === "function" && t.function.name);
            seen.add(t.index);
          } else assert.equal(t.id, undefined);
        }
      }
    });
  }

  it("what the calls are", () => {
    const run = (p: ToolPlan, text: string) => {
      const o = new ToolOutput(p);
      return mergeToolDeltas([o.push(text), o.finish()]);
    };
    const req = run(plan("required"), cases[4]![2]);
    assert.deepEqual(req.toolCalls.map((c) => [c.function.name, JSON.parse(c.function.arguments)]), [["get_weather", { city: 'a "quoted" {city}' }], ["add", { a: 1, b: [2, { c: "}" }] }]]);
    const cut = run(plan("required"), cases[5]![2]);
    assert.deepEqual(cut.toolCalls.map((c) => [c.function.name, c.function.arguments]), [["add", '{"a": 1, "b']]);
    const herm = run(plan("auto"), cases[0]![2]);
    assert.equal(herm.content, "Sure.");
    assert.deepEqual(herm.toolCalls.map((c) => c.function.name), ["add"]);
    assert.equal(run(plan("auto"), cases[1]![2]).content, cases[1]![2]);
    const named = run(plan("named", "hermes", "add"), "");
    assert.deepEqual(named.toolCalls.map((c) => c.function), [{ name: "add", arguments: "{}" }]);
  });
});
