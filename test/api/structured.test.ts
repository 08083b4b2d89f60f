// Structured outputs, tool calls and vLLM's request extras, in process on the bundled model:
// outputs validated against their schemas (ajv, an independent validator), regexes and choices
// matched, streams compared with whole responses, processors checked on the token ids.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Ajv } from "ajv";
import type { FastifyInstance } from "fastify";
import pino from "pino";

import { loadModel, type LoadedModel } from "../../src/model/load.js";
import { buildApp } from "../../src/server/app.js";
import type { ServingContext } from "../../src/server/context.js";
import { createServingContext } from "../../src/server/serving.js";
import { BUNDLED_GQA } from "../helpers.js";

let model: LoadedModel;
let ctx: ServingContext;
let app: FastifyInstance;

before(async () => {
  model = await loadModel(BUNDLED_GQA, { numBlocks: 512 });
  ctx = createServingContext(model, { maxModelLen: 1024 });
  app = await buildApp({ ctx, logger: pino({ level: "silent" }) });
});
after(async () => {
  await app.close();
  model.engine.dispose();
});

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

async function post(url: string, payload: unknown): Promise<{ status: number; json: Json; body: string }> {
  const r = await app.inject({ method: "POST", url, payload: JSON.stringify(payload), headers: { "content-type": "application/json" } });
  return { status: r.statusCode, json: r.body.startsWith("{") ? r.json() : null, body: r.body };
}

async function ok(url: string, payload: unknown): Promise<Json> {
  const r = await post(url, payload);
  assert.equal(r.status, 200, r.body);
  return r.json;
}

function sse(body: string): Json[] {
  const parts = body.split("\n\n").filter(Boolean);
  assert.equal(parts[parts.length - 1], "data: [DONE]");
  return parts.slice(0, -1).map((p) => JSON.parse(p.slice("data: ".length)));
}

async function stream(url: string, payload: object): Promise<Json[]> {
  const r = await post(url, { ...payload, stream: true });
  assert.equal(r.status, 200, r.body);
  return sse(r.body);
}

function errorOf(r: { status: number; json: Json }, param: string): string {
  assert.equal(r.status, 400, JSON.stringify(r.json));
  assert.equal(r.json.error.param, param, JSON.stringify(r.json));
  assert.equal(r.json.error.type, "invalid_request_error");
  return r.json.error.message;
}

const ajv = new Ajv({ strict: false });
function validates(schema: object, text: string): void {
  let value: unknown;
  assert.doesNotThrow(() => (value = JSON.parse(text)), `not JSON: ${text}`);
  assert.ok(ajv.validate(schema, value), `${text} fails its schema: ${ajv.errorsText()}`);
}

// Bounded schemas (enums, integer ranges, short strings), so even this small model completes them.
const SCHEMAS: Record<string, object> = {
  person: {
    type: "object",
    properties: { name: { type: "string", maxLength: 12 }, age: { type: "integer", minimum: 0, maximum: 120 }, member: { type: "boolean" } },
    required: ["name", "age", "member"], additionalProperties: false,
  },
  list: { type: "object", properties: { colors: { type: "array", items: { enum: ["red", "green", "blue"] }, minItems: 1, maxItems: 3 } }, required: ["colors"], additionalProperties: false },
  nested: {
    $defs: { point: { type: "object", properties: { x: { type: "integer", minimum: -9, maximum: 9 }, y: { type: "integer", minimum: -9, maximum: 9 } }, required: ["x", "y"], additionalProperties: false } },
    type: "object", properties: { from: { $ref: "#/$defs/point" }, to: { $ref: "#/$defs/point" }, label: { anyOf: [{ type: "null" }, { type: "string", maxLength: 6 }] } },
    required: ["from", "to", "label"], additionalProperties: false,
  },
  top_level_array: { type: "array", items: { type: "integer", minimum: 0, maximum: 99 }, minItems: 2, maxItems: 4 },
};

