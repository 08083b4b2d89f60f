// mla-serve generate: one prompt, streamed to stdout; speed to stderr.
import { readFileSync } from "node:fs";

import { LLMEngine } from "../engine/llm_engine.js";
import { resolveSampling } from "../engine/sampling.js";
import { loadModel } from "../model/load.js";
import { parseFlags, usage, UsageError, type FlagSpec } from "./args.js";
import { engineFlags, loadOptionsFrom } from "./common.js";
import { chooseModel, modelFlags } from "./model_source.js";

const FLAGS: Record<string, FlagSpec> = {
  prompt: { type: "string", short: "p", help: "prompt text" },
  "prompt-file": { type: "string", help: "read the prompt from a file" },
  "prompt-ids": { type: "string", help: "comma-separated prompt token ids (for models without a tokenizer)" },
  chat: { type: "boolean", default: false, help: "wrap the prompt as a user message in the chat template" },
  system: { type: "string", help: "system message (with --chat)" },
  "max-tokens": { type: "int", default: 256, help: "tokens to generate at most" },
  temperature: { type: "float", help: "0 is greedy (default: the model's generation_config, else 1)" },
  "top-p": { type: "float", help: "nucleus sampling threshold" },
  "top-k": { type: "int", help: "sample among the k most likely tokens (0: all)" },
  "min-p": { type: "float", help: "drop tokens below min-p times the top probability" },
  "repetition-penalty": { type: "float", help: "penalize tokens already in prompt or output (1: off)" },
  "presence-penalty": { type: "float", help: "penalize tokens already generated" },
  "frequency-penalty": { type: "float", help: "penalize tokens by how often they were generated" },
  seed: { type: "int", help: "sampling seed: the same seed gives the same output" },
  "ignore-eos": { type: "boolean", default: false, help: "keep generating past the end-of-sequence token" },
  ...engineFlags(),
  ...modelFlags(),
};

const GENERATE_STEP_TOKENS = 2048;

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

async function promptText(v: Record<string, unknown>): Promise<string | undefined> {
  if (typeof v.prompt === "string") return v.prompt;
  if (typeof v["prompt-file"] === "string") return readFileSync(v["prompt-file"], "utf8");
  if (typeof v["prompt-ids"] === "string") return undefined;
  if (process.stdin.isTTY) throw new UsageError("no prompt: give --prompt, --prompt-file, --prompt-ids or pipe text on stdin");
  return readStdin();
}

export async function generateCommand(argv: string[]): Promise<number> {
  const { values: v } = parseFlags(argv, FLAGS);
  if (v.help) {
    process.stdout.write(usage("generate", "[--model DIR] [--prompt TEXT | --prompt-file FILE | < stdin] [options]", FLAGS) + "\n");
    return 0;
  }
  const text = await promptText(v);
  const { dir: modelDir } = await chooseModel(v, undefined, (line) => process.stderr.write(`${line}\n`));
  // One sequence; long prompts are prefilled in chunks of GENERATE_STEP_TOKENS.
  const model = await loadModel(modelDir, { ...loadOptionsFrom(v), maxNumSeqs: 1, maxNumBatchedTokens: GENERATE_STEP_TOKENS });
  const { tokenizer } = model;
  let promptIds: number[];
  if (text === undefined) {
    promptIds = (v["prompt-ids"] as string).split(",").map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n)) throw new UsageError(`--prompt-ids: "${s}" is not a token id`);
      return n;
    });
  } else {
    if (!tokenizer) throw new UsageError(`${modelDir} has no tokenizer.json: give --prompt-ids instead of text`);
    if (v.chat) {
      const messages = [...(v.system ? [{ role: "system", content: v.system as string }] : []), { role: "user", content: text }];
      const rendered = model.chatTemplate!.render(messages, { bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken });
      promptIds = tokenizer.encode(rendered, false);
    } else {
      promptIds = tokenizer.encode(text);
    }
  }
  const maxModelLen = model.info.maxPositionEmbeddings;
  const sampling = resolveSampling(
    {
      maxTokens: Math.min(v["max-tokens"] as number, Math.max(1, maxModelLen - promptIds.length)),
      temperature: v.temperature as number | undefined,
      topP: v["top-p"] as number | undefined,
      topK: v["top-k"] as number | undefined,
      minP: v["min-p"] as number | undefined,
      repetitionPenalty: v["repetition-penalty"] as number | undefined,
      presencePenalty: v["presence-penalty"] as number | undefined,
      frequencyPenalty: v["frequency-penalty"] as number | undefined,
      seed: v.seed as number | undefined,
      ignoreEos: v["ignore-eos"] as boolean,
    },
    model.info.generationDefaults,
  );
  const engine = new LLMEngine(model.engine, {
    maxModelLen,
    maxNumSeqs: 1,
    maxNumBatchedTokens: GENERATE_STEP_TOKENS,
    eosTokenIds: model.info.eosTokenIds,
    decode: tokenizer ? (ids, o) => tokenizer.decode(ids, o.skipSpecialTokens, o.spacesBetweenSpecialTokens) : null,
  });
  const start = performance.now();
  let firstTokenAt = 0;
  let lastTokenAt = 0;
  let generated = 0;
  for await (const event of engine.generate({ requestId: "generate", promptIds, sampling })) {
    if (event.type === "error") throw new Error(event.message);
    if (event.type !== "delta") continue;
    const now = performance.now();
    if (generated === 0) firstTokenAt = now;
    lastTokenAt = now;
    generated += event.delta.tokenIds.length;
    process.stdout.write(tokenizer ? event.delta.text : event.delta.tokenIds.map((t) => `${t}\n`).join(""));
  }
  if (tokenizer) process.stdout.write("\n");
  const prefillMs = firstTokenAt - start;
  const decodeMs = lastTokenAt - firstTokenAt;
  const rate = (n: number, ms: number) => (ms > 0 ? (n / (ms / 1000)).toFixed(1) : "n/a");
  process.stderr.write(
    `prefill: ${promptIds.length} tokens in ${prefillMs.toFixed(1)} ms (${rate(promptIds.length, prefillMs)} tokens/s); ` +
      `decode: ${Math.max(0, generated - 1)} tokens in ${decodeMs.toFixed(1)} ms (${rate(generated - 1, decodeMs)} tokens/s)\n`,
  );
  model.engine.dispose();
  return 0;
}
