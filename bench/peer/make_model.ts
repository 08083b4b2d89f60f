// A random Llama checkpoint at real shapes for the peer benchmark (no model can be downloaded here).
// node dist/bench/peer/make_model.js --out DIR [--hidden 2048 --layers 16 --heads 32 --kv-heads 8
//   --head-dim 64 --ffn 8192 --vocab 32000]   (defaults: Llama-3.2-1B's shapes with a 32,000 vocabulary)
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

import { writeSafetensors, type TensorData } from "../../src/model/safetensors.js";

const { values: v } = parseArgs({
  options: {
    out: { type: "string" },
    hidden: { type: "string", default: "2048" },
    layers: { type: "string", default: "16" },
    heads: { type: "string", default: "32" },
    "kv-heads": { type: "string", default: "8" },
    "head-dim": { type: "string", default: "64" },
    ffn: { type: "string", default: "8192" },
    vocab: { type: "string", default: "32000" },
    seed: { type: "string", default: "1" },
  },
});
if (!v.out) throw new Error("--out DIR is required");
const [hidden, layers, heads, kvHeads, headDim, ffn, vocab] = [v.hidden, v.layers, v.heads, v["kv-heads"], v["head-dim"], v.ffn, v.vocab].map(Number) as number[];

// xorshift32 and a sum of four uniforms (variance 1/3 each): close enough to a normal for weights.
let state = Number(v.seed) >>> 0 || 1;
const uniform = () => {
  state ^= state << 13; state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5; state >>>= 0;
  return state / 4294967296 - 0.5;
};
// Made when written (a 1 B model does not fit in a JS heap at once).
function randomBf16(rows: number, cols: number, std: number): TensorData {
  const make = () => {
    const n = rows * cols, bits = new Uint16Array(n), f = new Float32Array(1), u = new Uint32Array(f.buffer);
    const scale = std * Math.sqrt(3);  // the sum of four uniforms on [-0.5, 0.5) has variance 1/3
    for (let i = 0; i < n; ++i) {
      f[0] = (uniform() + uniform() + uniform() + uniform()) * scale;
      bits[i] = (u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) >>> 16;
    }
    return new Uint8Array(bits.buffer);
  };
  return { dtype: "BF16", shape: [rows, cols], data: make };
}
function ones(n: number): TensorData {
  return { dtype: "BF16", shape: [n], data: new Uint8Array(new Uint16Array(n).fill(0x3f80).buffer) };
}

const tensors = new Map<string, TensorData>();
tensors.set("model.embed_tokens.weight", randomBf16(vocab, hidden, 0.02));
tensors.set("model.norm.weight", ones(hidden));
for (let l = 0; l < layers; ++l) {
  const p = `model.layers.${l}.`;
  tensors.set(`${p}input_layernorm.weight`, ones(hidden));
  tensors.set(`${p}post_attention_layernorm.weight`, ones(hidden));
  tensors.set(`${p}self_attn.q_proj.weight`, randomBf16(heads * headDim, hidden, 0.02));
  tensors.set(`${p}self_attn.k_proj.weight`, randomBf16(kvHeads * headDim, hidden, 0.02));
  tensors.set(`${p}self_attn.v_proj.weight`, randomBf16(kvHeads * headDim, hidden, 0.02));
  tensors.set(`${p}self_attn.o_proj.weight`, randomBf16(hidden, heads * headDim, 0.02));
  tensors.set(`${p}mlp.gate_proj.weight`, randomBf16(ffn, hidden, 0.02));
  tensors.set(`${p}mlp.up_proj.weight`, randomBf16(ffn, hidden, 0.02));
  tensors.set(`${p}mlp.down_proj.weight`, randomBf16(hidden, ffn, 0.02));
}
mkdirSync(v.out, { recursive: true });
writeSafetensors(path.join(v.out, "model.safetensors"), tensors);
writeFileSync(path.join(v.out, "config.json"), JSON.stringify({
  architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: hidden, intermediate_size: ffn,
  num_hidden_layers: layers, num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: headDim,
  vocab_size: vocab, rms_norm_eps: 1e-5, rope_theta: 500000.0, max_position_embeddings: 8192, hidden_act: "silu",
  tie_word_embeddings: true, attention_bias: false, mlp_bias: false, bos_token_id: 1, eos_token_id: 2, torch_dtype: "bfloat16",
}, null, 2));
let params = 0;
for (const t of tensors.values()) params += t.shape.reduce((a, b) => a * b, 1);
process.stdout.write(`${v.out}: ${(params / 1e9).toFixed(3)} B parameters\n`);