describe("structured outputs", () => {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    it(`response_format json_schema (${name}): every choice of n = 3 parses and validates`, async () => {
      const r = await ok("/v1/chat/completions", {
        messages: [{ role: "user", content: "Answer in JSON." }], n: 3, seed: 11, temperature: 1, max_tokens: 120, logprobs: true,
        response_format: { type: "json_schema", json_schema: { name, schema, strict: true } },
      });
      assert.equal(r.choices.length, 3);
      for (const c of r.choices) {
        assert.equal(c.finish_reason, "stop", c.message.content);
        validates(schema, c.message.content);
        assert.ok(c.logprobs.content.length > 0);
      }
      assert.equal(r.usage.completion_tokens, r.choices.reduce((n: number, c: Json) => n + c.logprobs.content.length, 0));
    });
  }

  it("completions: guided_json, guided_choice, guided_regex, guided_grammar and structured_outputs", async () => {
    for (const seed of [1, 2, 3]) {
      const j = await ok("/v1/completions", { prompt: "Data:", max_tokens: 80, seed, guided_json: SCHEMAS.person });
      validates(SCHEMAS.person!, j.choices[0].text);
      const c = await ok("/v1/completions", { prompt: "The color is", max_tokens: 10, seed, guided_choice: ["crimson red", "green", "dark blue"] });
      assert.ok(["crimson red", "green", "dark blue"].includes(c.choices[0].text), c.choices[0].text);
      const re = await ok("/v1/completions", { prompt: "Call", max_tokens: 20, seed, guided_regex: "\\(\\d{3}\\) \\d{3}-\\d{4}" });
      assert.match(re.choices[0].text, /^\(\d{3}\) \d{3}-\d{4}$/);
      const g = await ok("/v1/completions", { prompt: "Verdict:", max_tokens: 20, seed, guided_grammar: 'root ::= ("yes" | "no") " because " [a-z]{1,5} "."' });
      assert.match(g.choices[0].text, /^(yes|no) because [a-z]{1,5}\.$/);
    }
    const so = await ok("/v1/completions", { prompt: "Pick:", max_tokens: 10, structured_outputs: { choice: ["alpha", "beta"] } });
    assert.ok(["alpha", "beta"].includes(so.choices[0].text));
    const sj = await ok("/v1/completions", { prompt: "Data:", max_tokens: 80, structured_outputs: { json: SCHEMAS.list } });
    validates(SCHEMAS.list!, sj.choices[0].text);
    const sr = await ok("/v1/completions", { prompt: "Code:", max_tokens: 20, structured_outputs: { regex: "[A-Z]{3}-[0-9]{2}" } });
    assert.match(sr.choices[0].text, /^[A-Z]{3}-[0-9]{2}$/);
  });

  it("json_object gives an object; the schema as a string works too", async () => {
    const r = await ok("/v1/chat/completions", { messages: [{ role: "user", content: "JSON please" }], max_tokens: 40, seed: 5, response_format: { type: "json_object" } });
    assert.ok(r.choices[0].message.content.startsWith("{"), r.choices[0].message.content);
    const s = await ok("/v1/completions", { prompt: "x", max_tokens: 60, seed: 3, guided_json: JSON.stringify(SCHEMAS.list) });
    validates(SCHEMAS.list!, s.choices[0].text);
  });

  it("max_tokens before the grammar completes ends with length, as vLLM does", async () => {
    const schema = { type: "object", properties: { story: { type: "string", minLength: 200 } }, required: ["story"] };
    const r = await ok("/v1/completions", { prompt: "Story:", max_tokens: 6, guided_json: schema });
    assert.equal(r.choices[0].finish_reason, "length");
    const text = r.choices[0].text as string;
    assert.ok(text.startsWith('{"story": "') || '{"story": "'.startsWith(text), text);
  });

  it("streams give what whole responses give for the same seed (n = 2)", async () => {
    const body = { prompt: "Record:", max_tokens: 80, n: 2, seed: 42, temperature: 1, guided_json: SCHEMAS.nested };
    const whole = await ok("/v1/completions", body);
    const chunks = await stream("/v1/completions", body);
    const texts = ["", ""];
    for (const ch of chunks) for (const c of ch.choices) texts[c.index] += c.text;
    assert.deepEqual(texts, whole.choices.map((c: Json) => c.text));
    for (const t of texts) validates(SCHEMAS.nested!, t);
  });

  it("concurrent requests with different grammars each follow their own", async () => {
    const schemas = [SCHEMAS.person!, SCHEMAS.list!, SCHEMAS.nested!, SCHEMAS.top_level_array!];
    const results = await Promise.all(schemas.flatMap((schema, i) => [0, 1].map((k) => ok("/v1/completions", { prompt: `Item ${i}${k}:`, max_tokens: 100, seed: i * 2 + k, guided_json: schema }))));
    results.forEach((r, j) => validates(schemas[Math.floor(j / 2)]!, r.choices[0].text));
    const free = await ok("/v1/completions", { prompt: "Item:", max_tokens: 8, seed: 1, ignore_eos: true });
    assert.equal(free.usage.completion_tokens, 8);  // an unconstrained request after them is not constrained
  });

  it("a cancelled constrained stream frees its matchers", async () => {
    const engine = await ctx.grammar!();
    const origin = await app.listen({ port: 0, host: "127.0.0.1" });
    const ac = new AbortController();
    const res = await fetch(`${origin}/v1/completions`, {
      method: "POST", headers: { "content-type": "application/json" }, signal: ac.signal,
      body: JSON.stringify({ prompt: "Long:", max_tokens: 400, n: 3, stream: true, guided_json: { type: "object", properties: { s: { type: "string", minLength: 300 } }, required: ["s"] } }),
    });
    const reader = res.body!.getReader();
    await reader.read();
    assert.equal(engine.liveMatchers, 3);
    ac.abort();
    for (let i = 0; i < 100 && engine.liveMatchers > 0; ++i) await new Promise((r) => setTimeout(r, 20));
    assert.equal(engine.liveMatchers, 0);
    assert.equal(ctx.engine.numRunning + ctx.engine.numWaiting, 0);
  });

  it("bad grammars are 400s naming their field", async () => {
    const m = errorOf(await post("/v1/completions", { prompt: "x", guided_json: { type: "object", properties: { a: { type: "no-such-type" } } } }), "guided_json");
    assert.match(m, /no-such-type/);
    errorOf(await post("/v1/completions", { prompt: "x", guided_json: "{not json" }), "guided_json");
    errorOf(await post("/v1/completions", { prompt: "x", guided_regex: "(unclosed" }), "guided_regex");
    errorOf(await post("/v1/completions", { prompt: "x", guided_grammar: "root ::= " }), "guided_grammar");
    errorOf(await post("/v1/completions", { prompt: "x", guided_choice: [] }), "guided_choice");
    errorOf(await post("/v1/chat/completions", { messages: [{ role: "user", content: "x" }], response_format: { type: "xml" } }), "response_format");
    errorOf(await post("/v1/chat/completions", { messages: [{ role: "user", content: "x" }], response_format: { type: "json_schema", json_schema: { name: "a" } } }), "response_format");
    errorOf(await post("/v1/completions", { prompt: "x", guided_choice: ["a"], guided_regex: "b" }), "guided_choice");
    errorOf(await post("/v1/completions", { prompt: "x", guided_json: {}, guided_decoding_backend: "outlines" }), "guided_decoding_backend");
    // The server still serves constrained requests after refusing bad ones.
    const r = await ok("/v1/completions", { prompt: "x", max_tokens: 5, guided_choice: ["ok"] });
    assert.equal(r.choices[0].text, "ok");
  });
});

