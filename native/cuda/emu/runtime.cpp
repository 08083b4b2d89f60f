// The emulator's runtime: devices, memory on the host heap, synchronous streams, events on the
// host clock, and kernel launches with the hardware's limits checked (block size, grid dimensions,
// dynamic shared memory and its opt-in, per device).
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "cuda/emu/block.h"

namespace {

size_t envNumber(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? static_cast<size_t>(std::strtoull(v, nullptr, 10)) : fallback;
}

constexpr size_t kDefaultSharedLimit = 48 * 1024;
// H100/H200: 227 KiB (232,448 bytes) per block; MLA_EMU_SHARED_OPTIN_KIB=163 is an A100.
const size_t kOptInSharedLimit = envNumber("MLA_EMU_SHARED_OPTIN_KIB", 227) * 1024;

struct Runtime {
  std::mutex mutex;
  const int devices = static_cast<int>(envNumber("MLA_EMU_DEVICES", 1));
  const int sms = static_cast<int>(envNumber("MLA_EMU_SMS", 16));
  const size_t memory = envNumber("MLA_EMU_MEMORY_MIB", 16384) << 20;
  std::map<const void*, size_t> allocations;  // base -> bytes
  size_t allocated = 0;
  size_t mallocs = 0;
  std::map<std::pair<int, const void*>, size_t> sharedOptIn;  // (device, kernel) -> bytes
  cudaError_t sticky = cudaSuccess;
  bool validateOnly = false;
  std::string failure;  // the message of a failed launch
};

Runtime& rt() {
  static Runtime r;
  return r;
}

thread_local int tDevice = 0;
thread_local cudaError_t tLastError = cudaSuccess;

cudaError_t fail(cudaError_t e) {
  tLastError = e;
  return e;
}

// Worker threads that run blocks of a launch beside the launching thread.
class Workers {
 public:
  static Workers& get() {
    static Workers w;
    return w;
  }

  // Runs run(block) for block in [0, count) on all workers; returns the first error message.
  std::string forEach(size_t count, const std::function<void(size_t)>& run) {
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = &run;
    count_ = count;
    next_ = 0;
    error_.clear();
    busy_ = static_cast<int>(threads_.size());
    ++generation_;
    wake_.notify_all();
    lock.unlock();
    work();
    lock.lock();
    done_.wait(lock, [&] { return busy_ == 0; });
    job_ = nullptr;
    return error_;
  }

 private:
  Workers() {
    const size_t n = envNumber("MLA_EMU_THREADS", std::max(1u, std::min(8u, std::thread::hardware_concurrency())));
    for (size_t i = 1; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~Workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      wake_.notify_all();
    }
    for (auto& t : threads_) t.join();
  }

  void loop() {
    unsigned long seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      lock.unlock();
      work();
      lock.lock();
      if (--busy_ == 0) done_.notify_all();
    }
  }

  void work() {
    for (;;) {
      size_t b;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_.empty() || next_ >= count_) return;
        b = next_++;
      }
      try {
        (*job_)(b);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (error_.empty()) error_ = e.what();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> threads_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t count_ = 0, next_ = 0;
  int busy_ = 0;
  unsigned long generation_ = 0;
  bool stop_ = false;
  std::string error_;
};

}  // namespace

namespace cuemu {

bool isDevicePointer(const void* p) {
  std::lock_guard<std::mutex> lock(rt().mutex);
  auto it = rt().allocations.upper_bound(p);
  if (it == rt().allocations.begin()) return false;
  --it;
  return static_cast<const char*>(p) < static_cast<const char*>(it->first) + it->second;
}

void setValidateOnly(bool on) {
  std::lock_guard<std::mutex> lock(rt().mutex);
  rt().validateOnly = on;
}

size_t mallocCount() {
  std::lock_guard<std::mutex> lock(rt().mutex);
  return rt().mallocs;
}

cudaError_t launch(const char* name, const void* func, dim3 grid, dim3 block, size_t sharedBytes, cudaStream_t, std::function<void()> body) {
  Runtime& r = rt();
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    if (r.sticky != cudaSuccess) return fail(r.sticky);
  }
  const size_t threads = static_cast<size_t>(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 ||
      grid.z > 65535) {
    std::fprintf(stderr, "[cuda-emu] %s: invalid launch configuration grid (%u, %u, %u) block (%u, %u, %u)\n", name, grid.x, grid.y, grid.z, block.x,
                 block.y, block.z);
    return fail(cudaErrorInvalidConfiguration);
  }
  size_t limit = kDefaultSharedLimit;
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.sharedOptIn.find({tDevice, func});
    if (it != r.sharedOptIn.end()) limit = std::max(limit, it->second);
  }
  if (sharedBytes > limit) {
    std::fprintf(stderr, "[cuda-emu] %s: %zu bytes of dynamic shared memory on device %d, above its limit of %zu (opt in with cudaFuncSetAttribute)\n",
                 name, sharedBytes, tDevice, limit);
    return fail(cudaErrorInvalidValue);
  }
  {
    std::lock_guard<std::mutex> lock(r.mutex);
    if (r.validateOnly) return cudaSuccess;
  }
  static std::mutex launchMutex;  // __shared__ variables are per worker: one launch at a time
  std::lock_guard<std::mutex> serial(launchMutex);
  const size_t count = static_cast<size_t>(grid.x) * grid.y * grid.z;
  const std::string error = Workers::get().forEach(count, [&](size_t b) {
    const uint3 index{static_cast<unsigned>(b % grid.x), static_cast<unsigned>(b / grid.x % grid.y), static_cast<unsigned>(b / (grid.x * grid.y))};
    try {
      currentBlock().run(body, index, grid, block, sharedBytes);
    } catch (const std::exception& e) {
      throw std::runtime_error(std::string(name) + " block (" + std::to_string(index.x) + ", " + std::to_string(index.y) + ", " +
                               std::to_string(index.z) + "): " + e.what());
    }
  });
  if (!error.empty()) {
    std::fprintf(stderr, "[cuda-emu] %s\n", error.c_str());
    std::lock_guard<std::mutex> lock(r.mutex);
    r.sticky = cudaErrorLaunchFailure;
    r.failure = "kernel failed under emulation: " + error;
    return fail(cudaErrorLaunchFailure);
  }
  return cudaSuccess;
}

}  // namespace cuemu

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure: {
      static thread_local std::string message;
      std::lock_guard<std::mutex> lock(rt().mutex);
      message = rt().failure.empty() ? "unspecified launch failure" : rt().failure;
      return message.c_str();
    }
  }
  return "unknown error";
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = tLastError;
  tLastError = cudaSuccess;
  std::lock_guard<std::mutex> lock(rt().mutex);
  return rt().sticky != cudaSuccess ? rt().sticky : e;
}

