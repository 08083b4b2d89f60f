// A fixed pool of threads for data-parallel loops. Workers spin briefly between the many small
// loops of one forward pass, then sleep, so an idle engine costs no CPU.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mla {

class ThreadPool {
 public:
  // numThreads counts the calling thread; 0 picks the hardware's concurrency.
  explicit ThreadPool(int numThreads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int numThreads() const { return static_cast<int>(workers_.size()) + 1; }

  // Splits [0, n) into numThreads() contiguous chunks and runs fn(begin, end) on each, the caller
  // taking the first. Runs inline when n < minPerThread * 2. Not reentrant.
  void parallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t minPerThread = 1);

  // Tells spinning workers to sleep now: nothing follows soon (the end of a forward pass), and the
  // cores are better left to other threads (the event loop, the HTTP server).
  void park() { parked_.store(true, std::memory_order_relaxed); }

 private:
  void workerLoop(int index);

  std::vector<std::thread> workers_;
  const std::function<void(int64_t, int64_t)>* task_ = nullptr;
  int64_t taskSize_ = 0;
  int taskParts_ = 0;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> parked_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
};

}  // namespace mla
