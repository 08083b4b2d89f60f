// The stages of the conversion that are exact in theory are tested as exact (fp32 weights):
// TransMLA's v1 format with copying up-projections, and the RoRoPE rotation at freqfold 1.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import { attentionInputStats } from "../../src/convert/calibrate.js";
import { sourceShape } from "../../src/convert/source.js";
import { v1RotationMaps, v1Tensors } from "../../src/convert/v1.js";
import { isAttentionInput, keptSourceTensors, writeModel } from "../../src/convert/writer.js";
import { Checkpoint } from "../../src/model/checkpoint.js";
import { native } from "../../src/native/binding.js";
import { BUNDLED_GQA, greedySampling, REFERENCE_MODELS, normErr, readReference } from "../helpers.js";

const work = mkdtempSync(path.join(tmpdir(), "mla-exact-"));
after(() => rmSync(work, { recursive: true, force: true }));

/** Logits at every position of every reference prompt (one score pass per prompt). */
async function allLogits(dir: string, prompts: number[][], attention: "gqa" | "latent-gqa"): Promise<Float32Array[]> {
  // An f32 cache: these are claims about the conversion's arithmetic, not about bf16 rounding.
  const engine = await native().loadEngine({ modelDir: dir, numBlocks: 16, enablePrefixCaching: false, kvCacheDtype: "f32" });
  const out: Float32Array[] = [];
  for (const [i, p] of prompts.entries()) {
    engine.addSequence(i + 1, Int32Array.from(p), p.length);
    const r = await engine.step({
      seqIds: Int32Array.of(i + 1), startPositions: Int32Array.of(0), numTokens: Int32Array.of(p.length),
      tokenIds: Int32Array.from(p), sampleMask: Uint8Array.of(1), sampling: greedySampling(1), numTopLogprobs: 0, returnLogits: true,
    });
    out.push(r.logits!);
    engine.freeSequence(i + 1);
  }
  assert.equal(engine.config().attention, attention);
  engine.dispose();
  return out;
}

/** Token windows for calibration without a tokenizer: a fixed pseudo-random stream. */
function randomWindows(vocab: number, count: number, seq: number): number[][] {
  let s = 12345;
  return Array.from({ length: count }, () => Array.from({ length: seq }, () => (s = (s * 1103515245 + 12345) % 2 ** 31) % vocab));
}

for (const [name, dir] of [["gutenberg-tiny", BUNDLED_GQA], ["random-qwen2 (q/k/v biases)", REFERENCE_MODELS["random-qwen2"]!]] as const) {
  describe(`exact stages: ${name}`, () => {
    const ckpt = new Checkpoint(dir);
    const s = sourceShape(ckpt);
    const prompts = readReference(dir).map((c) => c.prompt_ids);

    it("v1 with copying up-projections gives the original logits (1e-4)", async () => {
      const out = path.join(work, `${name}-exact`.replace(/\W/g, "_"));
      writeModel(out, ckpt, ckpt.config, await v1Tensors(ckpt, s, null, "F32"), keptSourceTensors(ckpt, isAttentionInput));
      const [a, b] = [await allLogits(dir, prompts, "gqa"), await allLogits(out, prompts, "latent-gqa")];
      a.forEach((x, i) => assert.ok(normErr(b[i]!, x) < 1e-4, `prompt ${i}: ${normErr(b[i]!, x)}`));
    });

    it("the RoRoPE rotation at freqfold 1 leaves the logits unchanged (1e-4)", async (t) => {
      const wins = randomWindows(s.hidden > 200 ? 32000 : 1024, 8, 128);
      const sigmas = await attentionInputStats(dir, wins, [...Array(s.numLayers).keys()]);
      const maps = await v1RotationMaps(ckpt, s, sigmas);
      // The rotation is not the identity: it really mixes the kv heads.
      const m = maps[0]!;
      let offBlock = 0;
      for (let i = 0; i < m.rows; ++i) for (let j = 0; j < m.cols; ++j) if (Math.floor(i / s.headDim) !== Math.floor(j / s.headDim)) offBlock += Math.abs(m.get(i, j));
      assert.ok(offBlock > 1);
      const out = path.join(work, `${name}-rotated`.replace(/\W/g, "_"));
      writeModel(out, ckpt, ckpt.config, await v1Tensors(ckpt, s, maps, "F32"), keptSourceTensors(ckpt, isAttentionInput));
      const [a, b] = [await allLogits(dir, prompts, "gqa"), await allLogits(out, prompts, "latent-gqa")];
      a.forEach((x, i) => assert.ok(normErr(b[i]!, x) < 1e-4, `prompt ${i}: ${normErr(b[i]!, x)}`));
      t.diagnostic(`rotated v1 logits: normalized error ${Math.max(...a.map((x, i) => normErr(b[i]!, x))).toExponential(2)}`);
    });
  });
}
