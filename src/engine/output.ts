// Per-choice output processing: stop rules, incremental text, stop strings held back until safe.
import { IncrementalDetokenizer, type DecodeFn } from "../tokenizer/detokenizer.js";
import type { FinishReason, Sequence } from "./sequence.js";

export interface StopRules {
  eosTokenIds: ReadonlySet<number>;
  maxModelLen: number;
}

/** What one new token adds to a choice. */
export interface TokenResult {
  text: string;
  finishReason?: FinishReason;
  stopReason?: string | number;
}

/** Tracks one choice's text; decides when it ends. */
export class ChoiceOutput {
  /** Text released to the client so far. */
  text = "";
  private held = "";
  private readonly detok: IncrementalDetokenizer | null;
  private readonly holdBack: number;

  constructor(private readonly seq: Sequence, decode: DecodeFn | null, private readonly rules: StopRules) {
    this.detok = decode ? new IncrementalDetokenizer(decode, seq.tokenIds.slice(0, seq.numPromptTokens)) : null;
    this.holdBack = seq.sampling.stop.reduce((m, s) => Math.max(m, s.length - 1), 0);
  }

  /** Processes the sequence's newest token. */
  onToken(token: number): TokenResult {
    const s = this.seq.sampling;
    if (s.stopTokenIds.includes(token)) return this.end("stop", token);
    if (!s.ignoreEos && this.rules.eosTokenIds.has(token)) return this.end("stop", undefined);
    if (this.detok) {
      this.held += this.detok.push(token);
      const hit = this.findStop();
      if (hit) return hit;
    }
    if (this.seq.numOutputTokens >= s.maxTokens || this.seq.numTokens >= this.rules.maxModelLen) return this.end("length", undefined);
    return { text: this.release(this.held.length - this.holdBack) };
  }

  /** Ends the choice from outside (abort). */
  abort(): TokenResult {
    return this.end("abort", undefined);
  }

  private end(finishReason: FinishReason, stopReason: string | number | undefined): TokenResult {
    if (this.detok) {
      this.held += this.detok.flush();
      const hit = this.findStop();
      if (hit) return hit;
    }
    return { text: this.release(this.held.length), finishReason, stopReason };
  }

  // The earliest stop string in the held text ends the choice there (the stop string is not emitted).
  private findStop(): TokenResult | null {
    let at = -1;
    let which = "";
    for (const stop of this.seq.sampling.stop) {
      const i = this.held.indexOf(stop);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        which = stop;
      }
    }
    if (at < 0) return null;
    // vLLM's include_stop_str_in_output keeps the stop string at the end of the text.
    const end = this.seq.sampling.includeStopStr ? at + which.length : at;
    this.held = this.held.slice(0, end);
    return { text: this.release(end), finishReason: "stop", stopReason: which };
  }

  private release(count: number): string {
    // Never cut between the two halves of a surrogate pair.
    if (count > 0 && count < this.held.length && /[\uD800-\uDBFF]/.test(this.held[count - 1]!)) count--;
    if (count <= 0) return "";
    const out = this.held.slice(0, count);
    this.held = this.held.slice(count);
    this.text += out;
    return out;
  }
}
