// Copies chosen rows of a bf16 matrix: out[r, :] = in[rows[r], :].
#pragma once
#include <cstdint>

#include "cuda/common.h"

namespace mla::cuda {

void gatherRowsBf16(const bf16* in, const int32_t* rows, int count, int cols, bf16* out, cudaStream_t stream);

}  // namespace mla::cuda
