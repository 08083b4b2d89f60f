// The conversion's stages for one split: partial RoPE, BKV-PCA (all layers, or layer by layer),
// latent norms.
import { rmsNormFits } from "./calibrate.js";
import type { Conversion, LayerStats, Split } from "./conversion.js";
import { zeroMlaLayer, type LatentNorms } from "./layer_tensors.js";
import type { Mat } from "./matrix.js";
import type { MlaLayer } from "./mla_layer.js";

export interface PartialModel {
  split: Split;
  maps: Mat[]; // per layer: the RoRoPE latent map
  layers: MlaLayer[];
  dir: string; // overlay folder
}

/** RoRoPE from the original model's statistics: the partial-RoPE model of a split. */
export async function buildPartial(c: Conversion, split: Split, sigmaOriginal: Mat[]): Promise<PartialModel> {
  const maps = await c.timed("rorope", () => Promise.all(c.layers.map((l) => c.latentMap(l, sigmaOriginal[l]!, split))));
  const layers = await c.timed("rorope", () => Promise.all(c.layers.map((l) => c.partialLayer(l, maps[l]!, split))));
  const dir = c.overlay(`partial-r${split.ropeDim}-f${split.freqfold}`, c.mlaShape(split, "partial"), layers);
  return { split, maps, layers, dir };
}

export interface FinalModel {
  split: Split;
  layers: MlaLayer[];
  stats: LayerStats[];
  maps: Mat[]; // per layer: the RoRoPE latent map the layer was built with
}

/**
 * BKV-PCA at the split's rank. Statistics come from the partial-RoPE model (the reference), or
 * with --sequential layer by layer from the model whose earlier layers are already converted
 * (then the RoRoPE rotation of each layer is recomputed on those inputs too).
 */
export async function buildFinal(c: Conversion, partial: PartialModel): Promise<FinalModel> {
  const { split } = partial;
  const layers: MlaLayer[] = [];
  const stats: LayerStats[] = [];
  if (!c.options.sequential) {
    const sigma = await c.timed("calibration", () => c.attentionInputs("partial-RoPE model", partial.dir, c.layers));
    const bar = c.reporter.stage("bkv-pca", c.layers.length);
    for (const l of c.layers) {
      const f = await c.timed("bkv-pca", () => c.finalLayer(l, sigma[l]!, partial.maps[l]!, split));
      layers.push(f.layer);
      stats.push(f.stats);
      bar.update(l + 1);
    }
    return { split, layers, stats, maps: partial.maps };
  }
  const maps: Mat[] = [];
  for (const l of c.layers) {
    // Layers from l on are never reached by this pass (it stops at layer l's attention input).
    const stand = c.layers.map((j) => layers[j] ?? zeroMlaLayer(c.source, split.kvLoraRank, split.ropeDim, c.options.qLoraRank));
    const dir = c.overlay(`sequential-${l}`, c.mlaShape(split, "norm-free"), stand);
    const [sigma] = await c.timed("calibration", () => c.attentionInputs(`layer ${l + 1}/${c.layers.length}`, dir, [l]));
    const map = await c.timed("rorope", () => c.latentMap(l, sigma!, split));
    const f = await c.timed("bkv-pca", () => c.finalLayer(l, sigma!, map, split));
    layers.push(f.layer);
    stats.push(f.stats);
    maps.push(map);
  }
  return { split, layers, stats, maps };
}

/** RMSNorm weights for the latents, fit on the converted model's own activations. */
export async function fitLatentNorms(c: Conversion, final: FinalModel): Promise<LatentNorms[]> {
  const { options: o } = c;
  const dir = c.overlay("before-norm", c.mlaShape(final.split, "norm-free"), final.layers);
  const requests = [];
  for (const l of c.layers) {
    requests.push({ layer: l, point: "kv_a", columns: [0, final.split.kvLoraRank] as [number, number], eps: 1e-6 });
    if (o.qLoraRank !== null) requests.push({ layer: l, point: "q_a", eps: 1e-6 });
  }
  const bar = c.reporter.stage("calibration: latent norms", c.plan.calibWindows.length);
  const fits = await rmsNormFits(dir, c.plan.calibWindows, requests, { threads: o.threads, onProgress: (d) => bar.update(d) });
  bar.done();
  const per = o.qLoraRank !== null ? 2 : 1;
  return final.layers.map((_, l) => ({ kvA: fits[l * per]!, ...(per === 2 ? { qA: fits[l * per + 1]! } : {}) }));
}
