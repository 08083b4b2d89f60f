// The typed surface of the native addon (native/napi/). Batches cross as typed arrays.

// ModelConfig, the normalized model shape the addon parsed from config.json, is generated from
// the native table (native/include/mla/config_fields.h).
import type { ModelConfig } from "./model_config.js";
export type { ModelConfig };

export interface CacheInfo {
  numBlocks: number;
  numFreeBlocks: number;
  blockSize: number;
  bytesPerBlock: number;
  prefixHitTokens: number;
  prefixQueryTokens: number;
  device: string;
}

// The per-row sampling parameters and their packed form, generated from the native table
// (native/include/mla/sampling_fields.h).
import type { PackedSampling, SamplingParams as NativeSamplingParams } from "./sampling_fields.js";
export type { NativeSamplingParams, PackedSampling };

export interface StepBatch {
  seqIds: Int32Array; // [B]
  startPositions: Int32Array; // [B] tokens already computed
  numTokens: Int32Array; // [B] new tokens
  tokenIds: Int32Array; // [sum numTokens]
  sampleMask: Uint8Array; // [B] 1: sample after the last new token
  /** The sampled rows' parameters (R: rows with sampleMask 1, in batch order): packSampling(rows). */
  sampling: PackedSampling;
  numTopLogprobs: number; // 0..20
  returnLogits?: boolean;
  /** Logits processors of the sampled rows (R, in batch order): allowed-token bitmasks... */
  logitMasks?: { rowIndex: Int32Array /* [R] row of words or -1 */; words: Int32Array /* [masks * ceil(vocab / 32)] */ };
  /** ...and biases (-Infinity bans). */
  logitBias?: { offsets: Int32Array /* [R + 1] */; tokens: Int32Array; values: Float32Array };
}

/** One entry per sampled row (sequences with sampleMask 1), in batch order. */
export interface StepOutput {
  tokenIds: Int32Array; // [R]
  logprobs: Float32Array; // [R] raw log p of the sampled token
  topTokenIds: Int32Array; // [R * numTopLogprobs]
  topLogprobs: Float32Array; // [R * numTopLogprobs]
  logits?: Float32Array; // [R * vocab] when returnLogits
}

export interface ScoreBatch {
  seqIds: Int32Array;
  startPositions: Int32Array;
  numTokens: Int32Array;
  tokenIds: Int32Array;
  targetIds: Int32Array; // [sum numTokens]
}

export interface LoadOptions {
  modelDir: string;
  device?: string;
  numThreads?: number;
  numBlocks?: number;
  /** CPU cache size in bytes. */
  cacheBytes?: number;
  /** CUDA: fraction of the GPU the instance may use (weights, workspace, cache). */
  gpuMemoryUtilization?: number;
  enablePrefixCaching?: boolean;
  poisonCache?: boolean;
  /** The KV cache's values: bf16 (default; the CUDA backend's only choice) or f32 (CPU). */
  kvCacheDtype?: "bf16" | "f32";
  mlaPath?: "auto" | "absorbed" | "expanded";
  /** The step limits the CUDA workspace is reserved for (the scheduler's): tokens and sequences per step, context length. */
  maxNumBatchedTokens?: number;
  maxNumSeqs?: number;
  maxModelLen?: number;
}

/** One statistic to accumulate during calibrate() calls. */
export interface StatisticRequest {
  layer: number;
  /** "attn_norm" (attention input), "q", "k", "v", "kv_a", "q_a", "attn_out", "mlp_norm". */
  point: string;
  /**
   * "covariance": XᵀX [n, n]; "rmsFit": per column, sum x²/r and sum x²/r² [2, n];
   * "normalizedMoments": u = x / rms(x) against the layer's attention input a with a 1 appended:
   * sum ã uᵀ [m + 1, n] then sum u uᵀ [n, n], as [m + 1 + n, n] (m: hidden size).
   */
  kind?: "covariance" | "rmsFit" | "normalizedMoments";
  /** Columns [begin, end) of the activation; default all. */
  columns?: [number, number];
  /** Covariance with a constant 1 column appended: [n + 1, n + 1]. */
  appendOne?: boolean;
  eps?: number;
}

export interface StatisticResult {
  rows: number;
  columns: number;
  data: Float64Array;
}

export interface CalibrateOptions {
  lastLayer?: number;
  /** Stop at lastLayer's attention input. */
  stopAtAttentionInput?: boolean;
}

export interface NativeEngine {
  /** Callable at any time, also while a step runs. */
  config(): ModelConfig;
  /** Not callable while a step runs (the block tables are changing). */
  cacheInfo(): CacheInfo;
  numFreeBlocks(): number;
  /**
   * Registers a sequence and returns the number of leading tokens already cached, or null when
   * blocks do not suffice. usePrefixCache false: compute every position (scoring), even where the
   * prefix cache has blocks. Sampling parameters are not the sequence's: each step carries them
   * for its sampled rows.
   */
  addSequence(seqId: number, tokens: Int32Array, numPromptTokens: number, usePrefixCache?: boolean): number | null;
  ensureCapacity(seqId: number, numTokens: number): boolean;
  freeSequence(seqId: number): void;
  hasSequence(seqId: number): boolean;
  numComputedTokens(seqId: number): number;
  /** Throws when block reference counts, free lists and tables disagree. */
  checkIntegrity(): void;
  step(batch: StepBatch): Promise<StepOutput>;
  score(batch: ScoreBatch): Promise<Float32Array>;
  /** score, and at every position the numTopLogprobs (1..20) most likely tokens. */
  scoreTop(batch: ScoreBatch, numTopLogprobs: number): Promise<{ logprobs: Float32Array; topTokenIds: Int32Array; topLogprobs: Float32Array }>;
  dispose(): void;
  /** A calibration session of its own over this engine (the converter's statistics). */
  statistics(requests: StatisticRequest[]): NativeStatistics;
}

/** Calibration statistics being accumulated; the engine itself keeps no calibration state. */
export interface NativeStatistics {
  /** A forward pass (no logits) that feeds these statistics; not while a step runs. */
  calibrate(batch: Omit<ScoreBatch, "targetIds">, options?: CalibrateOptions): Promise<void>;
  /**
   * The results, in request order; ends the session (calibrate and take throw after). Throws while
   * the session's own calibrate runs, and after one failed (its sums would be partial).
   */
  take(): StatisticResult[];
}

export interface NativeModule {
  loadEngine(options: LoadOptions): Promise<NativeEngine>;
  /** cpuIsa: the CPU kernels' instruction set ("avx2", "avx512", "amx"; MLA_CPU_ISA forces one). */
  buildInfo: { cuda: boolean; devices: string; cpuIsa: string };
  /** (kv_lora_rank, qk_rope_head_dim) pairs the fused CUDA MLA decode kernel is instantiated for. */
  mlaKernelShapes: [number, number][];
  /** Bytes per second of streaming a buffer of `mib` MiB on `threads` threads (0: all cores): the floor benchmarks compare decode with. */
  memoryReadBandwidth(mib: number, threads: number): number;
  linalg: {
    /** Symmetric eigendecomposition: values descending; vectors [n, n], column c for values[c]. */
    eigh(a: Float64Array, n: number): Promise<{ values: Float64Array; vectors: Float64Array }>;
    /** op(A) [m, k] times op(B) [k, n], row-major, float64. */
    matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number, transA: boolean, transB: boolean): Promise<Float64Array>;
  };
}
