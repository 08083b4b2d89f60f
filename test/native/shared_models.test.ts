// Models added to ../shared/models after these tests were written: each one with a reference.json
// is checked like the fixtures (a model whose config the engine refuses is skipped, with why).
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import { REFERENCE_MODELS, ROOT, greedy, greedyAgrees, load, promptLogprobSum, readReference, relErr } from "../helpers.js";

const shared = path.join(ROOT, "..", "shared", "models");
const known = new Set(Object.keys(REFERENCE_MODELS));
const extra = existsSync(shared)
  ? readdirSync(shared).filter((d) => !known.has(d) && existsSync(path.join(shared, d, "reference.json")) && existsSync(path.join(shared, d, "config.json")))
  : [];

describe("models in ../shared/models beyond the fixtures", { skip: extra.length === 0 ? "none beyond the fixtures" : false }, () => {
  for (const name of extra) {
    it(`${name}: log-prob sums, top logits and greedy tokens match reference.json`, async (t) => {
      const dir = path.join(shared, name);
      let engine;
      try {
        engine = await load(dir, { numBlocks: 256 });
      } catch (err) {
        const message = (err as Error).message;
        if (/unsupported|not supported/.test(message)) return t.skip(message);
        throw err;
      }
      let id = 0;
      for (const c of readReference(dir)) {
        const p = c.prompt_ids;
        const sum = await promptLogprobSum(engine, ++id, p);
        assert.ok(relErr(sum, c.prompt_logprob_sum) < 1e-3, `log-prob sum ${sum} vs ${c.prompt_logprob_sum}`);
        const { ids, firstLogits } = await greedy(engine, ++id, p, c.greedy_ids.length);
        engine.freeSequence(id);
        for (const [tok, v] of c.last_logits_top) assert.ok(relErr(firstLogits[tok]!, v) < 1e-3, `logit ${tok}: ${firstLogits[tok]} vs ${v}`);
        assert.ok(greedyAgrees(ids, c).ok, `greedy ${ids} vs ${c.greedy_ids}`);
      }
      engine.checkIntegrity();
      engine.dispose();
    });
  }
});
