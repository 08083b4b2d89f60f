// Tokenizers, incremental detokenization and chat templates on real tokenizer.json files.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { gunzipSync } from "node:zlib";

import { ChatTemplate, DEFAULT_CHAT_TEMPLATE } from "../../src/tokenizer/chat_template.js";
import { IncrementalDetokenizer } from "../../src/tokenizer/detokenizer.js";
import { Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { BUNDLED_GQA, FIXTURES, readReference, HELDOUT_8K } from "../helpers.js";

const mistral = Tokenizer.load(BUNDLED_GQA); // the bundled model carries Mistral-7B's tokenizer
const QWEN_DIR = path.join(FIXTURES, "tokenizers", "qwen2.5");
const qwenConfig = JSON.parse(readFileSync(path.join(QWEN_DIR, "tokenizer_config.json"), "utf8"));
const qwen = Tokenizer.fromJson(JSON.parse(gunzipSync(readFileSync(path.join(QWEN_DIR, "tokenizer.json.gz"))).toString("utf8")), qwenConfig);

const TEXTS = [
  "Hello world! The quick brown fox.",
  "  leading spaces and\ttabs\n\nnew lines  ",
  "Ünïcödé: café, naïve, 東京, Привет мир, مرحبا",
  "Emoji 😀👍🏽 and math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ∑∫√",
  "Mixed 1234567890 numbers, code `x = y + 1;` and URLs https://example.com/a?b=c",
];

/** Streams ids through the detokenizer and returns the concatenated deltas. */
function streamDecode(tok: Tokenizer, prompt: number[], ids: number[]): { text: string; deltas: string[] } {
  const d = new IncrementalDetokenizer((x) => tok.decode(x), prompt);
  const deltas = ids.map((t) => d.push(t));
  deltas.push(d.flush());
  return { text: deltas.join(""), deltas };
}

describe("tokenizer", () => {
  it("encodes the corpus exactly as the reference prompts were tokenized", () => {
    const heldout = readFileSync(HELDOUT_8K, "utf8");
    const ids = Tokenizer.load(BUNDLED_GQA).encode(heldout);
    const c = readReference(BUNDLED_GQA)[0]!;
    assert.deepEqual(ids.slice(0, c.prompt_ids.length), c.prompt_ids);
  });

  it("knows BOS, EOS and special tokens", () => {
    assert.equal(mistral.bosTokenId, 1);
    assert.equal(mistral.eosTokenId, 2);
    assert.equal(qwen.eosTokenId, qwen.tokenToId("<|im_end|>"));
    assert.equal(qwen.bosTokenId, undefined);
    assert.ok(qwen.specialIds.has(qwen.tokenToId("<|im_start|>")!));
    assert.deepEqual(mistral.encode("Hi").slice(0, 1), [1]);
    assert.notEqual(mistral.encode("Hi", false)[0], 1);
  });

  for (const [name, tok] of [["mistral (SentencePiece, byte fallback)", mistral], ["qwen2.5 (byte-level BPE)", qwen]] as const) {
    it(`${name}: streamed deltas equal the full decode and never split a character`, () => {
      for (const text of TEXTS) {
        const ids = tok.encode(text, false);
        const prompt = tok.encode("Context:", true);
        const { text: streamed, deltas } = streamDecode(tok, prompt, ids);
        const full = tok.decode([...prompt, ...ids]).slice(tok.decode(prompt).length);
        assert.equal(streamed, full, text);
        for (const d of deltas) assert.ok(!d.includes("\uFFFD"), `delta ${JSON.stringify(d)} holds half a character`);
      }
    });
  }

  it("mistral: byte-fallback tokens produce nothing until the character is complete", () => {
    const ids = mistral.encode("𝔘", false); // '▁' then four <0x..> byte tokens
    assert.ok(ids.length >= 4);
    const { deltas } = streamDecode(mistral, mistral.encode("x"), ids);
    const nonEmpty = deltas.filter((d) => d !== "");
    assert.deepEqual(nonEmpty.join(""), " 𝔘");
    assert.equal(deltas[deltas.length - 2], "𝔘"); // completed by the last byte
  });

  it("keeps the SentencePiece space of the first generated word", () => {
    const prompt = mistral.encode("Prince Andrew");
    const { text } = streamDecode(mistral, prompt, mistral.encode(" said", false).filter((t) => t !== 28705));
    assert.equal(text, " said");
  });

  for (const [name, tok] of [["mistral", mistral], ["qwen2.5", qwen], ["bundled", Tokenizer.load(BUNDLED_GQA)]] as const) {
    it(`${name}: token bytes concatenate to the text's bytes, leading spaces and split characters included`, () => {
      for (const text of TEXTS) {
        const ids = tok.encode(text, false);
        const joined = Buffer.concat(ids.map((id) => tok.tokenBytes(id)));
        // A SentencePiece tokenizer adds one "▁" before the text (its prepend scheme).
        const expected = Buffer.from(text, "utf8");
        const skip = joined.length === expected.length + 1 && joined[0] === 0x20 ? 1 : 0;
        assert.deepEqual(joined.subarray(skip), expected, text);
      }
    });
  }

  it("token text keeps the leading space that decoding one token drops", () => {
    const the = mistral.tokenToId("▁the")!;
    assert.equal(mistral.decode([the]), "the");
    assert.equal(mistral.tokenText(the), " the");
    assert.deepEqual([...mistral.tokenBytes(mistral.tokenToId("<0x0A>")!)], [0x0a]);
    assert.deepEqual([...qwen.tokenBytes(qwen.tokenToId("Ġthe")!)], [...Buffer.from(" the")]);
    assert.equal(qwen.tokenText(qwen.tokenToId("<|im_end|>")!), "<|im_end|>");
    const partial = qwen.encode("😀", false); // byte-level pieces of one character
    assert.equal(Buffer.concat(partial.map((id) => qwen.tokenBytes(id))).toString("utf8"), "😀");
  });
});

describe("chat templates", () => {

  it("renders Qwen2.5's template with its default system prompt", () => {
    const t = new ChatTemplate(qwenConfig.chat_template);
    assert.equal(
      t.render([{ role: "user", content: "Hi" }]),
      "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
  });

  it("renders tools into Qwen2.5's system prompt", () => {
    const t = new ChatTemplate(qwenConfig.chat_template);
    const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }];
    const text = t.render([{ role: "user", content: "Weather?" }], { tools });
    assert.match(text, /<tools>\n\{"type": "function", "function": \{"name": "get_weather"/);
  });

  it("the default template for base models", () => {
    const t = new ChatTemplate(DEFAULT_CHAT_TEMPLATE);
    const text = t.render(
      [{ role: "system", content: "Be brief." }, { role: "user", content: "Hello" }, { role: "assistant", content: "Hi." }, { role: "user", content: "Bye" }],
      { bosToken: "<s>" },
    );
    assert.equal(text, "<s>Be brief.\n\nUser: Hello\nAssistant: Hi.\nUser: Bye\nAssistant:");
  });
});
