// The bf16 KV cache that serving uses by default, against the float64 references. Rounding K/V
// (or the latent) to bf16 moves each cached value by up to 2^-9 relative; measured on the four
// fixtures, top logits move by at most 1.7e-3 relative and log-prob sums by 1.1e-4. The bounds are
// 5e-3 and 1e-3 (the f32 cache's tests hold 1e-3 on both), and greedy tokens must agree up to the
// first step whose reference top-2 margin is below 0.05.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { REFERENCE_MODELS, greedy, greedyAgrees, load, promptLogprobSum, readReference, relErr } from "../helpers.js";

for (const [name, dir] of Object.entries(REFERENCE_MODELS)) {
  describe(`bf16 cache: ${name}`, () => {
    it("log-prob sums, top logits and greedy tokens match reference.json within bf16's precision", async () => {
      const engine = await load(dir, { kvCacheDtype: "bf16" });
      const f32 = await load(dir, { kvCacheDtype: "f32" });
      assert.equal(engine.cacheInfo().bytesPerBlock * 2, f32.cacheInfo().bytesPerBlock);
      f32.dispose();
      let id = 0;
      let worstSum = 0, worstLogit = 0;
      for (const c of readReference(dir)) {
        const p = c.prompt_ids;
        const sum = await promptLogprobSum(engine, ++id, p);
        worstSum = Math.max(worstSum, relErr(sum, c.prompt_logprob_sum));
        const { ids, firstLogits } = await greedy(engine, ++id, p, c.greedy_ids.length, 17);
        engine.freeSequence(id);
        for (const [tok, v] of c.last_logits_top) worstLogit = Math.max(worstLogit, relErr(firstLogits[tok]!, v));
        const agree = greedyAgrees(ids, c, 0.05);
        assert.ok(agree.ok, `greedy differs at step ${agree.at}: ${ids.join(",")} vs ${c.greedy_ids.join(",")}`);
      }
      console.log(`${name}: bf16 cache, worst log-prob sum error ${worstSum.toExponential(2)}, worst top logit error ${worstLogit.toExponential(2)}`);
      assert.ok(worstSum < 1e-3, `log-prob sum error ${worstSum}`);
      assert.ok(worstLogit < 5e-3, `logit error ${worstLogit}`);
      engine.checkIntegrity();
      engine.dispose();
    });
  });
}
