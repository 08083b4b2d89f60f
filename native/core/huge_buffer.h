// Memory that the CPU kernels stream through (the weights, read once per decode step): anonymous,
// 2 MiB-aligned and advised into transparent huge pages where the kernel offers them
// (Linux: THP "always" or "madvise"). 4 KiB pages cost a TLB miss every 4 KiB of a stream, and
// the hardware prefetchers stop at each page's end: on Zen 3 the decode matmul read 23-28 GB/s of
// weights from 4 KiB pages against 26-31 GB/s from huge pages (bench/RESULTS.md). Elsewhere, or
// where the advice is refused, it is ordinary memory: the same bytes, only slower. (The KV cache
// stays in ordinary pages: in huge pages GQA's decode attention at 4,096 x 1 was ~15% slower.)
#pragma once
#include <cstddef>

namespace mla {

class HugeBuffer {
 public:
  HugeBuffer() = default;
  explicit HugeBuffer(size_t bytes);  // zero-filled, committed as first touched; throws on failure
  ~HugeBuffer();
  HugeBuffer(HugeBuffer&& other) noexcept;
  HugeBuffer& operator=(HugeBuffer&& other) noexcept;
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;

  unsigned char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void release();
  unsigned char* data_ = nullptr;  // 2 MiB-aligned inside the mapping
  size_t size_ = 0;
  void* mapping_ = nullptr;
  size_t mappingBytes_ = 0;
};

}  // namespace mla
