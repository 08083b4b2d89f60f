// Constrained decoding through xgrammar (the grammar engine vLLM and SGLang use), in its WASM build
// @mlc-ai/web-xgrammar: one module here wraps it. Grammars are compiled once per distinct spec (a
// cache; compiling a JSON schema takes ~100 ms on the event loop) and each constrained sequence
// gets a matcher: before a step it gives the allowed-token bitmask, after it takes the sampled token.
import { createRequire } from "node:module";

import type { Tokenizer } from "../tokenizer/tokenizer.js";

/** What a request constrains its output to. */
export type GrammarSpec =
  | { type: "json_object" }
  | { type: "json_schema"; schema: unknown; strict: boolean }
  | { type: "regex"; pattern: string }
  | { type: "choice"; choices: string[] }
  | { type: "grammar"; ebnf: string }
  | { type: "structural_tag"; tag: unknown };

/** A grammar or schema xgrammar refuses: the request's fault (a 400). */
export class GrammarError extends Error {}

/** One sequence's matcher (xgrammar's GrammarMatcher, as far as the engine uses it). */
export interface Matcher {
  /** Allowed tokens as a bitmask [ceil(vocab / 32)] (bit set: allowed). */
  nextBitmask(): Promise<Int32Array>;
  /** Advances by the sampled token; false if the grammar does not accept it. */
  accept(token: number): boolean;
  /** The grammar has ended (its stop token accepted). */
  isTerminated(): boolean;
  dispose(): void;
}

/* eslint-disable @typescript-eslint/no-explicit-any */
type XG = any;

let modulePromise: Promise<XG> | null = null;
/** While a grammar compiles: where xgrammar's error output goes (its messages say what is wrong). */
let errorSink: string[] | null = null;

// The package is a UMD bundle in a "type: module" folder: it looks for require and __filename
// (also when its WASM module first loads), then registers itself on globalThis.xgrammar.
function loadXgrammar(): Promise<XG> {
  modulePromise ??= (async () => {
    const require = createRequire(import.meta.url);
    const g = globalThis as Record<string, unknown>;
    const had = { require: g.require, __filename: g.__filename };
    g.require = require;
    g.__filename = require.resolve("@mlc-ai/web-xgrammar");
    // The WASM module binds console.error when it loads: bind it to a function that can divert it.
    const consoleError = console.error;
    console.error = (...args: unknown[]) => {
      if (errorSink) errorSink.push(args.map(String).join(" "));
      else consoleError.apply(console, args);
    };
    try {
      await import("@mlc-ai/web-xgrammar");
      // The WASM module loads on first use (and needs require then): load it now.
      const warm = await (g.xgrammar as XG).Grammar.builtinJSONGrammar();
      warm.dispose?.();
    } finally {
      console.error = consoleError;
      if (had.require === undefined) delete g.require;
      if (had.__filename === undefined) delete g.__filename;
    }
    const xg = g.xgrammar as XG;
    if (!xg?.GrammarCompiler) throw new Error("@mlc-ai/web-xgrammar did not load");
    return xg;
  })();
  return modulePromise;
}

function jsonString(s: string): string {
  return JSON.stringify(s);
}

/** xgrammar for one model's vocabulary: compiles specs (cached) and makes matchers. */
export class GrammarEngine {
  private readonly cache = new Map<string, Promise<unknown>>();
  private static readonly CACHE_SIZE = 64;

  private constructor(private readonly xg: XG, private readonly compiler: XG, private readonly stopTokenIds: number[], readonly vocabSize: number) {}

