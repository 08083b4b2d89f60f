// tokenizer.json + tokenizer_config.json through @huggingface/tokenizers.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";

import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";

import { tokenBytesFn, type TokenBytesFn } from "./token_bytes.js";

type Json = Record<string, unknown>;

function tokenContent(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && typeof (value as Json).content === "string") return (value as Json).content as string;
  return undefined;
}

/** A JSON object from a file; errors name the file. */
function readJsonFile(file: string): Json {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message} (a truncated or damaged file?)`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new Error(`${file}: not a JSON object`);
  return value as Json;
}

/** A model's tokenizer: encode, decode, special tokens and its chat template (if any). */
export class Tokenizer {
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosTokenId: number | undefined;
  readonly chatTemplate: string | undefined;
  readonly specialIds: ReadonlySet<number>;
  private readonly addedIds: ReadonlySet<number>;
  /** UTF-8 bytes of the longest vocabulary piece or added token, at least: a text of B bytes has at least B / maxTokenBytes tokens. */
  readonly maxTokenBytes: number;
  private readonly hf: HfTokenizer;
  private readonly bytesOf: TokenBytesFn;

  private readonly json: Json;

  private constructor(tokenizerJson: Json, config: Json) {
    this.json = tokenizerJson;
    this.hf = new HfTokenizer(tokenizerJson, config);
    this.bosToken = tokenContent(config.bos_token);
    this.eosToken = tokenContent(config.eos_token);
    this.bosTokenId = this.bosToken === undefined ? undefined : this.hf.token_to_id(this.bosToken);
    this.eosTokenId = this.eosToken === undefined ? undefined : this.hf.token_to_id(this.eosToken);
    this.chatTemplate = pickTemplate(config.chat_template);
    const special = new Set<number>();
    const added = new Set<number>();
    for (const [id, token] of this.hf.get_added_tokens_decoder()) {
      added.add(id);
      if (token.special) special.add(id);
    }
    this.specialIds = special;
    this.addedIds = added;
    this.maxTokenBytes = longestPieceBytes(tokenizerJson);
    this.bytesOf = tokenBytesFn(tokenizerJson, (id) => this.hf.id_to_token(id), added, (id) => this.decode([id], false));
  }

  /** Loads DIR/tokenizer.json and DIR/tokenizer_config.json (the latter optional). */
  static load(dir: string): Tokenizer {
    const file = path.join(dir, "tokenizer.json");
    if (!existsSync(file)) throw new Error(`${dir} has no tokenizer.json`);
    const configFile = path.join(dir, "tokenizer_config.json");
    const config = existsSync(configFile) ? readJsonFile(configFile) : {};
    return Tokenizer.fromJson(readJsonFile(file), config);
  }

  /** A tokenizer from the parsed contents of tokenizer.json and tokenizer_config.json. */
  static fromJson(tokenizerJson: Json, config: Json = {}): Tokenizer {
    return new Tokenizer(tokenizerJson, config);
  }

  /** Token ids of text; addSpecialTokens adds what the tokenizer's post-processor adds (BOS). */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /**
   * Text of token ids. spacesBetweenSpecialTokens (vLLM's, as Hugging Face's slow tokenizers do it):
   * added tokens left in the text are decoded on their own and the pieces joined by a space (true)
   * or nothing (false); undefined: the tokenizer's own decoding, which joins them as they are.
   */
  decode(ids: readonly number[], skipSpecialTokens = true, spacesBetweenSpecialTokens?: boolean): string {
    if (spacesBetweenSpecialTokens === undefined || !ids.some((id) => this.addedIds.has(id) && !(skipSpecialTokens && this.specialIds.has(id)))) {
      return this.hf.decode(ids as number[], { skip_special_tokens: skipSpecialTokens });
    }
    const parts: string[] = [];
    let run: number[] = [];
    const flush = () => {
      if (run.length) parts.push(this.hf.decode(run, { skip_special_tokens: false }));
      run = [];
    };
    for (const id of ids) {
      if (skipSpecialTokens && this.specialIds.has(id)) continue;
      if (this.addedIds.has(id)) {
        flush();
        parts.push(this.hf.decode([id], { skip_special_tokens: false }));
      } else run.push(id);
    }
    flush();
    return parts.join(spacesBetweenSpecialTokens ? " " : "");
  }

  /** The bytes token `id` adds to running text (its leading space included). */
  tokenBytes(id: number): Uint8Array {
    return this.bytesOf(id);
  }

  /** tokenBytes as text; a token holding part of a UTF-8 character gives U+FFFD. */
  tokenText(id: number): string {
    return Buffer.from(this.bytesOf(id)).toString("utf8");
  }

  /**
   * The vocabulary as a grammar engine (xgrammar) takes it: every piece by id (padded to the
   * model's vocabulary size), how pieces map to bytes, and whether encoding prepends a space.
   */
  grammarVocabulary(vocabSize: number): { pieces: string[]; type: "byte_fallback" | "byte_level" | "raw"; prependSpace: boolean } {
    const pieces: string[] = Array.from({ length: vocabSize }, (_, i) => this.hf.id_to_token(i) ?? `<|unused_${i}|>`);
    const decoders = decoderTypes(this.json.decoder);
    const type = decoders.includes("ByteLevel") ? "byte_level" : decoders.includes("ByteFallback") ? "byte_fallback" : "raw";
    const pre = JSON.stringify(this.json.pre_tokenizer ?? null) + JSON.stringify(this.json.normalizer ?? null);
    const prependSpace = /"Metaspace"/.test(pre) ? !/"prepend_scheme":"never"|"add_prefix_space":false/.test(pre) : /"Prepend"/.test(pre);
    return { pieces, type, prependSpace };
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }
}

function decoderTypes(decoder: unknown): string[] {
  if (!decoder || typeof decoder !== "object") return [];
  const d = decoder as Json;
  return d.type === "Sequence" && Array.isArray(d.decoders) ? (d.decoders as unknown[]).flatMap(decoderTypes) : [String(d.type)];
}

// Pieces are spelled with stand-ins (Ġ, ▁) at least as long in UTF-8 as the bytes they stand for,
// so their UTF-8 length bounds the bytes a token can cover.
function longestPieceBytes(json: Json): number {
  const vocab = (json.model as Json | undefined)?.vocab;
  const pieces: unknown[] = Array.isArray(vocab) ? vocab.map((v) => (Array.isArray(v) ? v[0] : v)) : vocab && typeof vocab === "object" ? Object.keys(vocab) : [];
  for (const t of Array.isArray(json.added_tokens) ? json.added_tokens : []) pieces.push((t as Json).content);
  let most = 1;
  for (const p of pieces) if (typeof p === "string") most = Math.max(most, Buffer.byteLength(p, "utf8"));
  return most;
}

// chat_template may be a string or a list of named templates ({name, template}); take "default".
function pickTemplate(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (Array.isArray(value)) {
    const named = value as { name?: string; template?: string }[];
    return (named.find((t) => t.name === "default") ?? named[0])?.template;
  }
  return undefined;
}