const TOOLS = [
  { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string", maxLength: 10 }, unit: { enum: ["celsius", "fahrenheit"] } }, required: ["city", "unit"] } } },
  { type: "function", function: { name: "add", description: "Adds two numbers", parameters: { type: "object", properties: { a: { type: "integer", minimum: 0, maximum: 99 }, b: { type: "integer", minimum: 0, maximum: 99 } }, required: ["a", "b"] } } },
];
const params = (name: string) => TOOLS.find((t) => t.function.name === name)!.function.parameters;
const ask = [{ role: "user", content: "What is the weather in Paris, and what is 2 + 3?" }];

/** delta.tool_calls of a chat stream merged into whole calls; checks OpenAI's order (id, type and name first). */
function streamedCalls(chunks: Json[]): { calls: Json[]; content: string; finish: string | null } {
  const calls: Json[] = [];
  let content = "";
  let finish: string | null = null;
  for (const ch of chunks) {
    const c = ch.choices[0];
    if (!c) continue;
    content += c.delta.content ?? "";
    finish = c.finish_reason ?? finish;
    for (const t of c.delta.tool_calls ?? []) {
      if (!calls[t.index]) {
        assert.ok(t.id && t.type === "function" && typeof t.function.name === "string", `first delta of a call carries id, type and name: ${JSON.stringify(t)}`);
        assert.equal(t.function.arguments, "");
        calls[t.index] = { id: t.id, type: "function", function: { name: t.function.name, arguments: "" } };
      } else {
        assert.equal(t.id, undefined);
        calls[t.index].function.arguments += t.function.arguments;
      }
    }
  }
  return { calls, content, finish };
}

describe("tool calls", () => {
  it('tool_choice "required" (one call): a valid call of a known tool, whole and streamed alike', async () => {
    for (const seed of [1, 2, 3]) {
      const body = { messages: ask, tools: TOOLS, tool_choice: "required", parallel_tool_calls: false, max_tokens: 120, seed, temperature: 1 };
      const whole = await ok("/v1/chat/completions", body);
      const m = whole.choices[0].message;
      assert.equal(whole.choices[0].finish_reason, "tool_calls");
      assert.equal(m.content, null);
      assert.ok(m.tool_calls.length >= 1);
      for (const call of m.tool_calls) {
        assert.match(call.id, /^call_/);
        validates(params(call.function.name), call.function.arguments);
      }
      const s = streamedCalls(await stream("/v1/chat/completions", body));
      assert.equal(s.finish, "tool_calls");
      assert.deepEqual(s.calls.map((c) => c.function), m.tool_calls.map((c: Json) => c.function));
    }
  });

  it('tool_choice "required" (parallel): calls stream one after another; a cut ends with length', async () => {
    const body = { messages: ask, tools: TOOLS, tool_choice: "required", max_tokens: 70, seed: 4, temperature: 1 };
    const whole = await ok("/v1/chat/completions", body);
    const calls = whole.choices[0].message.tool_calls as Json[];
    const finish = whole.choices[0].finish_reason;
    assert.ok(calls.length >= 1);
    // Every call but a last one cut by max_tokens is complete and valid.
    calls.forEach((c, i) => {
      if (i < calls.length - 1 || finish !== "length") validates(params(c.function.name), c.function.arguments);
    });
    assert.equal(new Set(calls.map((c) => c.id)).size, calls.length);
    const s = streamedCalls(await stream("/v1/chat/completions", body));
    assert.equal(s.finish, finish);
    assert.deepEqual(s.calls.map((c) => c.function), calls.map((c) => c.function));
  });

  it("a named function: its arguments, streamed in fragments", async () => {
    const body = { messages: ask, tools: TOOLS, tool_choice: { type: "function", function: { name: "add" } }, max_tokens: 60, seed: 7 };
    const whole = await ok("/v1/chat/completions", body);
    const call = whole.choices[0].message.tool_calls[0];
    assert.equal(whole.choices[0].message.tool_calls.length, 1);
    assert.equal(call.function.name, "add");
    validates(params("add"), call.function.arguments);
    assert.equal(whole.choices[0].finish_reason, "stop");  // as OpenAI reports a forced function
    const chunks = await stream("/v1/chat/completions", body);
    const s = streamedCalls(chunks);
    assert.deepEqual(s.calls[0].function, call.function);
    const fragments = chunks.filter((ch) => ch.choices[0]?.delta.tool_calls?.[0]?.function.arguments).length;
    assert.ok(fragments > 1, "arguments arrive in several chunks");
  });

  it('"auto" reads hermes calls from the output (the model led to one by a regex)', async () => {
    const call = '<tool_call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool_call>';
    const regex = call.replace(/[{}()[\]\\.*+?^$|]/g, (c) => `\\${c}`);
    const body = { messages: ask, tools: TOOLS, max_tokens: 150, guided_regex: regex };
    const whole = await ok("/v1/chat/completions", body);
    assert.equal(whole.choices[0].finish_reason, "tool_calls");
    assert.equal(whole.choices[0].message.content, null);
    assert.deepEqual(whole.choices[0].message.tool_calls.map((c: Json) => [c.function.name, JSON.parse(c.function.arguments)]), [["add", { a: 2, b: 3 }]]);
    const s = streamedCalls(await stream("/v1/chat/completions", body));
    assert.equal(s.content, "");
    assert.equal(s.finish, "tool_calls");
    assert.deepEqual(s.calls.map((c) => c.function), whole.choices[0].message.tool_calls.map((c: Json) => c.function));
    // Text that only looks like a call (an unknown tool) stays content.
    const fake = await ok("/v1/chat/completions", { ...body, guided_regex: regex.replace("add", "nope") });
    assert.equal(fake.choices[0].finish_reason, "stop");
    assert.equal(fake.choices[0].message.tool_calls.length, 0);
    assert.match(fake.choices[0].message.content, /nope/);
  });

  it('"none" and no tools: plain content', async () => {
    const r = await ok("/v1/chat/completions", { messages: ask, tools: TOOLS, tool_choice: "none", max_tokens: 8, seed: 1 });
    assert.deepEqual(r.choices[0].message.tool_calls, []);
    assert.equal(typeof r.choices[0].message.content, "string");
  });

  it("assistant tool_calls and tool results go through the template", async () => {
    const messages = [...ask,
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "add", arguments: '{"a": 2, "b": 3}' } }] },
      { role: "tool", tool_call_id: "call_1", content: "5" }];
    const t = await ok("/tokenize", { messages, tools: TOOLS });
    const text = (await ok("/detokenize", { tokens: t.tokens })).prompt as string;
    assert.match(text, /<tools>\n\{"type": ?"function"/);
    assert.match(text, /<tool_call>\n\{"name": "add", "arguments": \{"a": ?2, ?"b": ?3\}\}\n<\/tool_call>/);
    assert.match(text, /Tool: <tool_response>\n5\n<\/tool_response>\nAssistant:$/);
    const r = await ok("/v1/chat/completions", { messages, tools: TOOLS, max_tokens: 4 });
    assert.equal(r.usage.prompt_tokens, t.count);
  });

  it("bad tool requests are 400s", async () => {
    errorOf(await post("/v1/chat/completions", { messages: ask, tools: TOOLS, tool_choice: { type: "function", function: { name: "missing" } } }), "tool_choice");
    errorOf(await post("/v1/chat/completions", { messages: ask, tool_choice: "required" }), "tool_choice");
    errorOf(await post("/v1/chat/completions", { messages: ask, tools: [{ type: "function", function: { name: "bad name!" } }] }), "tools");
    errorOf(await post("/v1/chat/completions", { messages: ask, tools: [TOOLS[0], TOOLS[0]] }), "tools");
    errorOf(await post("/v1/chat/completions", { messages: ask, tools: TOOLS, tool_choice: "required", guided_json: {} }), "guided_json");
    errorOf(await post("/v1/chat/completions", { messages: ask, functions: [{ name: "f" }] }), "functions");
    errorOf(await post("/v1/chat/completions", { messages: [{ role: "assistant", content: null, tool_calls: [{ type: "function", function: { name: "f", arguments: "{oops" } }] }] }), "messages");
  });
});

