// RoRoPE + FreqFold: per group of RoPE frequencies, a PCA over the key heads that commutes with
// RoPE. Keys rotate in 2-D planes: in each kv head, dims j and j + D/2 form a complex number
// that RoPE multiplies by e^{i·theta_j·pos}. Mixing kv heads at one frequency with a real
// orthogonal matrix commutes with that, so the rotation is exact; FreqFold F > 1 pools F
// neighbouring frequencies into one PCA (an approximation) to concentrate more energy in the top
// components. Only the top components keep RoPE in the partial-RoPE model.
import { eigh, Mat } from "./matrix.js";

export interface RopeShape {
  numKvHeads: number; // Hkv
  headDim: number; // D
  freqfold: number; // F: frequencies pooled per PCA
  collapse: number; // C = D / qk_rope_dim; F must be a multiple of C
}

export function checkRopeShape(s: RopeShape): void {
  const half = s.headDim / 2;
  if (!Number.isInteger(s.collapse) || s.collapse < 1 || half % s.collapse !== 0) {
    throw new Error(`qk_rope_dim ${s.headDim / s.collapse} must divide head_dim ${s.headDim} into an even count of halves`);
  }
  if (!Number.isInteger(s.freqfold) || s.freqfold < s.collapse || s.freqfold % s.collapse !== 0 || half % s.freqfold !== 0) {
    throw new Error(`freqfold ${s.freqfold} must be a multiple of collapse ${s.collapse} that divides head_dim/2 = ${half}`);
  }
}

/** Features of fold i: (kv head g, member a) -> the latent dims of its real and imaginary part. */
function foldDims(s: RopeShape, fold: number, feature: number): { re: number; im: number } {
  const g = Math.floor(feature / s.freqfold), a = feature % s.freqfold;
  const re = g * s.headDim + fold * s.freqfold + a;
  return { re, im: re + s.headDim / 2 };
}

export function numFolds(s: RopeShape): number {
  return s.headDim / 2 / s.freqfold;
}

/**
 * One orthogonal matrix per fold, [Hkv*F, Hkv*F], columns = components by decreasing energy,
 * from the keys' covariance ck [Hkv*D, Hkv*D] (pre-RoPE, bias included). Real and imaginary
 * parts count as two samples of the same complex component.
 */
export async function foldRotations(ck: Mat, s: RopeShape): Promise<Mat[]> {
  checkRopeShape(s);
  const n = s.numKvHeads * s.freqfold;
  const out: Mat[] = [];
  for (let i = 0; i < numFolds(s); ++i) {
    const m = new Mat(n, n);
    for (let f = 0; f < n; ++f) {
      const a = foldDims(s, i, f);
      for (let h = 0; h < n; ++h) {
        const b = foldDims(s, i, h);
        m.set(f, h, ck.get(a.re, b.re) + ck.get(a.im, b.im));
      }
    }
    out.push((await eigh(m)).vectors);
  }
  return out;
}

/**
 * The latent map of the partial-RoPE MLA layout, T [Hkv*D, Hkv*D] (new latent = T · old latent):
 * first the RoPE part, R = D / C dims as interleaved (real, imaginary) pairs: pair k = i*(F/C) + a
 * is component a of fold i and turns at frequency theta_{C*k}, which is what DeepSeek's
 * interleaved RoPE over R dims gives pair k. Then every other component, real and imaginary,
 * fold by fold: the part that loses RoPE.
 */
export function mlaLatentMap(rotations: Mat[], s: RopeShape): { map: Mat; ropeDim: number } {
  const latent = s.numKvHeads * s.headDim;
  const ropeDim = s.headDim / s.collapse;
  const kept = s.freqfold / s.collapse; // RoPE components per fold
  const n = s.numKvHeads * s.freqfold;
  const map = new Mat(latent, latent);
  let nope = ropeDim;
  rotations.forEach((u, i) => {
    for (let c = 0; c < n; ++c) {
      const rowRe = c < kept ? 2 * (i * kept + c) : nope;
      const rowIm = c < kept ? rowRe + 1 : nope + 1;
      if (c >= kept) nope += 2;
      for (let f = 0; f < n; ++f) {
        const { re, im } = foldDims(s, i, f);
        map.set(rowRe, re, u.get(f, c));
        map.set(rowIm, im, u.get(f, c));
      }
    }
  });
  return { map, ropeDim };
}

/**
 * The latent map in TransMLA's first (v1) layout, for freqfold 1: new kv-head block h holds
 * component h of every frequency, with RoPE per block as before, so the rotated model is exact.
 */
export function v1LatentMap(rotations: Mat[], s: RopeShape): Mat {
  if (s.freqfold !== 1) throw new Error("the v1 layout represents the rotation exactly only at freqfold 1");
  const D = s.headDim;
  const map = new Mat(s.numKvHeads * D, s.numKvHeads * D);
  rotations.forEach((u, j) => {
    for (let c = 0; c < s.numKvHeads; ++c) {
      for (let g = 0; g < s.numKvHeads; ++g) {
        map.set(c * D + j, g * D + j, u.get(g, c));
        map.set(c * D + j + D / 2, g * D + j + D / 2, u.get(g, c));
      }
    }
  });
  return map;
}
