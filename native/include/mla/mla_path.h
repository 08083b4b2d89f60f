// The one rule both backends follow to pick how a sequence's MLA attention runs in a step:
// absorbed (attend in latent space: the latent cache is read once for all heads) or expanded
// (decompress the context through kv_b_proj, then ordinary multi-head attention).
#pragma once
#include "mla/batch.h"
#include "mla/config.h"

namespace mla {

// Multiply-adds per head: absorbed attends in latent space (kv_lora + rope for scores, kv_lora for
// values); expanded first decompresses every context token through kv_b_proj.
inline bool absorbedIsCheaper(const ModelConfig& c, int numNewTokens, int contextLength) {
  if (numNewTokens == 1) return true;  // decode: the latent cache is read once for all heads
  const double L = c.kvLoraRank, R = c.qkRopeHeadDim, N = c.qkNopeHeadDim, V = c.vHeadDim;
  const double T = numNewTokens, C = contextLength;
  const double absorbed = T * (N * L + V * L) + T * C * (L + R + L);
  const double expanded = C * (N + V) * L + T * C * (N + R + V);
  return absorbed <= expanded;
}

inline bool useAbsorbed(MlaPath path, const ModelConfig& c, int numNewTokens, int contextLength) {
  return path == MlaPath::kAbsorbed || (path == MlaPath::kAuto && absorbedIsCheaper(c, numNewTokens, contextLength));
}

}  // namespace mla
