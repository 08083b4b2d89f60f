// Stop rules and stop strings on a choice's output.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ChoiceOutput } from "../../src/engine/output.js";
import { resolveSampling, type SamplingOptions } from "../../src/engine/sampling.js";
import { Sequence } from "../../src/engine/sequence.js";
import { GREEDY } from "../helpers.js";

// A toy vocabulary: token i decodes to WORDS[i]; 0 is EOS.
const WORDS = ["</s>", "Hello", " world", "!", " STOP", "ST", "OP", " end", "😀"];
const decode = (ids: readonly number[]) => ids.filter((t) => t !== 0).map((t) => WORDS[t]).join("");

function run(tokens: number[], sampling: Partial<SamplingOptions>) {
  const seq = new Sequence(1, "r", 0, [1], resolveSampling({ maxTokens: 100, ...sampling }), GREEDY);
  const out = new ChoiceOutput(seq, decode, { eosTokenIds: new Set([0]), maxModelLen: 50 });
  const deltas: string[] = [];
  for (const t of tokens) {
    seq.tokenIds.push(t);
    const r = out.onToken(t);
    deltas.push(r.text);
    if (r.finishReason) return { deltas, text: deltas.join(""), finish: r.finishReason, stop: r.stopReason, count: seq.numOutputTokens };
  }
  return { deltas, text: deltas.join(""), finish: undefined, stop: undefined, count: seq.numOutputTokens };
}

describe("choice output", () => {
  it("ends at EOS without emitting it, unless ignore_eos", () => {
    assert.deepEqual(run([2, 3, 0, 7], {}), { deltas: [" world", "!", ""], text: " world!", finish: "stop", stop: undefined, count: 3 });
    assert.equal(run([2, 0, 7], { ignoreEos: true, maxTokens: 3 }).finish, "length");
  });

  it("ends at max_tokens and at the context length", () => {
    assert.deepEqual(run([2, 3, 7, 7], { maxTokens: 2 }).finish, "length");
    assert.equal(run(Array(60).fill(3), {}).count, 49);
  });

  it("ends at a stop token id and reports it", () => {
    const r = run([2, 3, 7], { stopTokenIds: [3] });
    assert.equal(r.finish, "stop");
    assert.equal(r.stop, 3);
    assert.equal(r.text, " world");
  });

  it("never emits a stop string, nor splits one across deltas", () => {
    const r = run([1, 2, 5, 6, 7], { stop: ["STOP"] });
    assert.equal(r.text, "Hello world");
    assert.equal(r.stop, "STOP");
    // "ST" was held back: no delta ever ends inside a possible stop string.
    assert.ok(r.deltas.every((d) => !d.endsWith("ST")));
  });

  it("the earliest of several stop strings wins; held text is released at the end", () => {
    assert.equal(run([1, 2, 4, 7], { stop: ["end", " STOP"] }).text, "Hello world");
    const r = run([1, 2, 3], { stop: ["!!!"], maxTokens: 3 });
    assert.equal(r.text, "Hello world!");
    assert.equal(r.finish, "length");
  });

  it("does not cut a surrogate pair when holding back text", () => {
    const r = run([8, 8, 2], { stop: ["xx"], maxTokens: 3 });
    assert.equal(r.text, "😀😀 world");
    for (const d of r.deltas) assert.ok(!/[\uD800-\uDBFF]$/.test(d) && !/^[\uDC00-\uDFFF]/.test(d));
  });
});
