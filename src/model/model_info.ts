// What the engine and server need from a model folder besides weights: stop tokens, context
// length, sampling defaults (generation_config.json), tokenizer presence.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

import type { GenerationDefaults } from "../engine/sampling.js";

export interface ModelInfo {
  dir: string;
  /** Folder name: the default served model name. */
  name: string;
  eosTokenIds: number[];
  bosTokenId: number | undefined;
  maxPositionEmbeddings: number;
  generationDefaults: GenerationDefaults;
  hasTokenizer: boolean;
}

function readJson(file: string): Record<string, unknown> {
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
}

function ids(value: unknown): number[] {
  if (typeof value === "number") return [value];
  if (Array.isArray(value)) return value.filter((v): v is number => typeof v === "number");
  return [];
}

function num(value: unknown): number | undefined {
  return typeof value === "number" && Number.isFinite(value) ? value : undefined;
}

/** Reads config.json, generation_config.json and notes whether tokenizer.json exists. */
export function readModelInfo(dir: string): ModelInfo {
  const config = readJson(path.join(dir, "config.json"));
  const gen = readJson(path.join(dir, "generation_config.json"));
  const eos = new Set([...ids(config.eos_token_id), ...ids(gen.eos_token_id)]);
  const sampling = gen.do_sample !== false; // HF: do_sample false means greedy
  return {
    dir,
    name: path.basename(path.resolve(dir)),
    eosTokenIds: [...eos],
    bosTokenId: num(gen.bos_token_id) ?? num(config.bos_token_id),
    maxPositionEmbeddings: num(config.max_position_embeddings) ?? 4096,
    generationDefaults: sampling
      ? {
          temperature: num(gen.temperature),
          topP: num(gen.top_p),
          topK: num(gen.top_k),
          minP: num(gen.min_p),
          repetitionPenalty: num(gen.repetition_penalty),
        }
      : { temperature: 0 },
    hasTokenizer: existsSync(path.join(dir, "tokenizer.json")),
  };
}
