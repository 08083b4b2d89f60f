// Load: 1,000 streaming requests, up to 200 in flight, some cancelled mid-stream, on 127.0.0.1.
// Zero 5xx; every request that was not cancelled completes; afterwards the engine is empty and
// every cache block is free.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { startServer, waitIdle, type ServerProcess } from "./server_process.js";
import { sseEvents } from "./sse_client.js";

let server: ServerProcess;
before(async () => {
  server = await startServer(["--kv-cache-memory", "128MiB", "--max-num-seqs", "256", "--max-queue-len", "1000"]);
});
after(async () => {
  assert.equal(await server.stop(), 0);
});

const TOTAL = 1000;
const IN_FLIGHT = 200;
const WORDS = ["Prince", "Andrew", "said", "the", "countess", "Moscow", "war", "peace", "Natasha", "Pierre", "snow", "old", "count"];

interface Outcome { status: number; cancelled: boolean; finished: boolean; tokens: number }

async function one(i: number): Promise<Outcome> {
  const cancel = i % 10 === 3;
  const controller = new AbortController();
  const prompt = Array.from({ length: 2 + (i * 7) % 40 }, (_, k) => WORDS[(i * 13 + k * 5) % WORDS.length]).join(" ");
  const chat = i % 4 === 0;
  const body = chat
    ? { messages: [{ role: "user", content: prompt }], max_tokens: 4 + (i % 21), stream: true, temperature: 0.7, seed: i }
    : { prompt, max_tokens: 4 + (i % 21), stream: true, temperature: 0.7, seed: i, ignore_eos: i % 2 === 0 };
  const res = await fetch(`${server.baseURL}/${chat ? "chat/completions" : "completions"}`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: controller.signal,
  });
  if (res.status !== 200) return { status: res.status, cancelled: false, finished: false, tokens: 0 };
  let chunks = 0;
  let finished = false;
  try {
    for await (const event of sseEvents(res)) {
      if (event === "[DONE]") finished = true;
      else chunks++;
      if (cancel && chunks >= 2) {
        controller.abort();
        return { status: 200, cancelled: true, finished: false, tokens: chunks };
      }
    }
  } catch (err) {
    if (!cancel) throw err;
  }
  return { status: 200, cancelled: false, finished, tokens: chunks };
}

describe("load", () => {
  it(`${TOTAL} streaming requests, ${IN_FLIGHT} in flight, some cancelled`, { timeout: 600_000 }, async () => {
    const outcomes: Outcome[] = [];
    let next = 0;
    const start = performance.now();
    const workers = Array.from({ length: IN_FLIGHT }, async () => {
      while (next < TOTAL) outcomes.push(await one(next++));
    });
    await Promise.all(workers);
    const seconds = (performance.now() - start) / 1000;
    const fiveXX = outcomes.filter((o) => o.status >= 500);
    assert.equal(fiveXX.length, 0);
    const notOk = outcomes.filter((o) => o.status !== 200);
    assert.equal(notOk.length, 0, `statuses: ${[...new Set(notOk.map((o) => o.status))]}`);
    const cancelled = outcomes.filter((o) => o.cancelled).length;
    assert.ok(cancelled >= 90, `cancelled ${cancelled}`);
    const incomplete = outcomes.filter((o) => !o.cancelled && !o.finished);
    assert.equal(incomplete.length, 0);
    await waitIdle(server.origin);
    process.stdout.write(`# load: ${TOTAL} requests in ${seconds.toFixed(1)} s (${(TOTAL / seconds).toFixed(1)} req/s), ${cancelled} cancelled\n`);
  });
});
