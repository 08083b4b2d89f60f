// What grammar masks add to a decode step: B sequences decode together, unconstrained and then
// each under a JSON schema (its own matcher), on the bundled model (MLA, CPU) or --model DIR.
// Prints the decode step time both ways, split into the native step and the event loop's time
// between steps (where masks are filled and tokens accepted), at batch 1, 16 and 64. Goal (API issue): under 5% of a CPU decode step at batch 16.
//   node dist/bench/grammar_bench.js [--model DIR] [--tokens 48] [--batches 1,16,64]
import { parseArgs } from "node:util";

import { chooseModel } from "../src/cli/model_source.js";
import { GrammarEngine } from "../src/engine/grammar.js";
import { LLMEngine } from "../src/engine/llm_engine.js";
import { resolveSampling } from "../src/engine/sampling.js";
import { loadModel } from "../src/model/load.js";

const { values: a } = parseArgs({ options: { model: { type: "string" }, tokens: { type: "string", default: "48" }, batches: { type: "string", default: "1,16,64" } } });
const TOKENS = Number(a.tokens);

// Long outputs the grammar keeps constraining (it cannot end within the run): a list of records.
const SCHEMA = {
  type: "array", minItems: 1000,
  items: { type: "object", properties: { name: { type: "string" }, age: { type: "integer" }, tags: { type: "array", items: { type: "string" } } }, required: ["name", "age", "tags"] },
};

const { dir } = await chooseModel(a.model ? { model: a.model } : {}, undefined, (l) => process.stderr.write(`${l}\n`));
const model = await loadModel(dir, { numBlocks: 2048 });
const info = model.engine.config();
const t0 = performance.now();
const grammar = await GrammarEngine.create(model.tokenizer!, info.vocabSize, model.info.eosTokenIds);
const tInfo = performance.now() - t0;
const t1 = performance.now();
const compiled = await grammar.compile({ type: "json_schema", schema: SCHEMA, strict: true });
const tCompile = performance.now() - t1;
const t2 = performance.now();
await grammar.compile({ type: "json_schema", schema: SCHEMA, strict: true });
const tCached = performance.now() - t2;
process.stdout.write(`model ${dir} (vocab ${info.vocabSize}); xgrammar tokenizer info ${tInfo.toFixed(0)} ms, schema compile ${tCompile.toFixed(1)} ms (cached: ${tCached.toFixed(2)} ms)\n`);

const prompt = model.tokenizer!.encode("Records as JSON:");
// Time inside the native step (the worker thread) and between steps (the event loop's share:
// outputs, masks for the next step, accepts), to tell the two apart.
const clocks = { native: 0, between: 0, steps: 0, lastEnd: 0 };
const timedStep = async (batch: Parameters<typeof model.engine.step>[0]) => {
  const s = performance.now();
  if (clocks.lastEnd) clocks.between += s - clocks.lastEnd;
  const out = await model.engine.step(batch);
  clocks.lastEnd = performance.now();
  clocks.native += clocks.lastEnd - s;
  clocks.steps++;
  return out;
};
const native = new Proxy(model.engine, {
  get(target, p) {
    if (p === "step") return timedStep;
    const v = (target as unknown as Record<string | symbol, unknown>)[p];
    return typeof v === "function" ? v.bind(target) : v;
  },
});
const engine = new LLMEngine(native, { maxModelLen: 1024, maxNumSeqs: 256, maxNumBatchedTokens: 4096, eosTokenIds: [], decode: null });

/** Decode-step time (ms) with B sequences of TOKENS tokens each, prompts prefilled first. */
async function run(B: number, constrained: boolean): Promise<{ step: number; native: number; between: number }> {
  const sampling = resolveSampling({ maxTokens: TOKENS, ignoreEos: true, temperature: 1, seed: 1 }, {});
  const handles = await Promise.all(Array.from({ length: B }, async (_, i) => {
    const matchers = constrained ? [await grammar.matcher(compiled)] : undefined;
    return engine.generate({ requestId: `${constrained}-${B}-${i}`, promptIds: prompt, sampling: { ...sampling, seed: i }, ...(matchers ? { matchers } : {}) });
  }));
  let firstAt = 0;
  let lastAt = 0;
  let tokens = 0;
  Object.assign(clocks, { native: 0, between: 0, steps: 0, lastEnd: 0 });
  await Promise.all(handles.map(async (h) => {
    for await (const e of h) {
      if (e.type === "delta") {
        tokens += e.delta.tokenIds.length;
        if (!firstAt) firstAt = performance.now();
        lastAt = performance.now();
      }
    }
  }));
  if (tokens !== B * TOKENS) throw new Error(`expected ${B * TOKENS} tokens, got ${tokens}: a grammar ended early`);
  // Decode steps only: the first step (prefill of every prompt) is left out of the clocks' means too.
  return { step: (lastAt - firstAt) / (TOKENS - 1), native: clocks.native / clocks.steps, between: clocks.between / Math.max(1, clocks.steps - 1) };
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
for (const B of a.batches!.split(",").map(Number)) {
  await run(B, false);  // warm-up
  const free: { step: number; native: number; between: number }[] = [];
  const bound: typeof free = [];
  for (let rep = 0; rep < 5; ++rep) {  // alternated, medians: the machine's noise hits both alike
    free.push(await run(B, false));
    bound.push(await run(B, true));
  }
  const f = { step: median(free.map((r) => r.step)), native: median(free.map((r) => r.native)), between: median(free.map((r) => r.between)) };
  const g = { step: median(bound.map((r) => r.step)), native: median(bound.map((r) => r.native)), between: median(bound.map((r) => r.between)) };
  process.stdout.write(`batch ${String(B).padStart(2)}: decode step ${f.step.toFixed(2)} ms free, ${g.step.toFixed(2)} ms with a JSON schema per sequence ` +
    `(+${(g.step - f.step).toFixed(2)} ms, ${((g.step / f.step - 1) * 100).toFixed(1)}%); native step ${f.native.toFixed(2)} -> ${g.native.toFixed(2)} ms, ` +
    `event loop between steps ${f.between.toFixed(2)} -> ${g.between.toFixed(2)} ms\n`);
}
model.engine.dispose();
