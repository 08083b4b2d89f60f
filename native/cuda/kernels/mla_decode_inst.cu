// The MLA decode kernel for every shape in mla/kernel_shapes.h, its scheduling and combine kernels,
// the host-side tiling of a step's rows, and the dispatch.
#include <algorithm>
#include <atomic>

#include "cuda/kernels/mla_decode_kernel.cuh"
#include "mla/kernel_shapes.h"

namespace mla::cuda {

namespace {

constexpr int kOverheadChunks = 1;   // a tile costs its chunks plus this much (Q load, epilogue)
constexpr int kMinChunksPerCta = 4;  // spans shorter than this cost more in combining than they save
constexpr int kScheduleThreads = 256;

__device__ int chunksOf(const MlaTile& t) { return (t.length + kMlaChunk - 1) / kMlaChunk; }

// Inclusive prefix sum over the block; `total` gets the block's sum. scratch: [32] ints.
__device__ int blockInclusiveScan(int v, int* scratch, int& total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int o = 1; o < 32; o <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += y;
  }
  if (lane == 31) scratch[warp] = v;
  __syncthreads();
  int before = 0;
  total = 0;
  for (int w = 0; w < warps; ++w) {
    if (w < warp) before += scratch[w];
    total += scratch[w];
  }
  __syncthreads();
  return before + v;
}

struct Position {
  int tile, chunk;
};

// The (tile, chunk) at cost position p: positions [start[t], start[t] + overhead) are tile t's
// overhead, the next ones its chunks. At or past the end: (numTiles, 0).
__device__ Position locate(const int32_t* start, int numTiles, int p) {
  if (p >= start[numTiles]) return {numTiles, 0};
  int lo = 0, hi = numTiles - 1;  // the last tile with start <= p
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (start[mid] <= p) lo = mid;
    else hi = mid - 1;
  }
  return {lo, max(0, p - start[lo] - kOverheadChunks)};
}

// One CTA: the tiles' cost prefix, each persistent CTA's span of equal cost, and for each tile the
// number of CTAs that share it and the first of its partial-result slots.
__global__ void mlaScheduleKernel(MlaDecodeParams p) {
  __shared__ int scratch[32];
  const int T = p.numTiles, G = p.schedule.numCtas;
  int32_t* start = p.schedule.tileStart;
  int base = 0;
  for (int first = 0; first < T; first += blockDim.x) {
    const int t = first + static_cast<int>(threadIdx.x);
    const int cost = t < T ? chunksOf(p.tiles[t]) + kOverheadChunks : 0;
    int total;
    const int inclusive = blockInclusiveScan(cost, scratch, total);
    if (t < T) start[t] = base + inclusive - cost;
    base += total;
  }
  if (threadIdx.x == 0) start[T] = base;
  __syncthreads();
  const int budget = max(kMinChunksPerCta, (base + G - 1) / G);
  for (int i = threadIdx.x; i < G; i += blockDim.x) {
    const long long from = static_cast<long long>(i) * budget, to = from + budget;
    const Position b = locate(start, T, static_cast<int>(min(from, static_cast<long long>(base))));
    const Position e = locate(start, T, static_cast<int>(min(to, static_cast<long long>(base))));
    const int firstCta = b.tile < T ? (start[b.tile] + kOverheadChunks) / budget : i;
    p.schedule.spans[i] = MlaWorkSpan{b.tile, b.chunk, e.tile, e.chunk, max(0, i - firstCta)};
  }
  int slots = 0;
  for (int first = 0; first < T; first += blockDim.x) {
    const int t = first + static_cast<int>(threadIdx.x);
    const int splits = t < T ? (start[t + 1] - 1) / budget - (start[t] + kOverheadChunks) / budget + 1 : 0;
    const int used = splits > 1 ? splits : 0;
    int total;
    const int inclusive = blockInclusiveScan(used, scratch, total);
    if (t < T) {
      p.schedule.tileSplits[t] = splits;
      p.schedule.tileSlot[t] = slots + inclusive - used;
    }
    slots += total;
  }
}

// Merges the parts of each shared tile, row by row, by their log-sum-exp: out = sum_j w_j O_j / sum_j w_j,
// w_j = exp(lse_j - max lse). One block per tile; unshared tiles have nothing to do.
__global__ void mlaCombineKernel(MlaDecodeParams p, int L) {
  const int ti = blockIdx.x, splits = p.schedule.tileSplits[ti];
  if (splits <= 1) return;
  const MlaTile t = p.tiles[ti];
  const int slot = p.schedule.tileSlot[ti], rows = t.numTokens * t.numHeads;
  for (int r = 0; r < rows; ++r) {
    float m = -INFINITY;
    for (int j = 0; j < splits; ++j) m = fmaxf(m, p.partialLse[static_cast<size_t>(slot + j) * kMlaTileRows + r]);
    float total = 0.0f;
    for (int j = 0; j < splits; ++j) {
      const float x = p.partialLse[static_cast<size_t>(slot + j) * kMlaTileRows + r];
      total += x == -INFINITY ? 0.0f : __expf(x - m);
    }
    const float inv = total > 0 ? 1.0f / total : 0.0f;
    const int token = t.firstRow + r / t.numHeads, head = t.firstHead + r % t.numHeads;
    bf16* out = p.out + (static_cast<size_t>(token) * p.heads + head) * L;
    for (int c = threadIdx.x; c < L; c += blockDim.x) {
      float acc = 0.0f;
      for (int j = 0; j < splits; ++j) {
        const float x = p.partialLse[static_cast<size_t>(slot + j) * kMlaTileRows + r];
        if (x != -INFINITY) acc += __expf(x - m) * p.partialOut[(static_cast<size_t>(slot + j) * kMlaTileRows + r) * L + c];
      }
      out[c] = __float2bfloat16(acc * inv);
    }
  }
}

