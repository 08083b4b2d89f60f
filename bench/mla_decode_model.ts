// A bytes-moved model of one MLA decode step (512 + 64 latent) on an H200, for today's kernel
// (native/cuda/kernels/mla_decode_kernel.cuh) and the kernel it replaced (16 heads per CTA,
// register-staged page loads). It prints, per batch x context x heads: bytes the kernel moves, the
// time the model predicts and the bandwidth that is as a share of the copy bandwidth.
//   node dist/bench/mla_decode_model.js [--copy-gbs 4300]
// Assumptions (printed with the table): 132 SMs at 1.98 GHz; HBM3e copy bandwidth 4,300 GB/s (about
// 90% of the 4.8 TB/s peak, what a device-to-device copy reaches); mma.sync bf16 at half of the
// Hopper tensor-core peak, 495 TFLOP/s, 3.75 TFLOP/s per SM; a loaded DRAM latency of 0.9 µs.

const L = 512, R = 64, E = L + R;
const SMS = 132;
const flag = process.argv.indexOf("--copy-gbs");
const copyGBs = flag > 0 ? Number(process.argv[flag + 1]) : 4300;
const MMA_FLOPS_PER_SM = 495e12 / SMS;
const LATENCY_S = 0.9e-6;
const MMA_FLOP = 2 * 16 * 8 * 16;
const ceil = (a: number, b: number) => Math.ceil(a / b);

interface Prediction { bytes: number; seconds: number; ctas: number }

/** Today's kernel: 64-row tiles, 32-key chunks through a 3-stage cp.async pipeline, persistent CTAs. */
function current(batch: number, ctx: number, heads: number): Prediction {
  const tilesPerToken = ceil(heads, 64), rowsPerTile = Math.min(heads, 64);
  const chunks = ceil(ctx, 32), tiles = batch * tilesPerToken;
  const cache = tiles * ctx * E * 2;                 // each page once per tile
  const qo = batch * heads * (E + L) * 2;            // queries in, outputs out
  const totalCost = tiles * (chunks + 1);
  const budget = Math.max(4, ceil(totalCost, SMS));
  const sharedTiles = Math.min(tiles, SMS);          // at most one tile cut at each CTA boundary
  const partial = sharedTiles * 2 * rowsPerTile * (L + 1) * 4 * 2;  // ~2 parts each, written and read back
  const bytes = cache + qo + partial;
  // Per chunk a warp pair (both key halves) runs 2 x (E/16 x 2 + 2 x L/16) mma for each 16 rows.
  const mmaPerChunk = ceil(rowsPerTile, 16) * 2 * (2 * (E / 16) + 2 * (L / 16));
  const flopsPerSm = budget * mmaPerChunk * MMA_FLOP;
  const bytesPerSm = bytes / SMS;
  // Two chunks (2 x 36.9 KB) in flight per SM hide the latency: the SM's share of the copy
  // bandwidth is the limit, or its tensor cores; copies and math overlap.
  const inflight = 2 * 32 * E * 2;
  const smBandwidth = Math.min(copyGBs * 1e9 / SMS, inflight / LATENCY_S);
  const seconds = Math.max(bytesPerSm / smBandwidth, flopsPerSm / MMA_FLOPS_PER_SM) + 6e-6;  // + schedule and combine launches
  return { bytes, seconds, ctas: SMS };
}

/** The kernel it replaced: a CTA per (row, 16 heads, split), one register-staged page buffer, 2 CTAs per SM. */
function previous(batch: number, ctx: number, heads: number): Prediction {
  const groups = ceil(heads, 16), pages = ceil(ctx, 64);
  const base = batch * groups;
  const splits = Math.min(pages, 64, Math.max(1, ceil(2 * SMS, base)));
  const ctas = base * splits;
  const cache = groups * batch * ctx * E * 2;        // each page once per 16 heads
  const qo = batch * heads * (E + L) * 2 + (splits > 1 ? batch * heads * splits * (L + 1) * 4 * 2 : 0);
  const bytes = cache + qo;
  // A page is loaded by 128 threads, 16 bytes each in flight (about 4 KB), then computed: no overlap.
  const pageBytes = 64 * E * 2, inflightPerCta = 128 * 16 * 2;
  const loadSeconds = (pageBytes / inflightPerCta) * LATENCY_S;
  const pageFlops = 4 * (2 * (E / 16) + 4 * (L / 4 / 8)) * MMA_FLOP;
  const pageSeconds = loadSeconds + pageFlops / (MMA_FLOPS_PER_SM / 2);  // two CTAs share an SM's tensor cores
  const pagesPerCta = ceil(pages, splits);
  const waves = ceil(ctas, 2 * SMS);
  const seconds = waves * pagesPerCta * pageSeconds + (splits > 1 ? 3e-6 : 0) + 3e-6;
  return { bytes, seconds, ctas };
}

const rows: string[] = [];
rows.push("| heads | batch | context | today: bytes | µs | GB/s | vs copy | before: bytes | µs | GB/s | vs copy | speed-up |");
rows.push("|---|---|---|---|---|---|---|---|---|---|---|---|");
for (const heads of [16, 32, 128]) {
  for (const batch of [1, 8, 64, 128]) {
    for (const ctx of [1024, 8192, 32768]) {
      const a = current(batch, ctx, heads), b = previous(batch, ctx, heads);
      const fmt = (p: Prediction) => {
        const gbs = p.bytes / p.seconds / 1e9;
        return `${(p.bytes / 1e6).toFixed(1)} MB | ${(p.seconds * 1e6).toFixed(1)} | ${gbs.toFixed(0)} | ${((100 * gbs) / copyGBs).toFixed(0)}%`;
      };
      rows.push(`| ${heads} | ${batch} | ${ctx} | ${fmt(a)} | ${fmt(b)} | ${(b.seconds / a.seconds).toFixed(1)}x |`);
    }
  }
}
process.stdout.write(`MLA decode step model, 512 + 64, H200 (${SMS} SMs, copy ${copyGBs} GB/s, mma.sync ${495} TFLOP/s, DRAM latency ${(LATENCY_S * 1e6).toFixed(1)} µs)\n`);
process.stdout.write(rows.join("\n") + "\n");
