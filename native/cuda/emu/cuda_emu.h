// The CUDA programming model on the CPU: what our .cu/.cuh sources need to compile as host C++ and
// run, in the spirit of Numba's CUDA simulator and Triton's interpreter. Included (through
// cuda/common.h) instead of <cuda_runtime.h> and <cuda_bf16.h> when MLA_CUDA_EMULATION is set.
//
// Execution: a launch runs the grid's blocks one after another on a few worker threads; the threads
// of one block are cooperative fibers on one worker. A fiber runs until it reaches a block barrier
// (__syncthreads), a warp collective (shuffles, votes, __syncwarp, mma, ldmatrix) or an async-copy
// wait; there it yields, so every block barrier and warp exchange is real: a collective completes
// only when all its lanes have arrived, and a missing barrier lets threads run ahead into data
// that is not there yet. Divergent barriers and collectives whose lanes never arrive are reported
// as deadlocks. __shared__ variables are per worker thread (one block at a time on each; they keep
// their values from block to block), dynamic shared memory is per block and filled with 0xFF (NaN
// as bf16 and fp32) at block start, and
// device allocations are filled with 0xFF too. Streams are synchronous; events read the host clock.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- qualifiers ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define __constant__ static

// ---- vector types ----
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

constexpr int warpSize = 32;

// ---- bf16 ----
struct __nv_bfloat16 {
  uint16_t bits;
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline float __bfloat162float(__nv_bfloat16 v) {
  const uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round to nearest even, as the hardware conversion does; NaN stays NaN.
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<uint16_t>(u >> 16)};
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16(a), __float2bfloat16(b)}; }

// ---- math and bit intrinsics ----
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float exp2f(float x) { return std::exp2(x); }
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline int __float_as_int(float f) { return static_cast<int>(__float_as_uint(f)); }
inline float __int_as_float(int i) { return __uint_as_float(static_cast<unsigned>(i)); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(unsigned v) { return __builtin_ffs(static_cast<int>(v)); }
inline int __clz(unsigned v) { return v ? __builtin_clz(v) : 32; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline size_t min(size_t a, size_t b) { return a < b ? a : b; }
inline size_t max(size_t a, size_t b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

// ---- the runtime API subset the backend, tests and benchmarks use ----
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorLaunchFailure = 719,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaDeviceAttr { cudaDevAttrMaxThreadsPerBlock = 1, cudaDevAttrMaxSharedMemoryPerBlockOptin = 97, cudaDevAttrMultiProcessorCount = 16 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
constexpr unsigned cudaStreamNonBlocking = 1;
using cudaStream_t = struct CUstream_st*;
using cudaEvent_t = struct CUevent_st*;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  int multiProcessorCount;
  int major, minor;
  size_t sharedMemPerBlockOptin;
  int maxThreadsPerBlock;
};

const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize();
// Clears a sticky launch failure (allocations stay: the emulator frees memory only by cudaFree).
cudaError_t cudaDeviceReset();
cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <typename T>
cudaError_t cudaMalloc(T** ptr, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(ptr), bytes);
}
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaFuncSetAttributeImpl(const void* func, cudaFuncAttribute attr, int value);
template <typename F>
cudaError_t cudaFuncSetAttribute(F* func, cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttributeImpl(reinterpret_cast<const void*>(func), attr, value);
}
// Blocks per SM as an H100/H200 would hold them by threads and shared memory (registers not modeled).
template <typename F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, F*, int blockSize, size_t sharedBytes) {
  const size_t bySmem = sharedBytes ? (233472 / (sharedBytes + 1024)) : 32;  // an SM's 228 KiB, 1 KiB reserved per block
  const size_t byThreads = blockSize > 0 ? 2048 / static_cast<size_t>(blockSize) : 0;
  *blocks = static_cast<int>(bySmem < byThreads ? bySmem : byThreads);
  return cudaSuccess;
}

namespace cuemu {

// The calling fiber's view of the grid.
struct ThreadContext {
  uint3 threadIdx;
  uint3 blockIdx;
  dim3 blockDim;
  dim3 gridDim;
};
ThreadContext& here();
unsigned char* dynamicShared();

// Block barrier; warp collectives: each lane gives 32 bits (the low half of `value`), gets the value
// of lane `source(lane)`'s argument back. `kind` names the operation in diagnostics.
void syncthreads();
unsigned warpExchange(const char* kind, unsigned mask, unsigned value, int sourceLane);
unsigned warpBallot(unsigned mask, bool predicate);
void syncwarp(unsigned mask);
int laneId();

// A launch: runs body() as every thread of every block; returns the launch error, if any.
cudaError_t launch(const char* name, const void* func, dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream, std::function<void()> body);

// The emulated device's memory: true for host addresses the emulator handed out by cudaMalloc.
bool isDevicePointer(const void* p);
// cudaMalloc calls so far (tests: a step within the limits allocates nothing).
size_t mallocCount();
// While on, launches check their configuration and run nothing (tests of launch shapes too big to run).
void setValidateOnly(bool on);

}  // namespace cuemu

#define threadIdx (::cuemu::here().threadIdx)
#define blockIdx (::cuemu::here().blockIdx)
#define blockDim (::cuemu::here().blockDim)
#define gridDim (::cuemu::here().gridDim)

inline void __syncthreads() { cuemu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { cuemu::syncwarp(mask); }
inline unsigned __ballot_sync(unsigned mask, int predicate) { return cuemu::warpBallot(mask, predicate != 0); }
inline int __any_sync(unsigned mask, int predicate) { return (cuemu::warpBallot(mask, predicate != 0) & mask) != 0; }
inline int __all_sync(unsigned mask, int predicate) { return (cuemu::warpBallot(mask, predicate != 0) & mask) == mask; }
inline unsigned __activemask() { return 0xffffffffu; }

namespace cuemu {
// A shuffle of any 4- or 8-byte value: 8-byte values travel as two 32-bit exchanges, as on hardware.
template <typename T>
T shuffle(const char* kind, unsigned mask, T value, int sourceLane) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 4 or 8 bytes");
  uint32_t words[sizeof(T) / 4];
  std::memcpy(words, &value, sizeof(T));
  for (auto& w : words) w = warpExchange(kind, mask, w, sourceLane);
  T out;
  std::memcpy(&out, words, sizeof(T));
  return out;
}
// The source lane of a shuffle within segments of `width` lanes; out-of-segment reads keep the own value.
inline int shuffleSource(int lane, int target, int width, bool clampToOwn) {
  const int base = lane & ~(width - 1);
  if (clampToOwn && (target < base || target >= base + width)) return lane;
  return base + (target & (width - 1));
}
}  // namespace cuemu

template <typename T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return cuemu::shuffle("__shfl_sync", mask, v, cuemu::shuffleSource(cuemu::laneId(), src, width, false));
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int laneMask, int width = 32) {
  const int lane = cuemu::laneId();
  return cuemu::shuffle("__shfl_xor_sync", mask, v, cuemu::shuffleSource(lane, lane ^ laneMask, width, true));
}
template <typename T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = cuemu::laneId();
  return cuemu::shuffle("__shfl_up_sync", mask, v, cuemu::shuffleSource(lane, lane - static_cast<int>(delta), width, true));
}
template <typename T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = cuemu::laneId();
  return cuemu::shuffle("__shfl_down_sync", mask, v, cuemu::shuffleSource(lane, lane + static_cast<int>(delta), width, true));
}

