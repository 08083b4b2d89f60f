// The API's boundary, in process (app.inject): every range checked before the engine sees it, limits
// before work, error bodies in OpenAI's shape, CORS, keys, request ids, scoring, /v1/responses.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import type { FastifyInstance } from "fastify";
import pino from "pino";

import { loadModel, type LoadedModel } from "../../src/model/load.js";
import { buildApp } from "../../src/server/app.js";
import type { ServingContext } from "../../src/server/context.js";
import { createServingContext } from "../../src/server/serving.js";
import { BUNDLED_GQA, readReference, REFERENCE_MODELS } from "../helpers.js";

let model: LoadedModel;
let ctx: ServingContext;
let app: FastifyInstance;

before(async () => {
  model = await loadModel(BUNDLED_GQA, { numBlocks: 128 });
  ctx = createServingContext(model, { servedModelNames: ["tiny"], maxModelLen: 2048, maxQueueLen: 300 });
  app = await buildApp({ ctx, logger: pino({ level: "silent" }), apiKey: "k", requestIdHeaders: true, bodyLimit: 16 * 1024 * 1024 });
});
after(async () => {
  await app.close();
  await ctx.text?.close();
  model.engine.dispose();
});

const auth = { authorization: "Bearer k" };
const post = (url: string, payload: unknown, headers: Record<string, string> = auth) => app.inject({ method: "POST", url, payload: payload as object, headers });

function assertOpenAiError(r: { statusCode: number; json(): unknown }, status: number, param?: string | null): { message: string; code: string | null } {
  assert.equal(r.statusCode, status, JSON.stringify(r.json()));
  const e = (r.json() as { error: { message: string; type: string; param: string | null; code: string | null } }).error;
  assert.equal(typeof e.message, "string");
  assert.equal(typeof e.type, "string");
  if (param !== undefined) assert.equal(e.param, param);
  assert.ok(e.code === null || !e.code.startsWith("FST_"), `a framework code leaked: ${e.code}`);
  return e;
}

async function alive(): Promise<void> {
  const r = await post("/v1/completions", { prompt: "Prince", max_tokens: 2, temperature: 0 });
  assert.equal(r.statusCode, 200);
}

