// Tensor names and values of converted attention layers.
import type { DType } from "../model/safetensors.js";
import { Mat } from "./matrix.js";
import type { MlaLayer } from "./mla_layer.js";
import type { SourceShape } from "./source.js";
import { fromMat, fromVector, type NewTensors } from "./writer.js";

export interface LatentNorms {
  kvA: Float64Array; // [kv_lora]
  qA?: Float64Array; // [q_lora]
}

/** Which biases a layer's tensors carry (the target's loader reads them). */
export interface LayerBiases {
  query: boolean; // q_proj.bias / q_b_proj.bias (mla-serve only)
  kvA: boolean; // kv_a_proj_with_mqa.bias
}

/** Adds layer `l`'s MLA tensors (DeepSeek-V3 names) to `out`. */
export function addMlaLayer(out: NewTensors, l: number, m: MlaLayer, bias: LayerBiases, dtype: DType, norms?: LatentNorms): void {
  const p = `model.layers.${l}.self_attn.`;
  if (m.q) {
    out.set(p + "q_proj.weight", fromMat(m.q, dtype));
    if (bias.query) out.set(p + "q_proj.bias", fromVector(m.qBias, dtype));
  } else {
    out.set(p + "q_a_proj.weight", fromMat(m.qA!, dtype));
    out.set(p + "q_b_proj.weight", fromMat(m.qB!, dtype));
    if (bias.query) out.set(p + "q_b_proj.bias", fromVector(m.qBias, dtype));
    if (norms?.qA) out.set(p + "q_a_layernorm.weight", fromVector(norms.qA, dtype));
  }
  out.set(p + "kv_a_proj_with_mqa.weight", fromMat(m.kvA, dtype));
  if (bias.kvA) out.set(p + "kv_a_proj_with_mqa.bias", fromVector(m.kvABias, dtype));
  if (norms) out.set(p + "kv_a_layernorm.weight", fromVector(norms.kvA, dtype));
  out.set(p + "kv_b_proj.weight", fromMat(m.kvB, dtype));
}

/** A layer of zeros with MLA shapes: a stand-in for layers a calibration pass never reaches. */
export function zeroMlaLayer(s: SourceShape, kvLoraRank: number, ropeDim: number, qLoraRank: number | null): MlaLayer {
  const qRows = s.numHeads * (s.headDim + ropeDim);
  const base = {
    qBias: new Float64Array(qRows),
    kvA: new Mat(kvLoraRank + ropeDim, s.hidden),
    kvABias: new Float64Array(kvLoraRank + ropeDim),
    kvB: new Mat(s.numHeads * 2 * s.headDim, kvLoraRank),
  };
  return qLoraRank ? { ...base, qA: new Mat(qLoraRank, s.hidden), qB: new Mat(qRows, qLoraRank) } : { ...base, q: new Mat(qRows, s.hidden) };
}

/** Layer `l` in TransMLA's first format: the (possibly rotated) GQA projections plus up-projections. */
export function addV1Layer(out: NewTensors, l: number, w: { wq: Mat; bq: Float64Array; wk: Mat; bk: Float64Array; wv: Mat; bv: Float64Array; kUp: Mat; vUp: Mat },
                           s: SourceShape, dtype: DType): void {
  const p = `model.layers.${l}.self_attn.`;
  out.set(p + "q_proj.weight", fromMat(w.wq, dtype));
  out.set(p + "k_proj.weight", fromMat(w.wk, dtype));
  out.set(p + "v_proj.weight", fromMat(w.wv, dtype));
  if (s.hasBias) {
    out.set(p + "q_proj.bias", fromVector(w.bq, dtype));
    out.set(p + "k_proj.bias", fromVector(w.bk, dtype));
    out.set(p + "v_proj.bias", fromVector(w.bv, dtype));
  }
  out.set(p + "k_up_proj.weight", fromMat(w.kUp, dtype));
  out.set(p + "v_up_proj.weight", fromMat(w.vUp, dtype));
}
