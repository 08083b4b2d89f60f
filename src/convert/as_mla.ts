// Serve a GQA/MHA checkpoint as MLA: convert it once into the cache, keyed by the source's content
// and every option that changes the output, and hand back the converted folder.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

import { ensureEntry } from "../cache/entry.js";
import { folderContentHash } from "../cache/content_hash.js";
import { Checkpoint } from "../model/checkpoint.js";
import { native } from "../native/binding.js";
import { packageVersion } from "../paths.js";
import type { Reporter } from "./conversion.js";
import { checkOptions, type ConvertOptions } from "./options.js";
import { convert } from "./pipeline.js";
import { sourceShape, type SourceShape } from "./source.js";

/** Bumped when the converter's output for the same inputs changes without a version change. */
const CACHE_FORMAT = 1;

/** A conversion as --as-mla asks for it: every converter option but the folders. */
export type AsMlaOptions = Omit<ConvertOptions, "model" | "out" | "force">;

export interface AsMlaResult {
  /** The folder to load: the converted model in the cache, or the source when it is MLA already. */
  dir: string;
  /** "converted" (built now), "cached" (found in the cache) or "already-mla". */
  how: "converted" | "cached" | "already-mla";
}

/** True for folders that are MLA already (DeepSeek-V3 or TransMLA's format). */
export function isMlaFolder(dir: string): boolean {
  const file = path.join(dir, "config.json");
  if (!existsSync(file)) throw new Error(`${dir} has no config.json`);
  let config: Record<string, unknown>;
  try {
    config = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  return config.model_type === "deepseek_v3" || config.model_type === "deepseek_v2" || typeof config.kv_lora_rank === "number";
}

/**
 * The split used when no --kv-lora-rank / --qk-rope-dim / --cache-budget is given: RoPE on 64
 * dimensions (or head_dim / 2^k below that), and a latent rank that at least halves the cache,
 * at most DeepSeek's 512.
 */
export function defaultSplit(s: SourceShape, qkRopeDim?: number): { qkRopeDim: number; kvLoraRank: number } {
  let rope = s.headDim;
  while (rope > 64 && rope % 4 === 0) rope /= 2;
  rope = qkRopeDim ?? rope;
  return { qkRopeDim: rope, kvLoraRank: Math.max(1, Math.min(512, s.latent - rope)) };
}

/** A source or option that cannot be converted, found before any work. */
export class ConversionInputError extends Error {}

function fileHash(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** Everything that decides the converted folder's bytes, with files replaced by their content. */
function entryKey(sourceHash: string, o: AsMlaOptions, name: string): string {
  const { calib, eval: evalFile, tokenWindows, threads: _threads, ...rest } = o;
  const inputs = {
    format: CACHE_FORMAT, version: packageVersion(), name, source: sourceHash, ...rest,
    calib: tokenWindows || o.exact ? null : fileHash(calib),
    eval: tokenWindows || evalFile === null ? null : fileHash(evalFile),
    tokenWindows: tokenWindows ? createHash("sha256").update(JSON.stringify(tokenWindows)).digest("hex") : null,
    kernelShapeList: o.kernelShapes ? native().mlaKernelShapes : null,
  };
  return createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 32);
}

/**
 * Converts `source` with `o` into `cacheDir` (once; later calls find the entry) and returns the
 * converted folder, named `name` (the default served model name). An MLA source is returned as it is.
 * Options are checked against the source before anything is hashed or written.
 */
export async function resolveAsMla(source: string, o: AsMlaOptions, cacheDir: string, name: string, r: Reporter): Promise<AsMlaResult> {
  try {
    if (isMlaFolder(source)) return { dir: source, how: "already-mla" };
    checkOptions({ ...o, model: source, out: "", force: true }, sourceShape(new Checkpoint(source)));
  } catch (err) {
    throw new ConversionInputError((err as Error).message);
  }
  const key = entryKey(folderContentHash(source, path.join(cacheDir, "source-hashes")), o, name);
  const { dir, built } = await ensureEntry(path.join(cacheDir, "converted"), key, async (tmp) => {
    r.log(`converting ${source} to MLA into the cache (${path.join(cacheDir, "converted", key)})`);
    await convert({ ...o, model: source, out: path.join(tmp, name), force: true }, r);
  }, r.log);
  return { dir: path.join(dir, name), how: built ? "converted" : "cached" };
}
