#include "cuda/emu/block.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

__thread cuemu::ThreadContext* cuemuCurrentThread = nullptr;

namespace cuemu {

namespace {

thread_local Block tBlock;

// MLA_EMU_SCHEDULE=reverse resumes threads last to first: another interleaving to expose races.
bool reverseOrder() {
  static const bool reverse = [] {
    const char* v = std::getenv("MLA_EMU_SCHEDULE");
    return v && std::strcmp(v, "reverse") == 0;
  }();
  return reverse;
}

void laneEntry() { tBlock.laneMain(); }

std::string laneRange(int first, int last) {
  return first == last ? std::to_string(first) : std::to_string(first) + "-" + std::to_string(last);
}

}  // namespace

Block& currentBlock() { return tBlock; }

ThreadContext& here() { return *cuemuCurrentThread; }

unsigned char* dynamicShared() { return tBlock.shared(); }

void Block::run(const std::function<void()>& body, uint3 index, dim3 grid, dim3 block, size_t sharedBytes) {
  const int n = static_cast<int>(block.x * block.y * block.z);
  while (static_cast<int>(lanes_.size()) < n) lanes_.push_back(std::make_unique<Lane>());
  const int numWarps = (n + 31) / 32;
  warps_.resize(static_cast<size_t>(numWarps));
  for (int w = 0; w < numWarps; ++w) {
    Warp& warp = warps_[static_cast<size_t>(w)];
    const int lanesInWarp = n - 32 * w < 32 ? n - 32 * w : 32;
    warp.existing = lanesInWarp == 32 ? 0xffffffffu : (1u << lanesInWarp) - 1;
    for (auto& c : warp.collectives) c->phase = Collective::Phase::kFree;  // a failed block may have left some open
  }
  shared_.assign(sharedBytes, 0xFF);  // NaN as bf16 and as fp32: reads of unwritten shared memory show
  body_ = &body;
  numLanes_ = n;
  live_ = n;
  atBarrier_ = 0;
  error_.clear();
  for (int i = 0; i < n; ++i) {
    Lane& l = *lanes_[static_cast<size_t>(i)];
    l.index = i;
    l.warp = i / 32;
    l.lane = i % 32;
    l.state = LaneState::kRunnable;
    l.waitingIn = nullptr;
    l.open.clear();
    l.groups.clear();
    const unsigned x = static_cast<unsigned>(i) % block.x, y = (static_cast<unsigned>(i) / block.x) % block.y, z = static_cast<unsigned>(i) / (block.x * block.y);
    l.ctx = ThreadContext{uint3{x, y, z}, index, block, grid};
    l.fiber.reset(laneEntry);
  }
  schedule();
}

void Block::schedule() {
  while (live_ > 0) {
    bool progressed = false;
    for (int k = 0; k < numLanes_; ++k) {
      const int i = reverseOrder() ? numLanes_ - 1 - k : k;
      Lane& l = *lanes_[static_cast<size_t>(i)];
      if (l.state != LaneState::kRunnable) continue;
      current_ = i;
      cuemuCurrentThread = &l.ctx;
      l.fiber.resume();
      progressed = true;
      if (!error_.empty()) throw std::runtime_error(error_);
    }
    if (!progressed && live_ > 0) throw std::runtime_error("deadlock: " + describeDeadlock());
  }
}

void Block::laneMain() {
  Lane& l = current();
  try {
    (*body_)();
  } catch (const LaneAbort&) {
    // error_ holds the message
  } catch (const std::exception& e) {
    if (error_.empty()) error_ = std::string("thread ") + std::to_string(l.index) + ": " + e.what();
  }
  l.state = LaneState::kExited;
  --live_;
  // Exited threads no longer hold a barrier back.
  if (atBarrier_ > 0 && atBarrier_ == live_) {
    for (auto& other : lanes_) if (other->state == LaneState::kAtBarrier) other->state = LaneState::kRunnable;
    atBarrier_ = 0;
  }
  for (;;) l.fiber.suspend();  // never resumed again
}

void Block::barrier() {
  Lane& l = current();
  l.state = LaneState::kAtBarrier;
  if (++atBarrier_ == live_) {
    for (int i = 0; i < numLanes_; ++i) {
      Lane& o = *lanes_[static_cast<size_t>(i)];
      if (o.state == LaneState::kAtBarrier) o.state = LaneState::kRunnable;
    }
    atBarrier_ = 0;
    // This thread yields too: the others run before it goes on.
  }
  l.fiber.suspend();
}

Collective& Block::enter(const char* kind, unsigned mask, void (*finish)(Collective&)) {
  Lane& l = current();
  Warp& w = warps_[static_cast<size_t>(l.warp)];
  const unsigned bit = 1u << l.lane;
  if (!(mask & bit)) fail(std::string(kind) + ": the calling lane is not in the mask");
  if (mask & ~w.existing) fail(std::string(kind) + ": the mask names lanes the block does not have");
  Collective* freeOne = nullptr;
  for (auto& c : w.collectives) {
    if (c->phase == Collective::Phase::kOpen && (c->mask & bit) && !(c->arrived & bit)) {
      if (c->kind != kind || c->mask != mask) {
        fail(std::string("warp ") + std::to_string(l.warp) + " diverged: lane " + std::to_string(l.lane) + " calls " + kind + " (mask " +
             std::to_string(mask) + ") while lanes of mask " + std::to_string(c->mask) + " wait in " + c->kind);
      }
      return *c;
    }
    if (!freeOne && c->phase == Collective::Phase::kFree) freeOne = c.get();
  }
  if (!freeOne) {
    w.collectives.push_back(std::make_unique<Collective>());
    freeOne = w.collectives.back().get();
  }
  freeOne->phase = Collective::Phase::kOpen;
  freeOne->kind = kind;
  freeOne->mask = mask;
  freeOne->arrived = 0;
  freeOne->finish = finish;
  return *freeOne;
}

void Block::arrive(Collective& c) {
  Lane& l = current();
  c.arrived |= 1u << l.lane;
  if (c.arrived == c.mask) {
    c.finish(c);
    c.phase = Collective::Phase::kComplete;
    c.unread = c.mask;
    const int base = l.warp * 32;
    for (int i = 0; i < 32; ++i) {
      if (!(c.mask & (1u << i))) continue;
      Lane& o = *lanes_[static_cast<size_t>(base + i)];
      if (o.state == LaneState::kInCollective) o.state = LaneState::kRunnable;
    }
    return;  // the last lane goes on at once
  }
  l.state = LaneState::kInCollective;
  l.waitingIn = c.kind;
  l.fiber.suspend();
}

void Block::leave(Collective& c) {
  c.unread &= ~(1u << current().lane);
  if (c.unread == 0) c.phase = Collective::Phase::kFree;
}

void Block::fail(const std::string& message) {
  if (error_.empty()) error_ = "thread " + std::to_string(current().index) + " " + message;
  throw LaneAbort{};
}

std::string Block::describeDeadlock() const {
  auto what = [&](int i) -> std::string {
    const Lane& l = *lanes_[static_cast<size_t>(i)];
    switch (l.state) {
      case LaneState::kAtBarrier: return "wait at __syncthreads";
      case LaneState::kInCollective: return std::string("wait in ") + l.waitingIn;
      case LaneState::kExited: return "have exited";
      default: return "can run";
    }
  };
  std::string out;
  int first = 0;
  for (int i = 1; i <= numLanes_; ++i) {
    if (i < numLanes_ && what(i) == what(first)) continue;
    out += (out.empty() ? "threads " : "; threads ") + laneRange(first, i - 1) + " " + what(first);
    first = i;
  }
  return out + " (a barrier or warp collective that not every thread reaches)";
}

}  // namespace cuemu
