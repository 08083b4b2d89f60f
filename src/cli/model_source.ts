// Which folder a command loads: --model as given, its MLA conversion (--as-mla, cached), or by
// default the bundled model's conversion by its recipe.
import path from "node:path";

import { defaultCacheDir } from "../cache/location.js";
import { ConversionInputError, defaultSplit, isMlaFolder, resolveAsMla, type AsMlaOptions } from "../convert/as_mla.js";
import { bundledCalibrationText, bundledRecipe, bundledSourceDir } from "../convert/bundled.js";
import { Checkpoint } from "../model/checkpoint.js";
import { sourceShape } from "../convert/source.js";
import { type FlagSpec, type FlagValues, UsageError } from "./args.js";
import { asMlaFlags, conversionFrom, givenConversionFlags } from "./conversion_flags.js";
import { Progress } from "./progress.js";

/** --model and the --as-mla flags, shared by serve, generate, ppl and bench. */
export function modelFlags(): Record<string, FlagSpec> {
  return {
    model: { type: "string", help: "model folder (default: the bundled model, converted to MLA)" },
    ...asMlaFlags(),
  };
}

/** --as-mla options from flags, the split's defaults following the source's shape. */
function asMlaOptions(v: FlagValues, source: string): AsMlaOptions {
  const o: AsMlaOptions = { ...conversionFrom(v, (v["calib-seed"] as number | undefined) ?? 42), threads: v.threads as number | undefined };
  // Served here: mla-serve's own format (norm-free latents, every bias) unless a target is asked for.
  if (v.target === undefined) o.target = "mla-serve";
  if (!o.calib) o.calib = bundledCalibrationText();
  if ((v["kv-lora-rank"] === undefined || v["qk-rope-dim"] === undefined) && o.cacheBudget === null && !o.exact) {
    const split = defaultSplit(sourceShape(new Checkpoint(source)), v["qk-rope-dim"] as number | undefined);
    o.qkRopeDim = split.qkRopeDim;
    if (v["kv-lora-rank"] === undefined) o.kvLoraRank = split.kvLoraRank;
  }
  return o;
}

/**
 * The folder to load. `log` gets a line for each thing done (a conversion, an MLA source taken as
 * it is, and with `logCacheHits` the use of a cached conversion); progress bars go to stderr.
 */
export async function chooseModel(v: FlagValues, positional: string | undefined, log: (line: string) => void, logCacheHits = false): Promise<{ dir: string }> {
  const given = positional ?? (v.model as string | undefined);
  const conversion = givenConversionFlags(v);
  if (given !== undefined && !v["as-mla"]) {
    if (conversion.length > 0) throw new UsageError(`--${conversion[0]} is a conversion option: add --as-mla to convert ${given} to MLA`);
    return { dir: given };
  }
  const cacheDir = path.resolve((v["cache-dir"] as string | undefined) ?? defaultCacheDir());
  const reporter = { stage: (label: string, total: number) => new Progress(label, total), log };
  let source: string;
  let name: string;
  let options: AsMlaOptions;
  if (given === undefined && conversion.length === 0) {
    ({ source, name, options } = bundledRecipe());
    options.threads = v.threads as number | undefined;
  } else {
    source = given ?? bundledSourceDir();
    name = `${path.basename(path.resolve(source))}-mla`;
    try {
      if (isMlaFolder(source)) {
        log(`${source} is an MLA model already: serving it as it is (--as-mla has nothing to convert)`);
        return { dir: source };
      }
      options = asMlaOptions(v, source);
    } catch (err) {
      throw err instanceof UsageError ? err : new UsageError((err as Error).message);
    }
  }
  const t0 = performance.now();
  let result;
  try {
    result = await resolveAsMla(source, options, cacheDir, name, reporter);
  } catch (err) {
    throw err instanceof ConversionInputError ? new UsageError(err.message) : err;
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (result.how === "converted") log(`converted ${source} to MLA in ${secs}s: ${result.dir}`);
  else if (logCacheHits) log(`using the MLA conversion of ${source} from the cache: ${result.dir}`);
  return { dir: result.dir };
}
