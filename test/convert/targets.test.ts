// convert --target: each stock target's folder is computed by an independent float64
// implementation of Hugging Face's DeepseekV3ForCausalLM (test/reference) exactly as mla-serve
// computes it, passes check-compat, and costs little against the norm-free conversion at the same
// split. Sources with q/k/v biases (Qwen2), a low-rank query, --sequential, and a shape larger than
// the source's cache (vLLM's 512 + 64) included; bad requests are refused before any work.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import { modelPerplexity } from "../../src/convert/calibrate.js";
import { checkCompat } from "../../src/convert/compat.js";
import type { ConvertOptions } from "../../src/convert/options.js";
import { convert, type ConversionReport } from "../../src/convert/pipeline.js";
import type { Target } from "../../src/convert/targets.js";
import { readText, windows } from "../../src/eval/windows.js";
import { Checkpoint } from "../../src/model/checkpoint.js";
import { tensorFrom, writeSafetensors, type TensorData } from "../../src/model/safetensors.js";
import { Tokenizer } from "../../src/tokenizer/tokenizer.js";
import { BUNDLED_GQA, CALIB_TEXT, HELDOUT_8K, REFERENCE_MODELS, ROOT } from "../helpers.js";
import { HfDeepseekV3, referencePerplexity } from "../reference/hf_deepseek_v3.js";

const work = mkdtempSync(path.join(tmpdir(), "mla-targets-"));
after(() => rmSync(work, { recursive: true, force: true }));
const quiet = { stage: () => ({ update() {}, done() {} }), log() {} };

/** Pseudo-random token windows (for sources without a tokenizer). */
function randomWindows(count: number, seq: number, seed: number, vocab = 1024): number[][] {
  let s = seed;
  return Array.from({ length: count }, () => [1, ...Array.from({ length: seq - 1 }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % vocab)]);
}

// Held-out text for the bundled model: 4 windows of 64 tokens (the float64 reference is slow).
const HELD_OUT = windows(Tokenizer.load(BUNDLED_GQA).encode(readText(HELDOUT_8K, "evaluation")), 64).slice(0, 4);

function bundled(out: string, target: Target, extra: Partial<ConvertOptions> = {}): ConvertOptions {
  return {
    model: BUNDLED_GQA, out: path.join(work, out), force: true, kvLoraRank: 32, qkRopeDim: 64, qLoraRank: null, freqfold: 4,
    balanceKvRatio: 1, calib: CALIB_TEXT, calibSamples: 32, calibSeq: 128, searchSamples: 0, eval: HELDOUT_8K, evalSeq: 128, evalMaxChars: 4000,
    target, latentNorm: false, allowCacheGrowth: false, exact: false, sequential: false, cacheBudget: null, kernelShapes: false, dtype: "auto", seed: 5, ...extra,
  };
}

/** The float64 Hugging Face perplexity and mla-serve's on the same windows. */
async function bothPerplexities(dir: string, wins: number[][]): Promise<{ hf: number; engine: number }> {
  const hf = referencePerplexity(new HfDeepseekV3(dir), wins);
  const engine = (await modelPerplexity(dir, wins)).perplexity;
  return { hf, engine };
}

function assertSameModel(p: { hf: number; engine: number }, what: string): void {
  assert.ok(Math.abs(p.hf - p.engine) / p.engine < 1e-3, `${what}: Hugging Face computes ${p.hf}, mla-serve ${p.engine}`);
}

function assertCloseToNormFree(rep: ConversionReport): void {
  const { normFree, final } = rep.perplexity;
  assert.ok(normFree !== null && final !== null);
  assert.ok(final! < normFree! * 1.02, `the stock form costs ${((final! / normFree! - 1) * 100).toFixed(2)}%: ${normFree} -> ${final}`);
}

