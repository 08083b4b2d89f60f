// Paths to remove if the process is stopped by a signal (SIGINT, SIGTERM, SIGHUP) while they exist:
// temporary folders and locks, so an interrupted conversion leaves nothing half-written behind.
import { readdirSync, rmSync } from "node:fs";
import path from "node:path";

const SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
const paths = new Set<string>();

function onSignal(signal: NodeJS.Signals): void {
  for (const p of paths) rmSync(p, { recursive: true, force: true });
  paths.clear();
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  // With our handler gone, the signal's default action ends the process with the usual status.
  process.kill(process.pid, signal);
}

/** Removes `p` on a signal until the returned function is called (call it once `p` is renamed or removed). */
export function removeOnSignal(p: string): () => void {
  if (paths.size === 0) for (const s of SIGNALS) process.on(s, onSignal);
  paths.add(p);
  return () => {
    paths.delete(p);
    if (paths.size === 0) for (const s of SIGNALS) process.removeListener(s, onSignal);
  };
}

/** True while process `pid` (on this machine) exists. */
export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Removes the entries of `dir` that `ownerOf` maps to the pid of a process that no longer runs:
 * what a killed process (SIGKILL, power loss) could not clean up.
 */
export function sweepDead(dir: string, ownerOf: (name: string) => number | null): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = ownerOf(name);
    if (pid !== null && pid !== process.pid && !processIsAlive(pid)) rmSync(path.join(dir, name), { recursive: true, force: true });
  }
}

/** The pid in a name made of `prefix` + pid + (optionally) more, or null. */
export function pidAfter(name: string, prefix: string): number | null {
  if (!name.startsWith(prefix)) return null;
  const m = /^(\d+)/.exec(name.slice(prefix.length));
  return m ? Number(m[1]) : null;
}
