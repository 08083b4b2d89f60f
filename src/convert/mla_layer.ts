// One attention layer rewritten as MLA (DeepSeek-V3 names), from the source weights, a latent map
// T (RoRoPE) and a basis for the compressed latent (BKV-PCA, or the identity at full rank).
//
// Shapes (H query heads, Hkv kv heads, D head dim, Lk = Hkv*D, R rope dims, r kv_lora_rank):
//   score_h = q_h · k_h / sqrt(D) in the source, with k_h = kv head g(h)'s block of the latent.
//   After T: k_latent' = T k_latent; the first R dims keep RoPE, the other Lk - R do not.
//   q_proj  [H*(D+R), hidden]: per head [W_q,h ; T_rope[:, block g(h)] W_q,h], times sqrt((D+R)/D)
//           so that the MLA softmax scale 1/sqrt(D+R) gives the source's scores.
//   kv_a    [r + R, hidden]:   [basisᵀ · [T_nope W_k / ratio ; W_v] ; T_rope W_k]
//   kv_b    [H*2D, r]:         per head [T_nope[:, block]ᵀ · ratio | 0 ; 0 | copy of block] · basis
import { concatRows, Mat, matmul } from "./matrix.js";
import type { SourceAttention, SourceShape } from "./source.js";

export interface MlaLayer {
  q?: Mat; // [H*(D+R), hidden]
  qA?: Mat; // [qr, hidden]
  qB?: Mat; // [H*(D+R), qr]
  qBias: Float64Array; // [H*(D+R)] on q or qB
  kvA: Mat; // [r + R, hidden]
  kvABias: Float64Array; // [r + R]
  kvB: Mat; // [H*2D, r]
}

export interface LatentParts {
  /** [Lk - R + Lk, hidden + 1]: the balanced no-RoPE keys over the values, bias as the last column. */
  z: Mat;
  /** [R, hidden + 1]: the RoPE part of the keys. */
  rope: Mat;
  /** k_nope was divided by this (BKV balance); kv_b multiplies it back. */
  ratio: number;
}

/** Splits the rotated keys into RoPE and no-RoPE parts and stacks the no-RoPE keys over the values. */
export async function latentParts(src: SourceAttention, s: SourceShape, map: Mat, ropeDim: number, ratio: number): Promise<LatentParts> {
  const k = await matmul(map, src.wk.withColumn(src.bk)); // [Lk, hidden+1], rows in the new latent order
  const nope = k.rowsRange(ropeDim, s.latent).scale(1 / ratio);
  return { z: concatRows([nope, src.wv.withColumn(src.bv)]), rope: k.rowsRange(0, ropeDim), ratio };
}

/** Rows of the map's RoPE part restricted to kv head g's block: [R, D]. */
function ropeBlock(map: Mat, ropeDim: number, g: number, D: number): Mat {
  return map.rowsRange(0, ropeDim).colsRange(g * D, (g + 1) * D);
}

/** The query side: [W_q,h ; T_rope,block W_q,h] per head, scaled; returns weight rows and bias. */
export async function queryRows(wq: Mat, bq: Float64Array, s: SourceShape, map: Mat, ropeDim: number): Promise<{ w: Mat; b: Float64Array }> {
  const D = s.headDim, group = s.numHeads / s.numKvHeads;
  const scale = Math.sqrt((D + ropeDim) / D);
  const rows: Mat[] = [];
  const bias: number[] = [];
  for (let h = 0; h < s.numHeads; ++h) {
    const block = ropeBlock(map, ropeDim, Math.floor(h / group), D);
    const wh = wq.rowsRange(h * D, (h + 1) * D);
    const bh = new Mat(D, 1, bq.slice(h * D, (h + 1) * D));
    rows.push(wh, await matmul(block, wh));
    bias.push(...bh.data, ...(await matmul(block, bh)).data);
  }
  return { w: concatRows(rows).scale(scale), b: Float64Array.from(bias, (v) => v * scale) };
}

/** kv_b before the basis: [H*2D, Lk - R + Lk]. */
export function kvBFull(s: SourceShape, map: Mat, ropeDim: number, ratio: number): Mat {
  const D = s.headDim, Lk = s.latent, group = s.numHeads / s.numKvHeads, nope = Lk - ropeDim;
  const out = new Mat(s.numHeads * 2 * D, nope + Lk);
  for (let h = 0; h < s.numHeads; ++h) {
    const g = Math.floor(h / group);
    for (let d = 0; d < D; ++d) {
      for (let j = 0; j < nope; ++j) out.set(h * 2 * D + d, j, map.get(ropeDim + j, g * D + d) * ratio);
      out.set(h * 2 * D + D + d, nope + g * D + d, 1);
    }
  }
  return out;
}

export interface QueryLowRank {
  /** [H*D, qr]: the query's principal directions. */
  basis: Mat;
}

/**
 * The MLA layer for a latent basis [Lk - R + Lk, r] (orthonormal columns). With the identity basis
 * it is the partial-RoPE model itself, at full rank.
 */
export async function buildMlaLayer(src: SourceAttention, s: SourceShape, map: Mat, ropeDim: number, parts: LatentParts,
                                    basis: Mat, query?: QueryLowRank): Promise<MlaLayer> {
  const kvNope = await matmul(basis, parts.z, true, false); // [r, hidden+1]
  const kvAFull = concatRows([kvNope, parts.rope]);
  const kvA = kvAFull.colsRange(0, s.hidden);
  const kvABias = kvAFull.colsRange(s.hidden, s.hidden + 1).data;
  const kvB = await matmul(kvBFull(s, map, ropeDim, parts.ratio), basis);
  if (!query) {
    const q = await queryRows(src.wq, src.bq, s, map, ropeDim);
    return { q: q.w, qBias: q.b, kvA, kvABias, kvB };
  }
  // Low-rank query: q ≈ U Uᵀ W_q x + b_q, so q_a = Uᵀ W_q and q_b = U (extended with the RoPE rows).
  const qA = await matmul(query.basis, src.wq, true, false);
  const qb = await queryRows(query.basis, src.bq, s, map, ropeDim);
  return { qA, qB: qb.w, qBias: qb.b, kvA, kvABias, kvB };
}

/** The BKV balance: mean key-channel norm over mean value-channel norm, divided by the target. */
export function balanceRatio(cz: Mat, numKeyChannels: number, target: number): number {
  if (!(target > 0)) return 1;
  let k = 0, v = 0;
  for (let j = 0; j < cz.rows; ++j) {
    const norm = Math.sqrt(Math.max(0, cz.get(j, j)));
    if (j < numKeyChannels) k += norm;
    else v += norm;
  }
  k /= numKeyChannels;
  v /= cz.rows - numKeyChannels;
  return k > 0 && v > 0 ? k / (v * target) : 1;
}

/** Exact v1 layer pieces (TransMLA's first format): up-projections that copy each kv head to its group. */
export function replicationUp(s: SourceShape): Mat {
  const D = s.headDim, group = s.numHeads / s.numKvHeads;
  const up = new Mat(s.numHeads * D, s.latent);
  for (let h = 0; h < s.numHeads; ++h) for (let d = 0; d < D; ++d) up.set(h * D + d, Math.floor(h / group) * D + d, 1);
  return up;
}

