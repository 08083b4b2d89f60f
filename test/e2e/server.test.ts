// The real server, spawned, driven by the official openai client, raw fetch and a WebSocket.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, it } from "node:test";

import OpenAI from "openai";
import WebSocket from "ws";

import { CLI, metric, startServer, waitIdle, type ServerProcess } from "./server_process.js";

let server: ServerProcess;
let client: OpenAI;

before(async () => {
  server = await startServer(["--served-model-name", "tiny", "--kv-cache-memory", "64MiB"]);
  client = new OpenAI({ baseURL: server.baseURL, apiKey: "unused" });
});
after(async () => {
  assert.equal(await server.stop(), 0);
});

const PROMPTS = ["Prince Andrew said", "The old count", "Natasha ran to", "It was a cold morning in", "Pierre looked at"];

function generateCli(prompt: string, maxTokens: number): string {
  const r = spawnSync(process.execPath, [CLI, "generate", "--prompt", prompt, "--max-tokens", String(maxTokens), "--temperature", "0"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.replace(/\n$/, "");
}

describe("openai client", () => {
  it("models: list and retrieve", async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids, ["tiny"]);
    assert.equal((await client.models.retrieve("tiny")).id, "tiny");
    await assert.rejects(client.models.retrieve("gpt-9"), (e: unknown) => e instanceof OpenAI.NotFoundError);
  });

  it("completions, whole and streamed", async () => {
    const whole = await client.completions.create({ model: "tiny", prompt: "The countess", max_tokens: 12, temperature: 0 });
    assert.equal(whole.choices.length, 1);
    assert.equal(whole.usage!.completion_tokens, 12);
    let text = "";
    let usage;
    const stream = await client.completions.create({ model: "tiny", prompt: "The countess", max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true } });
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? "";
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, whole.choices[0]!.text);
    assert.equal(usage!.completion_tokens, 12);
  });

  it("chat, whole and streamed, with n > 1 and seeds", async () => {
    const messages = [{ role: "user" as const, content: "Tell me about Moscow." }];
    const a = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 10, n: 3, seed: 9, temperature: 1 });
    assert.equal(a.choices.length, 3);
    assert.ok(new Set(a.choices.map((c) => c.message.content)).size > 1);
    const b = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 10, n: 3, seed: 9, temperature: 1 });
    assert.deepEqual(b.choices.map((c) => c.message.content), a.choices.map((c) => c.message.content));
    const texts = ["", "", ""];
    const stream = await client.chat.completions.create({ model: "tiny", messages, max_tokens: 10, n: 3, seed: 9, temperature: 1, stream: true });
    for await (const chunk of stream) for (const c of chunk.choices) texts[c.index] += c.delta.content ?? "";
    assert.deepEqual(texts, a.choices.map((c) => c.message.content));
  });

  it("stop strings and logprobs", async () => {
    const free = await client.completions.create({ model: "tiny", prompt: "Prince Andrew said", max_tokens: 40, temperature: 0 });
    const text = free.choices[0]!.text;
    const stop = text.slice(10, 14);
    const cut = await client.completions.create({ model: "tiny", prompt: "Prince Andrew said", max_tokens: 40, temperature: 0, stop: [stop] });
    assert.equal(cut.choices[0]!.text, text.slice(0, text.indexOf(stop)));
    assert.equal(cut.choices[0]!.finish_reason, "stop");
    let streamed = "";
    for await (const chunk of await client.completions.create({ model: "tiny", prompt: "Prince Andrew said", max_tokens: 40, temperature: 0, stop: [stop], stream: true })) {
      streamed += chunk.choices[0]?.text ?? "";
    }
    assert.equal(streamed, cut.choices[0]!.text);
    const chat = await client.chat.completions.create({ model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 5, logprobs: true, top_logprobs: 3 });
    const lp = chat.choices[0]!.logprobs!.content!;
    assert.equal(lp.length, 5);
    for (const t of lp) {
      assert.ok(t.logprob <= 0 && t.top_logprobs.length === 3);
      assert.ok(t.top_logprobs[0]!.logprob >= t.top_logprobs[2]!.logprob);
    }
    // Each token's bytes, in order, are the content's bytes (a SentencePiece space included).
    if (chat.choices[0]!.finish_reason === "length") {
      assert.deepEqual(Buffer.from(lp.flatMap((t) => t.bytes!)), Buffer.from(chat.choices[0]!.message.content!, "utf8"));
    }
  });

  it("greedy server output equals `mla-serve generate`, alone and among 16 concurrent requests", async () => {
    const expected = PROMPTS.map((p) => generateCli(p, 24));
    for (const [i, p] of PROMPTS.entries()) {
      const r = await client.completions.create({ model: "tiny", prompt: p, max_tokens: 24, temperature: 0 });
      assert.equal(r.choices[0]!.text, expected[i], `alone: ${p}`);
    }
    const noise = Array.from({ length: 16 }, (_, i) => client.completions.create({ model: "tiny", prompt: `Noise ${i} `.repeat(1 + (i % 5)), max_tokens: 30, temperature: 0.8, seed: i }));
    const ours = PROMPTS.map((p) => client.completions.create({ model: "tiny", prompt: p, max_tokens: 24, temperature: 0 }));
    const results = await Promise.all(ours);
    results.forEach((r, i) => assert.equal(r.choices[0]!.text, expected[i], `batched: ${PROMPTS[i]}`));
    await Promise.all(noise);
  });

  it("logs the default chat template and the cache capacity at start", () => {
    const log = server.logs.join("");
    assert.match(log, /no chat_template: chat requests use mla-serve's default template/);
    assert.match(log, /"msg":"KV cache: \d+ tokens in \d+ blocks of 64"/);
  });

  it("errors come back as OpenAI errors", async () => {
    await assert.rejects(client.completions.create({ model: "nope", prompt: "x" }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 404 && /does not exist/.test(e.message));
    await assert.rejects(client.completions.create({ model: "tiny", prompt: "x", top_p: 7 }), (e: InstanceType<typeof OpenAI.APIError>) => e.status === 400 && e.param === "top_p");
  });
});

