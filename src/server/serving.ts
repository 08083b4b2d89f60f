// Wires a loaded model into an engine, metrics and the context routes use.
import { GrammarEngine } from "../engine/grammar.js";
import { LLMEngine } from "../engine/llm_engine.js";
import type { LoadedModel } from "../model/load.js";
import type { ServingContext } from "./context.js";
import { Metrics } from "./metrics.js";
import { TextWork } from "../tokenizer/pool.js";
import type { ToolParserName } from "./tools.js";

export interface ServingOptions {
  servedModelNames?: string[];
  maxModelLen?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  maxQueueLen?: number;
  logPrompts?: boolean;
  /** Worker threads for long texts (0: everything on the event loop). */
  tokenizerWorkers?: number;
  /** A streaming client that reads nothing for this long loses its request. */
  streamStallMs?: number;
  /** Also publish vllm:* metrics. */
  vllmMetrics?: boolean;
  /** Tool-call parser for tool_choice "auto" (default hermes). */
  toolCallParser?: ToolParserName;
  /** Serve tool_choice "auto" (default true). */
  enableAutoToolChoice?: boolean;
}

/** A function that makes its value on the first call and returns the same promise after (a failure is retried). */
function lazy<T>(make: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | null = null;
  return () => (p ??= make().catch((err: unknown) => {
    p = null;
    throw err;
  }));
}

export function createServingContext(model: LoadedModel, o: ServingOptions = {}): ServingContext {
  const names = o.servedModelNames?.length ? o.servedModelNames : [model.info.name];
  const maxModelLen = o.maxModelLen ?? model.info.maxPositionEmbeddings;
  // The gauges read the engine at scrape time, after it exists; the engine reports to the metrics' observer.
  const metrics: Metrics = new Metrics(names[0]!, () => {
    const c = engine.cacheStats();
    return {
      numRunning: engine.numRunning, numWaiting: engine.numWaiting, kvCacheUsage: c.numBlocks ? 1 - c.numFreeBlocks / c.numBlocks : 0,
      prefixHitTokens: c.prefixHitTokens, prefixQueryTokens: c.prefixQueryTokens,
    };
  }, o.vllmMetrics ?? true);
  const engine = new LLMEngine(model.engine, {
    maxModelLen,
    maxNumSeqs: o.maxNumSeqs ?? 256,
    maxNumBatchedTokens: o.maxNumBatchedTokens ?? 2048,
    eosTokenIds: model.info.eosTokenIds,
    decode: model.tokenizer ? (ids, o) => model.tokenizer!.decode(ids, o.skipSpecialTokens, o.spacesBetweenSpecialTokens) : null,
    observer: metrics.observer,
  });
  return {
    engine, tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, modelNames: names, modelRoot: model.info.dir, maxModelLen,
    text: model.tokenizer ? new TextWork({ dir: model.info.dir, tokenizer: model.tokenizer, chatTemplate: model.chatTemplate, workers: o.tokenizerWorkers ?? 2 }) : null,
    generationDefaults: model.info.generationDefaults, metrics, maxQueueLen: o.maxQueueLen ?? 1000, logPrompts: o.logPrompts ?? false, draining: false,
    streamStallMs: o.streamStallMs ?? 30_000,
    grammar: model.tokenizer ? lazy(() => GrammarEngine.create(model.tokenizer!, model.engine.config().vocabSize, model.info.eosTokenIds)) : null,
    toolParser: o.toolCallParser ?? "hermes",
    autoToolChoice: o.enableAutoToolChoice ?? true,
  };
}
