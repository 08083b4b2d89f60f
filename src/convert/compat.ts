// check-compat: would a stock loader build this folder and compute what mla-serve computes? Per
// target, every reason it would refuse the folder or compute something else, from config.json and
// the tensor names and shapes alone. The loaders' rules are in targets.ts and here.
import { Checkpoint } from "../model/checkpoint.js";
import { isStock, ropeScalingType, TARGET_RULES, type Target } from "./targets.js";

type Config = Record<string, unknown>;

/** Hugging Face's DeepseekV3Config defaults for fields a folder may leave out. */
const HF_DEFAULTS: Record<string, unknown> = {
  q_lora_rank: 1536, kv_lora_rank: 512, qk_rope_head_dim: 64, qk_nope_head_dim: 128, v_head_dim: 128,
  first_k_dense_replace: 3, attention_bias: false, tie_word_embeddings: false, n_routed_experts: 256, rope_interleave: true,
};

function field(c: Config, key: string): unknown {
  return key in c ? c[key] : HF_DEFAULTS[key];
}

function int(c: Config, key: string): number {
  const v = field(c, key);
  return typeof v === "number" ? v : NaN;
}

/** The attention tensors Hugging Face's DeepseekV3Attention builds for a layer, and their shapes. */
function attentionModules(c: Config, hidden: number): Map<string, number[]> {
  const H = int(c, "num_attention_heads");
  const qLora = field(c, "q_lora_rank");
  const r = int(c, "kv_lora_rank"), R = int(c, "qk_rope_head_dim"), nope = int(c, "qk_nope_head_dim"), v = int(c, "v_head_dim");
  const bias = field(c, "attention_bias") === true;
  const m = new Map<string, number[]>();
  if (qLora === null) m.set("q_proj.weight", [H * (nope + R), hidden]);
  else {
    const q = Number(qLora);
    m.set("q_a_proj.weight", [q, hidden]);
    if (bias) m.set("q_a_proj.bias", [q]);
    m.set("q_a_layernorm.weight", [q]);
    m.set("q_b_proj.weight", [H * (nope + R), q]);
  }
  m.set("kv_a_proj_with_mqa.weight", [r + R, hidden]);
  if (bias) m.set("kv_a_proj_with_mqa.bias", [r + R]);
  m.set("kv_a_layernorm.weight", [r]);
  m.set("kv_b_proj.weight", [H * (nope + v), r]);
  m.set("o_proj.weight", [hidden, H * v]);
  if (bias) m.set("o_proj.bias", [hidden]);
  return m;
}

const same = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