describe("convert --target on the bundled model", () => {
  it("hf: Hugging Face computes the written folder as mla-serve does, at a small cost against norm-free", async () => {
    const rep = await convert(bundled("hf", "hf"), quiet);
    const dir = rep.output.dir;
    assertSameModel(await bothPerplexities(dir, HELD_OUT), "hf");
    assertCloseToNormFree(rep);
    assert.deepEqual(checkCompat(dir, "hf"), []);
    assert.equal(rep.target.compatible, true);
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
    assert.equal("qk_latent_layernorm" in config, false);
    assert.equal(config.first_k_dense_replace, 4);
    assert.ok(new Checkpoint(dir).has("model.layers.3.self_attn.kv_a_layernorm.weight"));
    // Not a vLLM shape: check-compat says so.
    assert.ok(checkCompat(dir, "vllm").some((r) => /32 \+ 64/.test(r)));
  });

  it("vllm (512 + 64, the cache grown) and sglang (256 + 64): lm_head written, dense fields, same model", async () => {
    for (const [target, rank] of [["vllm", 512], ["sglang", 256]] as const) {
      const rep = await convert(bundled(target, target, { kvLoraRank: rank, allowCacheGrowth: true }), quiet);
      const dir = rep.output.dir;
      assertSameModel(await bothPerplexities(dir, HELD_OUT), target);
      assertCloseToNormFree(rep);
      for (const t of ["hf", "vllm", "sglang"] as const) assert.deepEqual(checkCompat(dir, t), [], `${target} output for ${t}`);
      const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
      assert.equal(config.tie_word_embeddings, false);
      assert.ok(Number.isInteger(config.n_routed_experts) && Number.isInteger(config.n_shared_experts));
      assert.ok(new Checkpoint(dir).has("lm_head.weight"));
      assert.ok(rep.warnings.some((w) => /more than the source's 256/.test(w)));
    }
  });

  it("mla-serve's own format is not what Hugging Face computes (the failure --target hf fixes)", async () => {
    const rep = await convert(bundled("own", "mla-serve"), quiet);
    const p = await bothPerplexities(rep.output.dir, HELD_OUT);
    assert.ok(Math.abs(p.hf - p.engine) / p.engine > 0.05, `${p.hf} vs ${p.engine}`);
    assert.ok(checkCompat(rep.output.dir, "hf").some((r) => /qk_latent_layernorm/.test(r)));
    assert.deepEqual(checkCompat(rep.output.dir, "mla-serve"), []);
  });

  it("hf with --q-lora-rank and --sequential", async () => {
    const rep = await convert(bundled("hf-q", "hf", { qLoraRank: 96, sequential: true }), quiet);
    assertSameModel(await bothPerplexities(rep.output.dir, HELD_OUT), "hf, q_lora_rank 96, sequential");
    assertCloseToNormFree(rep);
    assert.ok(new Checkpoint(rep.output.dir).has("model.layers.0.self_attn.q_a_layernorm.weight"));
  });
});

/** A random Qwen2 (q/k/v biases) with head_dim 64, so vLLM's 64 RoPE dims fit. */
function randomQwen2(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const hidden = 128, heads = 2, kvHeads = 1, D = 64, layers = 2, ffn = 256, vocab = 1024;
  let s = 77;
  const rand = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const t = new Map<string, TensorData>();
  const mat = (name: string, rows: number, cols: number, scale: number) => t.set(name, tensorFrom(Float32Array.from({ length: rows * cols }, () => rand() * scale), [rows, cols], "BF16"));
  const vec = (name: string, n: number, base: number, spread: number) => t.set(name, tensorFrom(Float32Array.from({ length: n }, () => base + rand() * spread), [n], "BF16"));
  mat("model.embed_tokens.weight", vocab, hidden, 1);
  mat("lm_head.weight", vocab, hidden, 0.2);
  vec("model.norm.weight", hidden, 1, 0.1);
  for (let l = 0; l < layers; ++l) {
    const p = `model.layers.${l}.`;
    vec(`${p}input_layernorm.weight`, hidden, 1, 0.1);
    vec(`${p}post_attention_layernorm.weight`, hidden, 1, 0.1);
    mat(`${p}self_attn.q_proj.weight`, heads * D, hidden, 0.3);
    mat(`${p}self_attn.k_proj.weight`, kvHeads * D, hidden, 0.3);
    mat(`${p}self_attn.v_proj.weight`, kvHeads * D, hidden, 0.3);
    vec(`${p}self_attn.q_proj.bias`, heads * D, 0, 0.5);
    vec(`${p}self_attn.k_proj.bias`, kvHeads * D, 0, 0.5);
    vec(`${p}self_attn.v_proj.bias`, kvHeads * D, 0, 0.5);
    mat(`${p}self_attn.o_proj.weight`, hidden, heads * D, 0.15);
    mat(`${p}mlp.gate_proj.weight`, ffn, hidden, 0.15);
    mat(`${p}mlp.up_proj.weight`, ffn, hidden, 0.15);
    mat(`${p}mlp.down_proj.weight`, hidden, ffn, 0.1);
  }
  writeSafetensors(path.join(dir, "model.safetensors"), t);
  writeFileSync(path.join(dir, "config.json"), JSON.stringify({
    architectures: ["Qwen2ForCausalLM"], model_type: "qwen2", hidden_size: hidden, intermediate_size: ffn, num_hidden_layers: layers,
    num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: D, vocab_size: vocab, max_position_embeddings: 2048,
    rms_norm_eps: 1e-6, rope_theta: 1e6, tie_word_embeddings: false, hidden_act: "silu",
  }));
  return dir;
}

function tokenOptions(model: string, out: string, target: Target, extra: Partial<ConvertOptions>): ConvertOptions {
  return {
    model, out: path.join(work, out), force: true, kvLoraRank: 48, qkRopeDim: 16, qLoraRank: null, freqfold: 2, balanceKvRatio: 1,
    calib: "", calibSamples: 16, calibSeq: 64, searchSamples: 0, eval: null, evalSeq: 64, evalMaxChars: null,
    target, latentNorm: false, allowCacheGrowth: false, exact: false, sequential: false, cacheBudget: null, kernelShapes: false, dtype: "float32", seed: 1,
    tokenWindows: { calib: randomWindows(16, 64, 3), eval: randomWindows(6, 64, 99) }, ...extra,
  };
}

describe("convert --target, sources with q/k/v biases", () => {
  const evalWins = randomWindows(4, 48, 123);

  it("hf (Qwen2): the query bias folded or refit, kv_a's kept: Hugging Face computes what mla-serve does", async () => {
    for (const qLoraRank of [null, 48]) {
      const rep = await convert(tokenOptions(REFERENCE_MODELS["random-qwen2"]!, `qwen-hf-${qLoraRank}`, "hf", { qLoraRank }), quiet);
      assertSameModel(await bothPerplexities(rep.output.dir, evalWins), `qwen2 hf q_lora ${qLoraRank}`);
      assertCloseToNormFree(rep);
      assert.equal(rep.target.stock!.kvABias, "kept");
      assert.equal(rep.target.stock!.queryBias, qLoraRank ? "refit into q_b_proj" : "folded into q_proj");
      const ck = new Checkpoint(rep.output.dir);
      assert.ok(ck.has("model.layers.0.self_attn.kv_a_proj_with_mqa.bias"));
      assert.ok(!ck.has("model.layers.0.self_attn.q_proj.bias") && !ck.has("model.layers.0.self_attn.q_b_proj.bias"));
      assert.equal(JSON.parse(readFileSync(path.join(rep.output.dir, "config.json"), "utf8")).attention_bias, true);
      assert.deepEqual(checkCompat(rep.output.dir, "hf"), []);
    }
  });

  it("vllm (a Qwen2 with head_dim 64): every bias folded, none written", async () => {
    const src = randomQwen2(path.join(work, "qwen2-d64"));
    const rep = await convert(tokenOptions(src, "qwen-vllm", "vllm", { kvLoraRank: 256, qkRopeDim: 64, freqfold: 1, allowCacheGrowth: true }), quiet);
    assertSameModel(await bothPerplexities(rep.output.dir, evalWins), "qwen2 vllm");
    assertCloseToNormFree(rep);
    assert.equal(rep.target.stock!.kvABias, "folded");
    assert.ok(rep.target.stock!.carried.every((c) => c.query !== null && c.query >= 0 && c.query <= 1 + 1e-9));
    const names = [...new Checkpoint(rep.output.dir).tensors.keys()];
    assert.deepEqual(names.filter((n) => n.endsWith(".bias")), []);
    for (const t of ["hf", "vllm", "sglang"] as const) assert.deepEqual(checkCompat(rep.output.dir, t), [], t);
  });
});

describe("the engine computes stock folders as Hugging Face does", () => {
  it("a DeepSeek-V3 folder without its latent norms and with a q_proj bias HF has no module for", async () => {
    // random-mla-transmla is mla-serve's norm-free format; without its qk_latent_layernorm field it
    // is a stock folder: HF applies kv_a_layernorm at ones and drops q_proj.bias, and so must we.
    const src = REFERENCE_MODELS["random-mla-transmla"]!;
    const dir = path.join(work, "stock-copy");
    mkdirSync(dir, { recursive: true });
    const config = JSON.parse(readFileSync(path.join(src, "config.json"), "utf8"));
    delete config.qk_latent_layernorm;
    writeFileSync(path.join(dir, "config.json"), JSON.stringify(config));
    const ck = new Checkpoint(src);
    const t = new Map<string, TensorData>();
    for (const name of ck.tensors.keys()) {
      const e = ck.entry(name);
      t.set(name, { dtype: e.dtype, shape: e.shape, data: ck.raw(name) });
    }
    const q = ck.entry("model.layers.0.self_attn.q_proj.weight");
    t.set("model.layers.0.self_attn.q_proj.bias", tensorFrom(Float32Array.from({ length: q.shape[0]! }, (_, i) => Math.sin(i)), [q.shape[0]!], "F32"));
    writeSafetensors(path.join(dir, "model.safetensors"), t);
    const wins = randomWindows(3, 40, 5);
    const hf = new HfDeepseekV3(dir);
    assert.deepEqual(hf.unused, ["model.layers.0.self_attn.q_proj.bias"]);
    assertSameModel({ hf: referencePerplexity(hf, wins), engine: (await modelPerplexity(dir, wins)).perplexity }, "stock copy");
    // And the fixture itself (norm-free format) is not what HF computes.
    const own = await bothPerplexities(src, wins);
    assert.ok(Math.abs(own.hf - own.engine) / own.engine > 1e-3);
  });
});

describe("convert --target: bad requests are refused before any work, nothing written", () => {
  const cli = (args: string[]) => spawnSync(process.execPath, [path.join(ROOT, "dist", "src", "cli", "main.js"), "convert", ...args], { encoding: "utf8", timeout: 60_000 });
  const llama3 = path.join(work, "llama3-scaled");
  mkdirSync(llama3, { recursive: true });
  for (const f of readdirSync(BUNDLED_GQA)) if (f !== "config.json") symlinkSync(path.join(BUNDLED_GQA, f), path.join(llama3, f));
  writeFileSync(path.join(llama3, "config.json"), JSON.stringify({
    ...JSON.parse(readFileSync(path.join(BUNDLED_GQA, "config.json"), "utf8")),
    rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
  }));
  const base = ["--calib", CALIB_TEXT, "--calib-samples", "4", "--calib-seq", "64"];
  const cases: [string, string[], RegExp][] = [
    ["an unknown target", ["--model", BUNDLED_GQA, "--target", "tgi"], /--target must be one of hf, vllm, sglang, mla-serve, got "tgi"/],
    ["vLLM's shape larger than the source's cache", ["--model", BUNDLED_GQA, "--target", "vllm"], /the source caches 256 values per token per layer .* 576, would grow the cache 2\.25x: pass --allow-cache-growth/],
    ["a split vLLM does not take", ["--model", BUNDLED_GQA, "--target", "vllm", "--kv-lora-rank", "128", "--qk-rope-dim", "64"], /vLLM takes kv_lora_rank \+ qk_rope_dim = 512 \+ 64 or 256 \+ 64; got 128 \+ 64/],
    ["--exact for a stock target", ["--model", BUNDLED_GQA, "--exact"], /--exact writes TransMLA's first format .* add --target mla-serve/],
    ["head_dim too small for vLLM's RoPE", ["--model", REFERENCE_MODELS["random-qwen2"]!, "--target", "sglang"], /SGLang needs qk_rope_head_dim 64, which head_dim 32 cannot give/],
    ["llama3 rope scaling to vLLM", ["--model", llama3, "--target", "vllm", "--allow-cache-growth"], /rope_scaling "llama3" cannot be carried to vLLM, which reads every rope_scaling as DeepSeek's yarn/],
  ];
  for (const [name, args, message] of cases) {
    it(name, () => {
      const out = path.join(work, `bad-${name.replace(/\W+/g, "-")}`);
      const t0 = performance.now();
      const r = cli([...args, "--out", out, ...base]);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, message);
      assert.ok(!existsSync(out), "nothing written");
      assert.ok(performance.now() - t0 < 20_000);
    });
  }
});


