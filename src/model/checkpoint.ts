// Reading a Hugging Face checkpoint folder from TypeScript: config, tensor headers, tensor data.
import { closeSync, existsSync, openSync, readFileSync, readSync } from "node:fs";
import path from "node:path";

import { fromBf16, fromF16, readSafetensorsLayout, type DType } from "./safetensors.js";

export interface TensorEntry {
  name: string;
  file: string; // absolute path of the shard
  dtype: DType;
  shape: number[];
  offset: number; // absolute byte offset of the data in the file
  byteLength: number;
}

/** Files next to the weights that a converted model keeps (tokenizer, generation defaults). */
export const SIDE_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "tokenizer.model", "chat_template.jinja"];

export class Checkpoint {
  readonly config: Record<string, unknown>;
  readonly tensors = new Map<string, TensorEntry>();

  constructor(readonly dir: string) {
    const configFile = path.join(dir, "config.json");
    if (!existsSync(configFile)) throw new Error(`${dir} has no config.json`);
    this.config = JSON.parse(readFileSync(configFile, "utf8")) as Record<string, unknown>;
    const single = path.join(dir, "model.safetensors");
    const index = path.join(dir, "model.safetensors.index.json");
    if (existsSync(single)) {
      this.addFile(single);
    } else if (existsSync(index)) {
      const map = (JSON.parse(readFileSync(index, "utf8")) as { weight_map: Record<string, string> }).weight_map;
      const byFile = new Map<string, Set<string>>();
      for (const [name, file] of Object.entries(map)) {
        if (!byFile.has(file)) byFile.set(file, new Set());
        byFile.get(file)!.add(name);
      }
      for (const [file, names] of byFile) this.addFile(path.join(dir, file), names);
    } else {
      throw new Error(`${dir} has no model.safetensors or model.safetensors.index.json`);
    }
  }

  private addFile(file: string, only?: Set<string>): void {
    const { tensors, dataStart: base } = readSafetensorsLayout(file);
    for (const [name, e] of Object.entries(tensors)) {
      if (only && !only.has(name)) continue;
      if (e.dtype !== "F32" && e.dtype !== "F16" && e.dtype !== "BF16") throw new Error(`${file}: tensor ${name} has unsupported dtype ${e.dtype}`);
      this.tensors.set(name, { name, file: path.resolve(file), dtype: e.dtype, shape: e.shape, offset: base + e.data_offsets[0], byteLength: e.data_offsets[1] - e.data_offsets[0] });
    }
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  entry(name: string): TensorEntry {
    const e = this.tensors.get(name);
    if (!e) throw new Error(`${this.dir}: no tensor ${name}`);
    return e;
  }

  /** The tensor's stored bytes (in a buffer of their own, so typed views are aligned). */
  raw(name: string): Uint8Array {
    const e = this.entry(name);
    const buf = new Uint8Array(e.byteLength);
    const fd = openSync(e.file, "r");
    try {
      readSync(fd, buf, 0, e.byteLength, e.offset);
    } finally {
      closeSync(fd);
    }
    return buf;
  }

  /** The tensor as float64 (exact for every stored dtype). */
  float64(name: string): Float64Array {
    const e = this.entry(name);
    const buf = this.raw(name);
    const n = e.byteLength / (e.dtype === "F32" ? 4 : 2);
    const out = new Float64Array(n);
    if (e.dtype === "F32") {
      out.set(new Float32Array(buf.buffer, buf.byteOffset, n));
    } else {
      const h = new Uint16Array(buf.buffer, buf.byteOffset, n);
      out.set(e.dtype === "BF16" ? fromBf16(h) : fromF16(h));
    }
    return out;
  }
}
