// The model runner: turns a scheduler decision into typed arrays and runs one native step.
import { packSampling } from "../native/sampling_fields.js";
import type { NativeEngine, StepOutput } from "../native/types.js";
import { batchAdjustments } from "./processors.js";
import type { SchedulerOutput } from "./scheduler.js";

export type StepFn = (batch: Parameters<NativeEngine["step"]>[0]) => Promise<StepOutput>;

export class ModelRunner {
  constructor(private readonly stepFn: StepFn, private readonly vocabSize: number) {}

  async run(out: SchedulerOutput): Promise<StepOutput> {
    const B = out.scheduled.length;
    const seqIds = new Int32Array(B);
    const startPositions = new Int32Array(B);
    const numTokens = new Int32Array(B);
    const sampleMask = new Uint8Array(B);
    const tokenIds = new Int32Array(out.numBatchedTokens);
    let offset = 0;
    let numTopLogprobs = 0;
    out.scheduled.forEach(({ seq, numTokens: n, sample }, i) => {
      seqIds[i] = seq.seqId;
      startPositions[i] = seq.numComputedTokens;
      numTokens[i] = n;
      sampleMask[i] = sample ? 1 : 0;
      for (let t = 0; t < n; ++t) tokenIds[offset + t] = seq.tokenIds[seq.numComputedTokens + t]!;
      offset += n;
      if (sample && seq.sampling.logprobs !== null) numTopLogprobs = Math.max(numTopLogprobs, seq.sampling.logprobs);
    });
    const sampled = out.scheduled.filter((s) => s.sample).map((s) => s.seq);
    const adjust = await batchAdjustments(sampled.map((s) => s.processors), sampled.map((s) => () => s.outputIds), this.vocabSize);
    const sampling = packSampling(sampled.map((s) => s.nativeParams));
    return this.stepFn({ seqIds, startPositions, numTokens, tokenIds, sampleMask, sampling, numTopLogprobs, ...adjust });
  }
}
