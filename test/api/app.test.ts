// The app in-process (app.inject) on the bundled model: routes, validation, errors, auth, limits.
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";

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
  model = await loadModel(BUNDLED_GQA, { numBlocks: 256 });
  ctx = createServingContext(model, { servedModelNames: ["tiny", "alias"], maxModelLen: 512, maxQueueLen: 4 });
  app = await buildApp({ ctx, logger: pino({ level: "silent" }) });
});
after(async () => {
  await app.close();
  model.engine.dispose();
});

function post(url: string, payload: unknown, headers: Record<string, string> = {}) {
  return app.inject({ method: "POST", url, payload: typeof payload === "string" ? payload : JSON.stringify(payload), headers: { "content-type": "application/json", ...headers } });
}

function sseEvents(body: string): unknown[] {
  const lines = body.split("\n\n").filter(Boolean);
  assert.equal(lines[lines.length - 1], "data: [DONE]");
  return lines.slice(0, -1).map((l) => {
    assert.ok(l.startsWith("data: "), l);
    return JSON.parse(l.slice(6));
  });
}

describe("routes", () => {
  it("health, models, metrics", async () => {
    assert.deepEqual((await app.inject("/health")).json(), { status: "ok" });
    const models = (await app.inject("/v1/models")).json();
    assert.deepEqual(models.data.map((m: { id: string }) => m.id), ["tiny", "alias"]);
    assert.equal(models.data[0].max_model_len, 512);
    assert.equal((await app.inject("/v1/models/alias")).json().id, "alias");
    const missing = await app.inject("/v1/models/gpt-9");
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json().error.code, "model_not_found");
    assert.deepEqual((await app.inject("/ping")).json(), { status: "ok" });
    assert.match((await app.inject("/version")).json().version, /^\d+\.\d+\.\d+/);
    await post("/v1/completions", { prompt: "Hello", max_tokens: 3 });
    const metrics = (await app.inject("/metrics")).body;
    for (const name of ["num_requests_running", "num_requests_waiting", "kv_cache_usage_perc", "prefix_cache_hits_total", "prompt_tokens_total",
      "generation_tokens_total", "time_to_first_token_seconds", "inter_token_latency_seconds", "e2e_request_latency_seconds"]) {
      assert.match(metrics, new RegExp(`^mla_serve:${name}`, "m"), name);
    }
    assert.match(metrics, /^mla_serve:generation_tokens_total\{model_name="tiny"\} 3$/m);
  });

  it("completions: whole response with exact usage", async () => {
    const r = await post("/v1/completions", { model: "alias", prompt: ["Prince Andrew", "The countess"], max_tokens: 5, temperature: 0, n: 2 });
    assert.equal(r.statusCode, 200);
    const body = r.json();
    assert.equal(body.object, "text_completion");
    assert.equal(body.model, "tiny");
    assert.equal(body.choices.length, 4);
    assert.deepEqual(body.choices.map((c: { index: number }) => c.index), [0, 1, 2, 3]);
    assert.equal(body.choices[0].text, body.choices[1].text); // greedy: both choices agree
    const promptTokens = model.tokenizer!.encode("Prince Andrew").length + model.tokenizer!.encode("The countess").length;
    assert.deepEqual(body.usage, { prompt_tokens: promptTokens, completion_tokens: 20, total_tokens: promptTokens + 20, prompt_tokens_details: body.usage.prompt_tokens_details });
    assert.ok(body.choices.every((c: { finish_reason: string }) => c.finish_reason === "length"));
  });

  it("completions: SSE chunks, then usage, then [DONE]", async () => {
    const r = await post("/v1/completions", { prompt: "Prince Andrew", max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers["content-type"]), /text\/event-stream/);
    const events = sseEvents(r.body) as { choices: { text: string; finish_reason: string | null }[]; usage: { completion_tokens: number } | null }[];
    const last = events[events.length - 1]!;
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage!.completion_tokens, 6);
    assert.equal(events[events.length - 2]!.choices[0]!.finish_reason, "length");
    const whole = (await post("/v1/completions", { prompt: "Prince Andrew", max_tokens: 6, temperature: 0 })).json();
    assert.equal(events.slice(0, -1).map((e) => e.choices[0]!.text).join(""), whole.choices[0].text);
  });

  it("chat: role chunk first, content, finish; logprobs", async () => {
    const r = await post("/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], max_tokens: 4, stream: true, logprobs: true, top_logprobs: 2, temperature: 0 });
    const events = sseEvents(r.body) as { choices: { delta: { role?: string; content?: string }; logprobs: { content: { top_logprobs: unknown[] }[] } | null; finish_reason: string | null }[] }[];
    assert.deepEqual(events[0]!.choices[0]!.delta, { role: "assistant", content: "" });
    assert.equal(events[events.length - 1]!.choices[0]!.finish_reason, "length");
    const lps = events.flatMap((e) => e.choices[0]!.logprobs?.content ?? []);
    assert.equal(lps.length, 4);
    assert.ok(lps.every((l) => l.top_logprobs.length === 2));
    const whole = (await post("/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], max_completion_tokens: 4, temperature: 0 })).json();
    assert.equal(whole.choices[0].message.role, "assistant");
    assert.equal(whole.choices[0].message.content, events.map((e) => e.choices[0]!.delta.content ?? "").join(""));
  });

  it("echo and legacy logprobs: the prompt's tokens lead (the first without a log-prob), then the completion's", async () => {
    const body = (await post("/v1/completions", { prompt: "Natasha", max_tokens: 3, echo: true, logprobs: 3, temperature: 0 })).json();
    assert.ok(body.choices[0].text.startsWith("Natasha"));
    const lp = body.choices[0].logprobs;
    const promptTokens = model.tokenizer!.encode("Natasha").length;
    assert.equal(lp.tokens.length, promptTokens + 3);
    assert.equal(lp.token_logprobs[0], null);
    assert.equal(lp.top_logprobs[0], null);
    assert.ok(lp.token_logprobs.slice(1).every((x: number) => x < 0));
    assert.ok(lp.top_logprobs.slice(1).every((t: object) => Object.keys(t).length >= 1 && Object.keys(t).length <= 3));
    assert.equal(lp.text_offset[0], 0);
    const alone = (await post("/v1/completions", { prompt: "Natasha", max_tokens: 3, logprobs: 3, temperature: 0 })).json().choices[0].logprobs;
    assert.equal(alone.tokens.length, 3);
    assert.equal(alone.text_offset[0], 0);
  });

  it("stop strings are never emitted", async () => {
    const free = (await post("/v1/completions", { prompt: "Prince Andrew said", max_tokens: 30, temperature: 0, ignore_eos: true })).json().choices[0].text as string;
    const word = free.trim().split(/\s+/)[2]!;
    const cut = (await post("/v1/completions", { prompt: "Prince Andrew said", max_tokens: 30, temperature: 0, stop: [word] })).json().choices[0];
    assert.equal(cut.text, free.slice(0, free.indexOf(word)));
    assert.equal(cut.finish_reason, "stop");
    assert.equal(cut.stop_reason, word);
  });

  it("tokenize and detokenize", async () => {
    const t = (await post("/tokenize", { prompt: "Hello world" })).json();
    assert.deepEqual(t.tokens, model.tokenizer!.encode("Hello world"));
    assert.equal(t.count, t.tokens.length);
    assert.equal((await post("/detokenize", { tokens: t.tokens })).json().prompt, "<s> Hello world");
    const chat = (await post("/tokenize", { messages: [{ role: "user", content: "Hi" }] })).json();
    assert.deepEqual(chat.tokens, model.tokenizer!.encode("<s>User: Hi\nAssistant:", false));
  });
});

describe("bad input gets a 4xx in OpenAI's shape", () => {
  const cases: [string, string, unknown, number, RegExp, string | null][] = [
    ["bad JSON", "/v1/completions", "{bad", 400, /JSON/, null],
    ["body not an object", "/v1/completions", "[1,2]", 400, /request body must be a JSON object/, null],
    ["wrong type", "/v1/completions", { prompt: "x", max_tokens: "ten" }, 400, /max_tokens must be a number/, "max_tokens"],
    ["no prompt", "/v1/completions", { max_tokens: 3 }, 400, /prompt must be/, "prompt"],
    ["temperature out of range", "/v1/completions", { prompt: "x", temperature: -1 }, 400, /temperature must be >= 0/, "temperature"],
    ["top_p out of range", "/v1/completions", { prompt: "x", top_p: 1.5 }, 400, /top_p must be in \(0, 1\]/, "top_p"],
    ["n out of range", "/v1/completions", { prompt: "x", n: 0 }, 400, /n must be in \[1, 128\]/, "n"],
    ["unknown model", "/v1/completions", { model: "gpt-9", prompt: "x" }, 404, /The model `gpt-9` does not exist/, "model"],
    ["token id outside the vocabulary", "/v1/completions", { prompt: [1, 99999] }, 400, /outside the vocabulary/, "prompt"],
    ["prompt longer than the context", "/v1/completions", { prompt: "word ".repeat(600) }, 400, /maximum context length is 512 tokens, but the prompt has 602 tokens/, "prompt"],
    ["max_tokens past the context", "/v1/completions", { prompt: "x", max_tokens: 600 }, 400, /maximum context length is 512 tokens.*\(2 in the prompt, 600 for the completion\)/, "max_tokens"],
    ["unsupported parameter value", "/v1/chat/completions", { messages: [{ role: "user", content: "x" }], use_beam_search: true }, 400, /use_beam_search is not supported/, "use_beam_search"],
    ["unsupported completion parameter", "/v1/completions", { prompt: "x", suffix: "end" }, 400, /suffix is not supported/, "suffix"],
    ["response_format without its schema", "/v1/completions", { prompt: "x", response_format: { type: "json_schema" } }, 400, /json_schema must be a JSON object/, "response_format"],
    ["bad role", "/v1/chat/completions", { messages: [{ role: "wizard", content: "x" }] }, 400, /role must be one of/, "messages"],
    ["empty messages", "/v1/chat/completions", { messages: [] }, 400, /messages must be a non-empty array/, "messages"],
    ["image part", "/v1/chat/completions", { messages: [{ role: "user", content: [{ type: "image_url", image_url: {} }] }] }, 400, /only text parts/, "messages"],
    ["stream_options without stream", "/v1/completions", { prompt: "x", stream_options: { include_usage: true } }, 400, /only allowed when stream is true/, "stream_options"],
    ["unknown route", "/v1/nothing", {}, 404, /no route for POST \/v1\/nothing/, null],
  ];
  for (const [name, url, payload, status, message, param] of cases) {
    it(name, async () => {
      const r = await post(url, payload);
      assert.equal(r.statusCode, status, r.body);
      const err = r.json().error;
      assert.match(err.message, message);
      assert.equal(err.param, param);
      assert.equal(typeof err.type, "string");
    });
  }

  it("429 with Retry-After when the waiting queue is full", async () => {
    const flood = Array.from({ length: 40 }, (_, i) => post("/v1/completions", { prompt: `Request ${i}`, max_tokens: 200, ignore_eos: true }));
    const results = await Promise.all(flood);
    const limited = results.filter((r) => r.statusCode === 429);
    assert.ok(limited.length > 0, "some requests are refused");
    assert.equal(limited[0]!.headers["retry-after"], "1");
    assert.equal(limited[0]!.json().error.type, "rate_limit_error");
    assert.ok(results.every((r) => r.statusCode === 200 || r.statusCode === 429));
    await ctx.engine.whenIdle();
    model.engine.checkIntegrity();
    assert.equal(model.engine.cacheInfo().numFreeBlocks, 256);
  });
});

describe("--chat-template", () => {
  it("replaces the model's template", async () => {
    const file = path.join(mkdtempSync(path.join(tmpdir(), "mla-tpl-")), "t.jinja");
    writeFileSync(file, "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>");
    const custom = await loadModel(BUNDLED_GQA, { numBlocks: 16, chatTemplateFile: file });
    const app2 = await buildApp({ ctx: createServingContext(custom), logger: pino({ level: "silent" }) });
    const r = await app2.inject({ method: "POST", url: "/tokenize", payload: { messages: [{ role: "user", content: "Hi" }] } });
    assert.deepEqual(r.json().tokens, custom.tokenizer!.encode("<user>Hi<assistant>", false));
    assert.equal(custom.usesDefaultChatTemplate, false);
    await app2.close();
    custom.engine.dispose();
  });
});

describe("API key", () => {
  it("401 without the right Bearer token; health and metrics stay open", async () => {
    const secured = await buildApp({ ctx, logger: pino({ level: "silent" }), apiKey: "sk-test" });
    const inject = (url: string, auth?: string) => secured.inject({ method: url.startsWith("/v1/c") ? "POST" : "GET", url, payload: { prompt: "x", max_tokens: 1 }, headers: auth ? { authorization: auth } : {} });
    assert.equal((await inject("/v1/models")).statusCode, 401);
    const wrong = await inject("/v1/completions", "Bearer nope");
    assert.equal(wrong.statusCode, 401);
    assert.equal(wrong.json().error.code, "invalid_api_key");
    assert.equal((await inject("/v1/completions", "Bearer sk-test")).statusCode, 200);
    assert.equal((await inject("/health")).statusCode, 200);
    assert.equal((await inject("/metrics")).statusCode, 200);
    await secured.close();
  });

  it("X-Request-Id is honoured", async () => {
    const r = await app.inject({ url: "/health", headers: { "x-request-id": "abc-123" } });
    assert.equal(r.headers["x-request-id"], "abc-123");
  });
});
