// mla-serve ppl: perplexity of a model on a text file (TransMLA's convention).
import { perplexity } from "../eval/perplexity.js";
import { readText, windows } from "../eval/windows.js";
import { loadModel } from "../model/load.js";
import { parseFlags, usage, UsageError, type FlagSpec } from "./args.js";
import { engineFlags, loadOptionsFrom } from "./common.js";
import { chooseModel, modelFlags } from "./model_source.js";
import { Progress } from "./progress.js";

const FLAGS: Record<string, FlagSpec> = {
  text: { type: "string", help: "UTF-8 text file to evaluate (required)" },
  seq: { type: "int", default: 256, help: "tokens per window" },
  "max-chars": { type: "int", help: "evaluate only the first N characters of the file" },
  ...engineFlags(),
  ...modelFlags(),
};

export async function pplCommand(argv: string[]): Promise<number> {
  const { values: v } = parseFlags(argv, FLAGS);
  if (v.help) {
    process.stdout.write(usage("ppl", "--text FILE [--model DIR] [--seq 256]", FLAGS) + "\n");
    return 0;
  }
  if (typeof v.text !== "string") throw new UsageError("--text FILE is required");
  const seq = v.seq as number;
  if (!Number.isInteger(seq) || seq < 2) throw new UsageError("--seq must be an integer >= 2");
  const text = readText(v.text, "text", (v["max-chars"] as number | undefined) ?? null);
  const { dir } = await chooseModel(v, undefined, (line) => process.stderr.write(`${line}\n`));
  const model = await loadModel(dir, { ...loadOptionsFrom(v), enablePrefixCaching: false });
  if (!model.tokenizer) throw new UsageError(`${dir} has no tokenizer.json`);
  const ids = model.tokenizer.encode(text);
  const wins = windows(ids, seq);
  if (wins.length === 0) throw new UsageError(`${v.text} has ${ids.length} tokens: not one window of ${seq}`);
  const bar = new Progress("perplexity", wins.length);
  const result = await perplexity(model.engine, wins, (done) => bar.update(done));
  model.engine.dispose();
  process.stderr.write(`${ids.length} tokens, ${result.windows} windows of ${seq}, ${result.predictedTokens} predicted tokens\n`);
  process.stdout.write(`perplexity: ${result.perplexity.toFixed(4)}\n`);
  return 0;
}
