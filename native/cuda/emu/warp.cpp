// Block barriers and the warp collectives of the CUDA programming model (shuffles, votes, syncwarp).
#include "cuda/emu/block.h"

namespace cuemu {

namespace {

void finishExchange(Collective& c) {
  for (int i = 0; i < 32; ++i) {
    if (!(c.mask & (1u << i))) continue;
    const int src = c.source[i];
    // Reading a lane outside the mask is undefined on hardware: give a recognizable garbage value.
    c.out[i][0] = (c.mask & (1u << src)) ? c.in[src][0] : 0xDEADBEEFu;
  }
}

void finishBallot(Collective& c) {
  unsigned bits = 0;
  for (int i = 0; i < 32; ++i) if ((c.mask & (1u << i)) && c.in[i][0]) bits |= 1u << i;
  for (int i = 0; i < 32; ++i) c.out[i][0] = bits;
}

void finishNothing(Collective&) {}

}  // namespace

void syncthreads() { currentBlock().barrier(); }

int laneId() { return currentBlock().current().lane; }

unsigned warpExchange(const char* kind, unsigned mask, unsigned value, int sourceLane) {
  Block& b = currentBlock();
  Collective& c = b.enter(kind, mask, finishExchange);
  const int lane = b.current().lane;
  c.in[lane][0] = value;
  c.source[lane] = sourceLane;
  b.arrive(c);
  const unsigned out = c.out[lane][0];
  b.leave(c);
  return out;
}

unsigned warpBallot(unsigned mask, bool predicate) {
  Block& b = currentBlock();
  Collective& c = b.enter("__ballot_sync", mask, finishBallot);
  const int lane = b.current().lane;
  c.in[lane][0] = predicate ? 1u : 0u;
  b.arrive(c);
  const unsigned out = c.out[lane][0];
  b.leave(c);
  return out;
}

void syncwarp(unsigned mask) {
  Block& b = currentBlock();
  Collective& c = b.enter("__syncwarp", mask, finishNothing);
  b.arrive(c);
  b.leave(c);
}

}  // namespace cuemu
