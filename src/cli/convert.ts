// mla-serve convert: GQA/MHA checkpoint -> MLA (TransMLA), with a report.
import { parseFlags, usage, UsageError, type FlagSpec } from "./args.js";
import { Progress } from "./progress.js";
import { convert, type ConversionReport } from "../convert/pipeline.js";
import type { ConvertOptions } from "../convert/options.js";

const FLAGS: Record<string, FlagSpec> = {
  model: { type: "string", help: "source checkpoint folder: llama, mistral or qwen2 (required)" },
  out: { type: "string", help: "output folder (required; refused if it exists, unless --force)" },
  "kv-lora-rank": { type: "int", default: 512, help: "latent rank of the compressed K/V" },
  "qk-rope-dim": { type: "int", default: 64, help: "dimensions that keep RoPE (head_dim / a power of two)" },
  "q-lora-rank": { type: "int", help: "also compress the query to this rank (PCA)" },
  freqfold: { type: "string", default: "auto", help: "RoPE frequencies pooled per PCA: a power of two, or auto (searched by perplexity)" },
  "balance-kv-ratio": { type: "float", default: 1, help: "balance key and value norms before the joint PCA (0: off)" },
  calib: { type: "string", help: "calibration text file (required unless --exact)" },
  "calib-samples": { type: "int", default: 128, help: "calibration windows" },
  "calib-seq": { type: "int", default: 256, help: "tokens per calibration window" },
  "search-samples": { type: "int", default: 16, help: "held-out calibration windows that score --freqfold auto" },
  eval: { type: "string", help: "text file for the perplexity report" },
  "eval-seq": { type: "int", default: 256, help: "tokens per evaluation window" },
  "eval-max-chars": { type: "int", help: "evaluate only the first N characters of --eval" },
  "latent-norm": { type: "boolean", default: false, help: "add kv_a_layernorm (and q_a_layernorm) fit on calibration data, as Hugging Face's DeepseekV3 expects" },
  exact: { type: "boolean", default: false, help: "write TransMLA's lossless first format (k_up_proj / v_up_proj) instead" },
  "cache-budget": { type: "int", help: "values cached per token per layer: search qk_rope_dim, freqfold and kv_lora_rank = budget - qk_rope_dim" },
  "kernel-shapes": { type: "boolean", default: false, help: "restrict --cache-budget to the shapes the CUDA decode kernel is built for" },
  sequential: { type: "boolean", default: false, help: "calibrate layer by layer on the already-converted layers before (GPTQ style)" },
  dtype: { type: "string", default: "auto", help: "weights of the output: auto (the source's), float32, bfloat16, float16" },
  seed: { type: "int", default: 42, help: "seed for choosing calibration windows" },
  force: { type: "boolean", default: false, help: "replace an existing --out" },
  threads: { type: "int", help: "CPU threads (default: all cores)" },
};