cudaError_t cudaPeekAtLastError() {
  std::lock_guard<std::mutex> lock(rt().mutex);
  return rt().sticky != cudaSuccess ? rt().sticky : tLastError;
}

static cudaError_t syncResult() {
  std::lock_guard<std::mutex> lock(rt().mutex);
  return rt().sticky;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = rt().devices;
  return rt().devices > 0 ? cudaSuccess : fail(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= rt().devices) return fail(cudaErrorInvalidDevice);
  tDevice = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  *device = tDevice;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (device < 0 || device >= rt().devices) return fail(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "mla-serve CUDA emulator (CPU), device %d", device);
  prop->totalGlobalMem = rt().memory;
  prop->multiProcessorCount = rt().sms;
  prop->major = 9;
  prop->minor = 0;
  prop->sharedMemPerBlockOptin = kOptInSharedLimit;
  prop->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device < 0 || device >= rt().devices) return fail(cudaErrorInvalidDevice);
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = rt().sms; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(kOptInSharedLimit); return cudaSuccess;
  }
  return fail(cudaErrorInvalidValue);
}

cudaError_t cudaDeviceSynchronize() { return syncResult(); }

cudaError_t cudaDeviceReset() {
  std::lock_guard<std::mutex> lock(rt().mutex);
  rt().sticky = cudaSuccess;
  rt().failure.clear();
  tLastError = cudaSuccess;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  Runtime& r = rt();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (r.allocated + bytes > r.memory) return fail(cudaErrorMemoryAllocation);
  const size_t rounded = (std::max<size_t>(bytes, 1) + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (!p) return fail(cudaErrorMemoryAllocation);
  std::memset(p, 0xFF, rounded);  // uninitialized device memory reads as NaN
  r.allocations[p] = rounded;
  ++r.mallocs;
  r.allocated += rounded;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  Runtime& r = rt();
  std::lock_guard<std::mutex> lock(r.mutex);
  auto it = r.allocations.find(ptr);
  if (it == r.allocations.end()) return fail(cudaErrorInvalidValue);
  r.allocated -= it->second;
  r.allocations.erase(it);
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* freeBytes, size_t* totalBytes) {
  std::lock_guard<std::mutex> lock(rt().mutex);
  *totalBytes = rt().memory;
  *freeBytes = rt().memory - rt().allocated;
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes) std::memmove(dst, src, bytes);
  return syncResult();
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t) { return cudaMemcpy(dst, src, bytes, kind); }

cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (bytes) std::memset(dst, value, bytes);
  return syncResult();
}

cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t) { return cudaMemset(dst, value, bytes); }

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  *stream = reinterpret_cast<cudaStream_t>(new char(0));
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) { return cudaStreamCreate(stream); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete reinterpret_cast<char*>(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return syncResult(); }

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  *event = reinterpret_cast<cudaEvent_t>(new std::chrono::steady_clock::time_point());
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<std::chrono::steady_clock::time_point*>(event);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t) {
  *reinterpret_cast<std::chrono::steady_clock::time_point*>(event) = std::chrono::steady_clock::now();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t) { return syncResult(); }

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  const auto a = *reinterpret_cast<std::chrono::steady_clock::time_point*>(start);
  const auto b = *reinterpret_cast<std::chrono::steady_clock::time_point*>(end);
  *ms = std::chrono::duration<float, std::milli>(b - a).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttributeImpl(const void* func, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || static_cast<size_t>(value) > kOptInSharedLimit) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(rt().mutex);
  rt().sharedOptIn[{tDevice, func}] = static_cast<size_t>(value);
  return cudaSuccess;
}
