// The memory-bandwidth floor that benchmarks compare decode against: how fast the pool's threads
// stream a buffer much larger than the caches.
#pragma once
#include <cstddef>

#include "core/thread_pool.h"

namespace mla::cpu {

// Bytes per second of reading `bytes` (split across the pool's threads), the best of `reps` passes.
double readBandwidth(ThreadPool& pool, size_t bytes, int reps);

}  // namespace mla::cpu
