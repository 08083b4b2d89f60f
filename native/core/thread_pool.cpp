#include "core/thread_pool.h"

#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MLA_PAUSE() _mm_pause()
#else
#define MLA_PAUSE() std::this_thread::yield()
#endif

namespace mla {

namespace {
constexpr auto kSpinTime = std::chrono::microseconds(200);
}

ThreadPool::ThreadPool(int numThreads) {
  if (numThreads <= 0) numThreads = static_cast<int>(std::thread::hardware_concurrency());
  if (numThreads <= 0) numThreads = 1;
  for (int i = 1; i < numThreads; ++i) workers_.emplace_back([this, i] { workerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t minPerThread) {
  if (n <= 0) return;
  const int threads = numThreads();
  int parts = threads;
  if (minPerThread > 0 && n / minPerThread < parts) parts = static_cast<int>(n / minPerThread);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  parked_.store(false, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &fn;
    taskSize_ = n;
    taskParts_ = parts;
    pending_.store(static_cast<int>(workers_.size()));
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  fn(0, n / parts);
  while (pending_.load(std::memory_order_acquire) != 0) MLA_PAUSE();
}

void ThreadPool::workerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    // Spin for a moment: the next loop of a forward pass usually follows within microseconds.
    auto start = std::chrono::steady_clock::now();
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      MLA_PAUSE();
      if (++spins % 1024 == 0 && (parked_.load(std::memory_order_relaxed) || std::chrono::steady_clock::now() - start > kSpinTime)) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        break;
      }
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    int64_t begin, end;
    const std::function<void(int64_t, int64_t)>* task;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task = task_;
      begin = taskSize_ * index / taskParts_;
      end = taskSize_ * (index + 1) / taskParts_;
      if (index >= taskParts_) begin = end = 0;
    }
    if (begin < end) (*task)(begin, end);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

}  // namespace mla
