// MLA decode kernel benchmark (no Node, no cuBLAS): batch x context x heads with the 512 + 64
// latent, time per call (schedule, attention, combine), GB/s of what must move (the latent cache
// once per 64 heads, queries and outputs), and the ratio to a device-to-device copy measured in
// the same run.   bench_mla_decode [--quick]   (--quick: batch 64 x 8K x 32 heads only)
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "cuda/backend/device_array.h"
#include "cuda/backend/gpu_probe.h"
#include "cuda/kernels/mla_decode.cuh"

using namespace mla;
using namespace mla::cuda;

static float timeMs(cudaEvent_t a, cudaEvent_t b) {
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  return ms;
}

int main(int argc, char** argv) {
  const GpuProbe probe = probeGpu();
  if (probe.state != GpuProbe::State::kPresent) {
    std::printf("%s: %s\n", probe.state == GpuProbe::State::kNoGpu ? "SKIP" : "FAIL", probe.message.c_str());
    return probe.state == GpuProbe::State::kNoGpu ? 77 : 1;  // 77: skipped (ctest's convention)
  }
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  cudaDeviceProp prop;
  cudaGetDeviceProperties(&prop, 0);
  const int L = 512, R = 64, E = L + R;
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);

  // Copy bandwidth: 1 GiB device to device, bytes read + written.
  const size_t copyBytes = size_t(1) << 30;
  DeviceArray<char> a(copyBytes), b(copyBytes);
  cudaMemset(a.get(), 1, copyBytes);
  cudaMemcpy(b.get(), a.get(), copyBytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e0);
  for (int i = 0; i < 10; ++i) cudaMemcpy(b.get(), a.get(), copyBytes, cudaMemcpyDeviceToDevice);
  cudaEventRecord(e1);
  cudaEventSynchronize(e1);
  const double copyGBs = 2.0 * copyBytes * 10 / (timeMs(e0, e1) / 1e3) / 1e9;
  std::printf("%s, %d SMs; device-to-device copy: %.0f GB/s (read + write)\n\n", prop.name, prop.multiProcessorCount, copyGBs);
  std::printf("heads | batch | context | tiles | ctas | time us | GB/s | vs copy\n------|-------|---------|-------|------|---------|------|--------\n");

  std::mt19937 rng(1);
  for (int heads : {16, 32, 128}) {
    for (int batch : {1, 8, 32, 64, 128}) {
      for (int ctx : {1024, 4096, 8192, 32768}) {
        if (quick && !(batch == 64 && ctx == 8192 && heads == 32)) continue;
        const size_t blocksPerSeq = ctx / kMlaBlockSize, blocks = blocksPerSeq * batch;
        const size_t cacheBytes = blocks * kMlaBlockSize * E * sizeof(uint16_t);
        if (cacheBytes > prop.totalGlobalMem / 2) continue;
        DeviceArray<bf16> cache(blocks * kMlaBlockSize * E), q(static_cast<size_t>(batch) * heads * L), qr(static_cast<size_t>(batch) * heads * R),
            out(static_cast<size_t>(batch) * heads * L);
        cudaMemset(cache.get(), 0x3c, cacheBytes);  // small finite bf16 values
        cudaMemset(q.get(), 0x3c, static_cast<size_t>(batch) * heads * L * 2);
        cudaMemset(qr.get(), 0x3c, static_cast<size_t>(batch) * heads * R * 2);
        std::vector<int32_t> tables(blocks);
        std::iota(tables.begin(), tables.end(), 0);
        std::shuffle(tables.begin(), tables.end(), rng);  // pages scattered as a paged pool holds them
        std::vector<int32_t> rowLen(batch, ctx);
        std::vector<MlaSeqRows> seqs;
        for (int b = 0; b < batch; ++b) seqs.push_back({b, b, 1});
        const std::vector<MlaTile> tiles = mlaTiles(seqs, rowLen.data(), heads);
        const int ctas = mlaDecodeCtas(L, R, prop.multiProcessorCount);
        DeviceArray<int32_t> dt, dl, dstart(tiles.size() + 1), dsplits(tiles.size()), dslot(tiles.size());
        DeviceArray<MlaTile> dtiles;
        DeviceArray<MlaWorkSpan> dspans(static_cast<size_t>(ctas));
        dt.upload(tables, nullptr);
        dl.upload(rowLen, nullptr);
        dtiles.upload(tiles, nullptr);
        MlaDecodeParams p;
        p.qLatent = q.get();
        p.qRope = qr.get();
        p.cache = cache.get();
        p.blockTables = dt.get();
        p.rowLength = dl.get();
        p.tiles = dtiles.get();
        p.numTiles = static_cast<int>(tiles.size());
        p.heads = heads;
        p.maxBlocksPerSeq = static_cast<int>(blocksPerSeq);
        p.scale = 0.0722f;
        p.schedule = {dspans.get(), dstart.get(), dsplits.get(), dslot.get(), ctas};
        DeviceArray<float> po(mlaPartialSlots(ctas) * kMlaTileRows * L), pl(mlaPartialSlots(ctas) * kMlaTileRows);
        p.partialOut = po.get();
        p.partialLse = pl.get();
        p.out = out.get();
        mlaDecode(p, L, R, nullptr);  // warm up
        const int iters = 20;
        cudaEventRecord(e0);
        for (int i = 0; i < iters; ++i) mlaDecode(p, L, R, nullptr);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        const double us = timeMs(e0, e1) * 1e3 / iters;
        // Bytes that must move: the latent cache once, the queries in, the outputs out (the schedule
        // reads each page once per tile, i.e. once per 64 heads).
        const double bytes = static_cast<double>(cacheBytes) * ((heads + kMlaTileRows - 1) / kMlaTileRows) + static_cast<double>(batch) * heads * (E + L) * 2;
        const double gbs = bytes / (us / 1e6) / 1e9;
        std::printf("%5d | %5d | %7d | %5d | %4d | %7.1f | %4.0f | %5.1f%%\n", heads, batch, ctx, p.numTiles, ctas, us, gbs, 100.0 * gbs / copyGBs);
      }
    }
  }
  return 0;
}
