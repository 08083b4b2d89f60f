#include "napi/linalg_wrap.h"

#include <cstring>
#include <mutex>
#include <vector>

#include "core/thread_pool.h"
#include "linalg/dense.h"
#include "napi/args.h"

namespace mla::napi {

namespace {

std::vector<double> float64Arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  if (info.Length() <= index || !info[index].IsTypedArray() || info[index].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    throwType(info.Env(), std::string(name) + " must be a Float64Array");
  }
  auto a = info[index].As<Napi::Float64Array>();
  return std::vector<double>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Float64Array toJs(Napi::Env env, const std::vector<double>& v) {
  auto out = Napi::Float64Array::New(env, v.size());
  std::memcpy(out.Data(), v.data(), v.size() * sizeof(double));
  return out;
}

// One pool for every linalg call (a pool per call started a thread per core each time); calls run
// one at a time, as they would compete for the same cores anyway.
std::mutex linalgMutex;
ThreadPool& linalgPool() {
  static ThreadPool* pool = new ThreadPool(0);  // never destroyed: a call may still run at exit
  return *pool;
}

class EighWorker : public Napi::AsyncWorker {
 public:
  EighWorker(Napi::Env env, std::vector<double> a, int n)
      : Napi::AsyncWorker(env, "mla.eigh"), a_(std::move(a)), n_(n), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      std::lock_guard<std::mutex> lock(linalgMutex);
      result_ = linalg::symmetricEigen(linalgPool(), a_.data(), n_);
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }
  void OnOK() override {
    Napi::Object o = Napi::Object::New(Env());
    o.Set("values", toJs(Env(), result_.values));
    o.Set("vectors", toJs(Env(), result_.vectors));
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::vector<double> a_;
  int n_;
  linalg::Eigen result_;
  Napi::Promise::Deferred deferred_;
};

class MatmulWorker : public Napi::AsyncWorker {
 public:
  MatmulWorker(Napi::Env env, std::vector<double> a, std::vector<double> b, int m, int k, int n, bool ta, bool tb)
      : Napi::AsyncWorker(env, "mla.matmul"), a_(std::move(a)), b_(std::move(b)), m_(m), k_(k), n_(n), ta_(ta), tb_(tb),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override {
    std::lock_guard<std::mutex> lock(linalgMutex);
    c_ = linalg::matmul(linalgPool(), a_.data(), b_.data(), m_, k_, n_, ta_, tb_);
  }
  void OnOK() override { deferred_.Resolve(toJs(Env(), c_)); }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  std::vector<double> a_, b_, c_;
  int m_, k_, n_;
  bool ta_, tb_;
  Napi::Promise::Deferred deferred_;
};

}  // namespace

Napi::Value eigh(const Napi::CallbackInfo& info) {
  std::vector<double> a = float64Arg(info, 0, "a");
  const int64_t n = intArg(info, 1, "n");
  if (n <= 0 || n > 65536 || static_cast<int64_t>(a.size()) != n * n) throwType(info.Env(), "a must hold n * n values");
  auto* w = new EighWorker(info.Env(), std::move(a), static_cast<int>(n));
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

Napi::Value matmul64(const Napi::CallbackInfo& info) {
  std::vector<double> a = float64Arg(info, 0, "a"), b = float64Arg(info, 1, "b");
  const int64_t m = intArg(info, 2, "m"), k = intArg(info, 3, "k"), n = intArg(info, 4, "n");
  if (info.Length() < 7 || !info[5].IsBoolean() || !info[6].IsBoolean()) throwType(info.Env(), "transA and transB must be booleans");
  if (m <= 0 || k <= 0 || n <= 0) throwType(info.Env(), "m, k and n must be positive");
  if (static_cast<int64_t>(a.size()) != m * k) throwType(info.Env(), "a must hold m * k values");
  if (static_cast<int64_t>(b.size()) != k * n) throwType(info.Env(), "b must hold k * n values");
  auto* w = new MatmulWorker(info.Env(), std::move(a), std::move(b), static_cast<int>(m), static_cast<int>(k), static_cast<int>(n),
                             info[5].As<Napi::Boolean>().Value(), info[6].As<Napi::Boolean>().Value());
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace mla::napi