describe("raw HTTP", () => {
  it("malformed requests get 4xx JSON errors, never 5xx", async () => {
    const send = (body: string, type = "application/json") => fetch(`${server.baseURL}/completions`, { method: "POST", body, headers: { "content-type": type } });
    for (const [body, type] of [["{oops", "application/json"], ["", "application/json"], ["null", "application/json"], ['{"prompt": {"a": 1}}', "application/json"], ["prompt=x", "text/plain"]] as const) {
      const r = await send(body, type);
      assert.ok(r.status >= 400 && r.status < 500, `${body}: ${r.status}`);
      assert.equal(typeof (await r.json()).error.message, "string");
    }
  });

  it("a client that disconnects mid-stream frees its request", async () => {
    const controller = new AbortController();
    const r = await fetch(`${server.baseURL}/completions`, {
      method: "POST", headers: { "content-type": "application/json" }, signal: controller.signal,
      body: JSON.stringify({ model: "tiny", prompt: "Once", max_tokens: 2000, ignore_eos: true, stream: true }),
    });
    const reader = r.body!.getReader();
    await reader.read();
    await reader.read();
    controller.abort();
    await waitIdle(server.origin);
  });
});

describe("the event loop keeps answering while the model computes", () => {
  it("/health answers during a long prefill step", async () => {
    const prompt = "The war and the peace of the old prince in Moscow. ".repeat(150); // ~1,800 tokens: one long step
    const t0 = performance.now();
    const long = client.completions.create({ model: "tiny", prompt, max_tokens: 1, temperature: 0 }).then(() => performance.now() - t0);
    await new Promise((r) => setTimeout(r, 30));
    const h0 = performance.now();
    const health = await fetch(`${server.origin}/health`);
    const healthMs = performance.now() - h0;
    const longMs = await long;
    assert.equal(health.status, 200);
    assert.ok(healthMs < longMs / 2, `health took ${healthMs.toFixed(1)} ms while the request took ${longMs.toFixed(1)} ms`);
  });
});

