// What a request constrains and adjusts in its output: the grammar (OpenAI's response_format,
// vLLM's guided_* and structured_outputs) and the logits processors (logit_bias, allowed_token_ids,
// bad_words, min_tokens). Each reader names the parameter it rejects.
import type { GrammarSpec } from "../engine/grammar.js";
import type { ProcessorOptions } from "../engine/processors.js";
import type { ServingContext } from "./context.js";
import { badRequest } from "./errors.js";
import { asObject, optBool, optInt, type Body } from "./validate.js";

/** A grammar spec and the request parameter it came from (named in errors). */
export interface GrammarRequest {
  spec: GrammarSpec;
  param: string;
}

function stringOrObject(v: unknown, param: string): unknown {
  if (typeof v === "string") {
    try {
      return JSON.parse(v);
    } catch {
      throw badRequest(`${param} is not valid JSON`, param, "invalid_json_schema");
    }
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw badRequest(`${param} must be a JSON schema (an object)`, param, "invalid_json_schema");
  return v;
}

function str(v: unknown, param: string): string {
  if (typeof v !== "string" || v.length === 0) throw badRequest(`${param} must be a non-empty string`, param);
  return v;
}

function choices(v: unknown, param: string): string[] {
  if (!Array.isArray(v) || v.length === 0 || v.some((c) => typeof c !== "string")) throw badRequest(`${param} must be a non-empty array of strings`, param);
  return v as string[];
}

function fromResponseFormat(v: unknown): GrammarRequest | null {
  const rf = asObject(v, "response_format", "response_format");
  switch (rf.type) {
    case "text":
      return null;
    case "json_object":
      return { spec: { type: "json_object" }, param: "response_format" };
    case "json_schema": {
      const js = asObject(rf.json_schema, "response_format.json_schema", "response_format");
      const schema = js.schema ?? js.json_schema;
      if (schema === undefined) throw badRequest("response_format.json_schema.schema is required", "response_format");
      const strict = optBool(js, "strict") ?? false;
      return { spec: { type: "json_schema", schema: stringOrObject(schema, "response_format"), strict }, param: "response_format" };
    }
    case "structural_tag":
      return { spec: { type: "structural_tag", tag: rf }, param: "response_format" };
    default:
      throw badRequest(`response_format.type must be "text", "json_object", "json_schema" or "structural_tag", got ${JSON.stringify(rf.type)}`, "response_format");
  }
}

/** vLLM's structured_outputs object: exactly one of json, regex, choice, grammar, json_object, structural_tag. */
function fromStructuredOutputs(v: unknown): GrammarRequest[] {
  const so = asObject(v, "structured_outputs", "structured_outputs");
  const p = "structured_outputs";
  const out: GrammarRequest[] = [];
  if (so.json !== undefined && so.json !== null) out.push({ spec: { type: "json_schema", schema: stringOrObject(so.json, `${p}.json`), strict: false }, param: p });
  if (so.regex !== undefined && so.regex !== null) out.push({ spec: { type: "regex", pattern: str(so.regex, `${p}.regex`) }, param: p });
  if (so.choice !== undefined && so.choice !== null) out.push({ spec: { type: "choice", choices: choices(so.choice, `${p}.choice`) }, param: p });
  if (so.grammar !== undefined && so.grammar !== null) out.push({ spec: { type: "grammar", ebnf: str(so.grammar, `${p}.grammar`) }, param: p });
  if (so.json_object === true) out.push({ spec: { type: "json_object" }, param: p });
  if (so.structural_tag !== undefined && so.structural_tag !== null) out.push({ spec: { type: "structural_tag", tag: stringOrObject(so.structural_tag, `${p}.structural_tag`) }, param: p });
  return out;
}

/** The one grammar a request asks for, or null. Asking for two is a 400. */
export function grammarRequestFrom(body: Body): GrammarRequest | null {
  const found: GrammarRequest[] = [];
  if (body.response_format !== undefined && body.response_format !== null) {
    const g = fromResponseFormat(body.response_format);
    if (g) found.push(g);
  }
  if (body.guided_json !== undefined && body.guided_json !== null) {
    found.push({ spec: { type: "json_schema", schema: stringOrObject(body.guided_json, "guided_json"), strict: false }, param: "guided_json" });
  }
  if (body.guided_regex !== undefined && body.guided_regex !== null) found.push({ spec: { type: "regex", pattern: str(body.guided_regex, "guided_regex") }, param: "guided_regex" });
  if (body.guided_choice !== undefined && body.guided_choice !== null) found.push({ spec: { type: "choice", choices: choices(body.guided_choice, "guided_choice") }, param: "guided_choice" });
  if (body.guided_grammar !== undefined && body.guided_grammar !== null) found.push({ spec: { type: "grammar", ebnf: str(body.guided_grammar, "guided_grammar") }, param: "guided_grammar" });
  if (body.structured_outputs !== undefined && body.structured_outputs !== null) found.push(...fromStructuredOutputs(body.structured_outputs));
  const backend = body.guided_decoding_backend;
  if (backend !== undefined && backend !== null && backend !== "xgrammar" && backend !== "auto") {
    throw badRequest(`guided_decoding_backend ${JSON.stringify(backend)} is not available: this server uses xgrammar`, "guided_decoding_backend", "unsupported_parameter");
  }
  if (body.guided_whitespace_pattern !== undefined && body.guided_whitespace_pattern !== null) {
    throw badRequest("guided_whitespace_pattern is not supported (xgrammar allows any JSON whitespace)", "guided_whitespace_pattern", "unsupported_parameter");
  }
  if (found.length > 1) throw badRequest(`a request may ask for one structured output, got ${found.map((g) => g.param).join(" and ")}`, found[1]!.param);
  return found[0] ?? null;
}

/** OpenAI's logit_bias: {"token id": bias}. */
function logitBias(body: Body): [number, number][] {
  const v = body.logit_bias;
  if (v === undefined || v === null) return [];
  const o = asObject(v, "logit_bias", "logit_bias");
  return Object.entries(o).map(([k, bias]) => {
    const id = Number(k);
    if (!/^\d+$/.test(k) || !Number.isSafeInteger(id)) throw badRequest(`logit_bias keys must be token ids, got ${JSON.stringify(k)}`, "logit_bias");
    if (typeof bias !== "number" || !(bias >= -100 && bias <= 100)) throw badRequest(`logit_bias values must be numbers in [-100, 100], got ${JSON.stringify(bias)} for ${k}`, "logit_bias");
    return [id, bias];
  });
}

function allowedTokenIds(body: Body): number[] | null {
  const v = body.allowed_token_ids;
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v) || v.length === 0 || v.some((x) => !Number.isInteger(x) || x < 0)) throw badRequest("allowed_token_ids must be a non-empty array of token ids", "allowed_token_ids");
  return v as number[];
}

/** vLLM's bad_words: each word is banned as it tokenizes alone and after a space. */
async function badWords(ctx: ServingContext, body: Body): Promise<number[][]> {
  const v = body.bad_words;
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || v.some((w) => typeof w !== "string" || w.length === 0)) throw badRequest("bad_words must be an array of non-empty strings", "bad_words");
  if (v.length > 0 && !ctx.text) throw badRequest("bad_words needs a tokenizer, which this model lacks", "bad_words");
  const seen = new Set<string>();
  const out: number[][] = [];
  for (const word of v as string[]) {
    for (const form of [word, ` ${word.trimStart()}`]) {
      const ids = await ctx.text!.encode(form, false);
      const key = ids.join(",");
      if (ids.length > 0 && !seen.has(key)) {
        seen.add(key);
        out.push(ids);
      }
    }
  }
  return out;
}

/** The request's logits processors (token ids are checked against the vocabulary by the engine). */
export async function processorsFrom(ctx: ServingContext, body: Body): Promise<ProcessorOptions> {
  return {
    logitBias: logitBias(body),
    allowedTokenIds: allowedTokenIds(body),
    badWords: await badWords(ctx, body),
    minTokens: optInt(body, "min_tokens", 0) ?? 0,
  };
}
