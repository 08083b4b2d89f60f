// mla-serve serve: the OpenAI-compatible server. Flags follow vLLM's names where the meaning matches.
import pino from "pino";

import { loadModel } from "../model/load.js";
import { native } from "../native/binding.js";
import { buildApp } from "../server/app.js";
import { createServingContext } from "../server/serving.js";
import { TOOL_PARSERS, type ToolParserName } from "../server/tools.js";
import { parseFlags, usage, UsageError, type FlagSpec } from "./args.js";
import { engineFlags, loadOptionsFrom, parseBytes } from "./common.js";
import { chooseModel, modelFlags } from "./model_source.js";

const FLAGS: Record<string, FlagSpec> = {
  host: { type: "string", default: "0.0.0.0", help: "address to listen on" },
  port: { type: "int", default: 8000, help: "port to listen on" },
  "api-key": { type: "string", help: "require this key as a Bearer token on /v1/* (health and metrics stay open)" },
  "served-model-name": { type: "string", help: "comma-separated names the model answers to (default: the folder name)" },
  "max-model-len": { type: "int", help: "context length (default: the model's max_position_embeddings)" },
  "max-num-seqs": { type: "int", default: 256, help: "sequences in the running batch at most" },
  "max-num-batched-tokens": { type: "int", default: 2048, help: "tokens per step at most (long prompts are prefilled in chunks)" },
  "chat-template": { type: "string", help: "a Jinja chat template file that replaces the model's" },
  "enable-prefix-caching": { type: "boolean", default: true, help: "share cache blocks of identical prompt prefixes" },
  "max-queue-len": { type: "int", default: 1000, help: "requests waiting for admission before new ones get 429" },
  "drain-timeout": { type: "float", default: 30, help: "seconds to finish in-flight requests after SIGTERM" },
  "log-prompts": { type: "boolean", default: false, help: "include prompt text in the request log" },
  "log-level": { type: "string", default: "info", help: "trace, debug, info, warn, error" },
  "allowed-origins": { type: "string", default: "*", help: "CORS: origins allowed to call the API, comma-separated or a JSON list (* any)" },
  "allowed-methods": { type: "string", default: "*", help: "CORS: methods allowed (comma-separated or a JSON list)" },
  "allowed-headers": { type: "string", default: "*", help: "CORS: request headers allowed (comma-separated or a JSON list)" },
  "allow-credentials": { type: "boolean", default: false, help: "CORS: allow cookies and authorization from other origins" },
  "enable-request-id-headers": { type: "boolean", default: false, help: "a request's X-Request-Id becomes the response's id" },
  "max-request-bytes": { type: "string", default: "16MiB", help: "larger request bodies get 413 while they arrive" },
  "request-timeout": { type: "float", default: 60, help: "seconds a request (headers and body) may take to arrive" },
  "stream-stall-timeout": { type: "float", default: 30, help: "seconds a streaming client may stop reading before its request is cancelled" },
  "tokenizer-workers": { type: "int", default: 2, help: "worker threads that tokenize long prompts off the event loop (0: none)" },
  "vllm-metrics": { type: "boolean", default: true, help: "also publish every metric under vLLM's names (vllm:*), for vLLM dashboards" },
  "tool-call-parser": { type: "string", default: "hermes", help: `how tool calls are read from output with tool_choice "auto": ${TOOL_PARSERS.join(", ")}` },
  "enable-auto-tool-choice": { type: "boolean", default: true, help: 'serve tool_choice "auto" (--no-enable-auto-tool-choice: refuse it with a 400)' },
  ...engineFlags(),
  ...modelFlags(),
};

/** "a,b" or '["a", "b"]' -> ["a", "b"]. */
function listFlag(v: unknown, flag: string): string[] {
  const text = String(v).trim();
  let list: unknown = text.split(",").map((s) => s.trim()).filter(Boolean);
  if (text.startsWith("[")) {
    try {
      list = JSON.parse(text);
    } catch {
      throw new UsageError(`--${flag} must be a comma-separated list or a JSON list of strings, got ${text}`);
    }
  }
  if (!Array.isArray(list) || list.length === 0 || list.some((s) => typeof s !== "string")) throw new UsageError(`--${flag} must list at least one string`);
  return list as string[];
}

function toolParser(v: unknown): ToolParserName {
  if (!(TOOL_PARSERS as readonly string[]).includes(String(v))) throw new UsageError(`--tool-call-parser must be one of ${TOOL_PARSERS.join(", ")}, got ${String(v)}`);
  return v as ToolParserName;
}

function positiveInt(v: unknown, flag: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw new UsageError(`--${flag} must be a positive integer`);
  return v;
}

function nonNegativeInt(v: unknown, flag: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) throw new UsageError(`--${flag} must be a non-negative integer`);
  return v;
}

function positiveSeconds(v: unknown, flag: string): number {
  if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) throw new UsageError(`--${flag} must be a positive number of seconds`);
  return v;
}

