// The GQA/MHA model a conversion starts from: its shape, read from config.json and checked.
import type { Checkpoint } from "../model/checkpoint.js";
import { Mat } from "./matrix.js";
import { ropeScalingType } from "./targets.js";

export interface SourceShape {
  modelType: string;
  hidden: number;
  numLayers: number;
  numHeads: number; // H
  numKvHeads: number; // Hkv
  headDim: number; // D
  /** Latent width of K (and of V): Hkv * D. */
  latent: number;
  hasBias: boolean;
  /** rope_scaling's type (null: none). */
  ropeScaling: string | null;
  /** lm_head is the embedding matrix (tie_word_embeddings, or no lm_head.weight). */
  tied: boolean;
}

const SUPPORTED = ["llama", "mistral", "qwen2"];

/** Reads and checks the source shape; throws naming what is unsupported. */
export function sourceShape(ckpt: Checkpoint): SourceShape {
  const c = ckpt.config;
  const type = String(c.model_type);
  if (!SUPPORTED.includes(type)) {
    throw new Error(`cannot convert model_type "${type}": conversion supports ${SUPPORTED.join(", ")} (GQA/MHA checkpoints)`);
  }
  if (ckpt.has("model.layers.0.self_attn.k_up_proj.weight")) throw new Error(`${ckpt.dir} is already converted (it has k_up_proj)`);
  const num = (key: string, fallback?: number): number => {
    const v = c[key];
    if (typeof v === "number" && Number.isInteger(v) && v > 0) return v;
    if (fallback !== undefined) return fallback;
    throw new Error(`config.json: ${key} must be a positive integer`);
  };
  const hidden = num("hidden_size");
  const numHeads = num("num_attention_heads");
  const numKvHeads = num("num_key_value_heads", numHeads);
  const headDim = num("head_dim", hidden / numHeads);
  if (numHeads % numKvHeads !== 0) throw new Error(`num_key_value_heads ${numKvHeads} does not divide num_attention_heads ${numHeads}`);
  if (headDim % 2 !== 0) throw new Error(`head_dim ${headDim} is odd`);
  const partial = c.partial_rotary_factor;
  if (partial !== undefined && partial !== null && partial !== 1) throw new Error(`partial_rotary_factor ${String(partial)} is not supported`);
  return {
    modelType: type, hidden, numLayers: num("num_hidden_layers"), numHeads, numKvHeads, headDim,
    latent: numKvHeads * headDim, hasBias: ckpt.has("model.layers.0.self_attn.k_proj.bias"),
    ropeScaling: ropeScalingType(c), tied: c.tie_word_embeddings === true || !ckpt.has("lm_head.weight"),
  };
}

/** One source layer's attention weights in float64, biases as zero vectors when absent. */
export interface SourceAttention {
  wq: Mat; // [H*D, hidden]
  wk: Mat; // [Hkv*D, hidden]
  wv: Mat; // [Hkv*D, hidden]
  bq: Float64Array;
  bk: Float64Array;
  bv: Float64Array;
}

export function readAttention(ckpt: Checkpoint, s: SourceShape, layer: number): SourceAttention {
  const p = `model.layers.${layer}.self_attn.`;
  const mat = (name: string, rows: number) => new Mat(rows, s.hidden, ckpt.float64(p + name));
  const bias = (name: string, n: number) => (ckpt.has(p + name) ? ckpt.float64(p + name) : new Float64Array(n));
  return {
    wq: mat("q_proj.weight", s.numHeads * s.headDim),
    wk: mat("k_proj.weight", s.latent),
    wv: mat("v_proj.weight", s.latent),
    bq: bias("q_proj.bias", s.numHeads * s.headDim),
    bk: bias("k_proj.bias", s.latent),
    bv: bias("v_proj.bias", s.latent),
  };
}
