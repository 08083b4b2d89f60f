// N-API for the float64 linear algebra the converter needs. Both calls run on a worker thread.
#pragma once
#include <napi.h>

namespace mla::napi {

// eigh(a: Float64Array [n*n], n) -> Promise<{values: Float64Array [n] descending, vectors: Float64Array [n*n], column c for values[c]}>
Napi::Value eigh(const Napi::CallbackInfo& info);
// matmul(a, b, m, k, n, transA, transB) -> Promise<Float64Array [m*n]>
Napi::Value matmul64(const Napi::CallbackInfo& info);

}  // namespace mla::napi
