// Prometheus metrics through prom-client, named as vLLM names them: under mla_serve:* and vllm:*.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

import type { EngineObserver, RequestSummary } from "../engine/llm_engine.js";

/** Engine numbers sampled at scrape time (the function is called only while /metrics is read). */
export interface EngineGauges {
  numRunning: number;
  numWaiting: number;
  kvCacheUsage: number; // 0..1
  prefixHitTokens: number; // cumulative
  prefixQueryTokens: number; // cumulative
}

const TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80, 160, 640, 2560];
const ITL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const E2E_BUCKETS = [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480, 960, 1920, 7680];

type Prefix = "mla_serve" | "vllm";

/** Every metric under each prefix (mla_serve:*, and vllm:* for dashboards built for vLLM); old vLLM names as aliases. */
const ALIASES: Record<string, string[]> = { kv_cache_usage_perc: ["gpu_cache_usage_perc"], inter_token_latency_seconds: ["time_per_output_token_seconds"] };

export class Metrics {
  readonly registry = new Registry();
  private readonly promptTokens: Counter[] = [];
  private readonly generationTokens: Counter[] = [];
  private readonly ttft: Histogram[] = [];
  private readonly itl: Histogram[] = [];
  private readonly e2e: Histogram[] = [];
  private readonly success: Counter[] = [];
  /** What the engine reports as it runs. */
  readonly observer: EngineObserver;

  constructor(modelName: string, gauges: () => EngineGauges, vllmNames = true) {
    this.registry.setDefaultLabels({ model_name: modelName });
    const r = [this.registry];
    const prefixes: Prefix[] = vllmNames ? ["mla_serve", "vllm"] : ["mla_serve"];
    for (const prefix of prefixes) {
      const names = (name: string) => [name, ...(prefix === "vllm" ? (ALIASES[name] ?? []) : [])].map((n) => `${prefix}:${n}`);
      for (const name of names("num_requests_running")) new Gauge({ name, help: "Sequences in the running batch.", registers: r, collect() { this.set(gauges().numRunning); } });
      for (const name of names("num_requests_waiting")) new Gauge({ name, help: "Sequences waiting for admission.", registers: r, collect() { this.set(gauges().numWaiting); } });
      for (const name of names("kv_cache_usage_perc")) new Gauge({ name, help: "Fraction of KV-cache blocks in use (1 = full).", registers: r, collect() { this.set(gauges().kvCacheUsage); } });
      // Cumulative engine counts, published as counters that follow them.
      let lastHits = 0;
      let lastQueries = 0;
      new Counter({
        name: `${prefix}:prefix_cache_hits_total`, help: "Prompt tokens found in the prefix cache.", registers: r,
        collect() { const g = gauges(); this.inc(Math.max(0, g.prefixHitTokens - lastHits)); lastHits = g.prefixHitTokens; },
      });
      new Counter({
        name: `${prefix}:prefix_cache_queries_total`, help: "Prompt tokens looked up in the prefix cache.", registers: r,
        collect() { const g = gauges(); this.inc(Math.max(0, g.prefixQueryTokens - lastQueries)); lastQueries = g.prefixQueryTokens; },
      });
      this.promptTokens.push(new Counter({ name: `${prefix}:prompt_tokens_total`, help: "Prompt tokens processed.", registers: r }));
      this.generationTokens.push(new Counter({ name: `${prefix}:generation_tokens_total`, help: "Tokens generated.", registers: r }));
      this.ttft.push(new Histogram({ name: `${prefix}:time_to_first_token_seconds`, help: "Time to first token.", buckets: TTFT_BUCKETS, registers: r }));
      for (const name of names("inter_token_latency_seconds")) this.itl.push(new Histogram({ name, help: "Time between tokens of a sequence.", buckets: ITL_BUCKETS, registers: r }));
      this.e2e.push(new Histogram({ name: `${prefix}:e2e_request_latency_seconds`, help: "Request latency, arrival to last token.", buckets: E2E_BUCKETS, registers: r }));
      this.success.push(new Counter({ name: `${prefix}:request_success_total`, help: "Finished requests by finish reason.", labelNames: ["finished_reason"], registers: r }));
    }
    collectDefaultMetrics({ register: this.registry, prefix: "mla_serve_process_" });
    this.observer = {
      onTokens: (prompt, generated) => {
        if (prompt) for (const c of this.promptTokens) c.inc(prompt);
        if (generated) for (const c of this.generationTokens) c.inc(generated);
      },
      onFirstToken: (s) => this.ttft.forEach((h) => h.observe(s)),
      onInterToken: (s) => this.itl.forEach((h) => h.observe(s)),
      onRequestDone: (summary: RequestSummary) => this.e2e.forEach((h) => h.observe((summary.finishTime - summary.arrivalTime) / 1000)),
    };
  }

  requestFinished(finishReasons: string[]): void {
    for (const reason of finishReasons) for (const c of this.success) c.inc({ finished_reason: reason });
  }
}
