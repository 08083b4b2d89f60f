// TransMLA's first format (v1): the GQA projections plus k_up_proj / v_up_proj. With latent maps
// from RoRoPE at freqfold 1 it holds the rotated model exactly (RoPE still per head block).
import type { Checkpoint } from "../model/checkpoint.js";
import type { DType } from "../model/safetensors.js";
import { addV1Layer } from "./layer_tensors.js";
import { congruence, Mat, matmul } from "./matrix.js";
import { replicationUp } from "./mla_layer.js";
import { foldRotations, v1LatentMap } from "./rorope.js";
import { readAttention, type SourceShape } from "./source.js";
import type { NewTensors } from "./writer.js";

/** v1 tensors of every layer; maps[l] rotates layer l's key latent (null: no rotation, the exact copy). */
export async function v1Tensors(ckpt: Checkpoint, s: SourceShape, maps: Mat[] | null, dtype: DType): Promise<NewTensors> {
  const up = replicationUp(s);
  const tensors: NewTensors = new Map();
  for (let l = 0; l < s.numLayers; ++l) {
    const a = readAttention(ckpt, s, l);
    const map = maps?.[l];
    if (!map) {
      addV1Layer(tensors, l, { ...a, kUp: up, vUp: up }, s, dtype);
      continue;
    }
    // k' = T k and k_up' = k_up Tᵀ, so k_up' k' = k_up k.
    const wk = await matmul(map, a.wk);
    const bk = (await matmul(map, new Mat(s.latent, 1, a.bk))).data;
    const kUp = await matmul(up, map, false, true);
    addV1Layer(tensors, l, { ...a, wk, bk, kUp, vUp: up }, s, dtype);
  }
  return tensors;
}

/** RoRoPE rotations at freqfold 1 in the v1 layout, one map per layer, from attention-input statistics. */
export async function v1RotationMaps(ckpt: Checkpoint, s: SourceShape, sigmas: Mat[]): Promise<Mat[]> {
  const shape = { numKvHeads: s.numKvHeads, headDim: s.headDim, freqfold: 1, collapse: 1 };
  const maps: Mat[] = [];
  for (let l = 0; l < s.numLayers; ++l) {
    const a = readAttention(ckpt, s, l);
    const ck = await congruence(a.wk.withColumn(a.bk), sigmas[l]!);
    maps.push(v1LatentMap(await foldRotations(ck, shape), shape));
  }
  return maps;
}
