// Flags shared by the commands that load a model.
import type { LoadModelOptions } from "../model/load.js";
import type { FlagSpec, FlagValues } from "./args.js";
import { UsageError } from "./args.js";

export function engineFlags(): Record<string, FlagSpec> {
  return {
    device: { type: "string", default: "cpu", help: "cpu, cuda or cuda:N" },
    "gpu-memory-utilization": { type: "float", default: 0.9, help: "fraction of the GPU for weights, workspace and cache (--device cuda)" },
    threads: { type: "int", help: "CPU threads (default: all cores)" },
    "kv-cache-memory": { type: "string", default: "512MiB", help: "CPU cache size (bytes, or with KiB/MiB/GiB)" },
    "kv-cache-dtype": { type: "string", default: "auto", help: "the KV cache's values: auto (= bf16), bf16, or f32 (CPU only: twice the bytes, the reference)" },
  };
}

/** "512MiB" -> bytes. */
export function parseBytes(text: string, flag: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`--${flag} must be a size such as 512MiB or 2GiB, got "${text}"`);
  const unit = (m[2] ?? "b").toLowerCase();
  const scale = unit.startsWith("k") ? 1024 : unit.startsWith("m") ? 1024 ** 2 : unit.startsWith("g") ? 1024 ** 3 : 1;
  return Math.floor(Number(m[1]) * scale);
}

export function loadOptionsFrom(v: FlagValues): LoadModelOptions {
  const device = v.device as string;
  if (!/^(cpu|cuda(:\d+)?)$/.test(device)) throw new UsageError(`--device must be cpu, cuda or cuda:N, got "${device}"`);
  const util = v["gpu-memory-utilization"] as number;
  if (!(util > 0 && util <= 1)) throw new UsageError(`--gpu-memory-utilization must be in (0, 1], got ${util}`);
  const cacheDtype = v["kv-cache-dtype"] as string;
  if (!["auto", "bf16", "f32"].includes(cacheDtype)) throw new UsageError(`--kv-cache-dtype must be auto, bf16 or f32, got "${cacheDtype}"`);
  if (cacheDtype === "f32" && device !== "cpu") throw new UsageError("--kv-cache-dtype f32 is for --device cpu: the CUDA backend keeps its cache in bf16");
  return {
    device,
    kvCacheDtype: cacheDtype === "f32" ? "f32" : "bf16",
    gpuMemoryUtilization: util,
    numThreads: v.threads as number | undefined,
    cacheBytes: parseBytes(v["kv-cache-memory"] as string, "kv-cache-memory"),
  };
}
