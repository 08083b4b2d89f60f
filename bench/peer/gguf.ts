// A GGUF (version 3) writer for the peer benchmark: a Llama, Mistral or Qwen2 safetensors folder
// as llama.cpp reads it, with the same BF16 weights. Only what the comparison needs: the benchmark
// feeds token ids, so the vocabulary is a placeholder SentencePiece one of the right size (control
// tokens 0-2, the 256 byte tokens, then "▁t<id>"; llama.cpp's "none" vocabulary cannot be loaded
// through node-llama-cpp, which tokenizes at load), and no rope scaling.
// Layout (ggml's gguf.cpp): magic, version, tensor and key counts, the metadata, the tensor infos
// (name, dims innermost first, type, offset into the data), padding to the alignment, the data.
import { closeSync, openSync, renameSync, writeSync } from "node:fs";

import { Checkpoint } from "../../src/model/checkpoint.js";
import { fromBf16, fromF16 } from "../../src/model/safetensors.js";

const ALIGNMENT = 32;
const GGML_TYPE = { F32: 0, F16: 1, BF16: 30 } as const;
const KV = { INT32: 5, UINT32: 4, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9 } as const;

type MetaValue =
  | { type: "u32"; value: number }
  | { type: "f32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "str"; value: string }
  | { type: "strs"; value: string[] }
  | { type: "f32s"; value: number[] }
  | { type: "i32s"; value: number[] };

/** The placeholder vocabulary: [tokens, scores, token types (1 normal, 2 unknown, 3 control, 6 byte)]. */
function placeholderVocab(size: number): [string[], number[], number[]] {
  if (size < 259) throw new Error(`gguf: a vocabulary of ${size} tokens is too small for the placeholder (259)`);
  const tokens = ["<unk>", "<s>", "</s>"], types = [2, 3, 3];
  for (let b = 0; b < 256; ++b) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(6);
  }
  for (let i = tokens.length; i < size; ++i) {
    tokens.push(`\u2581t${i}`);
    types.push(1);
  }
  return [tokens, tokens.map((_, i) => -i), types];
}

class Bytes {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  concat(): Buffer {
    return Buffer.concat(this.parts);
  }
}

interface OutTensor {
  name: string;
  dims: number[]; // innermost first (ggml's ne)
  type: number;
  bytes: () => Buffer;
}

/** HF's q/k rows (rotate-half pairs i, i + D/2) in the order llama.cpp's llama rope wants (pairs 2i, 2i + 1). */
function permuteRows(data: Buffer, heads: number, rows: number, rowBytes: number): Buffer {
  const out = Buffer.alloc(data.length);
  const D = rows / heads, half = D / 2;
  for (let h = 0; h < heads; ++h) {
    for (let s = 0; s < 2; ++s) {
      for (let j = 0; j < half; ++j) {
        const src = h * D + s * half + j, dst = h * D + 2 * j + s;
        data.copy(out, dst * rowBytes, src * rowBytes, (src + 1) * rowBytes);
      }
    }
  }
  return out;
}

