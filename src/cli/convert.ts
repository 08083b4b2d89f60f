// mla-serve convert: GQA/MHA checkpoint -> MLA (TransMLA), with a report.
import { parseFlags, usage, UsageError, type FlagSpec } from "./args.js";
import { CONVERSION_FLAGS, conversionFrom } from "./conversion_flags.js";
import { Progress } from "./progress.js";
import { convert, type ConversionReport } from "../convert/pipeline.js";
import type { ConvertOptions } from "../convert/options.js";

const FLAGS: Record<string, FlagSpec> = {
  model: { type: "string", help: "source checkpoint folder: llama, mistral or qwen2 (required)" },
  out: { type: "string", help: "output folder (required; refused if it exists, unless --force)" },
  ...CONVERSION_FLAGS,
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
      `original ${f(rep.perplexity.original)}, partial RoPE ${f(rep.perplexity.partialRope)}` +
      `${rep.perplexity.normFree !== null ? `, norm-free MLA ${f(rep.perplexity.normFree)}` : ""}, final ${f(rep.perplexity.final)}` +
      `${rep.target.name !== "mla-serve" ? ` (for ${rep.target.name})` : ""}\n`);
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
  const o: ConvertOptions = {
    model: v.model as string, out: v.out as string, force: v.force as boolean, threads: v.threads as number | undefined,
    ...conversionFrom(v, v.seed as number),
  };
  const report = await convert(o, {
    stage: (label, total) => new Progress(label, total),
    log: (line) => process.stderr.write(line + "\n"),
  });
  printReport(report, (s) => process.stdout.write(s));
  process.stdout.write(`wrote ${o.out} (report: ${o.out}/conversion-report.json)\n`);
  return 0;
}
