// Serving benchmark: a spawned `mla-serve serve` on 127.0.0.1, streaming completions at several
// concurrency levels. Prints requests/s, output tokens/s, TTFT and inter-token latency p50/p99.
//   node dist/bench/serve_bench.js [--model DIR] [--levels 1,4,16,64] [--prompt-words 48] [--max-tokens 64]
import { parseArgs } from "node:util";

import { startServer } from "../test/e2e/server_process.js";
import { sseEvents } from "../test/e2e/sse_client.js";

interface Sample { ttft: number; itls: number[]; tokens: number; e2e: number }

async function request(baseURL: string, i: number, words: number, maxTokens: number): Promise<Sample> {
  const prompt = Array.from({ length: words }, (_, k) => ["war", "peace", "the", "prince", "said", "and", "Moscow", "snow"][(i * 3 + k * 7) % 8]).join(" ");
  const t0 = performance.now();
  const res = await fetch(`${baseURL}/completions`, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt, max_tokens: maxTokens, ignore_eos: true, stream: true, temperature: 0.8, seed: i, stream_options: { include_usage: true } }),
  });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let last = t0;
  let ttft = 0;
  const itls: number[] = [];
  let tokens = 0;
  for await (const event of sseEvents(res)) {
    if (event === "[DONE]") continue;
    const chunk = event as { usage?: { completion_tokens: number }; choices?: unknown[] };
    if (chunk.usage) tokens = chunk.usage.completion_tokens;
    if (!chunk.choices?.length) continue;
    const now = performance.now();
    if (!ttft) ttft = now - t0;
    else itls.push(now - last);
    last = now;
  }
  return { ttft, itls, tokens, e2e: performance.now() - t0 };
}

function pct(values: number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { model: { type: "string" }, levels: { type: "string", default: "1,4,16,64" }, "prompt-words": { type: "string", default: "48" }, "max-tokens": { type: "string", default: "64" } } });
  const server = await startServer([...(values.model ? ["--model", values.model] : []), "--log-level", "warn"].filter(Boolean));
  try {
    const words = Number(values["prompt-words"]);
    const maxTokens = Number(values["max-tokens"]);
    process.stdout.write(`streaming completions: ~${words}-word prompts, ${maxTokens} output tokens each\n\n`);
    process.stdout.write("concurrency | requests | req/s | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms\n");
    process.stdout.write("------------|----------|-------|--------------|-------------|-------------|------------|-----------\n");
    for (const level of values.levels!.split(",").map(Number)) {
      const total = Math.max(16, level * 4);
      let next = 0;
      const samples: Sample[] = [];
      const t0 = performance.now();
      await Promise.all(Array.from({ length: level }, async () => {
        while (next < total) samples.push(await request(server.baseURL, next++, words, maxTokens));
      }));
      const seconds = (performance.now() - t0) / 1000;
      const tokens = samples.reduce((a, s) => a + s.tokens, 0);
      const ttfts = samples.map((s) => s.ttft);
      const itls = samples.flatMap((s) => s.itls);
      process.stdout.write(`${String(level).padStart(11)} | ${String(total).padStart(8)} | ${(total / seconds).toFixed(2).padStart(5)} | ${(tokens / seconds).toFixed(1).padStart(12)} | ` +
        `${pct(ttfts, 0.5).toFixed(1).padStart(11)} | ${pct(ttfts, 0.99).toFixed(1).padStart(11)} | ${pct(itls, 0.5).toFixed(2).padStart(10)} | ${pct(itls, 0.99).toFixed(2).padStart(10)}\n`);
    }
  } finally {
    await server.stop();
  }
}

void main();