// Three chunk buffers where the device lets a block have that much shared memory, else two.
template <int L, int R>
int stagesFor(int device) {
  int optin = 0;
  MLA_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return static_cast<size_t>(optin) >= detail::Smem<L, R, 3>::kBytes ? 3 : 2;
}

template <int L, int R, int kStages>
void launchDecode(const MlaDecodeParams& p, cudaStream_t stream) {
  const size_t bytes = detail::Smem<L, R, kStages>::kBytes;
  const auto kernel = detail::mlaDecodeKernel<L, R, kStages>;
  // The shared-memory opt-in is per device: once per instantiation and device.
  static std::atomic<uint64_t> configured{0};
  int device = 0;
  MLA_CUDA_CHECK(cudaGetDevice(&device));
  const uint64_t bit = uint64_t(1) << (device & 63);
  if (!(configured.load() & bit)) {
    MLA_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
    configured.fetch_or(bit);
  }
  MLA_LAUNCH(kernel, p.schedule.numCtas, detail::kThreads, bytes, stream, p);
  MLA_CUDA_CHECK(cudaGetLastError());
}

template <int L, int R>
void launchDecode(const MlaDecodeParams& p, cudaStream_t stream) {
  int device = 0;
  MLA_CUDA_CHECK(cudaGetDevice(&device));
  if (stagesFor<L, R>(device) == 3) launchDecode<L, R, 3>(p, stream);
  else launchDecode<L, R, 2>(p, stream);
}

template <int L, int R>
int ctasPerSm() {
  int device = 0, n = 0;
  MLA_CUDA_CHECK(cudaGetDevice(&device));
  if (stagesFor<L, R>(device) == 3) {
    MLA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, detail::mlaDecodeKernel<L, R, 3>, detail::kThreads, detail::Smem<L, R, 3>::kBytes));
  } else {
    MLA_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, detail::mlaDecodeKernel<L, R, 2>, detail::kThreads, detail::Smem<L, R, 2>::kBytes));
  }
  return std::max(1, n);
}

}  // namespace

std::vector<MlaTile> mlaTiles(const std::vector<MlaSeqRows>& seqs, const int32_t* rowLength, int heads) {
  const int perHeads = std::min(heads, kMlaTileRows), perTokens = std::max(1, kMlaTileRows / perHeads);
  std::vector<MlaTile> tiles;
  for (const MlaSeqRows& s : seqs) {
    for (int h = 0; h < heads; h += perHeads) {
      for (int k = 0; k < s.numTokens; k += perTokens) {
        const int n = std::min(perTokens, s.numTokens - k);
        tiles.push_back(MlaTile{s.seq, s.firstRow + k, n, h, std::min(perHeads, heads - h), rowLength[s.firstRow + k + n - 1]});
      }
    }
  }
  return tiles;
}

size_t mlaMaxTiles(int maxTokens, int maxSeqs, int heads) {
  const int perHeads = std::min(heads, kMlaTileRows);
  return static_cast<size_t>((heads + perHeads - 1) / perHeads) * (static_cast<size_t>(maxTokens) + maxSeqs);
}

bool mlaDecodeSupports(int kvLoraRank, int qkRopeDim) {
#define MLA_CHECK_SHAPE(L, R) \
  if (kvLoraRank == L && qkRopeDim == R) return true;
  MLA_FOR_EACH_DECODE_SHAPE(MLA_CHECK_SHAPE)
#undef MLA_CHECK_SHAPE
  return false;
}

static Error unbuilt(int kvLoraRank, int qkRopeDim) {
  return Error("the CUDA MLA decode kernel is not built for kv_lora_rank " + std::to_string(kvLoraRank) + " with qk_rope_head_dim " +
               std::to_string(qkRopeDim) + " (see native/include/mla/kernel_shapes.h)");
}

int mlaDecodeCtas(int kvLoraRank, int qkRopeDim, int numSms) {
#define MLA_CTAS_SHAPE(L, R) \
  if (kvLoraRank == L && qkRopeDim == R) return numSms * ctasPerSm<L, R>();
  MLA_FOR_EACH_DECODE_SHAPE(MLA_CTAS_SHAPE)
#undef MLA_CTAS_SHAPE
  throw unbuilt(kvLoraRank, qkRopeDim);
}

void mlaSchedule(const MlaDecodeParams& p, cudaStream_t stream) {
  MLA_LAUNCH(mlaScheduleKernel, 1, kScheduleThreads, 0, stream, p);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void mlaDecode(const MlaDecodeParams& p, int kvLoraRank, int qkRopeDim, cudaStream_t stream) {
  if (p.numTiles == 0) return;
  if (!mlaDecodeSupports(kvLoraRank, qkRopeDim)) throw unbuilt(kvLoraRank, qkRopeDim);
  mlaSchedule(p, stream);
  mlaDecodeScheduled(p, kvLoraRank, qkRopeDim, stream);
}

void mlaDecodeScheduled(const MlaDecodeParams& p, int kvLoraRank, int qkRopeDim, cudaStream_t stream) {
  if (p.numTiles == 0) return;
  if (!mlaDecodeSupports(kvLoraRank, qkRopeDim)) throw unbuilt(kvLoraRank, qkRopeDim);
#define MLA_LAUNCH_SHAPE(L, R) \
  if (kvLoraRank == L && qkRopeDim == R) launchDecode<L, R>(p, stream);
  MLA_FOR_EACH_DECODE_SHAPE(MLA_LAUNCH_SHAPE)
#undef MLA_LAUNCH_SHAPE
  MLA_LAUNCH(mlaCombineKernel, p.numTiles, 256, 0, stream, p, kvLoraRank);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla::cuda
