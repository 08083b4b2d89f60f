#!/usr/bin/env node
// mla-serve: serve | generate | convert | ppl | bench | prepare | check-compat
import { packageVersion } from "../paths.js";
import { UsageError } from "./args.js";
import { benchCommand } from "./bench.js";
import { checkCompatCommand } from "./check_compat.js";
import { convertCommand } from "./convert.js";
import { generateCommand } from "./generate.js";
import { pplCommand } from "./ppl.js";
import { prepareCommand } from "./prepare.js";
import { serveCommand } from "./serve.js";

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  serve: serveCommand,
  generate: generateCommand,
  bench: benchCommand,
  ppl: pplCommand,
  convert: convertCommand,
  prepare: prepareCommand,
  "check-compat": checkCompatCommand,
};

const HELP = `usage: mla-serve <command> [options]

commands:
  serve      serve a model behind an OpenAI-compatible API
  generate   generate text for one prompt
  convert    convert a GQA checkpoint to MLA (TransMLA)
  ppl        perplexity of a model on a text file
  bench      benchmark a model
  prepare    convert a model into the cache if needed (--as-mla, the default model) and print its folder
  check-compat  list why Hugging Face, vLLM, SGLang or mla-serve would not compute a folder as mla-serve does

Run mla-serve <command> --help for a command's options; mla-serve --version prints the version.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(HELP + "\n");
    return command ? 0 : 2;
  }
  if (command === "--version" || command === "-V") {
    process.stdout.write(`mla-serve ${packageVersion()}\n`);
    return 0;
  }
  const run = COMMANDS[command];
  if (!run) throw new UsageError(`unknown command "${command}" (try: ${Object.keys(COMMANDS).join(", ")})`);
  return run(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`mla-serve: ${message}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
