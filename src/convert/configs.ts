// config.json of converted models.
import type { DType } from "../model/safetensors.js";
import type { SourceShape } from "./source.js";
import { isStock, TARGET_RULES, type Target } from "./targets.js";

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
  /** Whose loader the config is for (stock targets: no qk_latent_layernorm field; mla-serve: present). */
  target: Target;
  /** attention_bias (stock targets): kv_a_proj_with_mqa carries its bias. */
  attentionBias: boolean;
}

/**
 * A DeepSeek-V3 config, dense MLP in every layer. For the stock targets it is what Hugging Face's
 * DeepseekV3ForCausalLM, vLLM and SGLang read: no qk_latent_layernorm (they always apply the
 * latent norms), integer expert fields that make every layer dense, lm_head untied for vLLM and
 * SGLang. For mla-serve: qk_latent_layernorm says whether the latents are normalized.
 */
export function mlaConfig(source: Record<string, unknown>, s: SourceShape, m: MlaShape, dtype: DType, provenance: object): Record<string, unknown> {
  const out: Record<string, unknown> = { architectures: ["DeepseekV3ForCausalLM"], model_type: "deepseek_v3" };
  for (const key of CARRIED) if (source[key] !== undefined) out[key] = source[key];
  const stock = isStock(m.target);
  Object.assign(out, {
    num_key_value_heads: s.numHeads,
    q_lora_rank: m.qLoraRank,
    kv_lora_rank: m.kvLoraRank,
    qk_nope_head_dim: s.headDim,
    qk_rope_head_dim: m.ropeDim,
    v_head_dim: s.headDim,
    head_dim: m.ropeDim,
    rope_interleave: true,
    attention_bias: stock ? m.attentionBias : s.hasBias,
    attention_dropout: 0.0,
    first_k_dense_replace: s.numLayers,
    ...(stock
      ? {
        n_routed_experts: 1, n_shared_experts: 1, num_experts_per_tok: 1, n_group: 1, topk_group: 1, moe_layer_freq: 1,
        moe_intermediate_size: source.intermediate_size, routed_scaling_factor: 1.0, norm_topk_prob: true,
      }
      : { qk_latent_layernorm: m.latentNorm }),
    ...(TARGET_RULES[m.target].needsLmHead ? { tie_word_embeddings: false } : {}),
    torch_dtype: TORCH_DTYPE[dtype],
    mla_serve_conversion: { ...provenance, target: m.target },
  });
  return out;
}

/** TransMLA's first format keeps the source config: the k_up_proj / v_up_proj weights mark it. */
export function v1Config(source: Record<string, unknown>, dtype: DType, provenance: object): Record<string, unknown> {
  return { ...source, torch_dtype: TORCH_DTYPE[dtype], mla_serve_conversion: provenance };
}
