// Writing (and reading headers of) safetensors files from TypeScript.
import { closeSync, openSync, readSync, writeSync } from "node:fs";

export type DType = "F32" | "F16" | "BF16";

export interface TensorData {
  dtype: DType;
  shape: number[];
  /** Raw little-endian bytes (shape product x dtype size), or a function that reads them when written. */
  data: Uint8Array | (() => Uint8Array);
}

export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 };

/** float32 -> bfloat16 bits, rounding to nearest even (as PyTorch). */
export function toBf16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; ++i) {
    const b = bits[i]!;
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x40;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** bfloat16 bits -> float32. */
export function fromBf16(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; ++i) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

/** IEEE half bits -> float32 (exact). */
export function fromF16(bits: Uint16Array): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; ++i) {
    const h = bits[i]!;
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    out[i] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  }
  return out;
}

/** float32 -> IEEE half bits, rounding to nearest even; overflow becomes infinity. */
export function toF16(values: Float32Array): Uint16Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; ++i) {
    const b = bits[i]!;
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    const mant = b & 0x7fffff;
    if (exp === 0xff) out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
    else if (exp > 142) out[i] = sign | 0x7c00;
    else if (exp < 113) {
      // subnormal half (or zero): round mant * 2^(exp-150) to a multiple of 2^-24
      if (exp < 102) out[i] = sign;
      else {
        const m = mant | 0x800000;
        const shift = 126 - exp;
        let h = m >>> shift;
        const rem = m & ((1 << shift) - 1), halfway = 1 << (shift - 1);
        if (rem > halfway || (rem === halfway && (h & 1))) h++;
        out[i] = sign | h;
      }
    } else {
      let h = ((exp - 112) << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
      out[i] = sign | h;
    }
  }
  return out;
}

/** A tensor from float32 values, stored as dtype. */
export function tensorFrom(values: Float32Array, shape: number[], dtype: DType = "F32"): TensorData {
  const bytes = dtype === "BF16" ? toBf16(values) : dtype === "F16" ? toF16(values) : values;
  return { dtype, shape, data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

/** Writes tensors (sorted by name) to `file`, with the 8-byte-aligned JSON header safetensors expects. */
export function writeSafetensors(file: string, tensors: Map<string, TensorData>, metadata: Record<string, string> = { format: "pt" }): void {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (typeof t.data !== "function" && bytes !== t.data.byteLength) throw new Error(`tensor ${name}: shape [${t.shape}] needs ${bytes} bytes, got ${t.data.byteLength}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const headerBytes = Buffer.from(json, "utf8");
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length));
  const fd = openSync(file, "w");
  try {
    writeSync(fd, length);
    writeSync(fd, headerBytes);
    for (const name of names) {
      const t = tensors.get(name)!;
      const d = typeof t.data === "function" ? t.data() : t.data;
      const [begin, end] = (header[name] as { data_offsets: [number, number] }).data_offsets;
      if (d.byteLength !== end - begin) throw new Error(`tensor ${name}: read ${d.byteLength} bytes, expected ${end - begin}`);
      writeSync(fd, d, 0, d.byteLength);
    }
  } finally {
    closeSync(fd);
  }
}

export interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** The JSON header of a safetensors file, and where its data starts (data_offsets count from there). */
export function readSafetensorsLayout(file: string): { tensors: Record<string, HeaderEntry>; dataStart: number } {
  const fd = openSync(file, "r");
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE());
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 8);
    const tensors = JSON.parse(buf.toString("utf8")) as Record<string, HeaderEntry>;
    delete tensors.__metadata__;
    return { tensors, dataStart: 8 + n };
  } finally {
    closeSync(fd);
  }
}

/** The JSON header of a safetensors file. */
export function readSafetensorsHeader(file: string): Record<string, HeaderEntry> {
  return readSafetensorsLayout(file).tensors;
}