  /** Builds xgrammar's tokenizer info from the model's vocabulary (about 0.1 s for 32 K tokens). */
  static async create(tokenizer: Tokenizer, vocabSize: number, stopTokenIds: number[]): Promise<GrammarEngine> {
    const xg = await loadXgrammar();
    const v = tokenizer.grammarVocabulary(vocabSize);
    const info = await xg.TokenizerInfo.createTokenizerInfo(v.pieces, v.type, v.prependSpace, vocabSize, stopTokenIds);
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, true);
    return new GrammarEngine(xg, compiler, stopTokenIds, vocabSize);
  }

  /** One compilation at a time, so xgrammar's error output belongs to the one that failed. */
  private queue: Promise<unknown> = Promise.resolve();

  /** The compiled grammar of a spec; the same spec compiles once. Throws GrammarError for bad specs. */
  compile(spec: GrammarSpec): Promise<unknown> {
    const key = JSON.stringify(spec);
    let hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);  // most recently used last
      this.cache.set(key, hit);
      return hit;
    }
    hit = this.queue.then(async () => {
      const messages: string[] = [];
      errorSink = messages;
      try {
        return await this.compileNow(spec);
      } catch (err) {
        this.cache.delete(key);
        if (err instanceof GrammarError) throw err;
        // "[FATAL] .../json_schema_converter.cc:902: Unsupported type "x"" -> what follows the source position.
        const fatal = messages.map((m) => /\.(?:cc|h):\d+: (.*)$/s.exec(m)?.[1] ?? null).find((m) => m !== null);
        throw new GrammarError(fatal ?? (err instanceof Error ? err.message : String(err)));
      } finally {
        errorSink = null;
      }
    });
    this.queue = hit.catch(() => {});
    this.cache.set(key, hit);
    if (this.cache.size > GrammarEngine.CACHE_SIZE) {
      const oldest = this.cache.keys().next().value as string;
      void this.cache.get(oldest)!.then((c) => (c as { dispose(): void }).dispose(), () => {});
      this.cache.delete(oldest);
    }
    return hit;
  }

  private async compileNow(spec: GrammarSpec): Promise<unknown> {
    switch (spec.type) {
      case "json_object":
        // A JSON object (not any JSON value), as OpenAI's JSON mode promises.
        return this.compileSchema('{"type": "object"}');
      case "json_schema":
        // strict or not, the output follows the schema (as vLLM does: xgrammar's strict mode,
        // no properties the schema does not allow).
        return this.compileSchema(typeof spec.schema === "string" ? spec.schema : JSON.stringify(spec.schema));
      case "regex":
        return this.compiler.compileStructuralTag({ type: "structural_tag", format: { type: "regex", pattern: spec.pattern } });
      case "choice": {
        if (spec.choices.length === 0) throw new GrammarError("choice needs at least one string");
        return this.compiler.compileGrammar(`root ::= ${spec.choices.map(jsonString).join(" | ")}`);
      }
      case "grammar":
        return this.compiler.compileGrammar(spec.ebnf);
      case "structural_tag":
        return this.compiler.compileStructuralTag(typeof spec.tag === "string" ? spec.tag : JSON.stringify(spec.tag));
    }
  }

  // One-line JSON with ", " and ": " between elements (indent -1: none), so a model cannot spend
  // its tokens on whitespace (small models do, given any); additional properties only where the
  // schema allows them.
  private compileSchema(schema: string): Promise<unknown> {
    return this.compiler.compileJSONSchema(schema, false, -1, [", ", ": "], true);
  }

  /** A fresh matcher for a compiled grammar; ends with the model's stop tokens. */
  async matcher(compiled: unknown): Promise<Matcher> {
    const m = await this.xg.GrammarMatcher.createGrammarMatcher(compiled, this.stopTokenIds);
    let disposed = false;
    this.live++;
    return {
      nextBitmask: () => m.getNextTokenBitmask() as Promise<Int32Array>,
      accept: (token) => m.acceptToken(token) as boolean,
      isTerminated: () => m.isTerminated() as boolean,
      dispose: () => {
        if (disposed) return;
        disposed = true;
        this.live--;
        m.dispose();
      },
    };
  }

  private live = 0;

  /** Matchers made and not yet disposed (each holds WASM memory). */
  get liveMatchers(): number {
    return this.live;
  }
}