// Atomics: blocks run on several worker threads, so these are real atomic operations.
template <typename T>
T atomicAdd(T* address, T value) {
  if constexpr (std::is_integral_v<T>) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
  } else {
    T old, desired;
    __atomic_load(address, &old, __ATOMIC_RELAXED);
    do {
      desired = old + value;
    } while (!__atomic_compare_exchange(address, &old, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return old;
  }
}
template <typename T>
T atomicMin(T* address, T value) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (value < old && !__atomic_compare_exchange_n(address, &old, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicMax(T* address, T value) {
  T old = __atomic_load_n(address, __ATOMIC_RELAXED);
  while (value > old && !__atomic_compare_exchange_n(address, &old, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return old;
}
template <typename T>
T atomicExch(T* address, T value) {
  return __atomic_exchange_n(address, value, __ATOMIC_RELAXED);
}
template <typename T>
T atomicCAS(T* address, T compare, T value) {
  __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;
}
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() {}

// kernel<<<grid, block, shared, stream>>>(args...) becomes MLA_LAUNCH(kernel, grid, block, shared, stream, args...).
#define MLA_LAUNCH(kernel, grid, block, shared, stream, ...) ::cuemu::launchKernel(#kernel, (kernel), (grid), (block), (shared), (stream), __VA_ARGS__)
namespace cuemu {
// The arguments are converted to the kernel's parameter types once, at the launch, as CUDA does;
// every thread then gets its own copy.
template <typename... P, typename... A>
cudaError_t launchKernel(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t stream, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "a kernel launch needs one argument per parameter");
  const std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  return launch(name, reinterpret_cast<const void*>(kernel), grid, block, sharedBytes, stream, [kernel, &params] { std::apply(kernel, params); });
}
}  // namespace cuemu
// extern __shared__ T name[] becomes MLA_DYNAMIC_SHARED(T, name).
#define MLA_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::cuemu::dynamicShared())
