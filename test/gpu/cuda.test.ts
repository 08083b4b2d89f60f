// The CUDA backend through the addon: every fixture against its reference, and against the CPU.
// Skips (with the reason) where the addon has no CUDA backend or no GPU is visible; a fixture whose
// MLA shape the decode kernel is not built for is skipped by name, never the whole suite.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import { native } from "../../src/native/binding.js";
import type { NativeEngine } from "../../src/native/types.js";
import { REFERENCE_MODELS, greedy, greedyAgrees, load, normErr, readReference } from "../helpers.js";

async function gpuOrReason(): Promise<NativeEngine | string> {
  if (!native().buildInfo.cuda) return "the addon was built without the CUDA backend (no cuBLAS at build time)";
  try {
    return await load(REFERENCE_MODELS["gutenberg-tiny"]!, { device: "cuda" });  // GQA: no kernel shape needed
  } catch (err) {
    return (err as Error).message;
  }
}

const probe = await gpuOrReason();
const skip = typeof probe === "string" ? probe : false;
if (typeof probe !== "string") probe.dispose();

describe("CUDA backend", { skip }, () => {
  for (const [name, dir] of Object.entries(REFERENCE_MODELS)) {
    const config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8")) as { kv_lora_rank?: number; qk_rope_head_dim?: number };
    const unbuilt = config.kv_lora_rank !== undefined && !native().mlaKernelShapes.some(([l, r]) => l === config.kv_lora_rank && r === config.qk_rope_head_dim);
    it(`${name}: greedy tokens and logits match the reference and the CPU backend`, { skip: unbuilt ? `the MLA decode kernel is not built for ${config.kv_lora_rank} + ${config.qk_rope_head_dim}` : false }, async () => {
      const gpu = await load(dir, { device: "cuda" });
      const cpu = await load(dir);
      let id = 0;
      for (const c of readReference(dir)) {
        const g = await greedy(gpu, ++id, c.prompt_ids, 24);
        const h = await greedy(cpu, ++id, c.prompt_ids, 24);
        assert.ok(normErr(g.firstLogits, h.firstLogits) < 2e-2, `logits vs CPU: ${normErr(g.firstLogits, h.firstLogits)}`);
        // bf16 weights and activations: compare greedy tokens up to the first near tie (margin 5e-2).
        const loose = { ...c, greedy_top2_margins: c.greedy_top2_margins.map((m) => (m < 5e-2 ? 0 : m)) };
        assert.ok(greedyAgrees(g.ids, loose).ok, `${g.ids} vs ${c.greedy_ids}`);
        gpu.freeSequence(id - 1);
        cpu.freeSequence(id);
      }
      gpu.checkIntegrity();
      gpu.dispose();
      cpu.dispose();
    });
  }
});

describe("without a CUDA backend", { skip: native().buildInfo.cuda ? "this addon has the CUDA backend" : false }, () => {
  it("--device cuda names the problem", async () => {
    await assert.rejects(load(REFERENCE_MODELS["random-mla"]!, { device: "cuda" }), /this build has no CUDA backend/);
    await assert.rejects(load(REFERENCE_MODELS["random-mla"]!, { device: "tpu" }), /unsupported device "tpu"/);
  });
});
