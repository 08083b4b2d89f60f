// Spawns `mla-serve serve` on a free loopback port for end-to-end tests.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import path from "node:path";

import { ROOT } from "../helpers.js";

export const CLI = path.join(ROOT, "dist", "src", "cli", "main.js");

export interface ServerProcess {
  baseURL: string; // http://127.0.0.1:PORT/v1
  origin: string; // http://127.0.0.1:PORT
  proc: ChildProcess;
  logs: string[];
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

export async function startServer(args: string[] = [], env: Record<string, string> = {}): Promise<ServerProcess> {
  const port = await freePort();
  const proc = spawn(process.execPath, [CLI, "serve", "--host", "127.0.0.1", "--port", String(port), ...args], {
    env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: string[] = [];
  proc.stdout!.on("data", (d: Buffer) => logs.push(d.toString()));
  proc.stderr!.on("data", (d: Buffer) => logs.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  // Ready when /health answers.
  const deadline = Date.now() + 60_000;
  while (true) {
    if (proc.exitCode !== null) throw new Error(`server exited with ${proc.exitCode}: ${logs.join("")}`);
    if (Date.now() > deadline) throw new Error(`server did not start: ${logs.join("")}`);
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const origin = `http://127.0.0.1:${port}`;
  return {
    baseURL: `${origin}/v1`, origin, proc, logs,
    stop: () => {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      return exited;
    },
  };
}

/** A metric's value from /metrics (first sample with that name). */
export async function metric(origin: string, name: string): Promise<number> {
  const text = await (await fetch(`${origin}/metrics`)).text();
  const m = new RegExp(`^mla_serve:${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`no metric ${name}`);
  return Number(m[1]);
}

/** Polls until the engine holds no request and no cache block. */
export async function waitIdle(origin: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const [running, waiting, usage] = await Promise.all([metric(origin, "num_requests_running"), metric(origin, "num_requests_waiting"), metric(origin, "kv_cache_usage_perc")]);
    if (running === 0 && waiting === 0 && usage === 0) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("the engine did not become idle");
}
