// Device memory owned RAII-style; grows on demand, never shrinks.
#pragma once
#include <cstddef>
#include <vector>

#include "cuda/common.h"

namespace mla::cuda {

template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) { reserve(n); }
  ~DeviceArray() { release(); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : ptr_(o.ptr_), capacity_(o.capacity_) { o.ptr_ = nullptr; o.capacity_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    release();
    ptr_ = o.ptr_;
    capacity_ = o.capacity_;
    o.ptr_ = nullptr;
    o.capacity_ = 0;
    return *this;
  }

  // Makes room for n elements (contents are not kept when it grows).
  T* reserve(size_t n) {
    if (n > capacity_) {
      release();
      MLA_CUDA_CHECK(cudaMalloc(&ptr_, n * sizeof(T)));
      capacity_ = n;
    }
    return ptr_;
  }
  // Copies n host elements in (asynchronously on stream); returns the device pointer.
  T* upload(const T* host, size_t n, cudaStream_t stream) {
    reserve(n);
    if (n) MLA_CUDA_CHECK(cudaMemcpyAsync(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice, stream));
    return ptr_;
  }
  T* upload(const std::vector<T>& host, cudaStream_t stream) { return upload(host.data(), host.size(), stream); }
  void download(T* host, size_t n, cudaStream_t stream) const {
    if (n) MLA_CUDA_CHECK(cudaMemcpyAsync(host, ptr_, n * sizeof(T), cudaMemcpyDeviceToHost, stream));
  }
  T* get() const { return ptr_; }
  size_t capacity() const { return capacity_; }

 private:
  void release() {
    if (ptr_) cudaFree(ptr_);
    ptr_ = nullptr;
    capacity_ = 0;
  }
  T* ptr_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace mla::cuda
