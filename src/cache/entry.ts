// One cache entry: a folder ROOT/KEY built once, atomically, and checked on every use.
//
// Invariants: an entry folder exists only complete (built in ROOT/KEY.tmp-HOST-PID, then renamed);
// its manifest.json lists every file with its size and a content hash, so a deleted, truncated or
// overwritten file is found and the entry rebuilt. Builders take ROOT/KEY.lock (created exclusively)
// so concurrent starts build once; the others wait. Locks and temporary folders of dead processes
// are swept. Using a valid entry writes nothing (read-only caches work).
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { processIsAlive, removeOnSignal } from "../util/cleanup.js";

const MANIFEST = "manifest.json";
/** Files up to this size are hashed whole; larger ones by their size, first and last SAMPLE bytes. */
const FULL_HASH_LIMIT = 256 * 2 ** 20;
const SAMPLE = 4 * 2 ** 20;
/** A lock whose holder cannot be checked (another host) is stale after this long without a heartbeat. */
const STALE_LOCK_MS = 10 * 60_000;
const HEARTBEAT_MS = 15_000;

interface ManifestFile {
  path: string; // relative to the entry, '/'-separated
  size: number;
  sha256: string; // whole file, or size + head + tail for files over FULL_HASH_LIMIT
}

interface Manifest {
  key: string;
  created: string;
  files: ManifestFile[];
}

export interface EntryLog {
  (line: string): void;
}

function fileHash(file: string, size: number): string {
  const h = createHash("sha256");
  const fd = openSync(file, "r");
  try {
    const chunk = Buffer.allocUnsafe(Math.min(SAMPLE, Math.max(size, 1)));
    const read = (from: number, to: number) => {
      for (let pos = from; pos < to; ) {
        const n = readSync(fd, chunk, 0, Math.min(chunk.length, to - pos), pos);
        if (n === 0) throw new Error(`${file} ended early`);
        h.update(chunk.subarray(0, n));
        pos += n;
      }
    };
    if (size <= FULL_HASH_LIMIT) {
      read(0, size);
    } else {
      h.update(`size ${size}\n`);
      read(0, SAMPLE);
      read(size - SAMPLE, size);
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

function listFiles(dir: string, prefix = ""): string[] {
  const out: string[] = [];
  for (const d of readdirSync(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${d.name}` : d.name;
    if (d.isDirectory()) out.push(...listFiles(dir, rel));
    else if (d.isFile() && rel !== MANIFEST) out.push(rel);
  }
  return out.sort();
}

/** Why the entry at `dir` is not usable, or null when it is complete and unchanged. */
export function entryProblem(dir: string, key: string): string | null {
  const file = path.join(dir, MANIFEST);
  if (!existsSync(dir)) return "missing";
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(file, "utf8")) as Manifest;
  } catch {
    return `no readable ${MANIFEST}`;
  }
  if (m.key !== key || !Array.isArray(m.files)) return `${MANIFEST} is for another entry`;
  for (const f of m.files) {
    const p = path.join(dir, f.path);
    let size: number;
    try {
      size = statSync(p).size;
    } catch {
      return `${f.path} is missing`;
    }
    if (size !== f.size) return `${f.path} has ${size} bytes instead of ${f.size}`;
    if (fileHash(p, size) !== f.sha256) return `${f.path} has changed`;
  }
  return null;
}

function writeManifest(dir: string, key: string): void {
  const files = listFiles(dir).map((rel) => {
    const size = statSync(path.join(dir, rel)).size;
    return { path: rel, size, sha256: fileHash(path.join(dir, rel), size) };
  });
  const m: Manifest = { key, created: new Date().toISOString(), files };
  writeFileSync(path.join(dir, MANIFEST), JSON.stringify(m, null, 2) + "\n");
}

const HOST = os.hostname().replace(/[^A-Za-z0-9_.-]/g, "_");

/** True when a lock or temporary folder belongs to a process that is gone. */
function ownerIsGone(host: string, pid: number, mtimeMs: number): boolean {
  if (host === HOST) return !processIsAlive(pid);
  return Date.now() - mtimeMs > STALE_LOCK_MS;
}

/** Removes temporary and discarded folders of dead processes from ROOT. */
export function sweep(root: string): void {
  if (!existsSync(root)) return;
  for (const name of readdirSync(root)) {
    const m = /\.(?:tmp|stale)-(.+)-(\d+)$/.exec(name);
    if (!m) continue;
    const p = path.join(root, name);
    try {
      if (ownerIsGone(m[1]!, Number(m[2]), statSync(p).mtimeMs)) rmSync(p, { recursive: true, force: true });
    } catch {
      // another process swept it first
    }
  }
}

/** Takes ROOT/KEY.lock, waiting while a live process holds it; returns its release function. */
async function lock(root: string, key: string, log: EntryLog): Promise<() => void> {
  const file = path.join(root, `${key}.lock`);
  let waited = false;
  for (;;) {
    try {
      const fd = openSync(file, "wx");
      writeFileSync(fd, JSON.stringify({ host: HOST, pid: process.pid, started: new Date().toISOString() }));
      closeSync(fd);
      const beat = setInterval(() => {
        try {
          const now = new Date();
          utimesSync(file, now, now);
        } catch {
          // the lock was broken by someone who judged it stale; the rename into place still decides
        }
      }, HEARTBEAT_MS);
      beat.unref();
      const forgetLock = removeOnSignal(file);
      return () => {
        clearInterval(beat);
        forgetLock();
        rmSync(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let holder: { host?: string; pid?: number } = {};
    let mtimeMs = Date.now();
    try {
      mtimeMs = statSync(file).mtimeMs;
      holder = JSON.parse(readFileSync(file, "utf8")) as typeof holder;
    } catch {
      // being written or just removed: look again
    }
    const gone = typeof holder.pid === "number" ? ownerIsGone(holder.host ?? HOST, holder.pid, mtimeMs) : Date.now() - mtimeMs > STALE_LOCK_MS;
    if (gone) {
      rmSync(file, { force: true });
      continue;
    }
    if (!waited) log(`waiting for another mla-serve (pid ${holder.pid ?? "?"} on ${holder.host ?? "?"}) that is building ${key}`);
    waited = true;
    await new Promise((r) => setTimeout(r, 500));
  }
}

/**
 * The folder of entry KEY under ROOT, built by `build(tmpDir)` when it is missing or damaged.
 * `build` writes its files into tmpDir; the store adds the manifest and renames tmpDir into place.
 */
export async function ensureEntry(root: string, key: string, build: (tmpDir: string) => Promise<void>, log: EntryLog): Promise<{ dir: string; built: boolean }> {
  const dir = path.join(root, key);
  let problem = entryProblem(dir, key);
  if (problem === null) return { dir, built: false };
  mkdirSync(root, { recursive: true });
  sweep(root);
  const release = await lock(root, key, log);
  try {
    problem = entryProblem(dir, key);
    if (problem === null) return { dir, built: false };
    if (existsSync(dir)) {
      log(`cache entry ${dir} is damaged (${problem}): rebuilding it`);
      const aside = path.join(root, `${key}.stale-${HOST}-${process.pid}`);
      renameSync(dir, aside);
      rmSync(aside, { recursive: true, force: true });
    }
    const tmp = path.join(root, `${key}.tmp-${HOST}-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    const forgetTmp = removeOnSignal(tmp);
    try {
      await build(tmp);
      writeManifest(tmp, key);
      renameSync(tmp, dir);
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      throw err;
    } finally {
      forgetTmp();
    }
    return { dir, built: true };
  } finally {
    release();
  }
}
