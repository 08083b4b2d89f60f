// config.json of converted models.
import type { DType } from "../model/safetensors.js";
import type { SourceShape } from "./source.js";

const CARRIED = [
  "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "max_position_embeddings",
  "rms_norm_eps", "rope_theta", "rope_scaling", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
  "hidden_act", "initializer_range",
];

export const TORCH_DTYPE: Record<DType, string> = { F32: "float32", BF16: "bfloat16", F16: "float16" };

export interface MlaShape {
  kvLoraRank: number;
  ropeDim: number;
  qLoraRank: number | null;
  latentNorm: boolean;
}

/** A DeepSeek-V3 config that Hugging Face's DeepseekV3ForCausalLM loads: dense MLP in every layer. */
export function mlaConfig(source: Record<string, unknown>, s: SourceShape, m: MlaShape, dtype: DType, provenance: object): Record<string, unknown> {
  const out: Record<string, unknown> = { architectures: ["DeepseekV3ForCausalLM"], model_type: "deepseek_v3" };
  for (const key of CARRIED) if (source[key] !== undefined) out[key] = source[key];
  Object.assign(out, {
    num_key_value_heads: s.numHeads,
    q_lora_rank: m.qLoraRank,
    kv_lora_rank: m.kvLoraRank,
    qk_nope_head_dim: s.headDim,
    qk_rope_head_dim: m.ropeDim,
    v_head_dim: s.headDim,
    head_dim: m.ropeDim,
    rope_interleave: true,
    attention_bias: s.hasBias,
    attention_dropout: 0.0,
    first_k_dense_replace: s.numLayers,
    qk_latent_layernorm: m.latentNorm,
    torch_dtype: TORCH_DTYPE[dtype],
    mla_serve_conversion: provenance,
  });
  return out;
}

/** TransMLA's first format keeps the source config: the k_up_proj / v_up_proj weights mark it. */
export function v1Config(source: Record<string, unknown>, dtype: DType, provenance: object): Record<string, unknown> {
  return { ...source, torch_dtype: TORCH_DTYPE[dtype], mla_serve_conversion: provenance };
}
