// MLA's absorbed (decode) and expanded (prefill) attention agree to 1e-5 in fp32, and batching
// never changes a sequence's result.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { greedySampling, REFERENCE_MODELS, load, normErr, readReference, stepOne } from "../helpers.js";

async function allLogprobs(path: "absorbed" | "expanded", dir: string, prompt: number[], chunk: number): Promise<Float32Array> {
  const engine = await load(dir, { mlaPath: path, enablePrefixCaching: false });
  engine.addSequence(1, Int32Array.from(prompt), prompt.length);
  const out = new Float32Array(prompt.length);
  for (let pos = 0; pos < prompt.length; pos += chunk) {
    const n = Math.min(chunk, prompt.length - pos);
    const lp = await engine.score({
      seqIds: Int32Array.of(1), startPositions: Int32Array.of(pos), numTokens: Int32Array.of(n),
      tokenIds: Int32Array.from(prompt.slice(pos, pos + n)),
      targetIds: Int32Array.from(prompt.slice(pos + 1, pos + n + 1).concat(pos + n === prompt.length ? [0] : [])),
    });
    out.set(lp, pos);
  }
  engine.dispose();
  return out;
}

for (const name of ["random-mla", "random-mla-transmla"]) {
  const dir = REFERENCE_MODELS[name]!;
  describe(`MLA attention paths: ${name}`, () => {
    const prompt = readReference(dir)[3]!.prompt_ids; // 130 tokens: three blocks

    for (const chunk of [130, 50, 1]) {
      it(`absorbed and expanded agree (chunks of ${chunk})`, async () => {
        const a = await allLogprobs("absorbed", dir, prompt, chunk);
        const e = await allLogprobs("expanded", dir, prompt, chunk);
        const err = normErr(a.subarray(0, -1), e.subarray(0, -1));
        assert.ok(err < 1e-5, `normalized error ${err}`);
      });
    }

    it("the last-position logits agree", async () => {
      const logits = [];
      for (const path of ["absorbed", "expanded"] as const) {
        const engine = await load(dir, { mlaPath: path });
        engine.addSequence(1, Int32Array.from(prompt), prompt.length);
        logits.push((await stepOne(engine, 1, 0, prompt, { logits: true })).logits!);
        engine.dispose();
      }
      const err = normErr(logits[0]!, logits[1]!);
      assert.ok(err < 1e-5, `normalized error ${err}`);
    });
  });
}

describe("batching does not change results", () => {
  for (const [name, dir] of Object.entries(REFERENCE_MODELS)) {
    it(`${name}: a mixed prefill/decode batch equals each sequence alone, bit for bit`, async () => {
      const cases = readReference(dir);
      // Alone: prefill each prompt; then one decode step with its greedy token.
      const alone: Float32Array[] = [];
      for (const c of cases) {
        const engine = await load(dir, { enablePrefixCaching: false });
        engine.addSequence(1, Int32Array.from(c.prompt_ids), c.prompt_ids.length);
        await stepOne(engine, 1, 0, c.prompt_ids, { sample: false });
        engine.ensureCapacity(1, c.prompt_ids.length + 1);
        alone.push((await stepOne(engine, 1, c.prompt_ids.length, [c.greedy_ids[0]!], { logits: true })).logits!);
        engine.dispose();
      }
      // Together: sequences 0 and 1 prefilled first; then one batch where they decode while 2 and 3 prefill... and
      // then 2 and 3 decode alongside.
      const engine = await load(dir, { enablePrefixCaching: false, numBlocks: 64 });
      cases.forEach((c, i) => engine.addSequence(i, Int32Array.from(c.prompt_ids), c.prompt_ids.length));
      for (const i of [0, 1]) await stepOne(engine, i, 0, cases[i]!.prompt_ids, { sample: false });
      for (const i of [0, 1]) engine.ensureCapacity(i, cases[i]!.prompt_ids.length + 1);
      const mixed = await engine.step({
        seqIds: Int32Array.of(0, 2, 1, 3),
        startPositions: Int32Array.of(cases[0]!.prompt_ids.length, 0, cases[1]!.prompt_ids.length, 0),
        numTokens: Int32Array.of(1, cases[2]!.prompt_ids.length, 1, cases[3]!.prompt_ids.length),
        tokenIds: Int32Array.from([cases[0]!.greedy_ids[0]!, ...cases[2]!.prompt_ids, cases[1]!.greedy_ids[0]!, ...cases[3]!.prompt_ids]),
        sampleMask: Uint8Array.of(1, 0, 1, 0),
        sampling: greedySampling(2),
        numTopLogprobs: 0,
        returnLogits: true,
      });
      const V = alone[0]!.length;
      assert.deepEqual(mixed.logits!.subarray(0, V), alone[0]);
      assert.deepEqual(mixed.logits!.subarray(V, 2 * V), alone[1]);
      for (const i of [2, 3]) engine.ensureCapacity(i, cases[i]!.prompt_ids.length + 1);
      const decodes = await engine.step({
        seqIds: Int32Array.of(3, 2),
        startPositions: Int32Array.of(cases[3]!.prompt_ids.length, cases[2]!.prompt_ids.length),
        numTokens: Int32Array.of(1, 1),
        tokenIds: Int32Array.of(cases[3]!.greedy_ids[0]!, cases[2]!.greedy_ids[0]!),
        sampleMask: Uint8Array.of(1, 1),
        sampling: greedySampling(2),
        numTopLogprobs: 0,
        returnLogits: true,
      });
      assert.deepEqual(decodes.logits!.subarray(0, V), alone[3]);
      assert.deepEqual(decodes.logits!.subarray(V, 2 * V), alone[2]);
      engine.dispose();
    });
  }
});
