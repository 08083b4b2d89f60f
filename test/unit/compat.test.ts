// check-compat's loader rules, table-driven: a folder every stock loader takes, then one break at a
// time, each naming the rule it breaks for the targets it concerns (and only those); the CLI's
// exit status says which targets pass.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import { checkCompat } from "../../src/convert/compat.js";
import { TARGETS, type Target } from "../../src/convert/targets.js";
import { tensorFrom, writeSafetensors, type TensorData } from "../../src/model/safetensors.js";
import { ROOT } from "../helpers.js";

const work = mkdtempSync(path.join(tmpdir(), "mla-compat-"));
after(() => rmSync(work, { recursive: true, force: true }));

type Config = Record<string, unknown>;

// A dense DeepSeek-V3 at vLLM's shape (512 + 64), tiny otherwise.
const H = 1, NOPE = 2, V = 2, R = 64, KV = 512, HIDDEN = 8, FFN = 8, VOCAB = 16, LAYERS = 2;
const GOOD_CONFIG: Config = {
  architectures: ["DeepseekV3ForCausalLM"], model_type: "deepseek_v3", hidden_size: HIDDEN, intermediate_size: FFN, num_hidden_layers: LAYERS,
  num_attention_heads: H, num_key_value_heads: H, vocab_size: VOCAB, q_lora_rank: null, kv_lora_rank: KV, qk_rope_head_dim: R,
  qk_nope_head_dim: NOPE, v_head_dim: V, first_k_dense_replace: LAYERS, n_routed_experts: 1, n_shared_experts: 1, attention_bias: false,
  tie_word_embeddings: false, rope_theta: 10000, rms_norm_eps: 1e-6,
};

function goodTensors(): Map<string, number[]> {
  const t = new Map<string, number[]>([["model.embed_tokens.weight", [VOCAB, HIDDEN]], ["model.norm.weight", [HIDDEN]], ["lm_head.weight", [VOCAB, HIDDEN]]]);
  for (let l = 0; l < LAYERS; ++l) {
    const p = `model.layers.${l}.`;
    t.set(`${p}input_layernorm.weight`, [HIDDEN]);
    t.set(`${p}post_attention_layernorm.weight`, [HIDDEN]);
    t.set(`${p}self_attn.q_proj.weight`, [H * (NOPE + R), HIDDEN]);
    t.set(`${p}self_attn.kv_a_proj_with_mqa.weight`, [KV + R, HIDDEN]);
    t.set(`${p}self_attn.kv_a_layernorm.weight`, [KV]);
    t.set(`${p}self_attn.kv_b_proj.weight`, [H * (NOPE + V), KV]);
    t.set(`${p}self_attn.o_proj.weight`, [HIDDEN, H * V]);
    for (const [n, s] of [["gate_proj", [FFN, HIDDEN]], ["up_proj", [FFN, HIDDEN]], ["down_proj", [HIDDEN, FFN]]] as const) t.set(`${p}mlp.${n}.weight`, [...s]);
  }
  return t;
}

