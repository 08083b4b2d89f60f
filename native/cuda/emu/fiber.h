// Cooperative fibers for the CUDA emulator: a stack each and a context switch of a few nanoseconds
// (callee-saved registers and the stack pointer on x86-64; ucontext elsewhere).
#pragma once
#include <cstddef>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace cuemu {

class Fiber {
 public:
  using Entry = void (*)();
  Fiber();
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // Makes the fiber start at `entry` on its next resume (entry must never return).
  void reset(Entry entry);
  // Runs the fiber until it suspends; called from the scheduler.
  void resume();
  // Returns to the scheduler that resumed this fiber; called on the fiber.
  void suspend();

 private:
  char* stack_ = nullptr;
  size_t stackBytes_ = 0;
#if defined(__x86_64__)
  void* sp_ = nullptr;       // the fiber's saved stack pointer
  void* callerSp_ = nullptr; // the scheduler's, while the fiber runs
#else
  ucontext_t context_{}, caller_{};
#endif
};

}  // namespace cuemu