function checkDeepseek(ck: Checkpoint, target: Exclude<Target, "mla-serve">): string[] {
  const c = ck.config;
  const rules = TARGET_RULES[target];
  const out: string[] = [];
  const type = c.model_type;
  const types = target === "hf" ? ["deepseek_v3"] : ["deepseek_v3", "deepseek_v2"];
  if (!types.includes(String(type))) return [`model_type is ${JSON.stringify(type)}: ${rules.name} needs ${types.join(" or ")}`];
  if (ck.has("model.layers.0.self_attn.k_up_proj.weight")) out.push("k_up_proj / v_up_proj (TransMLA's first format) are not DeepSeek-V3 modules: ignored, and the model has no MLA attention to load");
  if (c.qk_latent_layernorm === false) {
    out.push(`qk_latent_layernorm: false (mla-serve's norm-free format) is not read: the loader always applies kv_a_layernorm${c.q_lora_rank != null ? " and q_a_layernorm" : ""}, ` +
      "so it computes a different function (convert with --target " + target + ")");
  }
  const hidden = int(c, "hidden_size");
  const layers = int(c, "num_hidden_layers");
  for (const key of ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size"]) {
    if (!Number.isInteger(c[key])) out.push(`config.json has no integer ${key}`);
  }
  if (out.length && !Number.isInteger(hidden)) return out;
  const firstDense = int(c, "first_k_dense_replace");
  if (firstDense < layers) {
    out.push(`layers ${firstDense}..${layers - 1} are mixture-of-experts layers for the loader (first_k_dense_replace = ${"first_k_dense_replace" in c ? firstDense : "3, the default"}): ` +
      "their expert weights are missing; set first_k_dense_replace to num_hidden_layers for a dense model");
  }
  if (target !== "hf") {
    for (const key of ["n_routed_experts", "n_shared_experts"]) {
      if (!Number.isInteger(c[key])) out.push(`${key} must be an integer for ${rules.name} (found ${JSON.stringify(c[key] ?? null)})`);
    }
    const [r, R] = [int(c, "kv_lora_rank"), int(c, "qk_rope_head_dim")];
    if (!rules.splits!.some(([a, b]) => a === r && b === R)) {
      out.push(`kv_lora_rank + qk_rope_head_dim = ${r} + ${R}: ${rules.name}'s MLA backends take ${rules.splits!.map(([a, b]) => `${a} + ${b}`).join(" or ")}`);
    }
  }
  const rope = ropeScalingType(c);
  if (rope !== null && !rules.ropeScaling.includes(rope) && !(target !== "hf" && rope === "yarn" && "mscale_all_dim" in (c.rope_scaling as Config))) {
    out.push(target === "hf" ? `rope_scaling "${rope}": mla-serve computes only linear and llama3 scaling, so the two would differ`
      : `rope_scaling "${rope}" is read by ${rules.name} as DeepSeek's yarn: the positions are scaled differently`);
  }
  // lm_head
  if (!ck.has("lm_head.weight")) {
    if (rules.needsLmHead) out.push(`no lm_head.weight: ${rules.name} never ties it to the embeddings (${target === "vllm" ? "loading fails" : "it stays uninitialised: garbage logits"})`);
    else if (field(c, "tie_word_embeddings") !== true) out.push("no lm_head.weight and tie_word_embeddings is not true: Hugging Face initialises lm_head randomly");
  }
  // Per layer: the modules the loader builds, and tensors it has no module for.
  const modules = attentionModules(c, hidden);
  for (let l = 0; l < layers; ++l) {
    const p = `model.layers.${l}.self_attn.`;
    for (const [name, shape] of modules) {
      if (!ck.has(p + name)) {
        const what = name.endsWith("layernorm.weight") ? "initialised to ones" : name.endsWith(".bias") ? "initialised to zeros" : "initialised randomly";
        if (target === "vllm" && !name.endsWith(".bias")) out.push(`missing ${p}${name}: vLLM refuses to load`);
        else if (!name.endsWith(".bias")) out.push(`missing ${p}${name}: ${what} by the loader`);
        continue;
      }
      const got = ck.entry(p + name).shape;
      if (!same(got, shape)) out.push(`${p}${name} has shape [${got.join(", ")}], the config gives [${shape.join(", ")}]`);
    }
    for (const name of ck.tensors.keys()) {
      if (!name.startsWith(p) || !name.endsWith(".bias")) continue;
      const short = name.slice(p.length);
      const built = rules.biases !== null && rules.biases.some((b) => short === `${b === "kv_a" ? "kv_a_proj_with_mqa" : `${b}_proj`}.bias`) && modules.has(short);
      if (!built) out.push(`${name}: ${rules.name} builds no such bias${rules.biases?.length ? " (attention_bias is " + String(field(c, "attention_bias")) + ")" : ""}: it is dropped, so the outputs differ`);
    }
    if (l < firstDense) {
      for (const proj of ["gate_proj", "up_proj", "down_proj"]) if (!ck.has(`model.layers.${l}.mlp.${proj}.weight`)) out.push(`missing model.layers.${l}.mlp.${proj}.weight`);
    }
  }
  return out;
}

/** mla-serve's own loader: what it refuses (the engine's config and weight rules, in short). */
function checkMlaServe(ck: Checkpoint): string[] {
  const c = ck.config;
  const type = String(c.model_type);
  if (!["llama", "mistral", "qwen2", "deepseek_v3"].includes(type)) return [`model_type "${type}" is not served (llama, mistral, qwen2, deepseek_v3)`];
  const out: string[] = [];
  const rope = ropeScalingType(c);
  if (rope !== null && !["linear", "llama3"].includes(rope)) out.push(`rope_scaling "${rope}" is not supported (linear, llama3)`);
  if (type === "deepseek_v3") {
    const layers = int(c, "num_hidden_layers");
    const firstDense = int(c, "first_k_dense_replace");
    if (firstDense < layers) out.push(`first_k_dense_replace ${firstDense} < num_hidden_layers ${layers}: mixture-of-experts layers are not supported`);
    const normed = !("qk_latent_layernorm" in c) || c.qk_latent_layernorm !== false;
    if (normed && "qk_latent_layernorm" in c && !ck.has("model.layers.0.self_attn.kv_a_layernorm.weight")) out.push("qk_latent_layernorm is true but there is no kv_a_layernorm.weight");
  }
  if (!ck.has("lm_head.weight") && c.tie_word_embeddings !== true) out.push("no lm_head.weight and tie_word_embeddings is not true");
  return out;
}

/** Every reason `target`'s loader would refuse the folder or compute something else; [] when it passes. */
export function checkCompat(dir: string, target: Target): string[] {
  let ck: Checkpoint;
  try {
    ck = new Checkpoint(dir);
  } catch (err) {
    return [(err as Error).message];
  }
  return isStock(target) ? checkDeepseek(ck, target as Exclude<Target, "mla-serve">) : checkMlaServe(ck);
}
