// mla-serve prepare: make the model a command would load ready (convert it into the cache if
// needed) and print its folder. Containers run it at build time to bake the default model in.
import { parseFlags, usage, UsageError, type FlagSpec } from "./args.js";
import { chooseModel, modelFlags } from "./model_source.js";

const FLAGS: Record<string, FlagSpec> = {
  ...modelFlags(),
  threads: { type: "int", help: "CPU threads for a conversion (default: all cores)" },
};

export async function prepareCommand(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags(argv, FLAGS);
  if (v.help) {
    process.stdout.write(usage("prepare", "[--model DIR [--as-mla [conversion options]]]", FLAGS) + "\n");
    return 0;
  }
  if (positionals.length > 1) throw new UsageError(`prepare takes one model folder, got: ${positionals.join(" ")}`);
  const { dir } = await chooseModel(v, positionals[0], (line) => process.stderr.write(`${line}\n`), true);
  process.stdout.write(`${dir}\n`);
  return 0;
}
