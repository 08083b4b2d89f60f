// The whole model against reference.json (float64, independent implementation of the HF equations)
// for every model: through one prefill, through token-by-token decode, and in chunks.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { GREEDY, REFERENCE_MODELS, greedy, greedyAgrees, load, readReference, relErr, stepOne } from "../helpers.js";

for (const [name, dir] of Object.entries(REFERENCE_MODELS)) {
  describe(`reference: ${name}`, () => {
    const cases = readReference(dir);

    it("prompt log-prob sums match (one prefill)", async () => {
      const engine = await load(dir, { enablePrefixCaching: false });
      let id = 0;
      for (const c of cases) {
        const p = c.prompt_ids;
        engine.addSequence(++id, Int32Array.from(p), p.length);
        const lp = await engine.score({
          seqIds: Int32Array.of(id), startPositions: Int32Array.of(0), numTokens: Int32Array.of(p.length),
          tokenIds: Int32Array.from(p), targetIds: Int32Array.from([...p.slice(1), 0]),
        });
        let sum = 0;
        for (let i = 0; i < p.length - 1; ++i) sum += lp[i]!;
        assert.ok(relErr(sum, c.prompt_logprob_sum) < 1e-3, `case of ${p.length} tokens: ${sum} vs ${c.prompt_logprob_sum}`);
        engine.freeSequence(id);
      }
      engine.checkIntegrity();
      engine.dispose();
    });

    it("prompt log-prob sums match (token-by-token decode across block boundaries)", async () => {
      const engine = await load(dir, { enablePrefixCaching: false });
      const c = cases[cases.length - 1]!; // longer than one 64-token block
      assert.ok(c.prompt_ids.length > 64);
      engine.addSequence(1, Int32Array.from(c.prompt_ids), c.prompt_ids.length);
      let sum = 0;
      for (let i = 0; i < c.prompt_ids.length - 1; ++i) {
        const out = await stepOne(engine, 1, i, [c.prompt_ids[i]!], { logits: true });
        const logits = out.logits!;
        let max = -Infinity;
        for (const v of logits) max = Math.max(max, v);
        let z = 0;
        for (const v of logits) z += Math.exp(v - max);
        sum += logits[c.prompt_ids[i + 1]!]! - max - Math.log(z);
      }
      assert.ok(relErr(sum, c.prompt_logprob_sum) < 1e-3, `${sum} vs ${c.prompt_logprob_sum}`);
      engine.dispose();
    });

    for (const [mode, chunk] of [["one prefill", Infinity], ["chunks of 17 tokens", 17]] as const) {
      it(`top-10 logits and greedy tokens match (${mode})`, async () => {
        const engine = await load(dir);
        let id = 0;
        for (const c of cases) {
          const { ids, firstLogits } = await greedy(engine, ++id, c.prompt_ids, c.greedy_ids.length, chunk);
          for (const [token, logit] of c.last_logits_top) {
            assert.ok(relErr(firstLogits[token]!, logit) < 1e-3, `logit of ${token}: ${firstLogits[token]} vs ${logit}`);
          }
          const agree = greedyAgrees(ids, c);
          assert.ok(agree.ok, `greedy differs at step ${agree.at}: ${ids.join(",")} vs ${c.greedy_ids.join(",")}`);
          engine.freeSequence(id);
        }
        engine.checkIntegrity();
        engine.dispose();
      });
    }
  });
}
