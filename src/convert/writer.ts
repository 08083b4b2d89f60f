// Writing converted checkpoints: a standalone folder (atomically), or an overlay that reuses the
// source's shards through symlinks (the converter's intermediate models).
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";

import { SIDE_FILES, type Checkpoint } from "../model/checkpoint.js";
import { pidAfter, removeOnSignal, sweepDead } from "../util/cleanup.js";
import { tensorFrom, writeSafetensors, type DType, type TensorData } from "../model/safetensors.js";
import type { Mat } from "./matrix.js";

/** New tensors by name; every other tensor the model needs comes from the source checkpoint. */
export type NewTensors = Map<string, TensorData>;

export function fromMat(m: Mat, dtype: DType): TensorData {
  return tensorFrom(m.toFloat32(), [m.rows, m.cols], dtype);
}

export function fromVector(v: Float64Array, dtype: DType): TensorData {
  return tensorFrom(Float32Array.from(v), [v.length], dtype);
}

/** Source tensors that stay as they are: everything but the attention projections being replaced. */
export function keptSourceTensors(src: Checkpoint, replaced: (name: string) => boolean): string[] {
  return [...src.tensors.keys()].filter((n) => !replaced(n));
}

/** Replaced in every converted model: q/k/v projections and their biases (o_proj stays). */
export function isAttentionInput(name: string): boolean {
  return /\.self_attn\.(q_proj|k_proj|v_proj)\.(weight|bias)$/.test(name);
}

/**
 * Writes a model folder that reads unchanged tensors from the source's shard files through
 * symlinks: config.json, an index, and one new shard with the new tensors. Cheap for intermediates.
 */
export function writeOverlay(dir: string, src: Checkpoint, config: object, tensors: NewTensors, kept: string[]): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const links = new Map<string, string>();
  const weightMap: Record<string, string> = {};
  for (const name of kept) {
    const file = src.entry(name).file;
    if (!links.has(file)) {
      const link = `source-${links.size}.safetensors`;
      symlinkSync(file, path.join(dir, link));
      links.set(file, link);
    }
    weightMap[name] = links.get(file)!;
  }
  writeSafetensors(path.join(dir, "new.safetensors"), tensors);
  for (const name of tensors.keys()) weightMap[name] = "new.safetensors";
  writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }, null, 2));
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
}

/**
 * Writes a standalone model folder atomically: everything goes to a temporary sibling folder that
 * is renamed to `out` at the end, so a failure leaves nothing half-written.
 */
export function writeModel(out: string, src: Checkpoint, config: object, tensors: NewTensors, kept: string[], extraFiles: Record<string, string> = {}): void {
  const parent = path.dirname(path.resolve(out));
  const base = path.basename(out);
  sweepDead(parent, (name) => pidAfter(name, `.${base}.tmp-`));
  const tmp = path.join(parent, `.${base}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const forgetTmp = removeOnSignal(tmp);
  try {
    const all: NewTensors = new Map();
    for (const name of kept) {
      const e = src.entry(name);
      all.set(name, { dtype: e.dtype, shape: e.shape, data: () => src.raw(name) });
    }
    for (const [name, t] of tensors) all.set(name, t);
    writeSafetensors(path.join(tmp, "model.safetensors"), all);
    writeFileSync(path.join(tmp, "config.json"), JSON.stringify(config, null, 2) + "\n");
    for (const f of SIDE_FILES) if (existsSync(path.join(src.dir, f))) copyFileSync(path.join(src.dir, f), path.join(tmp, f));
    for (const [name, text] of Object.entries(extraFiles)) writeFileSync(path.join(tmp, name), text);
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  } finally {
    forgetTmp();
  }
}
