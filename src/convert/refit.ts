// Least squares for the stock-format conversion: a bias the target's loader drops folded into its
// weights, and a projection refit after an RMSNorm, both from calibration moments.
import { eigh, matmul, Mat } from "./matrix.js";

/** Solves (S + ridge I) x = b for symmetric positive semidefinite S by conjugate gradients. */
export function solveSpd(S: Mat, b: Float64Array, ridge: number, iterations = 500, tolerance = 1e-10): Float64Array {
  const n = S.rows;
  const x = new Float64Array(n);
  const r = Float64Array.from(b);
  const p = Float64Array.from(b);
  const ap = new Float64Array(n);
  let rr = r.reduce((a, v) => a + v * v, 0);
  const stop = tolerance * tolerance * Math.max(rr, 1e-300);
  for (let it = 0; it < iterations && rr > stop; ++it) {
    for (let i = 0; i < n; ++i) {
      const row = S.row(i);
      let s = ridge * p[i]!;
      for (let j = 0; j < n; ++j) s += row[j]! * p[j]!;
      ap[i] = s;
    }
    let pap = 0;
    for (let i = 0; i < n; ++i) pap += p[i]! * ap[i]!;
    if (!(pap > 0)) break;
    const alpha = rr / pap;
    let next = 0;
    for (let i = 0; i < n; ++i) {
      x[i]! += alpha * p[i]!;
      r[i]! -= alpha * ap[i]!;
      next += r[i]! * r[i]!;
    }
    const beta = next / rr;
    rr = next;
    for (let i = 0; i < n; ++i) p[i] = r[i]! + beta * p[i]!;
  }
  return x;
}

/**
 * A bias dropped by the loader, folded into the weights as least squares over the inputs:
 * W' = argmin E|W x + b - W' x|² = W + b (E[x xᵀ]⁻¹ E[x])ᵀ. `sigma` is Σ x̃ x̃ᵀ with x̃ = [x; 1]
 * (the attention-input statistics), so E[x xᵀ]⁻¹ E[x] = S_xx⁻¹ S_x. Returns W' and what share of
 * the bias's energy the inputs could carry (1: exact).
 */
export function foldBias(w: Mat, b: Float64Array, sigma: Mat): { weight: Mat; carried: number } {
  const n = w.cols;
  const sxx = sigma.rowsRange(0, n).colsRange(0, n);
  const sx = new Float64Array(n);
  for (let i = 0; i < n; ++i) sx[i] = sigma.get(i, n);
  const count = sigma.get(n, n);
  let trace = 0;
  for (let i = 0; i < n; ++i) trace += sxx.get(i, i);
  const s = solveSpd(sxx, sx, 1e-9 * trace / n);
  const out = new Mat(w.rows, n, w.data.slice());
  for (let i = 0; i < w.rows; ++i) {
    const bi = b[i]!;
    if (bi === 0) continue;
    const row = out.row(i);
    for (let j = 0; j < n; ++j) row[j]! += bi * s[j]!;
  }
  // The constant's projection onto the inputs: E[x]ᵀ E[x xᵀ]⁻¹ E[x] (1 when a direction of x is constant).
  let carried = 0;
  for (let i = 0; i < n; ++i) carried += sx[i]! * s[i]!;
  return { weight: out, carried: count > 0 ? carried / count : 0 };
}

/**
 * The pseudo-inverse of symmetric positive semidefinite S: directions with eigenvalues below
 * relativeFloor x the largest (a latent dimension that is always 0, say) are left out.
 */
export async function pseudoInverseSpd(S: Mat, relativeFloor = 1e-10): Promise<Mat> {
  const { values, vectors } = await eigh(S);
  const floor = Math.max(values[0]!, 0) * relativeFloor;
  const n = S.rows;
  const scaled = new Mat(n, n);
  for (let i = 0; i < n; ++i) for (let c = 0; c < n; ++c) scaled.set(i, c, values[c]! > floor ? vectors.get(i, c) / values[c]! : 0);
  return matmul(scaled, vectors, false, true);
}

/**
 * The projection after an RMSNorm refit by least squares: given the target outputs y = A x̃ (the
 * source's, exactly) and the normalized latents u = x / rms(x) the stock model computes, with
 * cross moments C = Σ x̃ uᵀ [m + 1, r] and U = Σ u uᵀ [r, r] (normalizedMoments), the weight B
 * minimizing Σ |A x̃ - B (w ⊙ u)|² is A C U⁺ diag(w)⁻¹. `applyA` computes A · M for a matrix M, so
 * A never has to be formed.
 */
export async function refitAfterNorm(applyA: (m: Mat) => Promise<Mat>, moments: Mat, hidden: number, normWeight: Float64Array): Promise<Mat> {
  const r = moments.cols;
  const C = moments.rowsRange(0, hidden + 1);
  const U = moments.rowsRange(hidden + 1, hidden + 1 + r);
  const AC = await applyA(C); // [out, r]
  const B = await matmul(AC, await pseudoInverseSpd(U));
  for (let i = 0; i < B.rows; ++i) {
    const row = B.row(i);
    for (let j = 0; j < r; ++j) row[j] = normWeight[j]! !== 0 ? row[j]! / normWeight[j]! : 0;
  }
  return B;
}
