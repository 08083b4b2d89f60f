// The bytes one token adds to running text, as logprobs report it (OpenAI's `token` and `bytes`).
//
// Decoding a token alone is not the same thing: SentencePiece decoders strip the leading space of
// the whole text ("▁the" decodes to "the"), and a byte-fallback or byte-level token that holds part
// of a UTF-8 character decodes to U+FFFD. So the piece is mapped back to bytes by the decoder's own
// rules: byte-level BPE (GPT-2's byte-to-character table), or a metaspace replacement plus
// <0xNN> byte-fallback tokens. Other decoders (WordPiece, ...) fall back to decoding the token.

type Json = Record<string, unknown>;

export type TokenBytesFn = (id: number) => Uint8Array;

interface DecoderRules {
  byteLevel: boolean;
  /** [from, to] string replacements in order, e.g. ["▁", " "]. */
  replacements: [string, string][];
  byteFallback: boolean;
}

function decoderList(decoder: unknown): Json[] {
  if (!decoder || typeof decoder !== "object") return [];
  const d = decoder as Json;
  return d.type === "Sequence" && Array.isArray(d.decoders) ? (d.decoders as unknown[]).flatMap(decoderList) : [d];
}

function rulesOf(tokenizerJson: Json): DecoderRules | null {
  const rules: DecoderRules = { byteLevel: false, replacements: [], byteFallback: false };
  for (const d of decoderList(tokenizerJson.decoder)) {
    if (d.type === "ByteLevel") rules.byteLevel = true;
    else if (d.type === "ByteFallback") rules.byteFallback = true;
    else if (d.type === "Metaspace") rules.replacements.push([typeof d.replacement === "string" ? d.replacement : "▁", " "]);
    else if (d.type === "Replace") {
      const from = (d.pattern as Json | undefined)?.String;
      if (typeof from === "string" && typeof d.content === "string") rules.replacements.push([from, d.content]);
    }
  }
  return rules.byteLevel || rules.replacements.length > 0 || rules.byteFallback ? rules : null;
}

/** GPT-2's table from printable characters back to bytes (byte-level BPE vocabularies use it). */
function byteLevelTable(): Map<string, number> {
  const table = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; ++b) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    table.set(String.fromCodePoint(printable ? b : 256 + extra++), b);
  }
  return table;
}

const utf8 = new TextEncoder();

/**
 * Builds id -> bytes for a tokenizer.json. `piece` gives the vocabulary string of an id, `added`
 * the ids of added tokens (their content is literal text), `decodeOne` decodes one id.
 */
export function tokenBytesFn(tokenizerJson: Json, piece: (id: number) => string | undefined, added: ReadonlySet<number>,
                             decodeOne: (id: number) => string): TokenBytesFn {
  const rules = rulesOf(tokenizerJson);
  const table = rules?.byteLevel ? byteLevelTable() : null;
  const cache = new Map<number, Uint8Array>();
  const compute = (id: number): Uint8Array => {
    const p = piece(id);
    if (p === undefined || rules === null) return utf8.encode(decodeOne(id));
    if (added.has(id)) return utf8.encode(p);
    if (table) {
      const bytes = [...p].map((ch) => table.get(ch));
      return bytes.every((b) => b !== undefined) ? Uint8Array.from(bytes as number[]) : utf8.encode(p);
    }
    const fallback = rules.byteFallback ? /^<0x([0-9A-Fa-f]{2})>$/.exec(p) : null;
    if (fallback) return Uint8Array.of(parseInt(fallback[1]!, 16));
    let text = p;
    for (const [from, to] of rules.replacements) text = text.split(from).join(to);
    return utf8.encode(text);
  };
  return (id) => {
    let bytes = cache.get(id);
    if (!bytes) cache.set(id, (bytes = compute(id)));
    return bytes;
  };
}