export async function serveCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, FLAGS);
  if (v.help) {
    process.stdout.write(usage("serve", "[MODEL_DIR | --model DIR] [options]", FLAGS) + "\n");
    return 0;
  }
  if (positionals.length > 1) throw new UsageError(`serve takes one model folder, got: ${positionals.join(" ")}`);
  const port = v.port as number;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be in [0, 65535], got ${port}`);
  const toolCallParser = toolParser(v["tool-call-parser"]);
  const logger = pino({ level: v["log-level"] as string, base: { service: "mla-serve" } });
  const { dir } = await chooseModel(v, positionals[0], (line) => logger.info(line), true);

  const maxNumSeqs = positiveInt(v["max-num-seqs"], "max-num-seqs");
  const maxNumBatchedTokens = positiveInt(v["max-num-batched-tokens"], "max-num-batched-tokens");
  const model = await loadModel(dir, {
    ...loadOptionsFrom(v),
    enablePrefixCaching: v["enable-prefix-caching"] as boolean,
    chatTemplateFile: v["chat-template"] as string | undefined,
    maxNumSeqs, maxNumBatchedTokens,
    maxModelLen: v["max-model-len"] === undefined ? undefined : positiveInt(v["max-model-len"], "max-model-len"),
  });
  const maxModelLen = v["max-model-len"] === undefined ? model.info.maxPositionEmbeddings : (v["max-model-len"] as number);
  const names = ((v["served-model-name"] as string | undefined) ?? model.info.name).split(",").map((s) => s.trim()).filter(Boolean);
  const cache = model.engine.cacheInfo();
  const config = model.engine.config();
  logger.info({
    model: model.info.dir, servedModelNames: names, modelType: config.modelType, attention: config.attention, device: cache.device, cpuKernels: native().buildInfo.cpuIsa,
    maxModelLen, cacheBlocks: cache.numBlocks, cacheTokens: cache.numBlocks * cache.blockSize,
    cacheMiB: Math.round((cache.numBlocks * cache.bytesPerBlock) / 2 ** 20), cacheBytesPerToken: cache.bytesPerBlock / cache.blockSize,
  }, `KV cache: ${cache.numBlocks * cache.blockSize} tokens in ${cache.numBlocks} blocks of ${cache.blockSize}`);
  if (model.usesDefaultChatTemplate) {
    logger.warn("the model has no chat_template: chat requests use mla-serve's default template (User:/Assistant: turns); pass --chat-template FILE to choose one");
  }

  const ctx = createServingContext(model, {
    servedModelNames: names, maxModelLen,
    maxNumSeqs, maxNumBatchedTokens,
    maxQueueLen: positiveInt(v["max-queue-len"], "max-queue-len"),
    logPrompts: v["log-prompts"] as boolean,
    tokenizerWorkers: nonNegativeInt(v["tokenizer-workers"], "tokenizer-workers"),
    streamStallMs: positiveSeconds(v["stream-stall-timeout"], "stream-stall-timeout") * 1000,
    vllmMetrics: v["vllm-metrics"] as boolean,
    toolCallParser,
    enableAutoToolChoice: v["enable-auto-tool-choice"] as boolean,
  });
  const engine = ctx.engine;
  const app = await buildApp({
    ctx, logger, apiKey: v["api-key"] as string | undefined,
    cors: {
      origins: listFlag(v["allowed-origins"], "allowed-origins"), methods: listFlag(v["allowed-methods"], "allowed-methods"),
      headers: listFlag(v["allowed-headers"], "allowed-headers"), credentials: v["allow-credentials"] as boolean,
    },
    bodyLimit: parseBytes(v["max-request-bytes"] as string, "max-request-bytes"),
    requestTimeoutMs: positiveSeconds(v["request-timeout"], "request-timeout") * 1000,
    requestIdHeaders: v["enable-request-id-headers"] as boolean,
  });
  const address = await app.listen({ host: v.host as string, port });
  logger.info({ address }, `serving ${names[0]} at ${address}/v1`);
  // The grammar engine (xgrammar's view of the vocabulary, ~0.5 s) is made now, not on the first structured request.
  ctx.grammar?.().catch((err: unknown) => logger.warn({ err }, "the grammar engine failed to start: structured output requests will fail"));

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      const timeoutMs = (v["drain-timeout"] as number) * 1000;
      logger.info({ signal, running: engine.numRunning, waiting: engine.numWaiting, drainTimeoutMs: timeoutMs }, "draining: new requests get 503; finishing in-flight requests");
      // Still listening: new requests get a 503 in OpenAI's shape (and /health says draining) until the end.
      ctx.draining = true;
      const timer = new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs).unref());
      const drained = await Promise.race([engine.whenIdle().then(() => true), timer]);
      if (!drained) {
        logger.warn("drain timeout: cancelling the remaining requests (their clients get a 503 error)");
        engine.abortAll("the server shut down before this request finished (drain timeout)");
        await engine.whenIdle();
      }
      await app.close();
      await ctx.text?.close();
      model.engine.dispose();
      logger.info("stopped");
      resolve(0);
    };
    process.once("SIGTERM", () => void stop("SIGTERM"));
    process.once("SIGINT", () => void stop("SIGINT"));
  });
}
