// Token windows: TransMLA's convention for perplexity and calibration text.
import { existsSync, readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

/**
 * A UTF-8 text file (gzip-compressed when its name ends in .gz), cut to its first `maxChars`
 * characters when given; names the file when it is missing or not valid gzip.
 */
export function readText(file: string, what: string, maxChars: number | null = null): string {
  if (!existsSync(file)) throw new Error(`${what} file not found: ${file}`);
  let bytes = readFileSync(file);
  if (file.endsWith(".gz")) {
    try {
      bytes = gunzipSync(bytes);
    } catch (err) {
      throw new Error(`${what} file ${file} is not valid gzip: ${(err as Error).message}`);
    }
  }
  const text = bytes.toString("utf8");
  return maxChars === null ? text : [...text].slice(0, maxChars).join("");
}

/** Cuts ids into non-overlapping windows of `seq` tokens; the remainder is dropped. */
export function windows(ids: readonly number[], seq: number): number[][] {
  const out: number[][] = [];
  for (let start = 0; start + seq <= ids.length; start += seq) out.push(ids.slice(start, start + seq));
  return out;
}

/** A deterministic shuffle (xorshift seeded), to pick calibration windows. */
export function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = items.slice();
  let s = (seed >>> 0) || 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  for (let i = out.length - 1; i > 0; --i) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Encodes text to token ids (with the tokenizer's special tokens, so one BOS at the start). */
export type Encode = (text: string) => number[];

/**
 * Calibration windows of `seq` tokens drawn from disjoint places of a long text, without
 * tokenizing all of it: paragraphs in a seeded random order start a window each, which takes
 * following paragraphs until its text encodes to at least `seq` tokens. Each window starts like a
 * document (BOS first), as the reference's calibration samples do. Returns fewer than `count`
 * windows when the text runs out.
 */
export function sampleWindows(text: string, encode: Encode, count: number, seq: number, seed: number): number[][] {
  const starts: number[] = [0];
  const re = /\n\s*\n/g;
  let m;
  while ((m = re.exec(text)) !== null) if (m.index + m[0].length < text.length) starts.push(m.index + m[0].length);
  const used = new Uint8Array(starts.length);
  const out: number[][] = [];
  for (const p of shuffled([...starts.keys()], seed)) {
    if (out.length === count) break;
    if (used[p]) continue;
    let q = p;
    let ids: number[] = [];
    while (q < starts.length && !used[q]) {
      used[q] = 1;
      q++;
      const end = q < starts.length ? starts[q]! : text.length;
      ids = encode(text.slice(starts[p]!, end));
      if (ids.length >= seq) break;
    }
    if (ids.length >= seq) out.push(ids.slice(0, seq));
  }
  return out;
}
