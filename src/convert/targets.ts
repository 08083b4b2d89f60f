// Where a converted model is going: the stock loader that must compute it as mla-serve does.
//   hf        Hugging Face's DeepseekV3ForCausalLM (from_pretrained, no custom code)
//   vllm      vLLM's DeepseekV2/V3 model and MLA attention backends
//   sglang    SGLang's DeepseekV2/V3 model and MLA backends
//   mla-serve mla-serve's own format: norm-free latents, every bias kept (mla-serve alone)
// One table says what each target's loader builds; the converter and check-compat both read it.

export const TARGETS = ["hf", "vllm", "sglang", "mla-serve"] as const;
export type Target = (typeof TARGETS)[number];

export interface TargetRules {
  /** Shown in messages. */
  name: string;
  /** Latent norms (kv_a_layernorm, q_a_layernorm) always applied by the loader. */
  latentNorms: boolean;
  /** Biases the loader builds (with attention_bias): "kv_a", "q_a", "o"; never q_proj / q_b_proj. null: every bias (mla-serve). */
  biases: ("kv_a" | "q_a" | "o")[] | null;
  /** (kv_lora_rank, qk_rope_head_dim) its MLA backends take; null: any. */
  splits: [number, number][] | null;
  /** The loader never ties lm_head to the embeddings: the checkpoint must carry lm_head.weight. */
  needsLmHead: boolean;
  /** rope_scaling types carried as the source means them (others are rewritten or refused). */
  ropeScaling: string[];
}

export const TARGET_RULES: Record<Target, TargetRules> = {
  hf: { name: "Hugging Face's DeepseekV3ForCausalLM", latentNorms: true, biases: ["kv_a", "q_a", "o"], splits: null, needsLmHead: false, ropeScaling: ["linear", "llama3"] },
  // vLLM's MLA backends (FlashMLA, FlashInfer, Triton) take a 512 latent with 64 RoPE dims, newer
  // builds 256 too; its DeepseekV2 linear layers have no biases; every rope_scaling is read as
  // DeepSeek's yarn; lm_head is never tied.
  vllm: { name: "vLLM", latentNorms: true, biases: [], splits: [[512, 64], [256, 64]], needsLmHead: true, ropeScaling: [] },
  sglang: { name: "SGLang", latentNorms: true, biases: [], splits: [[512, 64], [256, 64]], needsLmHead: true, ropeScaling: [] },
  "mla-serve": { name: "mla-serve", latentNorms: false, biases: null, splits: null, needsLmHead: false, ropeScaling: ["linear", "llama3"] },
};

export function isTarget(v: string): v is Target {
  return (TARGETS as readonly string[]).includes(v);
}

export function parseTarget(v: string): Target {
  if (!isTarget(v)) throw new Error(`--target must be one of ${TARGETS.join(", ")}, got "${v}"`);
  return v;
}

export function isStock(t: Target): boolean {
  return t !== "mla-serve";
}

/** The rope_scaling type of a config (null: none or "default"). */
export function ropeScalingType(config: Record<string, unknown>): string | null {
  const rs = config.rope_scaling;
  if (rs === undefined || rs === null || typeof rs !== "object") return null;
  const o = rs as Record<string, unknown>;
  const t = String(o.rope_type ?? o.type ?? "");
  return t === "default" || t === "" ? null : t;
}
