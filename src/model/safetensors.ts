// Writing (and reading headers of) safetensors files from TypeScript.
import { closeSync, openSync, readSync, writeSync } from "node:fs";

export type DType = "F32" | "F16" | "BF16";

export interface TensorData {
  dtype: DType;
  shape: number[];
  /** Raw little-endian bytes (shape product x dtype size). */
  data: Uint8Array;
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

/** A tensor from float32 values, stored as dtype. */
export function tensorFrom(values: Float32Array, shape: number[], dtype: DType = "F32"): TensorData {
  const bytes = dtype === "BF16" ? toBf16(values) : dtype === "F32" ? values : undefined;
  if (!bytes) throw new Error(`writing ${dtype} from float32 is not supported`);
  return { dtype, shape, data: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

/** Writes tensors (sorted by name) to `file`, with the 8-byte-aligned JSON header safetensors expects. */
export function writeSafetensors(file: string, tensors: Map<string, TensorData>, metadata: Record<string, string> = { format: "pt" }): void {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    if (expected !== t.data.byteLength) throw new Error(`tensor ${name}: shape [${t.shape}] needs ${expected} bytes, got ${t.data.byteLength}`);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
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
      const d = tensors.get(name)!.data;
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

/** Reads the JSON header of a safetensors file. */
export function readSafetensorsHeader(file: string): Record<string, HeaderEntry> {
  const fd = openSync(file, "r");
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const n = Number(len.readBigUInt64LE());
    const buf = Buffer.alloc(n);
    readSync(fd, buf, 0, n, 8);
    const header = JSON.parse(buf.toString("utf8")) as Record<string, HeaderEntry>;
    delete header.__metadata__;
    return header;
  } finally {
    closeSync(fd);
  }
}
