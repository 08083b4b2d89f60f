// Every header the kernels (kernels_impl.h) use from outside cpu/vec.h, simd.h and microkernels.h.
// A kernel variant includes this before it switches the compiler's target ISA: functions defined
// after the switch are compiled for that ISA, and an inline function shared with the rest of the
// build (std::vector's, dtype.h's) must never be among them, or the linker may keep the AVX-512
// copy for code that runs on an AVX2 machine. Add a header here, never in kernels_impl.h.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "cpu/kernels/kernels.h"
#include "cpu/paged_attention.h"
#include "model/weights.h"
