#include <climits>

#include "cuda/kernels/sampling.cuh"
#include "mla/philox.h"
#include "cuda/device.cuh"

namespace mla::cuda {

namespace {

constexpr int kThreads = 1024;
constexpr int kMaxTop = 20;

struct ArgMax {
  float value;
  int index;
};

// Larger value wins; ties go to the smaller index (the CPU sampler's order).
__device__ inline ArgMax better(ArgMax a, ArgMax b) {
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

__device__ ArgMax blockArgMax(ArgMax v, ArgMax* scratch) {
  for (int o = 16; o > 0; o >>= 1) {
    ArgMax other{__shfl_xor_sync(0xffffffffu, v.value, o), __shfl_xor_sync(0xffffffffu, v.index, o)};
    v = better(v, other);
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
  __syncthreads();
  ArgMax best = scratch[0];
  for (int w = 1; w < static_cast<int>(blockDim.x >> 5); ++w) best = better(best, scratch[w]);
  return best;
}

// The largest threshold tau in [lo, hi] (as positive-float bit patterns, which order like the
// values) with measure(tau) >= goal, for a measure that falls as tau grows.
template <typename Measure>
__device__ float searchThreshold(uint32_t lo, uint32_t hi, double goal, Measure measure) {
  while (lo < hi) {
    const uint32_t mid = lo + (hi - lo + 1) / 2;
    if (measure(__uint_as_float(mid)) >= goal) lo = mid;
    else hi = mid - 1;
  }
  return __uint_as_float(lo);
}

__global__ void samplingKernel(SamplingKernelParams p) {
  __shared__ float red[kThreads / 32];
  __shared__ ArgMax am[kThreads / 32];
  __shared__ int chosenTop[kMaxTop];
  __shared__ int pick;
  const int r = blockIdx.x, V = p.vocab, tid = threadIdx.x;
  const float* logits = p.logits + static_cast<size_t>(r) * V;
  float* w = p.scratch + static_cast<size_t>(r) * V;

  // Raw distribution: log-sum-exp and the top log-probs.
  float mx = -INFINITY;
  for (int i = tid; i < V; i += blockDim.x) mx = fmaxf(mx, logits[i]);
  mx = blockMax(mx, red);
  float se = 0.0f;
  for (int i = tid; i < V; i += blockDim.x) se += __expf(logits[i] - mx);
  const float lse = mx + logf(blockSum(se, red));
  for (int k = 0; k < p.numTopLogprobs; ++k) {
    ArgMax v{-INFINITY, V};
    for (int i = tid; i < V; i += blockDim.x) {
      bool taken = false;
      for (int j = 0; j < k; ++j) taken |= chosenTop[j] == i;
      if (!taken) v = better(v, ArgMax{logits[i], i});
    }
    v = blockArgMax(v, am);
    if (tid == 0) {
      chosenTop[k] = v.index;
      p.topTokens[r * p.numTopLogprobs + k] = v.index;
      p.topLogprobs[r * p.numTopLogprobs + k] = v.value - lse;
    }
    __syncthreads();
  }

  // Adjusted (logits processors), then penalized logits.
  for (int i = tid; i < V; i += blockDim.x) w[i] = logits[i];
  __syncthreads();
  if (p.biasOffsets) {
    for (int e = p.biasOffsets[r] + tid; e < p.biasOffsets[r + 1]; e += blockDim.x) w[p.biasTokens[e]] += p.biasValues[e];
  }
  __syncthreads();
  if (p.maskRow && p.maskRow[r] >= 0) {
    const uint32_t* allowed = p.maskWords + static_cast<size_t>(p.maskRow[r]) * ((V + 31) / 32);
    for (int i = tid; i < V; i += blockDim.x) if (!((allowed[i >> 5] >> (i & 31)) & 1u)) w[i] = -INFINITY;
  }
  __syncthreads();
  const float rep = p.params[r].repetitionPenalty, pres = p.params[r].presencePenalty, freq = p.params[r].frequencyPenalty;
  for (int e = p.penaltyOffsets[r] + tid; e < p.penaltyOffsets[r + 1]; e += blockDim.x) {
    const int t = p.penaltyTokens[e], count = p.penaltyCounts[e];
    float z = w[t];
    if (rep != 1.0f) z = z > 0 ? z / rep : z * rep;
    z -= freq * static_cast<float>(count) + (count > 0 ? pres : 0.0f);
    w[t] = z;
  }
  __syncthreads();

  int token;
  const float temperature = p.params[r].temperature;
  if (temperature <= 1e-5f) {
    ArgMax v{-INFINITY, V};
    for (int i = tid; i < V; i += blockDim.x) v = better(v, ArgMax{w[i], i});
    token = blockArgMax(v, am).index;
  } else {
    // Weights exp((z - zmax) / T): the most likely token weighs 1.
    float zm = -INFINITY;
    for (int i = tid; i < V; i += blockDim.x) zm = fmaxf(zm, w[i]);
    zm = blockMax(zm, red);
    const float invT = 1.0f / temperature;
    for (int i = tid; i < V; i += blockDim.x) w[i] = __expf((w[i] - zm) * invT);
    __syncthreads();
    float tau = fmaxf(p.params[r].minP, 0.0f);  // min-p: w >= min_p
    const int topK = p.params[r].topK;
    if (topK > 0 && topK < V) {  // the k-th largest weight
      tau = fmaxf(tau, searchThreshold(0u, __float_as_uint(1.0f), static_cast<double>(topK), [&](float th) {
        int c = 0;
        for (int i = tid; i < V; i += blockDim.x) c += w[i] >= th;
        return static_cast<double>(blockSum(static_cast<float>(c), red));
      }));
    }
    auto mass = [&](float th) {
      float m = 0.0f;
      for (int i = tid; i < V; i += blockDim.x) m += w[i] >= th ? w[i] : 0.0f;
      return static_cast<double>(blockSum(m, red));
    };
    const double kept = mass(tau);
    const float topP = p.params[r].topP;
    if (topP < 1.0f) tau = searchThreshold(__float_as_uint(tau), __float_as_uint(1.0f), topP * kept * (1.0 - 1e-7), mass);
    const double total = mass(tau);
    // Inverse CDF in index order over the kept tokens, with a block-wide running prefix sum.
    const double goal = mla::philoxUniform(p.params[r].seed, p.counter[r]) * total;
    if (tid == 0) pick = INT_MAX;
    double base = 0.0;
    __syncthreads();
    for (int start = 0; start < V; start += blockDim.x) {
      const int i = start + tid;
      const float x = i < V && w[i] > 0.0f && w[i] >= tau ? w[i] : 0.0f;
      float v = x;  // inclusive scan within the warp
      for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(0xffffffffu, v, o);
        if ((tid & 31) >= o) v += y;
      }
      if ((tid & 31) == 31) red[tid >> 5] = v;
      __syncthreads();
      float before = 0.0f, chunk = 0.0f;
      for (int k = 0; k < static_cast<int>(blockDim.x >> 5); ++k) {
        if (k < (tid >> 5)) before += red[k];
        chunk += red[k];
      }
      if (x > 0.0f && base + before + v > goal) atomicMin(&pick, i);
      base += chunk;
      __syncthreads();
      if (pick != INT_MAX) break;  // the same shared value for every thread: a uniform exit
    }
    token = pick;
    if (token == INT_MAX) {  // rounding left the goal at the very end: take the last kept token
      ArgMax v{-INFINITY, -1};
      for (int i = tid; i < V; i += blockDim.x) if (w[i] > 0.0f && w[i] >= tau) v = better(v, ArgMax{static_cast<float>(i), i});
      token = blockArgMax(v, am).index;
    }
  }
  if (tid == 0) {
    p.tokens[r] = token;
    p.logprobs[r] = logits[token] - lse;
  }
}

__global__ void targetLogprobKernel(const float* logits, const int32_t* targets, int vocab, float* out) {
  __shared__ float red[32];
  const float* row = logits + static_cast<size_t>(blockIdx.x) * vocab;
  float mx = -INFINITY;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) mx = fmaxf(mx, row[i]);
  mx = blockMax(mx, red);
  float se = 0.0f;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) se += __expf(row[i] - mx);
  const float lse = mx + logf(blockSum(se, red));
  if (threadIdx.x == 0) out[blockIdx.x] = row[targets[blockIdx.x]] - lse;
}

}  // namespace

void sampleTokens(const SamplingKernelParams& p, cudaStream_t stream) {
  if (p.rows == 0) return;
  if (p.numTopLogprobs > kMaxTop) throw Error("sampleTokens: at most 20 top log-probs");
  MLA_LAUNCH(samplingKernel, p.rows, kThreads, 0, stream, p);
  MLA_CUDA_CHECK(cudaGetLastError());
}

void targetLogprobs(const float* logits, const int32_t* targets, int rows, int vocab, float* out, cudaStream_t stream) {
  if (rows == 0) return;
  MLA_LAUNCH(targetLogprobKernel, rows, 1024, 0, stream, logits, targets, vocab, out);
  MLA_CUDA_CHECK(cudaGetLastError());
}

}  // namespace mla::cuda
