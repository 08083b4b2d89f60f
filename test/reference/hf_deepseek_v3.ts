// An independent float64 implementation of Hugging Face's DeepseekV3ForCausalLM as
// `from_pretrained` builds it from a folder: the config read with DeepseekV3Config's defaults,
// every module HF constructs (a tensor the folder lacks keeps HF's initialisation: RMSNorm weights
// 1, biases 0; a missing weight matrix would be random, so it is an error), tensors HF has no module
// for dropped, MoE layers (from first_k_dense_replace on) refused. Written from the equations of
// transformers' modeling_deepseek_v3.py, sharing no code with mla-serve.
import { Checkpoint } from "../../src/model/checkpoint.js";

type Config = Record<string, unknown>;

const DEFAULTS: Config = {
  vocab_size: 129280, hidden_size: 7168, intermediate_size: 18432, num_hidden_layers: 61, num_attention_heads: 128,
  num_key_value_heads: 128, q_lora_rank: 1536, kv_lora_rank: 512, qk_rope_head_dim: 64, v_head_dim: 128, qk_nope_head_dim: 128,
  first_k_dense_replace: 3, rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null, attention_bias: false,
  tie_word_embeddings: false, rope_interleave: true, hidden_act: "silu",
};

interface Linear {
  w: Float64Array; // [out, in]
  b: Float64Array | null;
  out: number;
  in: number;
}

interface Layer {
  inputNorm: Float64Array;
  postNorm: Float64Array;
  q?: Linear;
  qA?: Linear;
  qANorm?: Float64Array;
  qB?: Linear;
  kvA: Linear;
  kvANorm: Float64Array;
  kvB: Linear;
  o: Linear;
  gate: Linear;
  up: Linear;
  down: Linear;
}

export class HfDeepseekV3 {
  readonly cfg: Config;
  /** Tensors in the folder that no HF module reads (dropped by from_pretrained). */
  readonly unused: string[];
  private readonly used = new Set<string>();
  private readonly embed: Float64Array;
  private readonly lmHead: Float64Array;
  private readonly finalNorm: Float64Array;
  private readonly layers: Layer[] = [];
  private readonly invFreq: Float64Array;
  private readonly scaling: number;

  constructor(dir: string) {
    const ck = new Checkpoint(dir);
    if (ck.config.model_type !== "deepseek_v3") throw new Error(`not a deepseek_v3 folder: ${String(ck.config.model_type)}`);
    this.cfg = { ...DEFAULTS, ...ck.config }; // a field left out takes DeepseekV3Config's default (null q_lora_rank: q_proj)
    const c = this.cfg;
    const n = (k: string) => c[k] as number;
    const hidden = n("hidden_size"), H = n("num_attention_heads"), L = n("num_hidden_layers");
    const nope = n("qk_nope_head_dim"), R = n("qk_rope_head_dim"), V = n("v_head_dim"), r = n("kv_lora_rank");
    const qLora = c.q_lora_rank as number | null;
    const bias = c.attention_bias === true;
    if (n("first_k_dense_replace") < L) throw new Error(`layers from ${n("first_k_dense_replace")} on are MoE layers in HF: not modelled`);
    const tensor = (name: string, shape: number[], init: "random" | "ones" | "zeros"): Float64Array => {
      const size = shape.reduce((a, b) => a * b, 1);
      if (!ck.has(name)) {
        if (init === "random") throw new Error(`${name} is missing: HF would initialise it randomly`);
        return new Float64Array(size).fill(init === "ones" ? 1 : 0);
      }
      const e = ck.entry(name);
      if (e.shape.join(",") !== shape.join(",")) throw new Error(`${name}: shape [${e.shape}] where HF builds [${shape}]`);
      this.used.add(name);
      return ck.float64(name);
    };
    const linear = (name: string, out: number, inp: number, withBias: boolean): Linear => ({
      w: tensor(`${name}.weight`, [out, inp], "random"), b: withBias ? tensor(`${name}.bias`, [out], "zeros") : null, out, in: inp,
    });
    this.embed = tensor("model.embed_tokens.weight", [n("vocab_size"), hidden], "random");
    this.finalNorm = tensor("model.norm.weight", [hidden], "ones");
    this.lmHead = c.tie_word_embeddings === true ? this.embed : tensor("lm_head.weight", [n("vocab_size"), hidden], "random");
    for (let l = 0; l < L; ++l) {
      const p = `model.layers.${l}.`;
      const a = `${p}self_attn.`;
      const layer: Layer = {
        inputNorm: tensor(`${p}input_layernorm.weight`, [hidden], "ones"),
        postNorm: tensor(`${p}post_attention_layernorm.weight`, [hidden], "ones"),
        kvA: linear(`${a}kv_a_proj_with_mqa`, r + R, hidden, bias),
        kvANorm: tensor(`${a}kv_a_layernorm.weight`, [r], "ones"),
        kvB: linear(`${a}kv_b_proj`, H * (nope + V), r, false),
        o: linear(`${a}o_proj`, hidden, H * V, bias),
        gate: linear(`${p}mlp.gate_proj`, n("intermediate_size"), hidden, false),
        up: linear(`${p}mlp.up_proj`, n("intermediate_size"), hidden, false),
        down: linear(`${p}mlp.down_proj`, hidden, n("intermediate_size"), false),
      };
      if (qLora === null) layer.q = linear(`${a}q_proj`, H * (nope + R), hidden, false);
      else {
        layer.qA = linear(`${a}q_a_proj`, qLora, hidden, bias);
        layer.qANorm = tensor(`${a}q_a_layernorm.weight`, [qLora], "ones");
        layer.qB = linear(`${a}q_b_proj`, H * (nope + R), qLora, false);
      }
      this.layers.push(layer);
    }
    this.unused = [...ck.tensors.keys()].filter((k) => !this.used.has(k));
    this.invFreq = ropeInverseFrequencies(c, R);
    this.scaling = softmaxScale(c, nope + R);
  }

