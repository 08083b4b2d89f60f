// Tests of what only the emulator does: report deadlocks and misuse, expose missing barriers and
// waits, and check the hardware's launch limits per device. Included by test_ptx.cu on the emulator.
#pragma once
#include <string>

namespace {

// Lane 3 goes to the barrier while the others wait for it in a shuffle: a deadlock on hardware.
__global__ void deadlockKernel(int* out) {
  int v = static_cast<int>(threadIdx.x);
  if (threadIdx.x % 32 != 3) v = __shfl_sync(0xffffffffu, v, 0);
  __syncthreads();
  out[threadIdx.x] = v;
}

// cp.async without the wait: the data must not be there (the emulator copies at the wait).
__global__ void missingWaitKernel(const uint4* src, uint4* out) {
  __shared__ __align__(16) uint4 s[32];
  s[threadIdx.x] = make_uint4(7, 7, 7, 7);
  __syncthreads();
  ptx::cpAsync16(&s[threadIdx.x], &src[threadIdx.x]);
  ptx::cpAsyncCommit();
  __syncthreads();
  out[threadIdx.x] = s[threadIdx.x];
}

__global__ void bigSharedKernel(int* out) {
  MLA_DYNAMIC_SHARED(int, s);
  s[threadIdx.x] = 1;
  out[threadIdx.x] = s[threadIdx.x];
}

std::string lastError() { return cudaGetErrorString(cudaDeviceSynchronize()); }

}  // namespace

TEST(emulator_reports_a_deadlock_and_names_the_threads) {
  DeviceArray<int> out(64);
  MLA_LAUNCH(deadlockKernel, 1, 64, 0, nullptr, out.get());
  EXPECT(cudaGetLastError() == cudaErrorLaunchFailure);
  const std::string message = lastError();
  EXPECT_MSG(message.find("deadlock") != std::string::npos && message.find("wait in __shfl_sync") != std::string::npos &&
                 message.find("wait at __syncthreads") != std::string::npos,
             "%s", message.c_str());
  cudaDeviceReset();  // the failure is sticky, as on hardware, until the device is reset
  EXPECT(cudaDeviceSynchronize() == cudaSuccess);
}

TEST(emulator_exposes_a_missing_barrier_and_a_missing_wait) {
  const int n = 256;
  DeviceArray<int> dOut(n);
  // A salt no earlier launch used: static __shared__ arrays keep their values between blocks on a
  // worker (only dynamic shared memory is refilled with NaN), so stale values must not look right.
  const int salt = 1000;
  MLA_LAUNCH(barrierKernel, 1, n, 0, nullptr, dOut.get(), false, salt);
  EXPECT(cudaDeviceSynchronize() == cudaSuccess);
  const auto out = download(dOut, n);
  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += out[i] != (n - 1 - i) * 3 + salt;
  EXPECT_MSG(wrong > 0, "without __syncthreads threads must see unwritten slots");

  std::vector<uint32_t> src(32 * 4, 5);
  DeviceArray<uint32_t> dSrc, dGot(32 * 4);
  upload(dSrc, src);
  MLA_LAUNCH(missingWaitKernel, 1, 32, 0, nullptr, reinterpret_cast<const uint4*>(dSrc.get()), reinterpret_cast<uint4*>(dGot.get()));
  EXPECT(cudaDeviceSynchronize() == cudaSuccess);
  EXPECT(download(dGot, 32 * 4) == std::vector<uint32_t>(32 * 4, 7));
}

TEST(emulator_checks_launch_limits_per_device) {
  DeviceArray<int> out(64);
  MLA_LAUNCH(bigSharedKernel, dim3(1, 1, 65536), 32, 0, nullptr, out.get());  // gridDim.z past 65,535
  EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration);
  MLA_LAUNCH(bigSharedKernel, 1, 1025, 0, nullptr, out.get());
  EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration);
  const int bytes = 100 * 1024;
  MLA_LAUNCH(bigSharedKernel, 1, 32, bytes, nullptr, out.get());  // above 48 KiB without the opt-in
  EXPECT(cudaGetLastError() == cudaErrorInvalidValue);
  EXPECT(cudaFuncSetAttribute(bigSharedKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes) == cudaSuccess);
  MLA_LAUNCH(bigSharedKernel, 1, 32, bytes, nullptr, out.get());
  EXPECT(cudaGetLastError() == cudaSuccess);
  // The opt-in belongs to the device it was made on.
  EXPECT(cudaSetDevice(1) == cudaSuccess);
  DeviceArray<int> out1(64);
  MLA_LAUNCH(bigSharedKernel, 1, 32, bytes, nullptr, out1.get());
  EXPECT(cudaGetLastError() == cudaErrorInvalidValue);
  EXPECT(cudaSetDevice(0) == cudaSuccess);
}
