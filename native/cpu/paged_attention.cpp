#include "cpu/paged_attention.h"

#include <algorithm>

#include "cpu/kernels/kernels.h"

namespace mla::cpu {

void PagedLayer::write(const int32_t* blockTable, int pos, int offset, const float* src, int count) const {
  const size_t i = valueIndex(blockTable, pos) + static_cast<size_t>(offset);
  if (dtype == DType::kBF16) {
    uint16_t* p = static_cast<uint16_t*>(base) + i;
    for (int c = 0; c < count; ++c) p[c] = floatToBf16(src[c]);
  } else {
    std::copy_n(src, count, static_cast<float*>(base) + i);
  }
}

void PagedLayer::read(const int32_t* blockTable, int pos, int offset, float* dst, int count) const {
  const size_t i = valueIndex(blockTable, pos) + static_cast<size_t>(offset);
  toFloat(dtype, static_cast<const unsigned char*>(base) + i * dtypeSize(dtype), dst, static_cast<size_t>(count));
}

void pagedAttention(ThreadPool& pool, const PagedLayer& cache, const HeadLayout& layout,
                    const std::vector<PagedQuery>& queries, const float* q, float* out) {
  kernels().pagedAttention(pool, cache, layout, queries, q, out);
}

}  // namespace mla::cpu