  /** log p(token t+1 | tokens ≤ t) for t = 0 .. T-2. */
  nextTokenLogprobs(tokens: number[]): number[] {
    const logits = this.forward(tokens);
    const vocab = this.cfg.vocab_size as number;
    const out: number[] = [];
    for (let t = 0; t + 1 < tokens.length; ++t) {
      const row = logits.subarray(t * vocab, (t + 1) * vocab);
      let m = -Infinity;
      for (const v of row) m = Math.max(m, v);
      let s = 0;
      for (const v of row) s += Math.exp(v - m);
      out.push(row[tokens[t + 1]!]! - m - Math.log(s));
    }
    return out;
  }

  /** Logits [T, vocab] for a sequence starting at position 0. */
  forward(tokens: number[]): Float64Array {
    const c = this.cfg;
    const n = (k: string) => c[k] as number;
    const T = tokens.length, hidden = n("hidden_size"), eps = n("rms_norm_eps");
    let x: Float64Array = new Float64Array(T * hidden);
    tokens.forEach((t, i) => x.set(this.embed.subarray(t * hidden, (t + 1) * hidden), i * hidden));
    for (const layer of this.layers) {
      const h = rmsNorm(x, T, hidden, layer.inputNorm, eps);
      const attn = this.attention(layer, h, T);
      x = add(x, apply(layer.o, attn, T));
      const h2 = rmsNorm(x, T, hidden, layer.postNorm, eps);
      const g = apply(layer.gate, h2, T), u = apply(layer.up, h2, T);
      for (let i = 0; i < g.length; ++i) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
      x = add(x, apply(layer.down, g, T));
    }
    const hn = rmsNorm(x, T, hidden, this.finalNorm, eps);
    return apply({ w: this.lmHead, b: null, out: n("vocab_size"), in: hidden }, hn, T);
  }

  private attention(layer: Layer, h: Float64Array, T: number): Float64Array {
    const c = this.cfg;
    const n = (k: string) => c[k] as number;
    const H = n("num_attention_heads"), nope = n("qk_nope_head_dim"), R = n("qk_rope_head_dim"), V = n("v_head_dim"), r = n("kv_lora_rank");
    const qk = nope + R;
    const q = layer.q ? apply(layer.q, h, T) : apply(layer.qB!, rmsNorm(apply(layer.qA!, h, T), T, layer.qA!.out, layer.qANorm!, 1e-6), T);
    const kva = apply(layer.kvA, h, T); // [T, r + R]
    const latent = new Float64Array(T * r);
    const kRot = new Float64Array(T * R);
    for (let t = 0; t < T; ++t) {
      latent.set(kva.subarray(t * (r + R), t * (r + R) + r), t * r);
      kRot.set(kva.subarray(t * (r + R) + r, (t + 1) * (r + R)), t * R);
    }
    const kv = apply(layer.kvB, rmsNorm(latent, T, r, layer.kvANorm, 1e-6), T); // [T, H*(nope+V)]
    const interleave = c.rope_interleave !== false;
    for (let t = 0; t < T; ++t) {
      rotate(kRot.subarray(t * R, (t + 1) * R), t, this.invFreq, interleave);
      for (let hd = 0; hd < H; ++hd) rotate(q.subarray(t * H * qk + hd * qk + nope, t * H * qk + (hd + 1) * qk), t, this.invFreq, interleave);
    }
    const out = new Float64Array(T * H * V);
    const scores = new Float64Array(T);
    for (let hd = 0; hd < H; ++hd) {
      for (let i = 0; i < T; ++i) {
        const qi = q.subarray(i * H * qk + hd * qk, i * H * qk + (hd + 1) * qk);
        let m = -Infinity;
        for (let j = 0; j <= i; ++j) {
          const kj = kv.subarray(j * H * (nope + V) + hd * (nope + V), j * H * (nope + V) + hd * (nope + V) + nope);
          let s = 0;
          for (let d = 0; d < nope; ++d) s += qi[d]! * kj[d]!;
          for (let d = 0; d < R; ++d) s += qi[nope + d]! * kRot[j * R + d]!;
          scores[j] = s * this.scaling;
          m = Math.max(m, scores[j]!);
        }
        let z = 0;
        for (let j = 0; j <= i; ++j) z += (scores[j] = Math.exp(scores[j]! - m));
        const o = out.subarray(i * H * V + hd * V, i * H * V + (hd + 1) * V);
        for (let j = 0; j <= i; ++j) {
          const w = scores[j]! / z;
          const vj = kv.subarray(j * H * (nope + V) + hd * (nope + V) + nope, j * H * (nope + V) + (hd + 1) * (nope + V));
          for (let d = 0; d < V; ++d) o[d]! += w * vj[d]!;
        }
      }
    }
    return out;
  }
}