describe("numeric ranges", () => {
  it("top_k past 32 bits, huge or wrapping, is a 400 on both routes, and the engine goes on", async () => {
    for (const top_k of [2147483648, 4294967296, 1e12, 2 ** 53, 1e300]) {
      assertOpenAiError(await post("/v1/completions", { prompt: "hi", max_tokens: 4, top_k }), 400, "top_k");
      assertOpenAiError(await post("/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 4, top_k }), 400, "top_k");
    }
    for (const [key, value] of [["seed", 2 ** 53], ["max_tokens", 1e300], ["temperature", 1e9], ["n", 1000], ["logprobs", 21], ["top_p", 0], ["min_p", 2],
      ["presence_penalty", 3], ["repetition_penalty", 0], ["stop_token_ids", [1e12]]] as const) {
      const r = await post("/v1/completions", { prompt: "hi", max_tokens: 2, [key]: value });
      assert.equal(r.statusCode, 400, `${key}=${value}: ${r.body}`);
    }
    await alive();
  });

  it("a value that rounds out of range as the sampler's float32 is a 400 for its request, not a failed step for all", async () => {
    const good = post("/v1/completions", { prompt: "hi", max_tokens: 8, ignore_eos: true });
    for (const [key, value] of [["top_p", 1e-50], ["repetition_penalty", 1e-50]] as const) {
      const r = await post("/v1/completions", { prompt: "hi", max_tokens: 2, [key]: value });
      assertOpenAiError(r, 400, key);
      assert.match(r.json().error.message, new RegExp(`${key} 1e-50 is not usable by the sampler`));
    }
    assert.equal((await good).statusCode, 200);
    await alive();
  });

  it("stop lists are bounded and never overflow the stack", async () => {
    const many = Array.from({ length: 1_000_000 }, (_, i) => `s${i}`);
    assertOpenAiError(await post("/v1/completions", { prompt: "hi", max_tokens: 2, stop: many }), 400, "stop");
    assertOpenAiError(await post("/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 2, stop: many.slice(0, 200_000) }), 400, "stop");
    await alive();
  });
});

describe("limits before work", () => {
  it("counts the sequences a request adds: prompts x n per request, and against the queue", async () => {
    const prompts = Array.from({ length: 20000 }, () => "a");
    assertOpenAiError(await post("/v1/completions", { prompt: prompts, max_tokens: 1 }), 400, "prompt");
    assertOpenAiError(await post("/v1/completions", { prompt: Array(4).fill("a"), n: 128, max_tokens: 1 }), 400, "n");
    // 250 waiting sequences fill most of the queue (300): the next request of 60 gets a 429.
    const blockers = Array.from({ length: 5 }, () => post("/v1/completions", { prompt: Array(50).fill("Prince Andrew"), max_tokens: 64, ignore_eos: true }));
    await new Promise((r) => setTimeout(r, 30));
    const r = await post("/v1/completions", { prompt: Array(60).fill("b"), max_tokens: 1 });
    assert.ok(r.statusCode === 429 || r.statusCode === 200, r.body);
    if (r.statusCode === 429) assert.ok(r.headers["retry-after"]);
    for (const b of await Promise.all(blockers)) assert.ok(b.statusCode === 200 || b.statusCode === 429);
  });

  it("refuses a prompt too long for the context before tokenizing it, naming the right parameter", async () => {
    const huge = "word ".repeat(200_000);  // 1 MB: far more than 2,048 tokens whatever the tokenizer
    const t0 = performance.now();
    const e = assertOpenAiError(await post("/v1/completions", { prompt: huge.slice(0, 900_000), max_tokens: 1 }), 400, "prompt");
    assert.equal(e.code, "context_length_exceeded");
    assert.ok(performance.now() - t0 < 500, "refused without tokenizing");
    assertOpenAiError(await post("/v1/chat/completions", { messages: [{ role: "user", content: huge.slice(0, 900_000) }] }), 400, "messages");
    // Tokenized, and just too long: also "messages" for chat.
    const e2 = assertOpenAiError(await post("/v1/chat/completions", { messages: [{ role: "user", content: "Prince Andrew ".repeat(1500) }] }), 400, "messages");
    assert.equal(e2.code, "context_length_exceeded");
    const big = assertOpenAiError(await post("/v1/completions", { prompt: "x".repeat(17 * 1024 * 1024), max_tokens: 1 }), 413);
    assert.equal(big.code, "request_too_large");
  });
});

describe("error shapes and small routes", () => {
  it("bad JSON, /detokenize edge cases", async () => {
    const bad = await app.inject({ method: "POST", url: "/v1/completions", payload: "{nope", headers: { ...auth, "content-type": "application/json" } });
    assert.equal(assertOpenAiError(bad, 400).code, "invalid_json");
    const empty = await post("/detokenize", { tokens: [] });
    assert.equal(empty.statusCode, 200);
    assert.equal(empty.json().prompt, "");
    assertOpenAiError(await post("/detokenize", { tokens: [1, 32000] }), 400, "tokens");
  });

  it("API keys: any-case Bearer, x-api-key; wrong keys 401", async () => {
    assert.equal((await post("/tokenize", { prompt: "hi" }, { authorization: "bearer k" })).statusCode, 200);
    assert.equal((await post("/tokenize", { prompt: "hi" }, { "x-api-key": "k" })).statusCode, 200);
    assertOpenAiError(await post("/tokenize", { prompt: "hi" }, { authorization: "Bearer wrong" }), 401);
  });

  it("CORS: preflight answered, responses carry the headers", async () => {
    const pre = await app.inject({ method: "OPTIONS", url: "/v1/chat/completions", headers: { origin: "http://page.example", "access-control-request-method": "POST", "access-control-request-headers": "content-type,authorization" } });
    assert.equal(pre.statusCode, 204);
    assert.equal(pre.headers["access-control-allow-origin"], "*");
    assert.match(String(pre.headers["access-control-allow-headers"]), /authorization/i);
    const r = await post("/v1/completions", { prompt: "hi", max_tokens: 1 }, { ...auth, origin: "http://page.example" });
    assert.equal(r.headers["access-control-allow-origin"], "*");
    const sse = await post("/v1/completions", { prompt: "hi", max_tokens: 2, stream: true }, { ...auth, origin: "http://page.example" });
    assert.equal(sse.headers["access-control-allow-origin"], "*");
    assert.match(String(sse.headers["content-type"]), /text\/event-stream/);
  });

  it("X-Request-Id becomes the response id (--enable-request-id-headers), and a repeated id is fine", async () => {
    const a = post("/v1/completions", { prompt: "hi", max_tokens: 2 }, { ...auth, "x-request-id": "abc-123" });
    const b = post("/v1/completions", { prompt: "hi", max_tokens: 2 }, { ...auth, "x-request-id": "abc-123" });
    for (const r of await Promise.all([a, b])) {
      assert.equal(r.statusCode, 200);
      assert.equal(r.json().id, "cmpl-abc-123");
      assert.equal(r.headers["x-request-id"], "abc-123");
    }
  });

  it("metrics under vLLM's names too, the cache usage fresh after steps", async () => {
    await alive();
    const text = (await app.inject({ method: "GET", url: "/metrics" })).body;
    for (const name of ["vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:prompt_tokens_total", "vllm:time_to_first_token_seconds",
      "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds", "vllm:request_success_total", "mla_serve:num_requests_running"]) {
      assert.match(text, new RegExp(`^${name}`, "m"), name);
    }
  });
});

describe("scoring", () => {
  it("echo + logprobs with max_tokens 0 sums to the float64 reference (lm-eval's loglikelihood)", async () => {
    const c = readReference(REFERENCE_MODELS["gutenberg-tiny"]!)[0]!;
    const r = await post("/v1/completions", { prompt: c.prompt_ids, max_tokens: 0, echo: true, logprobs: 1 });
    assert.equal(r.statusCode, 200, r.body);
    const lp = r.json().choices[0].logprobs;
    assert.equal(lp.token_logprobs.length, c.prompt_ids.length);
    assert.equal(lp.token_logprobs[0], null);
    const sum = (lp.token_logprobs as (number | null)[]).slice(1).reduce<number>((a, x) => a + x!, 0);
    assert.ok(Math.abs(sum - c.prompt_logprob_sum) / Math.abs(c.prompt_logprob_sum) < 1e-4, `${sum} vs ${c.prompt_logprob_sum}`);
    assert.equal(r.json().usage.completion_tokens, 0);
    assert.equal(r.json().choices[0].finish_reason, "length");
    assertOpenAiError(await post("/v1/completions", { prompt: "hi", max_tokens: 0 }), 400, "max_tokens");
  });

  it("vLLM's prompt_logprobs: null first, then the token and its top alternatives with ranks", async () => {
    const ids = model.tokenizer!.encode("Prince Andrew said");
    const r = await post("/v1/completions", { prompt: ids, max_tokens: 2, prompt_logprobs: 2, temperature: 0 });
    const pl = r.json().choices[0].prompt_logprobs as (Record<string, { logprob: number; rank: number | null }> | null)[];
    assert.equal(pl.length, ids.length);
    assert.equal(pl[0], null);
    for (let i = 1; i < ids.length; ++i) {
      assert.ok(pl[i]![String(ids[i])], `position ${i} lists its own token`);
      assert.ok(Object.values(pl[i]!).some((e) => e.rank === 1));
    }
    const chat = await post("/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }], max_tokens: 1, prompt_logprobs: 0 });
    assert.equal(chat.json().prompt_logprobs[0], null);
  });
});

describe("/v1/responses", () => {
  it("text input, instructions, max_output_tokens: a completed or incomplete response with usage", async () => {
    const r = await post("/v1/responses", { model: "tiny", input: "Prince Andrew said", instructions: "Answer.", max_output_tokens: 5, temperature: 0 });
    assert.equal(r.statusCode, 200, r.body);
    const b = r.json();
    assert.equal(b.object, "response");
    assert.equal(b.status, "incomplete");
    assert.equal(b.incomplete_details.reason, "max_output_tokens");
    assert.equal(b.output[0].type, "message");
    assert.equal(b.output[0].content[0].type, "output_text");
    assert.equal(b.usage.output_tokens, 5);
    assertOpenAiError(await post("/v1/responses", { input: "hi", previous_response_id: "resp_x" }), 400, "previous_response_id");
    assertOpenAiError(await post("/v1/responses", { input: [{ type: "function_call_output", output: "x" }] }), 400, "input");
  });

  it("streams OpenAI's event types in order", async () => {
    const r = await post("/v1/responses", { input: [{ role: "user", content: [{ type: "input_text", text: "Hello" }] }], max_output_tokens: 4, stream: true });
    const types = r.body.split("\n").filter((l) => l.startsWith("event: ")).map((l) => l.slice(7));
    assert.deepEqual(types.slice(0, 4), ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]);
    assert.ok(types.includes("response.output_text.delta"));
    assert.deepEqual(types.slice(-4), ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"]);
  });
});
