// Float64 row-major matrices for weight transforms. Large products run in the addon.
import { native } from "../native/binding.js";

export class Mat {
  constructor(readonly rows: number, readonly cols: number, readonly data: Float64Array = new Float64Array(rows * cols)) {
    if (data.length !== rows * cols) throw new Error(`matrix data has ${data.length} values, not ${rows} x ${cols}`);
  }

  static identity(n: number): Mat {
    const m = new Mat(n, n);
    for (let i = 0; i < n; ++i) m.data[i * n + i] = 1;
    return m;
  }

  get(i: number, j: number): number {
    return this.data[i * this.cols + j]!;
  }
  set(i: number, j: number, v: number): void {
    this.data[i * this.cols + j] = v;
  }
  row(i: number): Float64Array {
    return this.data.subarray(i * this.cols, (i + 1) * this.cols);
  }

  /** Rows [begin, end). */
  rowsRange(begin: number, end: number): Mat {
    return new Mat(end - begin, this.cols, this.data.slice(begin * this.cols, end * this.cols));
  }
  /** Columns [begin, end). */
  colsRange(begin: number, end: number): Mat {
    const out = new Mat(this.rows, end - begin);
    for (let i = 0; i < this.rows; ++i) out.row(i).set(this.data.subarray(i * this.cols + begin, i * this.cols + end));
    return out;
  }
  transpose(): Mat {
    const out = new Mat(this.cols, this.rows);
    for (let i = 0; i < this.rows; ++i)
      for (let j = 0; j < this.cols; ++j) out.data[j * this.rows + i] = this.data[i * this.cols + j]!;
    return out;
  }

  scale(s: number): Mat {
    const out = new Mat(this.rows, this.cols, this.data.slice());
    for (let i = 0; i < out.data.length; ++i) out.data[i]! *= s;
    return out;
  }

  /** Appends `v` as an extra column (a bias next to its weights). */
  withColumn(v: Float64Array): Mat {
    const out = new Mat(this.rows, this.cols + 1);
    for (let i = 0; i < this.rows; ++i) {
      out.row(i).set(this.row(i));
      out.data[i * (this.cols + 1) + this.cols] = v[i]!;
    }
    return out;
  }

  toFloat32(): Float32Array {
    return Float32Array.from(this.data);
  }
}

/** Stacks matrices with equal column counts. */
export function concatRows(parts: readonly Mat[]): Mat {
  const cols = parts[0]!.cols;
  const out = new Mat(parts.reduce((n, p) => n + p.rows, 0), cols);
  let r = 0;
  for (const p of parts) {
    if (p.cols !== cols) throw new Error("concatRows: column counts differ");
    out.data.set(p.data, r * cols);
    r += p.rows;
  }
  return out;
}

/** op(A) · op(B) in float64, in the addon (threaded). */
export async function matmul(a: Mat, b: Mat, transA = false, transB = false): Promise<Mat> {
  const m = transA ? a.cols : a.rows;
  const k = transA ? a.rows : a.cols;
  const kb = transB ? b.cols : b.rows;
  const n = transB ? b.rows : b.cols;
  if (k !== kb) throw new Error(`matmul: inner dimensions ${k} and ${kb} differ`);
  return new Mat(m, n, await native().linalg.matmul(a.data, b.data, m, k, n, transA, transB));
}

/** A Σ Aᵀ for symmetric Σ. */
export async function congruence(a: Mat, sigma: Mat): Promise<Mat> {
  return matmul(await matmul(a, sigma), a, false, true);
}

/** Symmetric eigendecomposition: values descending, vectors as columns. */
export async function eigh(a: Mat): Promise<{ values: Float64Array; vectors: Mat }> {
  if (a.rows !== a.cols) throw new Error("eigh needs a square matrix");
  const r = await native().linalg.eigh(a.data, a.rows);
  return { values: r.values, vectors: new Mat(a.rows, a.rows, r.vectors) };
}