/** Output token ids, via logprobs with return_tokens_as_token_ids. */
function ids(choice: Json): number[] {
  return choice.logprobs.tokens.map((t: string) => Number(/^token_id:(\d+)$/.exec(t)![1]));
}

describe("vLLM's request extras", () => {
  const base = { prompt: "The old prince", max_tokens: 12, temperature: 0, logprobs: 0, return_tokens_as_token_ids: true };

  it("logit_bias: +100 forces a token, -100 bans the greedy one", async () => {
    const greedy = ids((await ok("/v1/completions", base)).choices[0]);
    const forced = ids((await ok("/v1/completions", { ...base, logit_bias: { "1234": 100 } })).choices[0]);
    assert.deepEqual(forced, Array(12).fill(1234));
    const banned = ids((await ok("/v1/completions", { ...base, logit_bias: { [String(greedy[0])]: -100 } })).choices[0]);
    assert.notEqual(banned[0], greedy[0]);
    assert.ok(!banned.includes(greedy[0]!));
  });

  it("allowed_token_ids and bad_words", async () => {
    const allowed = [500, 600, 700, 800];
    const a = ids((await ok("/v1/completions", { ...base, temperature: 1, seed: 3, allowed_token_ids: allowed })).choices[0]);
    assert.ok(a.every((t) => allowed.includes(t)), String(a));
    // A word the greedy output has, banned: its token sequences (alone and after a space) never appear.
    const text = (await ok("/v1/completions", { ...base, max_tokens: 40 })).choices[0].text as string;
    const word = text.trim().split(/\s+/).find((w) => /^[a-z]{3,}$/.test(w))!;
    assert.ok(word, text);
    const forms = await Promise.all([word, ` ${word}`].map(async (w) => (await ok("/tokenize", { prompt: w, add_special_tokens: false })).tokens as number[]));
    const has = (out: number[], seq: number[]) => out.some((_, i) => seq.every((t, j) => out[i + j] === t));
    const out = ids((await ok("/v1/completions", { ...base, max_tokens: 40 })).choices[0]);
    assert.ok(forms.some((f) => has(out, f)), "the greedy output has the word");
    const banned = ids((await ok("/v1/completions", { ...base, max_tokens: 40, bad_words: [word] })).choices[0]);
    for (const f of forms) assert.ok(!has(banned, f), `${f} in ${banned}`);
  });

  it("min_tokens holds off stop tokens; include_stop_str_in_output keeps the stop string", async () => {
    const first = ids((await ok("/v1/completions", base)).choices[0])[0]!;
    const stopped = await ok("/v1/completions", { ...base, stop_token_ids: [first] });
    assert.equal(stopped.usage.completion_tokens, 1);
    const held = await ok("/v1/completions", { ...base, stop_token_ids: [first], min_tokens: 5 });
    assert.ok(held.usage.completion_tokens >= 5);
    const text = (await ok("/v1/completions", base)).choices[0].text as string;
    const stop = text.trim().split(/\s+/)[1]!;
    const cut = await ok("/v1/completions", { ...base, logprobs: null, stop: [stop] });
    const kept = await ok("/v1/completions", { ...base, logprobs: null, stop: [stop], include_stop_str_in_output: true });
    assert.equal(kept.choices[0].text, cut.choices[0].text + stop);
  });

  it("skip_special_tokens and spaces_between_special_tokens", async () => {
    const body = { prompt: "x", max_tokens: 3, temperature: 0, ignore_eos: true, logit_bias: { "1": 100 } };  // <s>
    assert.equal((await ok("/v1/completions", body)).choices[0].text, "");
    // Set apart from the prompt's text too, as Hugging Face's slow tokenizers (and vLLM with them) do.
    assert.equal((await ok("/v1/completions", { ...body, skip_special_tokens: false })).choices[0].text, " <s> <s> <s>");
    assert.equal((await ok("/v1/completions", { ...body, skip_special_tokens: false, spaces_between_special_tokens: false })).choices[0].text, "<s><s><s>");
  });

  it("continuous_usage_stats: every chunk counts its tokens so far", async () => {
    const chunks = await stream("/v1/completions", { prompt: "Hello", max_tokens: 6, ignore_eos: true, stream_options: { include_usage: true, continuous_usage_stats: true } });
    const counts = chunks.filter((c) => c.choices.length).map((c) => c.usage.completion_tokens);
    assert.ok(counts.length >= 2);
    assert.deepEqual(counts, [...counts].sort((a, b) => a - b));
    assert.equal(counts[counts.length - 1], 6);
    assert.equal(chunks[chunks.length - 1].usage.completion_tokens, 6);
  });

  it("chat_template, chat_template_kwargs, add_generation_prompt, continue_final_message", async () => {
    const render = async (extra: object, messages: object[] = [{ role: "user", content: "Hi" }]) =>
      (await ok("/detokenize", { tokens: (await ok("/tokenize", { messages, ...extra })).tokens })).prompt as string;
    assert.match(await render({}), /User: Hi\nAssistant:$/);
    assert.match(await render({ add_generation_prompt: false }), /User: Hi\n$/);
    const cont = await render({ continue_final_message: true, add_generation_prompt: false }, [{ role: "user", content: "Hi" }, { role: "assistant", content: "Once upon" }]);
    assert.match(cont, /Assistant: Once upon$/);
    const own = await render({ chat_template: "{{ greeting }}, {{ messages[0]['content'] }}!", chat_template_kwargs: { greeting: "Hello there" } });
    assert.equal(own, "Hello there, Hi!");
    const r = await ok("/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }, { role: "assistant", content: "Once upon" }], continue_final_message: true, add_generation_prompt: false, max_tokens: 3 });
    assert.equal(r.choices.length, 1);
    errorOf(await post("/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], continue_final_message: true }), "continue_final_message");
  });

  it("truncate_prompt_tokens keeps the prompt's last tokens", async () => {
    const r = await ok("/v1/completions", { prompt: "one two three four five six seven eight nine ten", max_tokens: 1, truncate_prompt_tokens: 4, echo: true });
    assert.equal(r.usage.prompt_tokens, 4);
    assert.match(r.choices[0].text, /ten/);
  });

  it("what is not implemented is refused, never ignored", async () => {
    errorOf(await post("/v1/completions", { prompt: "x", use_beam_search: true }), "use_beam_search");
    errorOf(await post("/v1/completions", { prompt: "x", logits_processors: ["a"] }), "logits_processors");
    errorOf(await post("/v1/chat/completions", { messages: ask, echo: true }), "echo");
    errorOf(await post("/v1/completions", { prompt: "x", priority: 3 }), "priority");
    errorOf(await post("/v1/completions", { prompt: "x", logit_bias: { abc: 1 } }), "logit_bias");
    errorOf(await post("/v1/completions", { prompt: "x", logit_bias: { "5": 101 } }), "logit_bias");
    errorOf(await post("/v1/completions", { prompt: "x", logit_bias: { "9999999": 1 } }), "logit_bias");
    errorOf(await post("/v1/completions", { prompt: "x", allowed_token_ids: [] }), "allowed_token_ids");
    errorOf(await post("/v1/completions", { prompt: "x", max_tokens: 4, min_tokens: 5 }), "min_tokens");
    errorOf(await post("/v1/completions", { prompt: "x", bad_words: [""] }), "bad_words");
  });
});
