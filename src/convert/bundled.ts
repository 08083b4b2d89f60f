// The default model: models/gutenberg-tiny converted by the recipe in models/recipes/gutenberg-tiny-mla.
import { readFileSync } from "node:fs";
import path from "node:path";
import { gunzipSync } from "node:zlib";

import { packageRoot } from "../paths.js";
import { Tokenizer } from "../tokenizer/tokenizer.js";
import type { AsMlaOptions } from "./as_mla.js";
import { readText, windows } from "../eval/windows.js";

interface RecipeFile {
  source: string;
  name: string;
  calibrationWindows: { file: string; windows: number; seq: number };
  eval: { file: string; seq: number };
  options: Omit<AsMlaOptions, "calib" | "calibSamples" | "calibSeq" | "searchSamples" | "eval" | "evalSeq" | "evalMaxChars" | "tokenWindows">;
}

export interface Recipe {
  source: string; // the GQA folder
  name: string; // the converted folder's name: the served model name
  options: AsMlaOptions;
}

/** The bundled GQA model. */
export function bundledSourceDir(): string {
  return path.join(packageRoot(), "models", "gutenberg-tiny");
}

/** The default calibration text of --as-mla. */
export function bundledCalibrationText(): string {
  return path.join(packageRoot(), "models", "recipes", "calibration-sample.txt.gz");
}

/** Little-endian uint16 token ids, `count` windows of `seq`. */
function readWindows(file: string, count: number, seq: number): number[][] {
  const bytes = gunzipSync(readFileSync(file));
  if (bytes.length !== count * seq * 2) throw new Error(`${file}: ${bytes.length} bytes, expected ${count * seq * 2} (${count} windows of ${seq} uint16 ids)`);
  const out: number[][] = [];
  for (let w = 0; w < count; ++w) {
    const win: number[] = [];
    for (let t = 0; t < seq; ++t) win.push(bytes.readUInt16LE((w * seq + t) * 2));
    out.push(win);
  }
  return out;
}

/** The default model's recipe, with its calibration and evaluation windows. */
export function bundledRecipe(): Recipe {
  const dir = path.join(packageRoot(), "models", "recipes", "gutenberg-tiny-mla");
  const r = JSON.parse(readFileSync(path.join(dir, "recipe.json"), "utf8")) as RecipeFile;
  const source = path.resolve(dir, r.source);
  const evalFile = path.join(dir, r.eval.file);
  const evalWindows = windows(Tokenizer.load(source).encode(readText(evalFile, "evaluation")), r.eval.seq);
  const calibFile = path.join(dir, r.calibrationWindows.file);
  return {
    source,
    name: r.name,
    options: {
      ...r.options,
      calib: `${path.relative(packageRoot(), calibFile)} (${r.calibrationWindows.windows} windows of ${r.calibrationWindows.seq} tokens)`,
      calibSamples: r.calibrationWindows.windows, calibSeq: r.calibrationWindows.seq, searchSamples: 0,
      eval: path.relative(packageRoot(), evalFile), evalSeq: r.eval.seq, evalMaxChars: null,
      tokenWindows: { calib: readWindows(calibFile, r.calibrationWindows.windows, r.calibrationWindows.seq), eval: evalWindows },
    },
  };
}