/** Writes `out` (through a temporary file, renamed when complete) from the checkpoint in `dir`. */
export function writeGguf(dir: string, out: string): { tensors: number; bytes: number } {
  const ckpt = new Checkpoint(dir);
  const c = ckpt.config;
  const type = String(c.model_type);
  if (!["llama", "mistral", "qwen2"].includes(type)) throw new Error(`gguf: model_type ${type} is not supported (llama, mistral, qwen2)`);
  if (c.rope_scaling) throw new Error("gguf: rope_scaling is not supported by this writer");
  const arch = type === "qwen2" ? "qwen2" : "llama";
  const num = (k: string, d?: number): number => (typeof c[k] === "number" ? (c[k] as number) : d!);
  const hidden = num("hidden_size"), heads = num("num_attention_heads"), kvHeads = num("num_key_value_heads", heads);
  const headDim = num("head_dim", hidden / heads), layers = num("num_hidden_layers");
  const meta: [string, MetaValue][] = [
    ["general.architecture", { type: "str", value: arch }],
    ["general.name", { type: "str", value: String(c._name_or_path ?? "mla-serve peer bench") }],
    ["general.alignment", { type: "u32", value: ALIGNMENT }],
    [`${arch}.context_length`, { type: "u32", value: num("max_position_embeddings", 4096) }],
    [`${arch}.embedding_length`, { type: "u32", value: hidden }],
    [`${arch}.block_count`, { type: "u32", value: layers }],
    [`${arch}.feed_forward_length`, { type: "u32", value: num("intermediate_size") }],
    [`${arch}.attention.head_count`, { type: "u32", value: heads }],
    [`${arch}.attention.head_count_kv`, { type: "u32", value: kvHeads }],
    [`${arch}.attention.key_length`, { type: "u32", value: headDim }],
    [`${arch}.attention.value_length`, { type: "u32", value: headDim }],
    [`${arch}.rope.dimension_count`, { type: "u32", value: headDim }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { type: "f32", value: num("rms_norm_eps", 1e-6) }],
    [`${arch}.rope.freq_base`, { type: "f32", value: num("rope_theta", 10000) }],
    [`${arch}.vocab_size`, { type: "u32", value: num("vocab_size") }],
  ];
  const [tokens, scores, types] = placeholderVocab(num("vocab_size"));
  meta.push(
    ["tokenizer.ggml.model", { type: "str", value: "llama" }],
    ["tokenizer.ggml.tokens", { type: "strs", value: tokens }],
    ["tokenizer.ggml.scores", { type: "f32s", value: scores }],
    ["tokenizer.ggml.token_type", { type: "i32s", value: types }],
    ["tokenizer.ggml.unknown_token_id", { type: "u32", value: 0 }],
    ["tokenizer.ggml.bos_token_id", { type: "u32", value: num("bos_token_id", 1) }],
    ["tokenizer.ggml.eos_token_id", { type: "u32", value: num("eos_token_id", 2) }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: false }],
  );

  // A matrix keeps its stored type (BF16, F16 or F32); vectors (norms, biases) go to F32.
  const tensor = (src: string, name: string, permuteHeads = 0): OutTensor => {
    const e = ckpt.entry(src);
    if (e.shape.length === 1) {
      return {
        name, dims: [e.shape[0]!], type: GGML_TYPE.F32,
        bytes: () => {
          const raw = ckpt.raw(src);
          const f = e.dtype === "F32" ? new Float32Array(raw.buffer, raw.byteOffset, e.shape[0]) : e.dtype === "BF16" ? fromBf16(new Uint16Array(raw.buffer, raw.byteOffset, e.shape[0])) : fromF16(new Uint16Array(raw.buffer, raw.byteOffset, e.shape[0]));
          return Buffer.from(f.buffer, f.byteOffset, f.byteLength);
        },
      };
    }
    const [rows, cols] = e.shape as [number, number];
    return {
      name, dims: [cols, rows], type: GGML_TYPE[e.dtype],
      bytes: () => {
        const raw = Buffer.from(ckpt.raw(src));
        return permuteHeads > 0 ? permuteRows(raw, permuteHeads, rows, raw.length / rows) : raw;
      },
    };
  };
  const tensors: OutTensor[] = [tensor("model.embed_tokens.weight", "token_embd.weight"), tensor("model.norm.weight", "output_norm.weight")];
  if (ckpt.has("lm_head.weight") && c.tie_word_embeddings !== true) tensors.push(tensor("lm_head.weight", "output.weight"));
  const permute = arch === "llama";  // qwen2 runs NeoX-style rope in llama.cpp: rows as Hugging Face keeps them
  for (let l = 0; l < layers; ++l) {
    const p = `model.layers.${l}.`, b = `blk.${l}.`;
    tensors.push(tensor(`${p}input_layernorm.weight`, `${b}attn_norm.weight`));
    tensors.push(tensor(`${p}self_attn.q_proj.weight`, `${b}attn_q.weight`, permute ? heads : 0));
    tensors.push(tensor(`${p}self_attn.k_proj.weight`, `${b}attn_k.weight`, permute ? kvHeads : 0));
    tensors.push(tensor(`${p}self_attn.v_proj.weight`, `${b}attn_v.weight`));
    for (const [hf, gg] of [["q", "q"], ["k", "k"], ["v", "v"]]) {
      if (ckpt.has(`${p}self_attn.${hf}_proj.bias`)) {
        if (permute) throw new Error("gguf: attention biases on a llama-arch model are not supported");
        tensors.push(tensor(`${p}self_attn.${hf}_proj.bias`, `${b}attn_${gg}.bias`));
      }
    }
    tensors.push(tensor(`${p}self_attn.o_proj.weight`, `${b}attn_output.weight`));
    tensors.push(tensor(`${p}post_attention_layernorm.weight`, `${b}ffn_norm.weight`));
    tensors.push(tensor(`${p}mlp.gate_proj.weight`, `${b}ffn_gate.weight`));
    tensors.push(tensor(`${p}mlp.up_proj.weight`, `${b}ffn_up.weight`));
    tensors.push(tensor(`${p}mlp.down_proj.weight`, `${b}ffn_down.weight`));
  }

  const header = new Bytes();
  header.push(Buffer.from("GGUF", "ascii"));
  header.u32(3);
  header.u64(tensors.length);
  header.u64(meta.length);
  for (const [key, v] of meta) {
    header.str(key);
    if (v.type === "u32") { header.u32(KV.UINT32); header.u32(v.value); }
    else if (v.type === "f32") { header.u32(KV.FLOAT32); header.f32(v.value); }
    else if (v.type === "bool") { header.u32(KV.BOOL); header.push(Buffer.of(v.value ? 1 : 0)); }
    else if (v.type === "str") { header.u32(KV.STRING); header.str(v.value); }
    else {
      header.u32(KV.ARRAY);
      header.u32(v.type === "strs" ? KV.STRING : v.type === "f32s" ? KV.FLOAT32 : KV.INT32);
      header.u64(v.value.length);
      for (const x of v.value) {
        if (v.type === "strs") header.str(x as string);
        else if (v.type === "f32s") header.f32(x as number);
        else { const b = Buffer.alloc(4); b.writeInt32LE(x as number); header.push(b); }
      }
    }
  }
  const pad = (n: number) => (ALIGNMENT - (n % ALIGNMENT)) % ALIGNMENT;
  const sizes = tensors.map((t) => t.dims.reduce((a, d) => a * d, 1) * (t.type === GGML_TYPE.F32 ? 4 : 2));
  let offset = 0;
  tensors.forEach((t, i) => {
    header.str(t.name);
    header.u32(t.dims.length);
    for (const d of t.dims) header.u64(d);
    header.u32(t.type);
    header.u64(offset);
    offset += sizes[i]! + pad(sizes[i]!);
  });
  header.push(Buffer.alloc(pad(header.length)));

  const tmp = `${out}.tmp-${process.pid}`;
  const fd = openSync(tmp, "w");
  let written = 0;
  try {
    written += writeSync(fd, header.concat());
    tensors.forEach((t, i) => {
      const data = t.bytes();
      if (data.length !== sizes[i]) throw new Error(`gguf: ${t.name} has ${data.length} bytes, expected ${sizes[i]}`);
      written += writeSync(fd, data);
      written += writeSync(fd, Buffer.alloc(pad(data.length)));
    });
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, out);
  return { tensors: tensors.length, bytes: written };
}
