// The cache store: atomic entries checked by their manifest, locks between processes, content
// hashes remembered by file identity, the platform's cache folder.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";

import { folderContentHash } from "../../src/cache/content_hash.js";
import { ensureEntry, entryProblem } from "../../src/cache/entry.js";
import { defaultCacheDir } from "../../src/cache/location.js";
import { ROOT } from "../helpers.js";

const fresh = () => mkdtempSync(path.join(tmpdir(), "mla-cache-test-"));
const quiet = () => {};

async function writeTwo(tmp: string): Promise<void> {
  mkdirSync(path.join(tmp, "m"));
  writeFileSync(path.join(tmp, "m", "a.bin"), Buffer.alloc(5000, 7));
  writeFileSync(path.join(tmp, "m", "b.json"), "{}");
}

describe("cache entries", () => {
  it("builds once, then finds the entry without building", async () => {
    const root = fresh();
    let builds = 0;
    const build = async (tmp: string) => {
      builds++;
      await writeTwo(tmp);
    };
    const a = await ensureEntry(root, "k1", build, quiet);
    const b = await ensureEntry(root, "k1", build, quiet);
    assert.equal(builds, 1);
    assert.equal(a.built, true);
    assert.equal(b.built, false);
    assert.equal(a.dir, path.join(root, "k1"));
    assert.deepEqual(readdirSync(root).sort(), ["k1"]); // no lock or temporary folder left
  });

  it("finds a deleted, truncated, extended or overwritten file and rebuilds", async () => {
    const root = fresh();
    const damage: [string, (f: string) => void][] = [
      ["missing", (f) => rmSync(f)],
      ["has 100 bytes instead of 5000", (f) => truncateSync(f, 100)],
      ["has 5001 bytes", (f) => appendFileSync(f, "x")],
      ["has changed", (f) => writeFileSync(f, Buffer.alloc(5000, 8))],
    ];
    await ensureEntry(root, "k", writeTwo, quiet);
    for (const [why, hurt] of damage) {
      hurt(path.join(root, "k", "m", "a.bin"));
      assert.match(entryProblem(path.join(root, "k"), "k") ?? "", new RegExp(why));
      const lines: string[] = [];
      const r = await ensureEntry(root, "k", writeTwo, (l) => lines.push(l));
      assert.equal(r.built, true, why);
      assert.match(lines.join("\n"), /damaged/);
      assert.equal(entryProblem(r.dir, "k"), null);
    }
    rmSync(path.join(root, "k", "manifest.json"));
    assert.match(entryProblem(path.join(root, "k"), "k") ?? "", /manifest/);
  });

  it("a failed build leaves nothing behind and the next call builds", async () => {
    const root = fresh();
    await assert.rejects(ensureEntry(root, "k", async (tmp) => {
      await writeTwo(tmp);
      throw new Error("conversion failed");
    }, quiet), /conversion failed/);
    assert.deepEqual(readdirSync(root), []);
    assert.equal((await ensureEntry(root, "k", writeTwo, quiet)).built, true);
  });

  it("breaks the lock and sweeps the temporary folder of a dead process", async () => {
    const root = fresh();
    const dead = spawn(process.execPath, ["-e", "0"]);
    await new Promise((r) => dead.on("exit", r));
    const host = (await import("node:os")).hostname().replace(/[^A-Za-z0-9_.-]/g, "_");
    writeFileSync(path.join(root, "k.lock"), JSON.stringify({ host, pid: dead.pid }));
    mkdirSync(path.join(root, `k.tmp-${host}-${dead.pid}`));
    const r = await ensureEntry(root, "k", writeTwo, quiet);
    assert.equal(r.built, true);
    assert.deepEqual(readdirSync(root), ["k"]);
  });

  it("concurrent processes build one entry once; the others wait for it", async () => {
    const root = fresh();
    const script = `
      import { ensureEntry } from ${JSON.stringify(path.join(ROOT, "dist", "src", "cache", "entry.js"))};
      import { appendFileSync, writeFileSync } from "node:fs";
      const r = await ensureEntry(${JSON.stringify(root)}, "k", async (tmp) => {
        appendFileSync(${JSON.stringify(path.join(root, "..", path.basename(root) + ".builds"))}, "b");
        await new Promise((r) => setTimeout(r, 400));
        writeFileSync(tmp + "/x", String(process.pid));
      }, () => {});
      process.stdout.write(r.built ? "built" : "found");`;
    const runs = await Promise.all([0, 1, 2, 3].map(() => new Promise<string>((resolve, reject) => {
      const p = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      p.stdout.on("data", (d: Buffer) => (out += d.toString()));
      p.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}`))));
    })));
    assert.deepEqual(runs.sort(), ["built", "found", "found", "found"]);
    assert.equal(readFileSync(path.join(root, "..", path.basename(root) + ".builds"), "utf8"), "b");
    assert.equal(entryProblem(path.join(root, "k"), "k"), null);
  });
});

describe("content hashes", () => {
  it("depend on every file's name and bytes, and are remembered by file identity", () => {
    const dir = fresh();
    const memo = fresh();
    writeFileSync(path.join(dir, "config.json"), "{}");
    writeFileSync(path.join(dir, "w.bin"), Buffer.alloc(1000, 1));
    const h1 = folderContentHash(dir, memo);
    assert.equal(folderContentHash(dir, null), h1);
    assert.equal(readdirSync(memo).length, 1);
    // The memo is trusted while size and mtime are unchanged: a forged memo shows it is used.
    const memoFile = path.join(memo, readdirSync(memo)[0]!);
    const m = JSON.parse(readFileSync(memoFile, "utf8"));
    writeFileSync(memoFile, JSON.stringify({ ...m, hash: "remembered" }));
    assert.equal(folderContentHash(dir, memo), "remembered");
    // Same size, new bytes, new mtime: hashed again.
    writeFileSync(path.join(dir, "w.bin"), Buffer.alloc(1000, 2));
    utimesSync(path.join(dir, "w.bin"), new Date(), new Date(Date.now() + 5000));
    const h2 = folderContentHash(dir, memo);
    assert.notEqual(h2, h1);
    assert.notEqual(h2, "remembered");
    writeFileSync(path.join(dir, "extra.txt"), "");
    assert.notEqual(folderContentHash(dir, memo), h2);
    assert.ok(existsSync(memoFile));
  });
});

describe("cache location", () => {
  it("follows each platform's convention", () => {
    assert.equal(defaultCacheDir({ HOME: "/home/u" }, "linux"), "/home/u/.cache/mla-serve");
    assert.equal(defaultCacheDir({ HOME: "/home/u", XDG_CACHE_HOME: "/xdg" }, "linux"), "/xdg/mla-serve");
    assert.equal(defaultCacheDir({ HOME: "/home/u", XDG_CACHE_HOME: "relative" }, "linux"), "/home/u/.cache/mla-serve");
    assert.equal(defaultCacheDir({ HOME: "/Users/u" }, "darwin"), "/Users/u/Library/Caches/mla-serve");
    assert.match(defaultCacheDir({ HOME: "C:\\Users\\u", LOCALAPPDATA: "C:\\Users\\u\\AppData\\Local" }, "win32"), /mla-serve.Cache$/);
  });
});
