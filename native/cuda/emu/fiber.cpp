#include "cuda/emu/fiber.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <new>

namespace cuemu {

namespace {
constexpr size_t kStackBytes = size_t(256) << 10;  // touched lazily: kernels use a few KiB
}

#if defined(__x86_64__)
// void cuemuSwitch(void** save, void* load): pushes the callee-saved registers, stores the stack
// pointer in *save, switches to `load` and pops the registers saved there.
extern "C" void cuemuSwitch(void** save, void* load);
asm(R"(
  .text
  .globl cuemuSwitch
  .type cuemuSwitch, @function
cuemuSwitch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size cuemuSwitch, .-cuemuSwitch
  .section .note.GNU-stack,"",@progbits
  .text
)");
#endif

Fiber::Fiber() : stackBytes_(kStackBytes) {
  void* p = mmap(nullptr, stackBytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  stack_ = static_cast<char*>(p);
  mprotect(stack_, 4096, PROT_NONE);  // a guard page: an overflow faults instead of corrupting memory
}

Fiber::~Fiber() { munmap(stack_, stackBytes_); }

void Fiber::reset(Entry entry) {
#if defined(__x86_64__)
  // The frame cuemuSwitch pops: six registers, then `entry` as the return address. At entry the
  // stack is aligned as after a call (rsp + 8 a multiple of 16).
  auto top = reinterpret_cast<uintptr_t>(stack_ + stackBytes_) & ~uintptr_t(15);
  auto* slots = reinterpret_cast<void**>(top);
  slots[-1] = nullptr;  // entry's (never used) return address
  slots[-2] = reinterpret_cast<void*>(entry);
  for (int i = 3; i <= 8; ++i) slots[-i] = nullptr;
  sp_ = &slots[-8];
#else
  getcontext(&context_);
  context_.uc_stack.ss_sp = stack_ + 4096;
  context_.uc_stack.ss_size = stackBytes_ - 4096;
  context_.uc_link = nullptr;
  makecontext(&context_, entry, 0);
#endif
}

void Fiber::resume() {
#if defined(__x86_64__)
  cuemuSwitch(&callerSp_, sp_);
#else
  swapcontext(&caller_, &context_);
#endif
}

void Fiber::suspend() {
#if defined(__x86_64__)
  cuemuSwitch(&sp_, callerSp_);
#else
  swapcontext(&context_, &caller_);
#endif
}

}  // namespace cuemu
