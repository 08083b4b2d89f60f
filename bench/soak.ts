// A soak run against a spawned server: mixed load with faults for a while, sampling the server's RSS
// and event-loop lag (its /metrics) and /health latency as a client sees it. Prints a line per
// sample and a summary. Also the long-prompt case of the API issue: 4 clients sending 20 MB prompts
// while 32 others stream (the `--long-prompts` phase).
//   node dist/bench/soak.js [--minutes 10] [--model DIR] [--long-prompts-only] [--max-request-bytes 64MiB]
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { parseArgs } from "node:util";

import { startServer, type ServerProcess } from "../test/e2e/server_process.js";

const { values: a } = parseArgs({
  options: { minutes: { type: "string", default: "10" }, model: { type: "string" }, "long-prompts-only": { type: "boolean", default: false }, "max-request-bytes": { type: "string" } },
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pct = (xs: number[], p: number) => (xs.length ? [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(p * xs.length))]! : NaN);

/** Values of the named metrics from one scrape (prom-client resets its event-loop histogram on every scrape). */
async function metricValues(origin: string, names: string[]): Promise<number[]> {
  const text = await (await fetch(`${origin}/metrics`)).text();
  return names.map((name) => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
    return m ? Number(m[1]) : NaN;
  });
}

async function stream(base: string, body: object, signal?: AbortSignal): Promise<number> {
  const res = await fetch(`${base}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...body, stream: true }), signal });
  const reader = res.body!.getReader();
  let bytes = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return bytes;
    bytes += value.length;
  }
}

/** A client that asks for a long stream and never reads it. */
function stalled(origin: string): () => void {
  const u = new URL(origin);
  const s = connect(Number(u.port), u.hostname);
  const body = JSON.stringify({ prompt: "Prince", max_tokens: 1500, n: 4, ignore_eos: true, stream: true });
  s.on("connect", () => {
    s.write(`POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
    s.pause();
  });
  s.on("error", () => {});
  return () => s.destroy();
}

/** /health latencies over `ms`, probed from a process of its own (not slowed by this one's load). */
async function watchHealth(origin: string, ms: number, every = 50): Promise<number[]> {
  const probe = `
    const out = []; const end = Date.now() + ${ms};
    while (Date.now() < end) {
      const t0 = performance.now();
      await fetch(${JSON.stringify(origin)} + "/health").then((r) => r.text());
      out.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, ${every}));
    }
    process.stdout.write(JSON.stringify(out));`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", probe], { stdio: ["ignore", "pipe", "inherit"] });
  let text = "";
  child.stdout.on("data", (d: Buffer) => (text += d.toString()));
  await new Promise((r) => child.on("exit", r));
  return JSON.parse(text) as number[];
}

async function longPrompts(server: ServerProcess, seconds: number): Promise<void> {
  const base = server.baseURL;
  const big = new TextEncoder().encode(JSON.stringify({ prompt: "Prince Andrew said ".repeat(Math.ceil((20 << 20) / 19)), max_tokens: 4 }));
  let stop = false;
  const statuses = new Map<number, number>();
  const senders = Array.from({ length: 4 }, async () => {
    while (!stop) {
      const r = await fetch(`${base}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: big }).catch(() => null);
      if (r) {
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        await r.text();
      }
    }
  });
  const streamers = Array.from({ length: 32 }, async (_, i) => {
    while (!stop) await stream(base, { prompt: "The countess", max_tokens: 32, seed: i, temperature: 0.8 }).catch(() => 0);
  });
  const lat = await watchHealth(server.origin, seconds * 1000);
  stop = true;
  await Promise.all([...senders, ...streamers]);
  process.stdout.write(`long prompts (4 x 20 MB senders, 32 streamers, ${seconds} s): /health p50 ${pct(lat, 0.5).toFixed(1)} ms, ` +
    `p99 ${pct(lat, 0.99).toFixed(1)} ms, max ${Math.max(...lat).toFixed(1)} ms over ${lat.length} probes; 20 MB answers ${JSON.stringify(Object.fromEntries(statuses))}\n`);
}

async function soak(server: ServerProcess, minutes: number): Promise<void> {
  const base = server.baseURL;
  const end = Date.now() + minutes * 60_000;
  let stop = false;
  let requests = 0, failures = 0;
  const workers = Array.from({ length: 12 }, async (_, w) => {
    for (let i = 0; !stop; ++i) {
      const kind = (w + i) % 8;
      try {
        if (kind === 0) {  // cancelled mid-stream
          const ac = new AbortController();
          const p = stream(base, { prompt: "War and peace", max_tokens: 200, ignore_eos: true }, ac.signal).catch(() => 0);
          await sleep(100);
          ac.abort();
          await p;
        } else if (kind === 1) {  // malformed
          const r = await fetch(`${base}/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: '{"messages": [{"role": 1}' });
          await r.text();
        } else if (kind === 2) {  // a stalled client, dropped after a while
          const close = stalled(server.origin);
          await sleep(3000);
          close();
        } else if (kind === 3) {  // n > 1 with logprobs
          const r = await fetch(`${base}/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Moscow", max_tokens: 16, n: 4, logprobs: 5 }) });
          await r.text();
        } else {
          await stream(base, { prompt: `Prince Andrew ${i}`, max_tokens: 48, temperature: 0.8, seed: i });
        }
        requests++;
      } catch {
        failures++;
      }
    }
  });
  const samples: { rss: number; lag: number; health: number }[] = [];
  while (Date.now() < end) {
    const h = await watchHealth(server.origin, 10_000, 100);
    const [rss, heap, lag] = await metricValues(server.origin, ["mla_serve_process_process_resident_memory_bytes",
      "mla_serve_process_nodejs_heap_size_used_bytes", "mla_serve_process_nodejs_eventloop_lag_p99_seconds"]) as [number, number, number];
    samples.push({ rss, lag, health: pct(h, 0.99) });
    process.stdout.write(`t=${Math.round((minutes * 60_000 - (end - Date.now())) / 1000)}s rss ${(rss / 2 ** 20).toFixed(0)} MiB, JS heap ${(heap / 2 ** 20).toFixed(0)} MiB, ` +
      `event-loop lag p99 ${(lag * 1000).toFixed(1)} ms, /health p99 ${pct(h, 0.99).toFixed(1)} ms, requests ${requests}, client errors ${failures}\n`);
  }
  stop = true;
  await Promise.all(workers);
  const rss = samples.map((s) => s.rss);
  process.stdout.write(`soak ${minutes} min: ${requests} requests, RSS ${(Math.min(...rss) / 2 ** 20).toFixed(0)}–${(Math.max(...rss) / 2 ** 20).toFixed(0)} MiB ` +
    `(first ${(rss[0]! / 2 ** 20).toFixed(0)}, last ${(rss[rss.length - 1]! / 2 ** 20).toFixed(0)}), event-loop lag p99 at most ${(Math.max(...samples.map((s) => s.lag)) * 1000).toFixed(1)} ms, ` +
    `/health p99 at most ${Math.max(...samples.map((s) => s.health)).toFixed(1)} ms; server alive: ${server.proc.exitCode === null}\n`);
}

const server = await startServer([...(a.model ? ["--model", a.model] : []), ...(a["max-request-bytes"] ? ["--max-request-bytes", a["max-request-bytes"]] : []),
  "--stream-stall-timeout", "5", "--max-queue-len", "200"]);
try {
  await longPrompts(server, 30);
  if (!a["long-prompts-only"]) await soak(server, Number(a.minutes));
} finally {
  await server.stop();
}