function apply(l: Linear, x: Float64Array, T: number): Float64Array {
  const y = new Float64Array(T * l.out);
  for (let t = 0; t < T; ++t) {
    const xt = x.subarray(t * l.in, (t + 1) * l.in);
    for (let o = 0; o < l.out; ++o) {
      const w = l.w.subarray(o * l.in, (o + 1) * l.in);
      let s = l.b ? l.b[o]! : 0;
      for (let i = 0; i < l.in; ++i) s += w[i]! * xt[i]!;
      y[t * l.out + o] = s;
    }
  }
  return y;
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; ++i) out[i] = a[i]! + b[i]!;
  return out;
}

function rmsNorm(x: Float64Array, T: number, n: number, w: Float64Array, eps: number): Float64Array {
  const out = new Float64Array(T * n);
  for (let t = 0; t < T; ++t) {
    let ms = 0;
    for (let i = 0; i < n; ++i) ms += x[t * n + i]! ** 2;
    const inv = 1 / Math.sqrt(ms / n + eps);
    for (let i = 0; i < n; ++i) out[t * n + i] = w[i]! * x[t * n + i]! * inv;
  }
  return out;
}

/** RoPE at position `pos`: interleaved pairs (2i, 2i+1), or halves (i, i + R/2), by inv_freq[i]. */
function rotate(v: Float64Array, pos: number, invFreq: Float64Array, interleave: boolean): void {
  const half = invFreq.length;
  for (let i = 0; i < half; ++i) {
    const a = interleave ? 2 * i : i, b = interleave ? 2 * i + 1 : i + half;
    const cos = Math.cos(pos * invFreq[i]!), sin = Math.sin(pos * invFreq[i]!);
    const x0 = v[a]!, x1 = v[b]!;
    v[a] = x0 * cos - x1 * sin;
    v[b] = x1 * cos + x0 * sin;
  }
}

/** HF's rope init for the rope dims (default, linear, llama3). */
function ropeInverseFrequencies(c: Config, dim: number): Float64Array {
  const theta = c.rope_theta as number;
  const inv = Float64Array.from({ length: dim / 2 }, (_, i) => 1 / theta ** ((2 * i) / dim));
  const rs = c.rope_scaling as Config | null;
  const type = rs ? String(rs.rope_type ?? rs.type ?? "default") : "default";
  if (type === "default") return inv;
  const factor = rs!.factor as number;
  if (type === "linear") return inv.map((f) => f / factor);
  if (type === "llama3") {
    const low = rs!.low_freq_factor as number, high = rs!.high_freq_factor as number, old = rs!.original_max_position_embeddings as number;
    return inv.map((f) => {
      const wavelen = (2 * Math.PI) / f;
      if (wavelen < old / high) return f;
      if (wavelen > old / low) return f / factor;
      const smooth = (old / wavelen - low) / (high - low);
      return (1 - smooth) * (f / factor) + smooth * f;
    });
  }
  throw new Error(`rope_scaling ${type}: not modelled`);
}

function softmaxScale(c: Config, qkHeadDim: number): number {
  let s = qkHeadDim ** -0.5;
  const rs = c.rope_scaling as Config | null;
  if (rs && rs.mscale_all_dim) {
    const factor = rs.factor as number;
    const m = factor <= 1 ? 1 : 0.1 * (rs.mscale_all_dim as number) * Math.log(factor) + 1;
    s *= m * m;
  }
  return s;
}

/** Perplexity over windows (each from position 0), as TransMLA reports it. */
export function referencePerplexity(model: HfDeepseekV3, windows: number[][]): number {
  let nll = 0, count = 0;
  for (const w of windows) for (const lp of model.nextTokenLogprobs(w)) {
    nll -= lp;
    count++;
  }
  return Math.exp(nll / count);
}
