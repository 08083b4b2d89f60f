// One block in flight on one worker thread of the emulator: its threads as fibers, the block
// barrier, the warps' collectives. Private to native/cuda/emu.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cuda/emu/cuda_emu.h"
#include "cuda/emu/fiber.h"

extern __thread cuemu::ThreadContext* cuemuCurrentThread;

namespace cuemu {

enum class LaneState { kRunnable, kAtBarrier, kInCollective, kExited };

struct AsyncCopy {
  void* dst;
  const void* src;
  int bytes;     // copied
  int srcBytes;  // read from src; the rest of `bytes` is zero-filled
};

struct Lane {
  Fiber fiber;
  ThreadContext ctx;
  LaneState state = LaneState::kRunnable;
  int index = 0;  // linear thread index in the block
  int warp = 0, lane = 0;
  const char* waitingIn = nullptr;  // the collective's name, for deadlock reports
  // cp.async: copies issued but not yet in a group, and the committed groups, oldest first.
  std::vector<AsyncCopy> open;
  std::vector<std::vector<AsyncCopy>> groups;
};

constexpr int kMaxWords = 12;  // 32-bit words a lane gives to (or gets from) one collective

// A warp collective: what each lane gave, what each gets. Open while lanes arrive; complete when
// every lane of `mask` has arrived and `finish` has filled `out`; free once all have read `out`.
struct Collective {
  enum class Phase { kFree, kOpen, kComplete } phase = Phase::kFree;
  const char* kind = nullptr;
  unsigned mask = 0;
  unsigned arrived = 0;   // bit per lane
  unsigned unread = 0;    // lanes yet to read their output
  void (*finish)(Collective&) = nullptr;
  uint32_t in[32][kMaxWords];
  const void* address[32];
  int source[32];
  uint32_t out[32][kMaxWords];
};

struct Warp {
  std::vector<std::unique_ptr<Collective>> collectives;  // more than one open only when lanes diverge
  unsigned existing = 0;                                 // lanes of the block in this warp
};

class Block {
 public:
  // Runs every thread of block `index` of a launch to completion; throws on a deadlock or a fault.
  void run(const std::function<void()>& body, uint3 index, dim3 grid, dim3 block, size_t sharedBytes);

  unsigned char* shared() { return shared_.data(); }
  Lane& current() { return *lanes_[static_cast<size_t>(current_)]; }

  // __syncthreads.
  void barrier();
  // The open collective (kind, mask) of the current lane's warp, or a new one. The caller writes
  // its inputs (in[lane], address[lane], source[lane]), then calls arrive, then reads out[lane].
  Collective& enter(const char* kind, unsigned mask, void (*finish)(Collective&));
  void arrive(Collective& c);
  void leave(Collective& c);
  // Reports a misuse found on the current lane (the launch fails with this message).
  [[noreturn]] void fail(const std::string& message);

  void laneMain();

 private:
  void schedule();
  std::string describeDeadlock() const;

  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<Warp> warps_;
  std::vector<unsigned char> shared_;
  const std::function<void()>* body_ = nullptr;
  int numLanes_ = 0;
  int current_ = 0;
  int live_ = 0;
  int atBarrier_ = 0;
  std::string error_;
};

// The block the calling worker thread is running.
Block& currentBlock();

// Thrown on a lane to end it after fail(); never escapes the lane.
struct LaneAbort {};

}  // namespace cuemu
