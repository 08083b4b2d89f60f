// Incremental detokenization: text deltas that never split a UTF-8 character.

/** Decodes a token list (skipping special tokens). */
export type DecodeFn = (ids: readonly number[]) => string;

const REPLACEMENT = "\uFFFD";
const PROMPT_CONTEXT_TOKENS = 6;

/**
 * Turns a growing token list into text deltas. It re-decodes a short window of recent tokens and
 * emits only what extends the window's previous text, so SentencePiece "▁" spaces and byte-fallback
 * sequences come out right; text ending in U+FFFD (half a character) is held back until complete.
 */
export class IncrementalDetokenizer {
  private readonly tokens: number[];
  private prefixOffset: number;
  private readOffset: number;

  /** promptIds give the context the first generated token's leading space depends on. */
  constructor(private readonly decode: DecodeFn, promptIds: readonly number[] = []) {
    this.tokens = promptIds.slice(-PROMPT_CONTEXT_TOKENS);
    this.prefixOffset = 0;
    this.readOffset = this.tokens.length;
  }

  /** Adds one token; returns the new text it completes ("" while a character is incomplete). */
  push(token: number): string {
    this.tokens.push(token);
    return this.advance(false);
  }

  /** Emits whatever is still held back (at the end of a sequence). */
  flush(): string {
    return this.advance(true);
  }

  private advance(final: boolean): string {
    const prefixText = this.decode(this.tokens.slice(this.prefixOffset, this.readOffset));
    const fullText = this.decode(this.tokens.slice(this.prefixOffset));
    if (fullText.length > prefixText.length && (final || !fullText.endsWith(REPLACEMENT))) {
      const delta = fullText.slice(prefixText.length);
      this.prefixOffset = this.readOffset;
      this.readOffset = this.tokens.length;
      return delta;
    }
    return "";
  }
}
