// Module init: the only entry point Node sees.
#include <napi.h>

#include "napi/constructors.h"
#include "napi/engine_wrap.h"
#include "napi/statistics_wrap.h"
#include "engine/backends.h"
#include "mla/kernel_shapes.h"
#include "napi/linalg_wrap.h"
#include "cpu/bandwidth.h"
#include "cpu/isa.h"

namespace {

Napi::Object buildInfo(Napi::Env env) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("cuda", mla::cudaBackendBuilt());
  o.Set("devices", Napi::String::New(env, mla::cudaBackendBuilt() ? "cpu,cuda" : "cpu"));
  // The CPU kernels' ISA, chosen by the CPU's features (or MLA_CPU_ISA): a bad MLA_CPU_ISA fails the load.
  o.Set("cpuIsa", Napi::String::New(env, mla::cpu::isaName(mla::cpu::activeIsa())));
  return o;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new mla::napi::Constructors());
  exports.Set("Engine", mla::napi::EngineWrap::defineClass(env));
  exports.Set("Statistics", mla::napi::StatisticsWrap::defineClass(env));
  exports.Set("loadEngine", Napi::Function::New(env, mla::napi::loadEngine, "loadEngine"));
  try {
    exports.Set("buildInfo", buildInfo(env));
  } catch (const std::exception& e) {
    Napi::Error::New(env, e.what()).ThrowAsJavaScriptException();
    return exports;
  }
  Napi::Object linalg = Napi::Object::New(env);
  linalg.Set("eigh", Napi::Function::New(env, mla::napi::eigh, "eigh"));
  linalg.Set("matmul", Napi::Function::New(env, mla::napi::matmul64, "matmul"));
  exports.Set("linalg", linalg);
  Napi::Array shapes = Napi::Array::New(env);
  uint32_t i = 0;
  for (const mla::MlaKernelShape& k : mla::kMlaDecodeShapes) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, k.kvLoraRank);
    pair.Set(1u, k.qkRopeDim);
    shapes.Set(i++, pair);
  }
  exports.Set("mlaKernelShapes", shapes);
  // memoryReadBandwidth(mib, threads): bytes/s of streaming a buffer of `mib` MiB (benchmarks' floor).
  exports.Set("memoryReadBandwidth", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    const double mib = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 1024;
    const int threads = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
    if (!(mib >= 64 && mib <= 65536) || threads < 0 || threads > 1024) {
      Napi::TypeError::New(info.Env(), "memoryReadBandwidth(mib in [64, 65536], threads >= 0)").ThrowAsJavaScriptException();
      return info.Env().Undefined();
    }
    mla::ThreadPool pool(threads);
    return Napi::Number::New(info.Env(), mla::cpu::readBandwidth(pool, static_cast<size_t>(mib * (1 << 20)), 5));
  }, "memoryReadBandwidth"));
  return exports;
}

}  // namespace

NODE_API_MODULE(mla_native, init)