let count = 0;
function folder(config: Config, tensors: Map<string, number[]>): string {
  const dir = path.join(work, `f${count++}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
  const data = new Map<string, TensorData>();
  for (const [name, shape] of tensors) data.set(name, tensorFrom(new Float32Array(shape.reduce((a, b) => a * b, 1)), shape, "F32"));
  writeSafetensors(path.join(dir, "model.safetensors"), data);
  return dir;
}

/** A change to the good folder, and for each target the rule it must report (null: passes). */
type Case = [string, (c: Config, t: Map<string, number[]>) => void, Partial<Record<Target, RegExp | null>>];

const ALL_STOCK = (re: RegExp) => ({ hf: re, vllm: re, sglang: re });
const CASES: Case[] = [
  ["norm-free mla-serve format", (c) => (c.qk_latent_layernorm = false), { ...ALL_STOCK(/qk_latent_layernorm: false .* computes a different function/), "mla-serve": null }],
  ["a latent norm missing", (_c, t) => t.delete("model.layers.1.self_attn.kv_a_layernorm.weight"),
    { hf: /missing .*layers\.1\.self_attn\.kv_a_layernorm\.weight: initialised to ones/, vllm: /kv_a_layernorm\.weight: vLLM refuses to load/, sglang: /initialised to ones/ }],
  ["a q_proj bias (no loader builds one)", (_c, t) => t.set("model.layers.0.self_attn.q_proj.bias", [H * (NOPE + R)]),
    { ...ALL_STOCK(/q_proj\.bias: .* builds no such bias.*: it is dropped/), "mla-serve": null }],
  ["a kv_a bias with attention_bias true", (c, t) => {
    c.attention_bias = true;
    for (let l = 0; l < LAYERS; ++l) t.set(`model.layers.${l}.self_attn.kv_a_proj_with_mqa.bias`, [KV + R]);
  }, { hf: null, vllm: /kv_a_proj_with_mqa\.bias: vLLM builds no such bias/, sglang: /SGLang builds no such bias/ }],
  ["a kv_a bias with attention_bias false", (_c, t) => t.set("model.layers.0.self_attn.kv_a_proj_with_mqa.bias", [KV + R]),
    { hf: /kv_a_proj_with_mqa\.bias: .* builds no such bias .*attention_bias is false/ }],
  ["first_k_dense_replace left out (HF's default is 3; 4 layers)", (c, t) => {
    delete c.first_k_dense_replace;
    c.num_hidden_layers = 4;
    const more = goodTensors();
    for (const [n, s] of more) t.set(n.replace("layers.0.", "layers.2.").replace("layers.1.", "layers.3."), s);
  }, { ...ALL_STOCK(/layers 3\.\.3 are mixture-of-experts layers .* 3, the default/), "mla-serve": /first_k_dense_replace 3 < num_hidden_layers 4/ }],
  ["no lm_head, untied", (_c, t) => t.delete("lm_head.weight"),
    { hf: /Hugging Face initialises lm_head randomly/, vllm: /vLLM never ties it .*loading fails/, sglang: /uninitialised: garbage logits/, "mla-serve": /no lm_head/ }],
  ["no lm_head, tied", (c, t) => {
    t.delete("lm_head.weight");
    c.tie_word_embeddings = true;
  }, { hf: null, vllm: /never ties it/, sglang: /never ties it/, "mla-serve": null }],
  ["a split vLLM's backends do not take", (c, t) => {
    c.kv_lora_rank = 128;
    for (let l = 0; l < LAYERS; ++l) {
      const p = `model.layers.${l}.self_attn.`;
      t.set(`${p}kv_a_proj_with_mqa.weight`, [128 + R, HIDDEN]);
      t.set(`${p}kv_a_layernorm.weight`, [128]);
      t.set(`${p}kv_b_proj.weight`, [H * (NOPE + V), 128]);
    }
  }, { hf: null, vllm: /128 \+ 64: vLLM's MLA backends take 512 \+ 64 or 256 \+ 64/, sglang: /128 \+ 64/ }],
  ["expert counts missing", (c) => {
    delete c.n_routed_experts;
    delete c.n_shared_experts;
  }, { hf: null, vllm: /n_routed_experts must be an integer for vLLM/, sglang: /n_shared_experts must be an integer/ }],
  ["llama3 rope scaling", (c) => (c.rope_scaling = { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 }),
    { hf: null, vllm: /rope_scaling "llama3" is read by vLLM as DeepSeek's yarn/, sglang: /as DeepSeek's yarn/, "mla-serve": null }],
  ["a tensor of the wrong shape", (_c, t) => t.set("model.layers.0.self_attn.kv_b_proj.weight", [H * (NOPE + V), 511]),
    ALL_STOCK(/kv_b_proj\.weight has shape \[4, 511\], the config gives \[4, 512\]/)],
  ["q_lora_rank left out (HF's default 1536)", (c) => delete c.q_lora_rank, ALL_STOCK(/missing .*q_a_proj\.weight/)],
  ["a GQA model", (c) => (c.model_type = "llama"), { hf: /model_type is "llama": .* needs deepseek_v3/, vllm: /needs deepseek_v3 or deepseek_v2/ }],
];

describe("check-compat", () => {
  it("the good folder passes every target", () => {
    const dir = folder(GOOD_CONFIG, goodTensors());
    for (const t of TARGETS) assert.deepEqual(checkCompat(dir, t), [], t);
  });

  for (const [name, change, expect] of CASES) {
    it(name, () => {
      const config = structuredClone(GOOD_CONFIG);
      const tensors = goodTensors();
      change(config, tensors);
      const dir = folder(config, tensors);
      for (const [target, re] of Object.entries(expect) as [Target, RegExp | null][]) {
        const reasons = checkCompat(dir, target);
        if (re === null) assert.deepEqual(reasons, [], `${target} should pass`);
        else assert.ok(reasons.some((r) => re.test(r)), `${target}: ${re} not in ${JSON.stringify(reasons)}`);
      }
    });
  }

  it("the CLI: one line per target, exit 0 only when all asked for pass", () => {
    const good = folder(GOOD_CONFIG, goodTensors());
    const bad = folder({ ...GOOD_CONFIG, kv_lora_rank: 512, n_routed_experts: null }, goodTensors());
    const run = (args: string[]) => spawnSync(process.execPath, [path.join(ROOT, "dist", "src", "cli", "main.js"), "check-compat", ...args], { encoding: "utf8" });
    const ok = run([good]);
    assert.equal(ok.status, 0, ok.stdout);
    assert.equal(ok.stdout.split("\n").filter((l) => /: ok/.test(l)).length, 4);
    const r = run([bad, "--target", "hf,vllm"]);
    assert.equal(r.status, 1);
    assert.match(r.stdout, /^hf: ok/m);
    assert.match(r.stdout, /^vllm: 1 problem \(vLLM\)\n {2}- n_routed_experts must be an integer/m);
    assert.equal(run([bad, "--target", "hf"]).status, 0);
    const json = JSON.parse(run([bad, "--json", "--target", "vllm"]).stdout);
    assert.equal(json.vllm.length, 1);
    const unknown = run([good, "--target", "tgi"]);
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown target "tgi"/);
  });
});
