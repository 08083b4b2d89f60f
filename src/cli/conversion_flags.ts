// The converter's options as flags: one table for `convert` and for `--as-mla` (serve, generate, ppl, bench).
import type { ConvertOptions } from "../convert/options.js";
import type { FlagSpec, FlagValues } from "./args.js";
import { UsageError } from "./args.js";
import { isTarget, TARGETS, type Target } from "../convert/targets.js";

function parseTargetFlag(v: string): Target {
  if (!isTarget(v)) throw new UsageError(`--target must be one of ${TARGETS.join(", ")}, got "${v}"`);
  return v;
}

type Conversion = Omit<ConvertOptions, "model" | "out" | "force" | "threads" | "tokenWindows">;

/** Flags with the defaults of `convert`; `--as-mla` drops the split's defaults (they follow the model). */
export const CONVERSION_FLAGS: Record<string, FlagSpec> = {
  "kv-lora-rank": { type: "int", default: 512, help: "latent rank of the compressed K/V" },
  "qk-rope-dim": { type: "int", default: 64, help: "dimensions that keep RoPE (head_dim / a power of two)" },
  "q-lora-rank": { type: "int", help: "also compress the query to this rank (PCA)" },
  freqfold: { type: "string", default: "auto", help: "RoPE frequencies pooled per PCA: a power of two, or auto (searched by perplexity)" },
  "balance-kv-ratio": { type: "float", default: 1, help: "balance key and value norms before the joint PCA (0: off)" },
  calib: { type: "string", help: "calibration text file (.txt or .txt.gz)" },
  "calib-samples": { type: "int", default: 128, help: "calibration windows" },
  "calib-seq": { type: "int", default: 256, help: "tokens per calibration window" },
  "search-samples": { type: "int", default: 16, help: "held-out calibration windows that score --freqfold auto and --cache-budget" },
  eval: { type: "string", help: "text file for the perplexity report" },
  "eval-seq": { type: "int", default: 256, help: "tokens per evaluation window" },
  "eval-max-chars": { type: "int", help: "evaluate only the first N characters of --eval" },
  target: { type: "string", default: "hf", help: "whose loader the output is for: hf (Hugging Face DeepseekV3ForCausalLM), vllm, sglang, or mla-serve (norm-free, biases kept: mla-serve alone)" },
  "latent-norm": { type: "boolean", default: false, help: "--target mla-serve: add kv_a_layernorm (and q_a_layernorm) too (the stock targets always have them)" },
  "allow-cache-growth": { type: "boolean", default: false, help: "allow a target shape (vllm, sglang: 512 + 64) larger than the source's cache (the latent is zero-padded)" },
  exact: { type: "boolean", default: false, help: "write TransMLA's lossless first format (k_up_proj / v_up_proj) instead" },
  "cache-budget": { type: "int", help: "values cached per token per layer: search qk_rope_dim, freqfold and kv_lora_rank = budget - qk_rope_dim" },
  "kernel-shapes": { type: "boolean", default: false, help: "restrict --cache-budget to the shapes the CUDA decode kernel is built for" },
  sequential: { type: "boolean", default: false, help: "calibrate layer by layer on the already-converted layers before (GPTQ style)" },
  dtype: { type: "string", default: "auto", help: "weights of the output: auto (the source's), float32, bfloat16, float16" },
};

/** The flags of `--as-mla`: the converter's, with the calibration seed named apart from sampling's --seed. */
export function asMlaFlags(): Record<string, FlagSpec> {
  const out: Record<string, FlagSpec> = {
    "as-mla": { type: "boolean", default: false, help: "convert a GQA/MHA --model to MLA first (cached; an MLA model is served as it is)" },
    "cache-dir": { type: "string", help: "where --as-mla keeps converted models (default: the platform's cache folder, e.g. ~/.cache/mla-serve)" },
  };
  for (const [name, spec] of Object.entries(CONVERSION_FLAGS)) {
    const { default: _d, ...rest } = spec;
    out[name] = { ...rest, help: `--as-mla: ${spec.help}` };
  }
  out.calib.help = "--as-mla: calibration text file (default: the bundled Gutenberg sample)";
  out["kv-lora-rank"].help = "--as-mla: latent rank (default: half the source's cache less --qk-rope-dim, at most 512)";
  out["qk-rope-dim"].help = "--as-mla: dimensions that keep RoPE (default: 64, or head_dim / 2^k below it)";
  out["calib-seed"] = { type: "int", help: "--as-mla: seed for choosing calibration windows (default 42)" };
  return out;
}

/** The conversion flags a user gave (for --as-mla, whose table has no defaults). */
export function givenConversionFlags(v: FlagValues): string[] {
  return [...Object.keys(CONVERSION_FLAGS), "calib-seed"].filter((name) => v[name] !== undefined && v[name] !== false);
}

/**
 * Converter options from flags, unset ones at `convert`'s defaults (--as-mla then replaces the
 * split's defaults by the model's). Throws a UsageError naming a malformed value; ranges are
 * checked against the model later.
 */
export function conversionFrom(v: FlagValues, seed: number): Conversion {
  const get = <T>(flag: string): T => (v[flag] ?? CONVERSION_FLAGS[flag]!.default) as T;
  const rawFold = get<string>("freqfold");
  const freqfold = rawFold === "auto" ? "auto" : Number(rawFold);
  if (freqfold !== "auto" && !Number.isInteger(freqfold)) throw new UsageError(`--freqfold must be a power of two or auto, got "${rawFold}"`);
  const dtype = get<string>("dtype");
  if (!["auto", "float32", "bfloat16", "float16"].includes(dtype)) throw new UsageError(`--dtype must be auto, float32, bfloat16 or float16, got "${dtype}"`);
  return {
    kvLoraRank: get("kv-lora-rank"),
    qkRopeDim: get("qk-rope-dim"),
    qLoraRank: get<number | undefined>("q-lora-rank") ?? null,
    freqfold,
    balanceKvRatio: get("balance-kv-ratio"),
    calib: get<string | undefined>("calib") ?? "",
    calibSamples: get("calib-samples"),
    calibSeq: get("calib-seq"),
    searchSamples: get("search-samples"),
    eval: get<string | undefined>("eval") ?? null,
    evalSeq: get("eval-seq"),
    evalMaxChars: get<number | undefined>("eval-max-chars") ?? null,
    target: parseTargetFlag(get<string>("target")),
    latentNorm: get("latent-norm"),
    allowCacheGrowth: get("allow-cache-growth"),
    exact: get("exact"),
    cacheBudget: get<number | undefined>("cache-budget") ?? null,
    kernelShapes: get("kernel-shapes"),
    sequential: get("sequential"),
    dtype: dtype as Conversion["dtype"],
    seed,
  };
}
