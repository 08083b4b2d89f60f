// Checkpoint formats: the same weights stored as F32 in shards (through an index) and as F16
// give the reference's results.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import { Checkpoint } from "../../src/model/checkpoint.js";
import { tensorFrom, writeSafetensors, type DType, type TensorData } from "../../src/model/safetensors.js";
import { REFERENCE_MODELS, greedy, greedyAgrees, load, readReference, relErr } from "../helpers.js";

const work = mkdtempSync(path.join(tmpdir(), "mla-formats-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** Rewrites a checkpoint's tensors as `dtype`, split over `shards` files with an index when shards > 1. */
function rewrite(src: string, name: string, dtype: DType, shards: number): string {
  const ckpt = new Checkpoint(src);
  const dir = path.join(work, name);
  mkdirSync(dir, { recursive: true });
  copyFileSync(path.join(src, "config.json"), path.join(dir, "config.json"));
  const names = [...ckpt.tensors.keys()].sort();
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; ++s) {
    const file = shards === 1 ? "model.safetensors" : `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
    const part = new Map<string, TensorData>();
    names.filter((_, i) => i % shards === s).forEach((n) => {
      part.set(n, tensorFrom(Float32Array.from(ckpt.float64(n)), ckpt.entry(n).shape, dtype));
      weightMap[n] = file;
    });
    writeSafetensors(path.join(dir, file), part);
  }
  if (shards > 1) writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return dir;
}

for (const model of ["random-qwen2", "random-mla"]) {
  describe(`formats: ${model}`, () => {
    const src = REFERENCE_MODELS[model]!;
    const cases = readReference(src);

    for (const [label, dtype, shards, tolerance] of [["F32 in 3 shards", "F32", 3, 1e-3], ["F16", "F16", 1, 2e-2]] as const) {
      it(`${label}: top logits and greedy tokens match the reference`, async () => {
        const dir = rewrite(src, `${model}-${dtype}-${shards}`, dtype, shards);
        const engine = await load(dir);
        let id = 0;
        for (const c of cases) {
          const { ids, firstLogits } = await greedy(engine, ++id, c.prompt_ids, c.greedy_ids.length);
          for (const [t, v] of c.last_logits_top) assert.ok(relErr(firstLogits[t]!, v) < tolerance, `${t}: ${firstLogits[t]} vs ${v}`);
          if (dtype === "F32") assert.ok(greedyAgrees(ids, c).ok);
          engine.freeSequence(id);
        }
        engine.dispose();
      });
    }
  });
}