export function printReport(rep: ConversionReport, write: (s: string) => void): void {
  const f = (x: number | null) => (x === null ? "-" : x.toFixed(2));
  write(`\nKV cache per token: ${rep.source.kvCacheValuesPerToken} values (${rep.source.kvCacheBytesPerToken} bytes) -> ` +
    `${rep.output.kvCacheValuesPerToken} values (${rep.output.kvCacheBytesPerToken} bytes): ${rep.output.compression.toFixed(2)}x smaller\n`);
  if (rep.output.format === "deepseek_v3") {
    write(`MLA: kv_lora_rank ${rep.output.kvLoraRank}, qk_rope_dim ${rep.output.qkRopeDim}, freqfold ${rep.output.freqfold}` +
      `${rep.output.qLoraRank ? `, q_lora_rank ${rep.output.qLoraRank}` : ""}${rep.output.latentNorm ? ", latent norms" : ""}\n`);
  }
  for (const s of rep.freqfoldSearch) write(`  freqfold ${s.freqfold}: held-out perplexity ${s.perplexity.toFixed(2)}\n`);
  if (rep.budgetSearch) {
    write(`cache budget ${rep.budgetSearch.budget} values per token per layer${rep.budgetSearch.kernelShapesOnly ? " (CUDA kernel shapes only)" : ""}; held-out perplexity:\n`);
    write("  qk_rope_dim | kv_lora_rank | freqfold | partial RoPE | final\n");
    for (const row of rep.budgetSearch.rows) {
      const chosen = row.qkRopeDim === rep.output.qkRopeDim && row.freqfold === rep.output.freqfold ? "  <- chosen" : "";
      write(`  ${String(row.qkRopeDim).padStart(11)} | ${String(row.kvLoraRank).padStart(12)} | ${String(row.freqfold).padStart(8)} | ${row.partialPerplexity.toFixed(2).padStart(12)} | ${row.finalPerplexity === null ? "-" : row.finalPerplexity.toFixed(2)}${chosen}\n`);
    }
  }
  if (rep.perplexity.evalFile) {
    write(`perplexity on ${rep.perplexity.evalFile} (${rep.perplexity.windows} windows of ${rep.perplexity.seq}): ` +
      `original ${f(rep.perplexity.original)}, partial RoPE ${f(rep.perplexity.partialRope)}, final ${f(rep.perplexity.final)}\n`);
  }
  for (const w of rep.warnings) write(`warning: ${w}\n`);
  write(`time: ${Object.entries(rep.seconds).map(([k, v]) => `${k} ${v.toFixed(1)}s`).join(", ")}\n`);
}

export async function convertCommand(argv: string[]): Promise<number> {
  const { values: v } = parseFlags(argv, FLAGS);
  if (v.help) {
    process.stdout.write(usage("convert", "--model IN --out OUT [--calib FILE] [--eval FILE] [options]", FLAGS) + "\n");
    return 0;
  }
  for (const req of ["model", "out"]) if (typeof v[req] !== "string") throw new UsageError(`--${req} is required`);
  if (!v.exact && typeof v.calib !== "string") throw new UsageError("--calib FILE is required (calibration text)");
  const freqfold = v.freqfold === "auto" ? "auto" : Number(v.freqfold);
  if (freqfold !== "auto" && !Number.isInteger(freqfold)) throw new UsageError(`--freqfold must be a power of two or auto, got "${v.freqfold}"`);
  const dtype = v.dtype as string;
  if (!["auto", "float32", "bfloat16", "float16"].includes(dtype)) throw new UsageError(`--dtype must be auto, float32, bfloat16 or float16, got "${dtype}"`);
  const o: ConvertOptions = {
    model: v.model as string, out: v.out as string, force: v.force as boolean,
    kvLoraRank: v["kv-lora-rank"] as number, qkRopeDim: v["qk-rope-dim"] as number, qLoraRank: (v["q-lora-rank"] as number | undefined) ?? null,
    freqfold, balanceKvRatio: v["balance-kv-ratio"] as number,
    calib: (v.calib as string | undefined) ?? "", calibSamples: v["calib-samples"] as number, calibSeq: v["calib-seq"] as number,
    searchSamples: v["search-samples"] as number,
    eval: (v.eval as string | undefined) ?? null, evalSeq: v["eval-seq"] as number, evalMaxChars: (v["eval-max-chars"] as number | undefined) ?? null,
    latentNorm: v["latent-norm"] as boolean, exact: v.exact as boolean, sequential: v.sequential as boolean,
    cacheBudget: (v["cache-budget"] as number | undefined) ?? null, kernelShapes: v["kernel-shapes"] as boolean,
    dtype: dtype as ConvertOptions["dtype"], seed: v.seed as number, threads: v.threads as number | undefined,
  };
  if (o.exact && !o.calib) o.calib = "";
  const report = await convert(o, {
    stage: (label, total) => new Progress(label, total),
    log: (line) => process.stderr.write(line + "\n"),
  });
  printReport(report, (s) => process.stdout.write(s));
  process.stdout.write(`wrote ${o.out} (report: ${o.out}/conversion-report.json)\n`);
  return 0;
}
