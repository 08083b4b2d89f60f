// A spawned server against clients that misbehave: one that stops reading, slow and malformed HTTP,
// a shutdown under load, WebSocket origins. The server must stay up, answer /health, and let go
// of what such clients cost.
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";

import WebSocket from "ws";

import { BUNDLED_GQA } from "../helpers.js";
import { metric, startServer, type ServerProcess } from "./server_process.js";

let server: ServerProcess;
const MODEL = ["--model", BUNDLED_GQA];

before(async () => {
  server = await startServer([...MODEL, "--stream-stall-timeout", "2", "--request-timeout", "3", "--allowed-origins", "http://good.example,http://also.example"]);
});
after(async () => {
  await server.stop();
});

/** Sends raw bytes; resolves with what the server answered before closing (or after `waitMs`). */
function raw(port: number, data: string | Buffer[], waitMs = 8000, gapMs = 0): Promise<string> {
  return new Promise((resolve) => {
    const s: Socket = connect(port, "127.0.0.1");
    let got = "";
    s.on("data", (d) => (got += d.toString()));
    s.on("close", () => resolve(got));
    s.on("error", () => resolve(got));
    setTimeout(() => {
      s.destroy();
      resolve(got);
    }, waitMs).unref();
    s.on("connect", async () => {
      for (const part of typeof data === "string" ? [Buffer.from(data)] : data) {
        if (s.destroyed) return;
        s.write(part);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
  });
}

const port = () => Number(new URL(server.origin).port);

async function healthMs(): Promise<number> {
  const t0 = performance.now();
  const r = await fetch(`${server.origin}/health`);
  assert.equal(r.status, 200);
  return performance.now() - t0;
}

describe("clients that misbehave", () => {
  it("a streaming client that stops reading loses its request within the stall timeout", async () => {
    const body = JSON.stringify({ prompt: "Prince Andrew", max_tokens: 2000, n: 8, logprobs: 5, ignore_eos: true, stream: true });
    const s = connect(port(), "127.0.0.1");
    await new Promise((r) => s.on("connect", r));
    s.write(`POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    s.pause();  // never read: the server's socket buffer fills
    const t0 = performance.now();
    let running = 1;
    // The stall clock starts once the socket buffers are full: at 8 streams of about 0.5 KB a token
    // that takes 10-30 s on a slow 2-core machine, before the 2 s stall timeout itself.
    while (performance.now() - t0 < 60_000) {
      await new Promise((r) => setTimeout(r, 250));
      running = await metric(server.origin, "num_requests_running");
      if (running === 0) break;
    }
    assert.equal(running, 0, `the stalled request was cancelled (still running after ${Math.round(performance.now() - t0)} ms)`);
    assert.ok(await healthMs() < 200);
    s.destroy();
    // Everyone else is served as before.
    const r = await fetch(`${server.baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Natasha", max_tokens: 4 }) });
    assert.equal(r.status, 200);
  });

  it("a body sent a byte at a time gets 408 at the request timeout", async () => {
    const head = "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    const t0 = performance.now();
    const answer = await raw(port(), [Buffer.from(head), ...Array.from({ length: 30 }, () => Buffer.from("{"))], 15_000, 1000);
    assert.match(answer, /^HTTP\/1.1 408/);
    assert.ok(performance.now() - t0 < 9000, `answered after ${performance.now() - t0} ms`);
  });

  it("malformed HTTP gets an OpenAI-shaped error", async () => {
    const bad = await raw(port(), "POST /v1/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n");
    assert.match(bad, /^HTTP\/1.1 400/);
    assert.equal(JSON.parse(bad.slice(bad.indexOf("\r\n\r\n") + 4)).error.code, "bad_http_request");
    const both = await raw(port(), "POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n");
    assert.match(both, /^HTTP\/1.1 400/);
    assert.ok(JSON.parse(both.slice(both.indexOf("\r\n\r\n") + 4)).error);
    const huge = await raw(port(), `GET /health HTTP/1.1\r\nhost: x\r\nx-big: ${"a".repeat(64 * 1024)}\r\n\r\n`);
    assert.match(huge, /^HTTP\/1.1 431/);
    assert.ok(await healthMs() < 200);
  });

  it("WebSocket: the HTTP route's body as is (stream, stream_options), and only allowed origins", async () => {
    const ws = new WebSocket(`${server.origin.replace("http", "ws")}/v1/stream`, { headers: { origin: "http://good.example" } });
    await new Promise((r, j) => ws.on("open", r).on("error", j));
    ws.send(JSON.stringify({ type: "completion", id: "a", prompt: "Prince", max_tokens: 3, stream: true, stream_options: { include_usage: true } }));
    const done = await new Promise<Record<string, unknown>>((resolve) => ws.on("message", (d) => {
      const m = JSON.parse(d.toString());
      if (m.type === "done" || m.type === "error") resolve(m);
    }));
    assert.equal(done.type, "done", JSON.stringify(done));
    assert.equal((done.usage as { completion_tokens: number }).completion_tokens, 3);
    ws.close();
    const evil = new WebSocket(`${server.origin.replace("http", "ws")}/v1/stream`, { headers: { origin: "http://evil.example" } });
    const refused = await new Promise<boolean>((resolve) => {
      evil.on("open", () => resolve(false));
      evil.on("error", () => resolve(true));
      evil.on("unexpected-response", () => resolve(true));
    });
    assert.ok(refused, "a page from another origin cannot open the socket");
    evil.terminate();
  });
});

describe("shutdown", () => {
  it("after SIGTERM new requests get 503, and a stream cut by the drain timeout ends with an error", async () => {
    const s = await startServer([...MODEL, "--drain-timeout", "2"]);
    const res = await fetch(`${s.baseURL}/completions`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Prince", max_tokens: 2000, ignore_eos: true, stream: true }),
    }).catch(() => null);
    assert.ok(res && res.ok);
    const reader = res!.body!.getReader();
    await reader.read();
    const exited = s.stop();
    await new Promise((r) => setTimeout(r, 300));
    const late = await fetch(`${s.baseURL}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "x" }) });
    assert.equal(late.status, 503);
    assert.equal((await late.json()).error.type, "service_unavailable");
    let text = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert.match(text, /"error":\{[^}]*"type":"service_unavailable"/);
    assert.equal(await exited, 0);
  });
});
