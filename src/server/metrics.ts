// Prometheus metrics through prom-client, named as vLLM names them with our prefix.
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

export class Metrics {
  readonly registry = new Registry();
  private readonly promptTokens: Counter;
  private readonly generationTokens: Counter;
  private readonly ttft: Histogram;
  private readonly itl: Histogram;
  private readonly e2e: Histogram;
  private readonly success: Counter;
  /** What the engine reports as it runs. */
  readonly observer: EngineObserver;
  private lastHits = 0;
  private lastQueries = 0;

  constructor(modelName: string, gauges: () => EngineGauges) {
    const labels = { model_name: modelName };
    this.registry.setDefaultLabels(labels);
    const r = [this.registry];
    const self = this;
    new Gauge({ name: "mla_serve:num_requests_running", help: "Sequences in the running batch.", registers: r, collect() { this.set(gauges().numRunning); } });
    new Gauge({ name: "mla_serve:num_requests_waiting", help: "Sequences waiting for admission.", registers: r, collect() { this.set(gauges().numWaiting); } });
    new Gauge({ name: "mla_serve:kv_cache_usage_perc", help: "Fraction of KV-cache blocks in use (1 = full).", registers: r, collect() { this.set(gauges().kvCacheUsage); } });
    new Counter({
      name: "mla_serve:prefix_cache_hits_total", help: "Prompt tokens found in the prefix cache.", registers: r,
      collect() { const g = gauges(); this.inc(Math.max(0, g.prefixHitTokens - self.lastHits)); self.lastHits = g.prefixHitTokens; },
    });
    new Counter({
      name: "mla_serve:prefix_cache_queries_total", help: "Prompt tokens looked up in the prefix cache.", registers: r,
      collect() { const g = gauges(); this.inc(Math.max(0, g.prefixQueryTokens - self.lastQueries)); self.lastQueries = g.prefixQueryTokens; },
    });
    this.promptTokens = new Counter({ name: "mla_serve:prompt_tokens_total", help: "Prompt tokens processed.", registers: r });
    this.generationTokens = new Counter({ name: "mla_serve:generation_tokens_total", help: "Tokens generated.", registers: r });
    this.ttft = new Histogram({ name: "mla_serve:time_to_first_token_seconds", help: "Time to first token.", buckets: TTFT_BUCKETS, registers: r });
    this.itl = new Histogram({ name: "mla_serve:inter_token_latency_seconds", help: "Time between tokens of a sequence.", buckets: ITL_BUCKETS, registers: r });
    this.e2e = new Histogram({ name: "mla_serve:e2e_request_latency_seconds", help: "Request latency, arrival to last token.", buckets: E2E_BUCKETS, registers: r });
    this.success = new Counter({ name: "mla_serve:request_success_total", help: "Finished requests by finish reason.", labelNames: ["finished_reason"], registers: r });
    collectDefaultMetrics({ register: this.registry, prefix: "mla_serve_process_" });
    this.observer = {
      onTokens: (prompt, generated) => {
        if (prompt) this.promptTokens.inc(prompt);
        if (generated) this.generationTokens.inc(generated);
      },
      onFirstToken: (s) => this.ttft.observe(s),
      onInterToken: (s) => this.itl.observe(s),
      onRequestDone: (summary: RequestSummary) => this.e2e.observe((summary.finishTime - summary.arrivalTime) / 1000),
    };
  }

  requestFinished(finishReasons: string[]): void {
    for (const reason of finishReasons) this.success.inc({ finished_reason: reason });
  }
}
