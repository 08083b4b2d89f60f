// The content hash of a model folder (every regular file at its top level, by name and bytes),
// remembered by file identity (path, size, mtime, inode) so a second start does not read the
// weights again. A changed file changes its size or mtime, and so its hash is computed afresh.
import { createHash } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, realpathSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

interface Identity {
  name: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

function identities(dir: string): Identity[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isFile() || d.isSymbolicLink())
    .map((d) => {
      const st = statSync(path.join(dir, d.name)); // follows links: the bytes are what counts
      return { name: d.name, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino, isFile: st.isFile() };
    })
    .filter((f) => f.isFile)
    .map(({ name, size, mtimeMs, ino }) => ({ name, size, mtimeMs, ino }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function hashFiles(dir: string, files: Identity[]): string {
  const h = createHash("sha256");
  const chunk = Buffer.allocUnsafe(8 * 2 ** 20);
  for (const f of files) {
    h.update(`${f.name}\0${f.size}\0`);
    const fd = openSync(path.join(dir, f.name), "r");
    try {
      for (let pos = 0; pos < f.size; ) {
        const n = readSync(fd, chunk, 0, Math.min(chunk.length, f.size - pos), pos);
        if (n === 0) throw new Error(`${path.join(dir, f.name)} changed while it was read`);
        h.update(chunk.subarray(0, n));
        pos += n;
      }
    } finally {
      closeSync(fd);
    }
  }
  return h.digest("hex");
}

/**
 * sha256 over the folder's files; `memoDir` (optional, may be read-only) remembers it per folder.
 */
export function folderContentHash(dir: string, memoDir: string | null): string {
  const real = realpathSync(dir);
  const files = identities(real);
  const fingerprint = JSON.stringify(files);
  const memo = memoDir ? path.join(memoDir, createHash("sha256").update(real).digest("hex").slice(0, 32) + ".json") : null;
  if (memo) {
    try {
      const m = JSON.parse(readFileSync(memo, "utf8")) as { fingerprint: string; hash: string };
      if (m.fingerprint === fingerprint) return m.hash;
    } catch {
      // no memo yet, or unreadable: compute
    }
  }
  const hash = hashFiles(real, files);
  if (memo) {
    try {
      mkdirSync(memoDir!, { recursive: true });
      const tmp = `${memo}.tmp-${process.pid}`;
      writeFileSync(tmp, JSON.stringify({ dir: real, fingerprint, hash }));
      renameSync(tmp, memo);
    } catch {
      // a read-only cache: the hash is simply computed again next time
    }
  }
  return hash;
}
