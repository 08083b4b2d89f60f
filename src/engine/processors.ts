// Logits processors of one sequence: what it may and may not sample next (a grammar's matcher,
// allowed_token_ids, bad_words, min_tokens, logit_bias). Each step they become the native batch's
// per-row bitmask and bias list, applied before penalties, temperature, top-k and top-p.
import type { Matcher } from "./grammar.js";

/** A request's processors as options (engine-level: token ids, no text). */
export interface ProcessorOptions {
  /** OpenAI's logit_bias: [token id, bias in [-100, 100]]. */
  logitBias: [number, number][];
  /** vLLM's allowed_token_ids: only these may be sampled; null: any. */
  allowedTokenIds: number[] | null;
  /** vLLM's bad_words, as token id sequences: the last token of each is banned after the others. */
  badWords: number[][];
  /** End-of-sequence and stop tokens are banned until this many tokens are generated. */
  minTokens: number;
}

export const NO_PROCESSORS: ProcessorOptions = { logitBias: [], allowedTokenIds: null, badWords: [], minTokens: 0 };

export function hasProcessors(o: ProcessorOptions): boolean {
  return o.logitBias.length > 0 || o.allowedTokenIds !== null || o.badWords.length > 0 || o.minTokens > 0;
}

/** One sequence's processors, with its grammar matcher (if any). */
export class SequenceProcessors {
  private readonly allowed: Uint32Array | null;

  constructor(private readonly o: ProcessorOptions, readonly matcher: Matcher | null, private readonly vocabSize: number, private readonly endTokens: number[]) {
    this.allowed = o.allowedTokenIds ? bitmaskOf(o.allowedTokenIds, vocabSize) : null;
  }

  /** The allowed-token bitmask for the next token (grammar AND allowed_token_ids), or null: any. */
  async nextMask(): Promise<Uint32Array | null> {
    if (!this.matcher) return this.allowed;
    const g = new Uint32Array((await this.matcher.nextBitmask()).buffer.slice(0));
    if (this.allowed) for (let i = 0; i < g.length; ++i) g[i]! &= this.allowed[i]!;
    return g;
  }

  /** [token, bias] entries for the next token, given the output so far. */
  bias(output: readonly number[]): [number, number][] {
    const out: [number, number][] = this.o.logitBias.slice();
    for (const word of this.o.badWords) {
      const head = word.length - 1;
      if (head > output.length) continue;
      let matches = true;
      for (let i = 0; i < head && matches; ++i) matches = output[output.length - head + i] === word[i];
      if (matches) out.push([word[head]!, -Infinity]);
    }
    if (output.length < this.o.minTokens) for (const t of this.endTokens) out.push([t, -Infinity]);
    return out;
  }

  dispose(): void {
    this.matcher?.dispose();
  }
}

export function bitmaskOf(ids: readonly number[], vocabSize: number): Uint32Array {
  const words = new Uint32Array(Math.ceil(vocabSize / 32));
  for (const t of ids) if (t >= 0 && t < vocabSize) words[t >>> 5]! |= 1 << (t & 31);
  return words;
}

/** The step batch's logits processor arrays for its sampled rows (null: no row has any). */
export async function batchAdjustments(rows: (SequenceProcessors | null)[], outputs: (() => readonly number[])[], vocabSize: number): Promise<{
  logitMasks?: { rowIndex: Int32Array; words: Int32Array };
  logitBias?: { offsets: Int32Array; tokens: Int32Array; values: Float32Array };
}> {
  if (rows.every((p) => p === null)) return {};
  const masks = await Promise.all(rows.map((p) => (p ? p.nextMask() : Promise.resolve(null))));
  const wordsPerRow = Math.ceil(vocabSize / 32);
  const rowIndex = new Int32Array(rows.length).fill(-1);
  const used = masks.filter((m): m is Uint32Array => m !== null);
  const words = new Int32Array(used.length * wordsPerRow);
  let next = 0;
  masks.forEach((m, r) => {
    if (!m) return;
    words.set(new Int32Array(m.buffer, m.byteOffset, wordsPerRow), next * wordsPerRow);
    rowIndex[r] = next++;
  });
  const offsets = new Int32Array(rows.length + 1);
  const tokens: number[] = [];
  const values: number[] = [];
  rows.forEach((p, r) => {
    if (p) for (const [t, v] of p.bias(outputs[r]!())) {
      tokens.push(t);
      values.push(v);
    }
    offsets[r + 1] = tokens.length;
  });
  return {
    ...(used.length ? { logitMasks: { rowIndex, words } } : {}),
    ...(tokens.length ? { logitBias: { offsets, tokens: Int32Array.from(tokens), values: Float32Array.from(values) } } : {}),
  };
}
