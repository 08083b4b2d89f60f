// mla-serve check-compat DIR [--target hf,vllm,...]: would each stock loader compute this folder
// as mla-serve does? Lists every reason it would not; the exit status is 0 when every target asked
// for passes, 1 otherwise.
import { existsSync } from "node:fs";

import { checkCompat } from "../convert/compat.js";
import { isTarget, TARGET_RULES, TARGETS, type Target } from "../convert/targets.js";
import { parseFlags, usage, UsageError, type FlagSpec } from "./args.js";

const FLAGS: Record<string, FlagSpec> = {
  target: { type: "string", default: TARGETS.join(","), help: `targets to check, comma-separated: ${TARGETS.join(", ")}` },
  json: { type: "boolean", default: false, help: "print {target: [reasons]} as JSON" },
};

export async function checkCompatCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, FLAGS);
  if (v.help) {
    process.stdout.write(usage("check-compat", "DIR [--target hf,vllm,sglang,mla-serve] [--json]", FLAGS) + "\n");
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("check-compat takes one model folder");
  const dir = positionals[0]!;
  if (!existsSync(dir)) throw new UsageError(`${dir} does not exist`);
  const targets = String(v.target).split(",").map((t) => t.trim()).filter(Boolean);
  for (const t of targets) if (!isTarget(t)) throw new UsageError(`--target: unknown target "${t}" (one of ${TARGETS.join(", ")})`);
  const results = Object.fromEntries((targets as Target[]).map((t) => [t, checkCompat(dir, t)]));
  if (v.json) process.stdout.write(JSON.stringify(results, null, 2) + "\n");
  else {
    for (const [t, reasons] of Object.entries(results)) {
      const name = TARGET_RULES[t as Target].name;
      if (reasons.length === 0) process.stdout.write(`${t}: ok (${name} computes what mla-serve computes)\n`);
      else process.stdout.write(`${t}: ${reasons.length} problem${reasons.length > 1 ? "s" : ""} (${name})\n${reasons.map((r) => `  - ${r}\n`).join("")}`);
    }
  }
  return Object.values(results).every((r) => r.length === 0) ? 0 : 1;
}
