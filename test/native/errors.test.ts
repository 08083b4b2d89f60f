// Bad checkpoints give a clear error naming the problem; the process keeps running.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";

import { native } from "../../src/native/binding.js";
import { readSafetensorsHeader, tensorFrom, writeSafetensors, type TensorData } from "../../src/model/safetensors.js";
import { GREEDY, REFERENCE_MODELS } from "../helpers.js";

const source = REFERENCE_MODELS["random-qwen2"]!;
const work = mkdtempSync(path.join(tmpdir(), "mla-errors-"));
after(() => rmSync(work, { recursive: true, force: true }));

let counter = 0;
/** A copy of the random-qwen2 fixture, edited by `edit`. */
function brokenModel(edit: (dir: string) => void): string {
  const dir = path.join(work, `m${counter++}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of ["config.json", "model.safetensors"]) copyFileSync(path.join(source, f), path.join(dir, f));
  edit(dir);
  return dir;
}
function editConfig(dir: string, change: (c: Record<string, unknown>) => void): void {
  const file = path.join(dir, "config.json");
  const c = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  change(c);
  writeFileSync(file, JSON.stringify(c));
}

async function loadError(dir: string): Promise<string> {
  try {
    const e = await native().loadEngine({ modelDir: dir, numBlocks: 4 });
    e.dispose();
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`loading ${dir} succeeded`);
}

describe("bad checkpoints", () => {
  it("a missing folder", async () => {
    assert.match(await loadError(path.join(work, "nope")), /model folder not found: .*nope/);
  });

  it("a folder without config.json", async () => {
    assert.match(await loadError(brokenModel((d) => rmSync(path.join(d, "config.json")))), /has no config\.json/);
  });

  it("a folder without weights", async () => {
    assert.match(await loadError(brokenModel((d) => rmSync(path.join(d, "model.safetensors")))), /no model\.safetensors or model\.safetensors\.index\.json/);
  });

  it("a truncated safetensors file", async () => {
    const dir = brokenModel((d) => truncateSync(path.join(d, "model.safetensors"), statSync(path.join(d, "model.safetensors")).size - 1000));
    assert.match(await loadError(dir), /point outside the file.*truncated or corrupt/);
    const tiny = brokenModel((d) => truncateSync(path.join(d, "model.safetensors"), 5));
    assert.match(await loadError(tiny), /truncated safetensors file \(5 bytes\)/);
    const headerCut = brokenModel((d) => truncateSync(path.join(d, "model.safetensors"), 100));
    assert.match(await loadError(headerCut), /truncated safetensors file: header of \d+ bytes but the file has 100 bytes/);
  });

  it("a header whose offsets point outside the file", async () => {
    const dir = brokenModel((d) => {
      const file = path.join(d, "model.safetensors");
      const bytes = readFileSync(file);
      const n = Number(bytes.readBigUInt64LE(0));
      const header = bytes.subarray(8, 8 + n).toString("utf8").replace(/"data_offsets":\[(\d+),(\d+)\]/, (_m, a, b) => `"data_offsets":[${a},${Number(b) + 10 ** 9}]`);
      const padded = Buffer.from(header.padEnd(Math.ceil(header.length / 8) * 8, " "));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(padded.length));
      writeFileSync(file, Buffer.concat([len, padded, bytes.subarray(8 + n)]));
    });
    assert.match(await loadError(dir), /data_offsets \[\d+, \d+\] point outside the file's \d+ data bytes/);
  });

  it("a tensor with the wrong shape", async () => {
    const dir = brokenModel((d) => {
      const file = path.join(d, "model.safetensors");
      const header = readSafetensorsHeader(file);
      const bytes = readFileSync(file);
      const base = 8 + Number(bytes.readBigUInt64LE(0));
      const tensors = new Map<string, TensorData>();
      for (const [name, e] of Object.entries(header)) {
        const data = new Uint8Array(bytes.subarray(base + e.data_offsets[0], base + e.data_offsets[1]));
        const shape = name === "model.layers.1.mlp.up_proj.weight" ? [e.shape[1]!, e.shape[0]!] : e.shape;
        tensors.set(name, { dtype: e.dtype as TensorData["dtype"], shape, data });
      }
      writeSafetensors(file, tensors);
    });
    assert.match(await loadError(dir), /model\.layers\.1\.mlp\.up_proj\.weight: expected shape \[256, 128\], found \[128, 256\]/);
  });

  it("a missing tensor", async () => {
    const dir = brokenModel((d) => {
      const file = path.join(d, "model.safetensors");
      writeSafetensors(file, new Map([["model.embed_tokens.weight", tensorFrom(new Float32Array(1024 * 128), [1024, 128])]]));
    });
    assert.match(await loadError(dir), /checkpoint has no tensor lm_head\.weight|checkpoint has no tensor model\.norm\.weight/);
  });

  it("an unsupported dtype", async () => {
    const dir = brokenModel((d) => {
      const file = path.join(d, "model.safetensors");
      const bytes = readFileSync(file);
      const n = Number(bytes.readBigUInt64LE(0));
      const header = bytes.subarray(8, 8 + n).toString("utf8").replace('"BF16"', '"I16"');
      writeFileSync(file, Buffer.concat([bytes.subarray(0, 8), Buffer.from(header), bytes.subarray(8 + n)]));
    });
    assert.match(await loadError(dir), /unsupported dtype I16 \(supported: F32, F16, BF16\)/);
  });

  it("an unsupported model_type, activation or rope scaling", async () => {
    assert.match(await loadError(brokenModel((d) => editConfig(d, (c) => (c.model_type = "gpt2")))),
      /unsupported model_type = "gpt2" \(supported: llama, mistral, qwen2, deepseek_v3\)/);
    assert.match(await loadError(brokenModel((d) => editConfig(d, (c) => (c.hidden_act = "gelu")))), /unsupported hidden_act = "gelu"/);
    assert.match(await loadError(brokenModel((d) => editConfig(d, (c) => (c.rope_scaling = { rope_type: "yarn", factor: 4 })))),
      /unsupported rope_scaling\.rope_type = "yarn" \(supported: linear, llama3\)/);
    assert.match(await loadError(brokenModel((d) => editConfig(d, (c) => (c.num_key_value_heads = 3)))), /num_key_value_heads = 3/);
    assert.match(await loadError(brokenModel((d) => editConfig(d, (c) => delete c.hidden_size))), /missing field hidden_size/);
  });

  it("a config.json that is not JSON", async () => {
    assert.match(await loadError(brokenModel((d) => writeFileSync(path.join(d, "config.json"), "{ not json"))), /config\.json: invalid JSON at offset/);
  });

  it("the good model still loads afterwards", async () => {
    const e = await native().loadEngine({ modelDir: source, numBlocks: 4 });
    assert.equal(e.config().modelType, "qwen2");
    e.dispose();
  });
});

describe("calibration requests", () => {
  it("an observation point that does not exist is an error naming the points, not an empty result", async () => {
    const e = await native().loadEngine({ modelDir: source, numBlocks: 4 });
    assert.throws(() => e.statistics([{ layer: 0, point: "attn-norm" }]), /requests\[0\]\.point "attn-norm" is not an observation point \(attn_norm, q, k, v, q_a, kv_a, attn_out, mlp_norm\)/);
    const stats = e.statistics([{ layer: 0, point: "attn_norm" }]);
    e.addSequence(1, Int32Array.of(1, 2, 3), 3);
    await stats.calibrate({ seqIds: Int32Array.of(1), startPositions: Int32Array.of(0), numTokens: Int32Array.of(3), tokenIds: Int32Array.of(1, 2, 3) });
    const [stat] = stats.take();
    assert.equal(stat!.rows, 3);
    e.dispose();
  });

  it("each statistics session is its own object: sessions accumulate apart, and a taken one refuses more", async () => {
    const e = await native().loadEngine({ modelDir: source, numBlocks: 8 });
    const batch = (id: number, n: number) => ({ seqIds: Int32Array.of(id), startPositions: Int32Array.of(0), numTokens: Int32Array.of(n), tokenIds: Int32Array.from({ length: n }, (_, i) => i + 1) });
    const a = e.statistics([{ layer: 0, point: "attn_norm" }]);
    const b = e.statistics([{ layer: 0, point: "attn_norm", kind: "rmsFit" }]);
    e.addSequence(1, Int32Array.of(1, 2, 3), 3);
    await a.calibrate(batch(1, 3));
    e.freeSequence(1);
    e.addSequence(2, Int32Array.of(1, 2, 3, 4, 5), 5);
    await b.calibrate(batch(2, 5));
    e.freeSequence(2);
    const [ra] = a.take(), [rb] = b.take();
    assert.equal(ra!.rows, 3);
    assert.equal(rb!.rows, 5);
    assert.equal(rb!.data.length, 2 * rb!.columns);
    assert.throws(() => a.take(), /taken already/);
    await assert.rejects(async () => a.calibrate(batch(1, 3)), /taken already/);
    // A session is busy only while its own pass runs; it may be taken after the engine is gone.
    for (const columns of [[3, 3], [-1, 4], [0.5, 4], [0, 2 ** 32], ["0", 4]]) {
      assert.throws(() => e.statistics([{ layer: 0, point: "q", columns: columns as [number, number] }]), /requests\[0\]\.columns/, String(columns));
    }
    const c = e.statistics([{ layer: 0, point: "attn_norm", columns: [0, 16] }]);
    e.addSequence(3, Int32Array.of(1, 2, 3), 3);
    const pass = c.calibrate(batch(3, 3));
    assert.throws(() => c.take(), /still running/);
    await pass;
    e.freeSequence(3);
    e.dispose();
    assert.throws(() => b.take(), /taken already/);
    const [rc] = c.take();
    assert.equal(rc!.rows, 3);
    assert.equal(rc!.columns, 16);
    // A pass that fails (columns past the point's width show only once it is observed) leaves
    // partial sums: the session refuses to hand them out or to add to them.
    const e2 = await native().loadEngine({ modelDir: source, numBlocks: 8 });
    const partial = e2.statistics([{ layer: 0, point: "attn_norm" }, { layer: 0, point: "q", columns: [0, 1 << 20] }]);
    e2.addSequence(4, Int32Array.of(1, 2, 3), 3);
    await assert.rejects(partial.calibrate(batch(4, 3)), /columns \[0, 1048576\) are outside q/);
    assert.throws(() => partial.take(), /a calibrate pass of these statistics failed/);
    await assert.rejects(async () => partial.calibrate(batch(4, 3)), /a calibrate pass of these statistics failed/);
    e2.dispose();
  });
});
