// A bounded, seeded fuzzer against a spawned server on 127.0.0.1: valid requests of every route and
// the WebSocket, mutated in type, range, size, encoding, nesting, duplicate keys, truncation and
// pace. Every answer must be a success or a 4xx in OpenAI's error shape, the process must live,
// and /health must answer within 200 ms throughout.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, it } from "node:test";

import WebSocket from "ws";

import { BUNDLED_GQA } from "../helpers.js";
import { startServer, type ServerProcess } from "./server_process.js";

const SEED = Number(process.env.MLA_FUZZ_SEED ?? 20261201);
const REQUESTS = Number(process.env.MLA_FUZZ_REQUESTS ?? 600);

let server: ServerProcess;
before(async () => {
  server = await startServer(["--model", BUNDLED_GQA, "--max-request-bytes", "2MiB", "--request-timeout", "5", "--max-queue-len", "64"]);
});
after(async () => {
  await server.stop();
});

// xorshift32: the same seed, the same requests.
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]! };
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
const BASES: { route: string; body: Record<string, Json> }[] = [
  { route: "/v1/completions", body: { model: "gutenberg-tiny", prompt: "Prince Andrew", max_tokens: 4, temperature: 0.7, top_p: 0.9, top_k: 20, n: 1, stop: ["."], logprobs: 2, seed: 3, stream: false } },
  { route: "/v1/completions", body: { prompt: [1, 400, 500], max_tokens: 3, echo: true, logprobs: 1, stream: true, stream_options: { include_usage: true } } },
  { route: "/v1/chat/completions", body: { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Hi" }], max_tokens: 4, logprobs: true, top_logprobs: 2, stream: true } },
  { route: "/v1/chat/completions", body: { messages: [{ role: "user", content: [{ type: "text", text: "Hello" }] }], max_completion_tokens: 3, presence_penalty: 0.5, frequency_penalty: 0.5, repetition_penalty: 1.1 } },
  { route: "/v1/responses", body: { input: "Hello", instructions: "Answer.", max_output_tokens: 4, stream: false } },
  { route: "/v1/responses", body: { input: [{ role: "user", content: [{ type: "input_text", text: "Hi" }] }], max_output_tokens: 3, stream: true } },
  { route: "/tokenize", body: { prompt: "Hello world" } },
  { route: "/tokenize", body: { messages: [{ role: "user", content: "Hi" }] } },
  { route: "/detokenize", body: { tokens: [1, 2, 3] } },
];
const EXTREMES: Json[] = [0, -1, 1, -0, 1.5, 2 ** 31, 2 ** 32, 2 ** 53 + 2, 1e300, -1e300, "", "x", "NaN", null, true, false, [], {}, [[[[]]]], "😀\u0000\uFFFF"];

function mutateValue(r: ReturnType<typeof rng>, v: Json, depth = 0): Json {
  switch (r.int(6)) {
    case 0: return r.pick(EXTREMES);
    case 1: return typeof v === "string" ? v.repeat(1 + r.int(Math.max(1, Math.floor(300_000 / (v.length + 1))))) : v;
    case 2: return Array.isArray(v) ? [...v, ...Array.from({ length: r.int(3000) }, () => r.pick(EXTREMES))] : [v];
    case 3: return depth < 3 && v && typeof v === "object" && !Array.isArray(v) ? mutateObject(r, v, depth + 1) : { v };
    case 4: return typeof v === "number" ? v * (r.next() < 0.5 ? -1e9 : 1e-9) : String(v);
    default: return v;
  }
}

function mutateObject(r: ReturnType<typeof rng>, o: { [k: string]: Json }, depth = 0): { [k: string]: Json } {
  const out = { ...o };
  const keys = Object.keys(out);
  for (let i = 1 + r.int(3); i > 0; --i) {
    const k = keys.length && r.next() < 0.8 ? r.pick(keys) : r.pick(["n", "best_of", "suffix", "logit_bias", "tools", "tool_choice", "response_format", "x-unknown", "__proto__", "constructor"]);
    if (r.next() < 0.15) delete out[k];
    else out[k] = mutateValue(r, out[k] ?? null, depth);
  }
  return out;
}

/** A request's raw bytes: JSON, or JSON damaged in encoding, nesting, duplicates or truncation. */
function payload(r: ReturnType<typeof rng>, body: { [k: string]: Json }): { bytes: Buffer; type: string } {
  const json = JSON.stringify(body);
  switch (r.int(10)) {
    case 0: return { bytes: Buffer.from(json.slice(0, r.int(json.length))), type: "application/json" };  // truncated
    case 1: return { bytes: Buffer.concat([Buffer.from(json.slice(0, -1)), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from("}")]), type: "application/json" };  // bad UTF-8
    case 2: return { bytes: Buffer.from(`{"max_tokens": 2, "max_tokens": 1e9, ${json.slice(1)}`), type: "application/json" };  // duplicate keys
    case 3: return { bytes: Buffer.from("[".repeat(5000) + "]".repeat(5000)), type: "application/json" };  // deep nesting
    case 4: return { bytes: Buffer.from(json), type: "text/plain" };
    case 5: return { bytes: Buffer.from("\uFEFF" + json), type: "application/json; charset=utf-8" };
    default: return { bytes: Buffer.from(json), type: "application/json" };
  }
}

async function send(route: string, p: { bytes: Buffer; type: string }, slow: boolean): Promise<{ status: number; text: string }> {
  if (!slow) {
    const res = await fetch(server.origin + route, { method: "POST", headers: { "content-type": p.type }, body: new Uint8Array(p.bytes) });
    return { status: res.status, text: await res.text() };
  }
  // Half the body, a pause, the rest.
  return new Promise((resolve) => {
    const s = connect(Number(new URL(server.origin).port), "127.0.0.1");
    let got = "";
    s.on("data", (d) => (got += d.toString()));
    s.on("close", () => resolve({ status: Number(/^HTTP\/1.1 (\d+)/.exec(got)?.[1] ?? 0), text: got.slice(got.indexOf("\r\n\r\n") + 4) }));
    s.on("connect", () => {
      s.write(`POST ${route} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: ${p.type}\r\ncontent-length: ${p.bytes.length}\r\n\r\n`);
      s.write(p.bytes.subarray(0, p.bytes.length >> 1));
      setTimeout(() => s.write(p.bytes.subarray(p.bytes.length >> 1)), 150);
    });
  });
}

function checkAnswer(route: string, status: number, text: string): void {
  assert.ok(status > 0, `${route}: no answer`);
  assert.ok(status < 500, `${route}: ${status} ${text.slice(0, 300)}`);
  if (status >= 400) {
    const e = JSON.parse(text).error;
    assert.ok(e && typeof e.message === "string" && typeof e.type === "string", `${route}: not OpenAI's error shape: ${text.slice(0, 300)}`);
    assert.ok(!String(e.code ?? "").startsWith("FST_"), `${route}: framework code ${e.code}`);
  }
}

describe("fuzzer", () => {
  it(`${REQUESTS} mutated requests (seed ${SEED}): only successes and OpenAI-shaped 4xx; the server lives and /health stays fast`, async () => {
    const r = rng(SEED);
    let worstHealth = 0;
    const statuses = new Map<number, number>();
    const one = async (i: number) => {
      const base = r.pick(BASES);
      const body = mutateObject(r, base.body);
      const { status, text } = await send(base.route, payload(r, body), i % 37 === 0);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      checkAnswer(base.route, status, text.startsWith("data:") || text.startsWith("event:") ? "{}" : text);
    };
    for (let i = 0; i < REQUESTS; i += 4) {
      await Promise.all([0, 1, 2, 3].map((j) => one(i + j)));
      if (i % 40 === 0) {
        const t0 = performance.now();
        const h = await fetch(`${server.origin}/health`);
        assert.equal(h.status, 200);
        worstHealth = Math.max(worstHealth, performance.now() - t0);
      }
      assert.equal(server.proc.exitCode, null, "the server is alive");
    }
    // The WebSocket: mutated messages on one socket, which must stay open.
    const ws = new WebSocket(`${server.origin.replace("http", "ws")}/v1/stream`);
    await new Promise((res, rej) => ws.on("open", res).on("error", rej));
    let closed = false;
    ws.on("close", () => (closed = true));
    for (let i = 0; i < 100; ++i) {
      const base = r.pick(BASES.filter((b) => b.route.includes("completions")));
      const msg = mutateObject(r, { ...base.body, type: base.route.includes("chat") ? "chat" : "completion", id: `f${i}` });
      ws.send(r.next() < 0.1 ? payload(r, msg).bytes : JSON.stringify(msg));
    }
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(closed, false, "a malformed message never closes the socket");
    ws.close();
    assert.ok(worstHealth < 200, `/health took ${worstHealth.toFixed(0)} ms at worst`);
    process.stdout.write(`# fuzz statuses: ${JSON.stringify(Object.fromEntries(statuses))}, worst /health ${worstHealth.toFixed(1)} ms\n`);
  });
});
