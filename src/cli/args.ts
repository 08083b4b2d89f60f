// Command-line flags with environment fallbacks: --max-model-len reads MLA_SERVE_MAX_MODEL_LEN.
import { parseArgs } from "node:util";

export type FlagType = "string" | "int" | "float" | "boolean";

export interface FlagSpec {
  type: FlagType;
  help: string;
  default?: string | number | boolean;
  short?: string;
}

export type FlagValues = Record<string, string | number | boolean | undefined>;

/** A usage error: the CLI prints it and exits 2. */
export class UsageError extends Error {}

export function envName(flag: string): string {
  return "MLA_SERVE_" + flag.replace(/-/g, "_").toUpperCase();
}

function convert(flag: string, type: FlagType, raw: string | boolean, source: string): string | number | boolean {
  if (type === "boolean") {
    if (typeof raw === "boolean") return raw;
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw new UsageError(`${source} must be true or false, got "${raw}"`);
  }
  if (typeof raw !== "string") throw new UsageError(`${source} needs a value`);
  if (type === "string") return raw;
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || (type === "int" && !Number.isInteger(n))) {
    throw new UsageError(`${source} must be ${type === "int" ? "an integer" : "a number"}, got "${raw}"`);
  }
  return n;
}

/** Parses argv against specs; flags missing from argv come from MLA_SERVE_* variables, then defaults. */
export function parseFlags(argv: string[], specs: Record<string, FlagSpec>, env: NodeJS.ProcessEnv = process.env): {
  values: FlagValues;
  positionals: string[];
} {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const [name, spec] of Object.entries(specs)) {
    options[name] = { type: spec.type === "boolean" ? "boolean" : "string", ...(spec.short ? { short: spec.short } : {}) };
    if (spec.type === "boolean") options[`no-${name}`] = { type: "boolean" };
  }
  options.help = { type: "boolean", short: "h" };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/^.*?: /, ""));
  }
  const values: FlagValues = { help: parsed.values.help === true };
  for (const [name, spec] of Object.entries(specs)) {
    const given = parsed.values[name] as string | boolean | undefined;
    const negated = parsed.values[`no-${name}`] === true;
    if (given !== undefined) values[name] = convert(name, spec.type, given, `--${name}`);
    else if (negated) values[name] = false;
    else if (env[envName(name)] !== undefined) values[name] = convert(name, spec.type, env[envName(name)]!, envName(name));
    else values[name] = spec.default;
  }
  return { values, positionals: parsed.positionals };
}

/** The help text for a command's flags. */
export function usage(command: string, synopsis: string, specs: Record<string, FlagSpec>): string {
  const lines = [`usage: mla-serve ${command} ${synopsis}`, "", "options:"];
  for (const [name, spec] of Object.entries(specs)) {
    const value = spec.type === "boolean" ? "" : ` ${spec.type === "string" ? "VALUE" : spec.type.toUpperCase()}`;
    const def = spec.default !== undefined ? ` (default: ${spec.default})` : "";
    lines.push(`  --${name}${value}`.padEnd(34) + `${spec.help}${def}  [env ${envName(name)}]`);
  }
  return lines.join("\n");
}
