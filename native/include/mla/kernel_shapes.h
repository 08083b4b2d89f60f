// The (kv_lora_rank, qk_rope_head_dim) pairs the fused CUDA MLA decode kernel is compiled for.
// One list: the kernel's explicit instantiations (native/cuda/kernels/mla_decode_inst.cu) and the
// converter's --kernel-shapes (through the addon's mlaKernelShapes) both read it.
#pragma once

namespace mla {

struct MlaKernelShape {
  int kvLoraRank;
  int qkRopeDim;
};

// Every rank is a multiple of 32 (the kernel's latent tile); RoPE parts of 16, 32 or 64 dims.
#define MLA_FOR_EACH_DECODE_SHAPE(X) \
  X(512, 64)                         \
  X(448, 64)                         \
  X(384, 64)                         \
  X(256, 64)                         \
  X(192, 64)                         \
  X(128, 64)                         \
  X(96, 64)                          \
  X(64, 64)                          \
  X(32, 64)                          \
  X(256, 32)                         \
  X(128, 32)                         \
  X(64, 32)                          \
  X(32, 32)                          \
  X(64, 16)

#define MLA_DECODE_SHAPE_ENTRY(L, R) {L, R},
inline constexpr MlaKernelShape kMlaDecodeShapes[] = {MLA_FOR_EACH_DECODE_SHAPE(MLA_DECODE_SHAPE_ENTRY)};
#undef MLA_DECODE_SHAPE_ENTRY

}  // namespace mla