describe("WebSocket /v1/stream", () => {
  function open(): Promise<{ ws: WebSocket; messages: Record<string, unknown>[]; next: (pred: (m: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>> }> {
    const ws = new WebSocket(`${server.origin.replace("http", "ws")}/v1/stream`);
    const messages: Record<string, unknown>[] = [];
    const waiters: [(m: Record<string, unknown>) => boolean, (m: Record<string, unknown>) => void][] = [];
    ws.on("message", (d) => {
      const m = JSON.parse(d.toString()) as Record<string, unknown>;
      messages.push(m);
      for (const [i, [pred, resolve]] of waiters.entries()) if (pred(m)) { waiters.splice(i, 1); resolve(m); break; }
    });
    const next = (pred: (m: Record<string, unknown>) => boolean) => new Promise<Record<string, unknown>>((resolve) => {
      const found = messages.find(pred);
      if (found) resolve(found);
      else waiters.push([pred, resolve]);
    });
    return new Promise((resolve, reject) => {
      ws.on("open", () => resolve({ ws, messages, next }));
      ws.on("error", reject);
    });
  }

  it("streams several requests at once, chunks shaped as SSE chunks", async () => {
    const { ws, messages, next } = await open();
    ws.send(JSON.stringify({ type: "completion", id: "a", model: "tiny", prompt: "The countess", max_tokens: 12, temperature: 0 }));
    ws.send(JSON.stringify({ type: "chat", id: "b", model: "tiny", messages: [{ role: "user", content: "Hi" }], max_tokens: 6, temperature: 0 }));
    const doneA = await next((m) => m.type === "done" && m.id === "a");
    const doneB = await next((m) => m.type === "done" && m.id === "b");
    assert.equal(doneA.finish_reason, "length");
    assert.equal((doneA.usage as { completion_tokens: number }).completion_tokens, 12);
    assert.equal((doneB.usage as { completion_tokens: number }).completion_tokens, 6);
    const textA = messages.filter((m) => m.type === "chunk" && m.id === "a").map((m) => (m.chunk as { choices: { text: string }[] }).choices[0]!.text).join("");
    const whole = await client.completions.create({ model: "tiny", prompt: "The countess", max_tokens: 12, temperature: 0 });
    assert.equal(textA, whole.choices[0]!.text);
    const firstB = messages.find((m) => m.type === "chunk" && m.id === "b")!.chunk as { object: string; choices: { delta: { role: string } }[] };
    assert.equal(firstB.object, "chat.completion.chunk");
    assert.equal(firstB.choices[0]!.delta.role, "assistant");
    ws.close();
  });

  it("cancel stops one request; malformed messages get an error, not a closed socket", async () => {
    const { ws, messages, next } = await open();
    ws.send(JSON.stringify({ type: "completion", id: "long", model: "tiny", prompt: "Once", max_tokens: 2000, ignore_eos: true }));
    await next((m) => m.type === "chunk" && m.id === "long");
    ws.send(JSON.stringify({ type: "cancel", id: "long" }));
    const done = await next((m) => m.type === "done" && m.id === "long");
    assert.equal(done.finish_reason, "cancelled");
    assert.ok((done.usage as { completion_tokens: number }).completion_tokens < 2000);
    ws.send("{not json");
    const bad = await next((m) => m.type === "error" && m.id === null);
    assert.match((bad.error as { message: string }).message, /invalid JSON message/);
    ws.send(JSON.stringify({ type: "completion", id: "x", model: "tiny", prompt: "x", max_tokens: -1 }));
    const invalid = await next((m) => m.type === "error" && m.id === "x");
    assert.equal((invalid.error as { param: string }).param, "max_tokens");
    ws.send(JSON.stringify({ type: "completion", id: "ok", model: "tiny", prompt: "x", max_tokens: 2 }));
    await next((m) => m.type === "done" && m.id === "ok");
    assert.ok(messages.length > 3);
    ws.close();
    await waitIdle(server.origin);
  });

  it("closing the socket cancels its requests", async () => {
    const { ws, next } = await open();
    ws.send(JSON.stringify({ type: "completion", id: "a", model: "tiny", prompt: "Once", max_tokens: 2000, ignore_eos: true }));
    ws.send(JSON.stringify({ type: "completion", id: "b", model: "tiny", prompt: "Twice", max_tokens: 2000, ignore_eos: true }));
    await next((m) => m.type === "chunk" && m.id === "b");
    ws.terminate();
    await waitIdle(server.origin);
    assert.equal(await metric(server.origin, "num_requests_running"), 0);
  });
});

describe("shutdown", () => {
  it("SIGTERM finishes in-flight requests, refuses new ones, exits 0", async () => {
    const s = await startServer([], { MLA_SERVE_DRAIN_TIMEOUT: "30", MLA_SERVE_SERVED_MODEL_NAME: "env-name" });
    const c = new OpenAI({ baseURL: s.baseURL, apiKey: "x" });
    const inflight = c.completions.create({ model: "env-name", prompt: "Long", max_tokens: 150, stream: false, ...{ ignore_eos: true } });
    await new Promise((r) => setTimeout(r, 200));
    const code = s.stop();
    await new Promise((r) => setTimeout(r, 100));
    const late = await fetch(`${s.baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "x", max_tokens: 2 }) })
      .then((res) => res.status, () => "refused");
    assert.ok(late === "refused" || late === 503, `a request after SIGTERM got ${late}`);
    const r = await inflight;
    assert.equal(r.usage!.completion_tokens, 150);
    assert.equal(await code, 0);
  });
});
